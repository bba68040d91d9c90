//! The web UI in a real browser (Debian's headless Chromium over
//! WebDriver), served by a controller against the perimeter: Apps in every
//! state, one App's objects as an owner tree with its records and Events,
//! the audit log's checkpoint verified, live updates without a reload,
//! nothing loaded from another origin, and a user without access to the
//! namespace seeing none of it. Screenshots go to `target/ui-screenshots/`.

use std::path::PathBuf;
use std::time::Duration;

use airgate_core::status::{ConditionStatus, ConditionType};
use airgate_testkit::browser::Browser;
use anyhow::{Result, ensure};
use serde_json::{Value, json};

mod tenant;
use tenant::*;

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|p| p.join("ui-screenshots"))
        .unwrap_or_else(|| PathBuf::from("target/ui-screenshots"))
}

fn condition(app: &airgate_kube::app::App, t: ConditionType) -> bool {
    app.status
        .as_ref()
        .is_some_and(|s| s.is(t, ConditionStatus::True))
}

/// Runs `check` until it succeeds or `timeout` passes (then its last
/// error, named).
async fn retry<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(e) if std::time::Instant::now() > deadline => {
                return Err(e.context(format!("waiting for {what}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// Who looks: a ServiceAccount of the tenant's namespace, bound as `role`
/// (`view-apps`: get and list Apps here; `none`; `cluster`: get Apps in
/// every namespace).
async fn user(t: &Tenant, name: &str, role: &str) -> Result<String> {
    let mut objects = vec![json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": t.ns}})];
    let subject = json!([{"kind": "ServiceAccount", "name": name, "namespace": t.ns}]);
    let rules =
        json!([{"apiGroups": ["airgate.dev"], "resources": ["apps"], "verbs": ["get", "list"]}]);
    match role {
        "view-apps" => objects.extend([
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": name, "namespace": t.ns}, "rules": rules}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": t.ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": subject}),
        ]),
        "cluster" => {
            let cluster_name = format!("{}-{name}", t.ns);
            objects.extend([
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                    "metadata": {"name": cluster_name}, "rules": rules}),
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                    "metadata": {"name": cluster_name},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_name},
                    "subjects": subject}),
            ]);
        }
        _ => {}
    }
    let admin = airgate_kube::Applier::new(t.p.kube_client().await?, "ui-test", &t.ns);
    let objects: Vec<_> = objects.into_iter().map(|o| ("ui".to_string(), o)).collect();
    admin.apply(&objects).await?;
    t.p.service_account_token(&t.ns, name).await
}

/// Logs in through the form, as a person would.
async fn login(b: &Browser, ui: &str, token: &str) -> Result<()> {
    b.go(&format!("{ui}/login")).await?;
    b.run(
        "document.getElementById('token').value = arguments[0];
         document.querySelector('form.login').submit();",
        json!([token]),
    )
    .await?;
    retry(
        "the Apps page after login",
        Duration::from_secs(20),
        || async {
            let url = b.url().await?;
            ensure!(url == format!("{ui}/"), "at {url}: {}", b.text().await?);
            Ok(())
        },
    )
    .await
}

/// Every URL the page loaded or points at is on the UI's own origin.
async fn same_origin_only(b: &Browser, ui: &str, page: &str) -> Result<()> {
    let urls = b.requested().await?;
    ensure!(urls.len() >= 3, "{page}: too few URLs seen: {urls:?}");
    for u in &urls {
        ensure!(
            u.starts_with(&format!("{ui}/")),
            "{page} reached past its origin: {u}"
        );
    }
    Ok(())
}

