// airgate's UI: live updates without reloading. The server sends a
// `change` event on /events when an App's status or the audit log
// changes; the page then fetches itself again and swaps its <main>.
// Nothing here reaches past this origin (the page's CSP forbids it).
(function () {
  "use strict";
  var live = document.getElementById("live");
  var main = document.getElementById("main");
  if (!live || !main || !window.EventSource) { return; }
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.href, { headers: { "X-Airgate-Partial": "1" }, credentials: "same-origin" })
      .then(function (r) {
        if (r.redirected || !r.ok) { throw new Error("status " + r.status); }
        return r.text();
      })
      .then(function (html) {
        var open = [];
        main.querySelectorAll("details[open]").forEach(function (d, i) { open.push(i); });
        main.innerHTML = html;
        var details = main.querySelectorAll("details");
        open.forEach(function (i) { if (details[i]) { details[i].open = true; } });
        document.dispatchEvent(new CustomEvent("airgate:refreshed"));
      })
      .catch(function () { live.classList.remove("on"); })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }
  var source = new EventSource("/events");
  source.onopen = function () { live.classList.add("on"); };
  source.onerror = function () { live.classList.remove("on"); };
  source.addEventListener("change", refresh);
}());
