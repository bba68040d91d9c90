//! The read-only web UI (`--ui-listen`): what an operator asks at a glance
//! (which Apps are Ready, what one of them applied and who changed it,
//! whether the audit log verifies, what came across the gap), in a closed
//! network.
//!
//! Why it looks the way it does:
//! - server-rendered HTML (minijinja templates, auto-escaped) with one
//!   stylesheet and one small script, both served from here: no external
//!   fonts, scripts or styles, and `Content-Security-Policy: default-src
//!   'self'` on every answer, so the browser refuses anything else;
//! - live without reloading: the script listens to `/events`
//!   (server-sent events, a tick whenever an App's status or the log
//!   changes) and fetches the page's `<main>` again;
//! - nothing writes: every route but the login form is a GET, and the
//!   login only opens a session for a token the apiserver accepts;
//! - each page shows only what its user may `get` ([`auth`]).
//!
//! Pages: `/` (Apps, filterable), `/apps/NAMESPACE/NAME` (one App),
//! `/audit` (records and the latest checkpoint, verified), `/imports`
//! (bundles pushed).

mod auth;
mod pages;
mod view;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use serde_json::json;

use super::{Context, log};

/// What every page answers with, beside its body.
const CSP: &str = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const CSS: &str = include_str!("assets/ui.css");
const JS: &str = include_str!("assets/ui.js");

/// The templates, parsed once.
fn templates() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    // Every template is HTML: every value printed is escaped.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("login.html", include_str!("templates/login.html")),
        ("apps.html", include_str!("templates/apps.html")),
        ("app.html", include_str!("templates/app.html")),
        ("audit.html", include_str!("templates/audit.html")),
        ("imports.html", include_str!("templates/imports.html")),
        ("message.html", include_str!("templates/message.html")),
        ("macros.html", include_str!("templates/macros.html")),
    ] {
        if let Err(e) = env.add_template(name, source) {
            // The templates are part of the binary: a test renders each.
            log::error(
                "a UI template does not parse",
                json!({"template": name, "error": e.to_string()}),
            );
        }
    }
    env
}

/// The UI's state: the controller's context, the reviews, the templates.
pub struct Ui {
    ctx: Arc<Context>,
    auth: auth::Auth,
    templates: minijinja::Environment<'static>,
    /// The Apps' scope: the controller's `--namespace`, or all.
    scope: Option<String>,
}

impl std::fmt::Debug for Ui {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ui").field("scope", &self.scope).finish()
    }
}

/// Serves the UI on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, ctx: Arc<Context>, scope: Option<String>) {
    let ui = Arc::new(Ui {
        auth: auth::Auth::new(ctx.client.clone()),
        ctx,
        templates: templates(),
        scope,
    });
    let app = router(ui);
    if let Err(e) = axum::serve(listener, app).await {
        log::error("the UI server stopped", json!({"error": e.to_string()}));
    }
}