/// The Apps table's rows: `name -> (state class, text)`.
async fn rows(b: &Browser) -> Result<Vec<(String, String, String)>> {
    let v = b
        .run(
            "return Array.from(document.querySelectorAll('#apps tbody tr[data-app]'))
               .map(r => [r.dataset.app, r.className, r.innerText]);",
            json!([]),
        )
        .await?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let s = |i: usize| r[i].as_str().unwrap_or_default().to_string();
            Some((s(0).split('/').nth(1)?.to_string(), s(1), s(2)))
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ui_shows_apps_in_every_state_live_only_to_who_may_see_them_and_loads_nothing_from_elsewhere()
-> Result<()> {
    let _git = GIT.read().await;
    let t = Tenant::new("ui").await?;
    t.write("envs/prod/settings.yaml", &config_map("settings", "a"))?;
    t.write("envs/prod/web.yaml", &deployment(&image("1"), None, false))?;
    // An image from outside the allowed registries: the policy refuses it.
    t.write(
        "envs/broken/web.yaml",
        &deployment("docker.io/library/nginx:1", None, false),
    )?;
    t.write("envs/frozen/cm.yaml", &config_map("frozen-cm", "f"))?;
    t.write("envs/paused/cm.yaml", &config_map("paused-cm", "p"))?;
    t.write("envs/drift/cm.yaml", &config_map("drift-cm", "d"))?;
    t.push("apps in every state")?;

    let key = t.dir.path().join("log");
    let made = airgate()
        .args([
            "key", "generate", "--type", "note", "--name", "ui-test", "--out",
        ])
        .arg(&key)
        .output()?;
    ensure!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let ui = format!("http://127.0.0.1:{port}");
    let log_key = t.dir.path().join("log.key").display().to_string();
    let listen = format!("127.0.0.1:{port}");
    let c = t
        .controller_traced(
            "c1",
            &format!("{}-lease", t.ns),
            None,
            &[
                "--ui-listen",
                &listen,
                "--log-key",
                &log_key,
                "--log-name",
                "ui-test",
            ],
        )
        .await?;
    let path = |p: &str| -> Value {
        let mut s = t.app_spec(json!({}))["source"].clone();
        s["path"] = json!(p);
        s
    };
    t.create_app("shop", json!({})).await?;
    t.create_app("broken", json!({"source": path("envs/broken")}))
        .await?;
    t.create_app(
        "frozen",
        json!({"source": path("envs/frozen"),
               "freeze": [{"from": "2020-01-01T00:00:00Z", "to": "2099-01-01T00:00:00Z"}]}),
    )
    .await?;
    t.create_app(
        "paused",
        json!({"source": path("envs/paused"), "suspend": true}),
    )
    .await?;
    t.create_app(
        "drifty",
        json!({"source": path("envs/drift"), "drift": "warn", "interval": "1h"}),
    )
    .await?;
    t.until("shop", "Ready", ready, &c).await?;
    t.until("drifty", "Ready", ready, &c).await?;
    t.until(
        "broken",
        "refused by policy",
        |a| reason(a) == "PolicyViolation",
        &c,
    )
    .await?;
    t.until(
        "frozen",
        "Frozen",
        |a| condition(a, ConditionType::Frozen),
        &c,
    )
    .await?;
    t.until("paused", "Suspended", |a| reason(a) == "Suspended", &c)
        .await?;
    kubectl(
        &t.p,
        &[
            "-n",
            &t.ns,
            "patch",
            "configmap",
            "drift-cm",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"mode":"z"}}"#,
        ],
    )?;
    t.until(
        "drifty",
        "Drifted",
        |a| condition(a, ConditionType::Drifted),
        &c,
    )
    .await?;

    let viewer = user(&t, "viewer", "view-apps").await?;
    let outsider = user(&t, "outsider", "none").await?;
    let operator = user(&t, "operator", "cluster").await?;
    let shots = screenshots();
    {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let r = http
            .post(format!("{ui}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={viewer}"))
            .send()
            .await?;
        eprintln!("DEBUG login: {} {:?}", r.status(), r.headers());
        let cookie = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string();
        let r = http
            .get(format!("{ui}/"))
            .header("cookie", &cookie)
            .send()
            .await?;
        eprintln!("DEBUG /: {} {:?}", r.status(), r.headers());
        eprintln!(
            "DEBUG log: {}",
            c.log()
                .lines()
                .filter(|l| l.contains("UI") || l.contains("review"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let b = Browser::start(1400, 1000).await?;

    // Not logged in: the login form, and nothing else.
    b.go(&format!("{ui}/")).await?;
    ensure!(
        b.url().await? == format!("{ui}/login"),
        "{}",
        b.url().await?
    );
    b.screenshot(&shots.join("login.png")).await?;
    login(&b, &ui, &viewer).await?;

    // Every state, at a glance.
    let seen = rows(&b).await?;
    let state = |name: &str| {
        seen.iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, class, text)| (class.clone(), text.clone()))
            .unwrap_or_default()
    };
    let html = b
        .run("return document.documentElement.outerHTML;", json!([]))
        .await?;
    ensure!(seen.len() == 5, "five Apps: {seen:?}\n{html}");
    ensure!(state("shop").0 == "ready", "{seen:?}");
    ensure!(
        state("broken").0 == "failed" && state("broken").1.contains("PolicyViolation"),
        "{seen:?}"
    );
    ensure!(state("paused").0 == "suspended", "{seen:?}");
    ensure!(state("frozen").1.contains("frozen"), "{seen:?}");
    ensure!(state("drifty").1.contains("drifted"), "{seen:?}");
    same_origin_only(&b, &ui, "the Apps page").await?;
    b.screenshot(&shots.join("apps.png")).await?;

    // Filtered.
    b.go(&format!("{ui}/?state=failed")).await?;
    let failed = rows(&b).await?;
    ensure!(failed.len() == 1 && failed[0].0 == "broken", "{failed:?}");
    b.go(&format!("{ui}/?q=drifty")).await?;
    let found = rows(&b).await?;
    ensure!(found.len() == 1 && found[0].0 == "drifty", "{found:?}");

    // One App: its objects as an owner tree (the Deployment's ReplicaSet
    // and Pod under it), its syncs with their records, its Events.
    b.go(&format!("{ui}/apps/{}/shop", t.ns)).await?;
    let tree = retry(
        "the Deployment's ReplicaSet under it",
        Duration::from_secs(30),
        || async {
            b.go(&format!("{ui}/apps/{}/shop", t.ns)).await?;
            let v = b
                .run(
                    "return Array.from(document.querySelectorAll('#objects tbody tr'))
                   .map(r => [r.cells[0].className, r.innerText]);",
                    json!([]),
                )
                .await?;
            let rows: Vec<(String, String)> = v
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    (
                        r[0].as_str().unwrap_or_default().to_string(),
                        r[1].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            ensure!(
                rows.iter()
                    .any(|(d, text)| d == "d1" && text.starts_with("ReplicaSet")),
                "{rows:?}"
            );
            Ok(rows)
        },
    )
    .await?;
    ensure!(
        tree.iter()
            .any(|(d, text)| d == "d0" && text.starts_with("Deployment")),
        "{tree:?}"
    );
    ensure!(
        tree.iter().any(|(_, text)| text.starts_with("ConfigMap")),
        "{tree:?}"
    );
    let text = b.text().await?;
    for wanted in [
        "Recent syncs",
        "succeeded",
        "sync",
        "Events",
        "Succeeded",
        "ServiceAccount deployer",
    ] {
        ensure!(
            text.contains(wanted),
            "the App page lacks {wanted:?}:\n{text}"
        );
    }
    same_origin_only(&b, &ui, "an App's page").await?;
    b.screenshot(&shots.join("app.png")).await?;

    b.go(&format!("{ui}/apps/{}/drifty", t.ns)).await?;
    let text = b.text().await?;
    ensure!(
        text.contains("kubectl-patch") && text.contains("Changed by"),
        "drift not shown:\n{text}"
    );

    // The audit log: the latest checkpoint, verified against the store.
    b.go(&format!("{ui}/audit")).await?;
    let verdict = b
        .run(
            "return document.getElementById('checkpoint-verdict').innerText;",
            json!([]),
        )
        .await?;
    ensure!(
        verdict.as_str().unwrap_or_default().contains("verifies"),
        "{verdict}"
    );
    let text = b.text().await?;
    ensure!(text.contains(&format!("{}/shop", t.ns)), "{text}");
    same_origin_only(&b, &ui, "the audit page").await?;
    b.screenshot(&shots.join("audit.png")).await?;
    b.go(&format!("{ui}/imports")).await?;
    ensure!(
        b.text().await?.contains("every namespace"),
        "a tenant saw the imports"
    );

    // Live: the page changes without a reload when an App does.
    b.go(&format!("{ui}/")).await?;
    b.run("window.__notReloaded = true;", json!([])).await?;
    retry("the live dot on", Duration::from_secs(10), || async {
        let on = b
            .run(
                "return document.getElementById('live').classList.contains('on');",
                json!([]),
            )
            .await?;
        ensure!(on == json!(true), "not connected");
        Ok(())
    })
    .await?;
    t.patch_app("paused", json!({"suspend": false})).await?;
    retry(
        "paused shown Ready without a reload",
        Duration::from_secs(60),
        || async {
            let seen = rows(&b).await?;
            let paused = seen.iter().find(|(n, _, _)| n == "paused");
            ensure!(
                paused.is_some_and(|(_, class, _)| class == "ready"),
                "{paused:?}"
            );
            Ok(())
        },
    )
    .await?;
    let same_page = b
        .run("return window.__notReloaded === true;", json!([]))
        .await?;
    ensure!(same_page == json!(true), "the page was reloaded");

    // The operator sees the imports page; an outsider sees nothing.
    b.run("document.querySelector('header form').submit();", json!([]))
        .await?;
    login(&b, &ui, &operator).await?;
    b.go(&format!("{ui}/imports")).await?;
    ensure!(b.text().await?.contains("Bundles"), "{}", b.text().await?);
    b.run("document.querySelector('header form').submit();", json!([]))
        .await?;
    login(&b, &ui, &outsider).await?;
    ensure!(rows(&b).await?.is_empty(), "an outsider saw Apps");
    ensure!(
        b.text().await?.contains("No Apps you may see"),
        "{}",
        b.text().await?
    );
    b.go(&format!("{ui}/apps/{}/shop", t.ns)).await?;
    ensure!(
        b.text().await?.contains("that you may see"),
        "{}",
        b.text().await?
    );
    b.go(&format!("{ui}/audit")).await?;
    ensure!(
        !b.text().await?.contains(&format!("{}/shop", t.ns)),
        "an outsider saw the App's records"
    );
    b.screenshot(&shots.join("outsider.png")).await?;

    // Without a browser: the headers, a refused token, the partial page.
    let http = reqwest::Client::builder().no_proxy().build()?;
    let page = http
        .get(format!("{ui}/apps/{}/shop", t.ns))
        .bearer_auth(&viewer)
        .send()
        .await?;
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    ensure!(csp.starts_with("default-src 'self'"), "{csp}");
    ensure!(page.status() == 200, "{}", page.status());
    let refused = http
        .get(format!("{ui}/"))
        .bearer_auth("not-a-token")
        .send()
        .await?;
    ensure!(refused.status() == 401, "{}", refused.status());
    let partial = http
        .get(format!("{ui}/"))
        .bearer_auth(&viewer)
        .header("x-airgate-partial", "1")
        .send()
        .await?
        .text()
        .await?;
    ensure!(
        !partial.contains("<!doctype") && partial.contains("shop"),
        "{partial}"
    );
    drop(c);
    Ok(())
}