fn router(ui: Arc<Ui>) -> Router {
    Router::new()
        .route("/", get(pages::apps))
        .route("/apps/{namespace}/{name}", get(pages::app))
        .route("/audit", get(pages::audit))
        .route("/imports", get(pages::imports))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/events", get(events))
        .route(
            "/assets/ui.css",
            get(|| asset(CSS, "text/css; charset=utf-8")),
        )
        .route(
            "/assets/ui.js",
            get(|| asset(JS, "text/javascript; charset=utf-8")),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(middleware::from_fn(secure))
        .with_state(ui)
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The headers every answer carries: the browser loads nothing from
/// anywhere else, frames nothing, sends no referrer elsewhere (and an
/// `Origin` the login form's check can read), guesses no types.
async fn secure(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// `/events`: a `change` event whenever an App's status or the log
/// changed (at most one a second), for the page to fetch itself again.
async fn events(
    State(ui): State<Arc<Ui>>,
    _user: auth::User,
) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>> {
    let changes = ui.ctx.changes.subscribe();
    let stream = futures_util::stream::unfold(changes, |mut rx| async move {
        rx.changed().await.ok()?;
        let generation = *rx.borrow_and_update();
        // Bursts (a sync writes status, then a record) become one event.
        tokio::time::sleep(Duration::from_secs(1)).await;
        rx.borrow_and_update();
        Some((
            Ok(Event::default()
                .event("change")
                .data(generation.to_string())),
            rx,
        ))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_template_parses() {
        let env = templates();
        for name in [
            "base.html",
            "login.html",
            "apps.html",
            "app.html",
            "audit.html",
            "imports.html",
            "message.html",
            "macros.html",
        ] {
            assert!(env.get_template(name).is_ok(), "{name}");
        }
    }

    /// Every page renders with representative data, whole and as the
    /// `main` block alone, and escapes what it prints.
    #[test]
    fn pages_render_whole_and_partial() {
        use minijinja::context;
        let env = templates();
        let record = json!({
            "seq": 7, "app": "team-a/web", "kind": "sync", "result": "succeeded",
            "revision": "0123456789ab", "time": "2026-12-02T07:00:00Z", "duration_ms": 12,
            "author": "Ann <ann@example.test>", "message": "<script>x</script>", "error": "",
            "signers": ["ann (ssh-ed25519 SHA256:x)"], "trailers": ["Ticket: CHG-1"],
            "changes": [{"object": "v1/ConfigMap/team-a/a", "action": "configured", "fields": ["data.x"]}],
            "images": [{"image": "reg/x@sha256:1", "import": "sha256:abc", "signed_by": ""}],
            "drift": [{"object": "o", "field_manager": "kubectl", "fields": ["f"], "corrected": true}],
            "freeze_override": "",
            "import": {"id": "sha256:1", "inventory": "sha256:2", "signed_by": "sha256:3",
                       "target": "reg", "pushed_by": "p", "pushed_at": "t", "images": ["i"]}
        });
        let row = json!({"namespace": "team-a", "name": "web", "revision": "0123", "ready": "True",
            "reason": "Succeeded", "message": "m", "frozen": true, "drifted": true,
            "suspended": false, "last_sync": "t", "state": "ready"});
        let pages = [
            (
                "apps.html",
                context! { user => "u", rows => json!([row]), total => 1,
                filter => view::Filter::default(), counts => json!({"ready": 1}),
                namespaces => ["team-a"], states => ["ready"] },
            ),
            (
                "app.html",
                context! { user => "u", row => row.clone(),
                conditions => json!([{"type": "Ready", "status": "True", "reason": "Succeeded",
                    "message": "m", "lastTransitionTime": "t"}]),
                source => context! { url => "https://git", path => ".", git_ref => "branch main",
                    service_account => "sa", prune => true, helm => false },
                freeze => ["every `0 0 * * 5` for 48h (UTC)"],
                objects => json!([{"depth": 1, "kind": "Pod", "namespace": "team-a", "name": "p",
                    "health": "Ready", "message": "", "applied": false}]),
                count => 1, objects_error => minijinja::Value::from(()), syncs => json!([record]),
                drift => json!([record]), records_error => minijinja::Value::from(()),
                events => json!([{"time": "t", "type": "Normal", "reason": "Succeeded",
                    "message": "m", "count": 1}]), took_ms => 3 },
            ),
            (
                "audit.html",
                context! { user => "u", records => json!([record]), everything => false,
                checkpoint => json!({"text": "log\n1\n", "verified": true, "verdict": "verifies"}),
                log_name => "log", repository => "reg/log", refused => minijinja::Value::from(()) },
            ),
            (
                "imports.html",
                context! { user => "u", imports => json!([record]) },
            ),
            ("login.html", context! { error => "no" }),
            (
                "message.html",
                context! { user => "u", title => "Not Found", text => "t" },
            ),
        ];
        for (name, ctx) in pages {
            for partial in [false, true] {
                let html = env
                    .get_template(name)
                    .and_then(|t| t.render(context! { partial, ..ctx.clone() }))
                    .unwrap_or_else(|e| panic!("{name}: {e:#}"));
                assert_eq!(html.contains("<!doctype html>"), !partial, "{name}");
                assert!(
                    !html.contains("<script>x"),
                    "{name} printed markup unescaped"
                );
            }
        }
    }

    #[test]
    fn assets_stay_small() {
        // The budget is 100 KB gzipped for everything; these are
        // far under it uncompressed.
        assert!(CSS.len() + JS.len() < 20_000, "{}", CSS.len() + JS.len());
        for text in [CSS, JS] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
    }
}
