//! The UI's pages: each handler finds its user, reads what that user may
//! see (the controller's client for Apps and Events, the App's
//! ServiceAccount for its objects, the store for records), turns it into
//! [`view`](super::view) rows and renders one template.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use airgate_core::object::ObjectRef;
use airgate_core::status::RecordKind;
use airgate_kube::app::App;
use airgate_store::Stored;
use axum::Form;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::ListParams;
use minijinja::context;
use serde::Serialize;

use super::auth::{self, User};
use super::view::{self, AppRow, Filter, RecordRow};
use super::{Ui, log};

/// Records one App's page shows.
const APP_RECORDS: usize = 50;
/// Records the audit page shows.
const AUDIT_RECORDS: usize = 200;
/// Events one App's page shows (the newest).
const APP_EVENTS: usize = 20;

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Every page but the login's takes its user so: the request's user, or
/// the answer to give instead: 401 to a client that sent a token the
/// apiserver refuses, the login form to a browser.
impl FromRequestParts<Arc<Ui>> for User {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, ui: &Arc<Ui>) -> Result<User, Response> {
        user(ui, &parts.headers).await
    }
}

async fn user(ui: &Ui, headers: &HeaderMap) -> Result<User, Response> {
    let bearer = header_str(headers, header::AUTHORIZATION).and_then(auth::bearer);
    let session = header_str(headers, header::COOKIE).and_then(auth::session_cookie);
    match ui.auth.user(bearer, session).await {
        Some(user) => Ok(user),
        None if bearer.is_some() => Err((
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "the apiserver does not accept this token\n",
        )
            .into_response()),
        None => Err(Redirect::to("/login").into_response()),
    }
}

/// Renders `template`; only its `main` block when the page's script asks
/// for it (`X-Airgate-Partial`) to refresh in place.
fn render(
    ui: &Ui,
    headers: &HeaderMap,
    status: StatusCode,
    template: &str,
    ctx: minijinja::Value,
) -> Response {
    let partial = headers.contains_key("x-airgate-partial");
    let rendered = ui
        .templates
        .get_template(template)
        .and_then(|t| t.render(context! { partial, ..ctx }));
    match rendered {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            log::error(
                "a UI page did not render",
                serde_json::json!({"template": template, "error": format!("{e:#}")}),
            );
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page did not render\n",
            )
                .into_response()
        }
    }
}

fn message(ui: &Ui, headers: &HeaderMap, status: StatusCode, user: &User, text: &str) -> Response {
    render(
        ui,
        headers,
        status,
        "message.html",
        context! { user => user.name, title => status.canonical_reason(), text },
    )
}

fn store_failed(ui: &Ui, headers: &HeaderMap, user: &User, e: &impl std::fmt::Display) -> Response {
    let text = format!("reading the record store: {e}");
    message(ui, headers, StatusCode::INTERNAL_SERVER_ERROR, user, &text)
}

/// The Apps in the controller's scope.
async fn list_apps(ui: &Ui) -> Result<Vec<App>, String> {
    let api: Api<App> = match &ui.scope {
        Some(ns) => Api::namespaced(ui.ctx.client.clone(), ns),
        None => Api::all(ui.ctx.client.clone()),
    };
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|e| format!("listing Apps: {e}"))
}

/// The namespaces among `namespaces` where `user` may get Apps.
async fn allowed(ui: &Ui, user: &User, namespaces: BTreeSet<String>) -> BTreeSet<String> {
    let checks = namespaces.into_iter().map(|ns| async move {
        let ok = ui.auth.may_get_apps(user, Some(&ns)).await;
        ok.then_some(ns)
    });
    futures_util::future::join_all(checks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// `/`: the Apps the user may see, filtered.
pub async fn apps(
    State(ui): State<Arc<Ui>>,
    user: User,
    headers: HeaderMap,
    Query(filter): Query<Filter>,
) -> Response {
    let apps = match list_apps(&ui).await {
        Ok(a) => a,
        Err(e) => return message(&ui, &headers, StatusCode::BAD_GATEWAY, &user, &e),
    };
    let namespaces = apps
        .iter()
        .filter_map(|a| a.metadata.namespace.clone())
        .collect();
    let visible = allowed(&ui, &user, namespaces).await;
    let mut rows: Vec<AppRow> = apps
        .iter()
        .map(AppRow::of)
        .filter(|r| visible.contains(&r.namespace))
        .collect();
    let total = rows.len();
    rows.retain(|r| filter.keeps(r));
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for r in &rows {
        *counts.entry(r.state).or_default() += 1;
    }
    render(
        &ui,
        &headers,
        StatusCode::OK,
        "apps.html",
        context! {
            user => user.name, rows, total, filter, counts,
            namespaces => visible,
            states => ["ready", "progressing", "failed", "suspended", "frozen", "drifted"],
        },
    )
}

/// An App's Events, newest last.
async fn events_of(ui: &Ui, namespace: &str, name: &str) -> Vec<EventRow> {
    let api: Api<Event> = Api::namespaced(ui.ctx.client.clone(), namespace);
    let selector = format!("involvedObject.kind=App,involvedObject.name={name}");
    let mut events = match api.list(&ListParams::default().fields(&selector)).await {
        Ok(l) => l.items,
        Err(e) => {
            log::warn(
                "UI: Events not readable",
                serde_json::json!({"namespace": namespace, "error": e.to_string()}),
            );
            return Vec::new();
        }
    };
    let when = |e: &Event| {
        e.event_time
            .as_ref()
            .map(|t| t.0)
            .or_else(|| e.last_timestamp.as_ref().map(|t| t.0))
    };
    events.sort_by_key(|e| when(e));
    let skip = events.len().saturating_sub(APP_EVENTS);
    events
        .iter()
        .skip(skip)
        .map(|e| EventRow {
            time: when(e).map(|t| t.to_string()).unwrap_or_default(),
            type_: e.type_.clone().unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
            message: e.message.clone().unwrap_or_default(),
            count: e.count.unwrap_or(1),
        })
        .collect()
}

#[derive(Debug, Serialize)]
struct EventRow {
    time: String,
    #[serde(rename = "type")]
    type_: String,
    reason: String,
    message: String,
    count: i32,
}

/// The App's objects with their health and what they own, read as its
/// ServiceAccount; the error instead when they cannot be read.
async fn objects_of(ui: &Ui, app: &App) -> (Vec<view::TreeRow>, usize, Option<String>) {
    let status = app.status.clone().unwrap_or_default();
    let inventory: Vec<ObjectRef> = match status.objects() {
        Ok(i) => i.entries.into_iter().collect(),
        Err(e) => return (Vec::new(), 0, Some(e)),
    };
    let count = inventory.len();
    let spec = match super::super::spec::sync_spec(app) {
        Ok(s) => s,
        Err(e) => return (Vec::new(), count, Some(e)),
    };
    match ui.ctx.syncer.observe(&spec, &inventory).await {
        Ok((observed, children)) => (view::tree(&inventory, &observed, &children), count, None),
        Err(e) => (Vec::new(), count, Some(e.to_string())),
    }
}

/// `/apps/NAMESPACE/NAME`: one App.
pub async fn app(
    State(ui): State<Arc<Ui>>,
    user: User,
    headers: HeaderMap,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let started = Instant::now();
    // The same answer whether the App is missing or hidden from this user.
    let not_found = format!("no App {namespace}/{name} that you may see");
    let in_scope = ui.scope.as_ref().is_none_or(|s| *s == namespace);
    if !in_scope || !ui.auth.may_get_apps(&user, Some(&namespace)).await {
        return message(&ui, &headers, StatusCode::NOT_FOUND, &user, &not_found);
    }
    let api: Api<App> = Api::namespaced(ui.ctx.client.clone(), &namespace);
    let app = match api.get_opt(&name).await {
        Ok(Some(app)) => app,
        Ok(None) => return message(&ui, &headers, StatusCode::NOT_FOUND, &user, &not_found),
        Err(e) => {
            let text = format!("reading the App: {e}");
            return message(&ui, &headers, StatusCode::BAD_GATEWAY, &user, &text);
        }
    };
    let key = format!("{namespace}/{name}");
    let ((objects, count, objects_error), events) =
        tokio::join!(objects_of(&ui, &app), events_of(&ui, &namespace, &name));
    let records = lock(&ui.ctx.store).recent(&key, APP_RECORDS);
    let (records, records_error) = match records {
        Ok(r) => (r, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let (drift, syncs): (Vec<RecordRow>, Vec<RecordRow>) = records
        .iter()
        .map(RecordRow::of)
        .partition(|r| r.kind == RecordKind::Drift.as_str());
    let status = app.status.clone().unwrap_or_default();
    let spec = &app.spec;
    render(
        &ui,
        &headers,
        StatusCode::OK,
        "app.html",
        context! {
            user => user.name,
            row => AppRow::of(&app),
            conditions => status.conditions,
            source => context! {
                url => spec.source.url, path => spec.source.path,
                git_ref => spec.git_ref().map(|r| r.to_string()).unwrap_or_default(),
                service_account => spec.service_account_name,
                prune => spec.prune, helm => spec.source.helm.is_some(),
            },
            freeze => spec.freeze.iter().map(view::freeze_window).collect::<Vec<_>>(),
            objects, count, objects_error, syncs, drift, records_error, events,
            took_ms => started.elapsed().as_millis() as u64,
        },
    )
}

/// What the audit page says of the latest checkpoint.
#[derive(Debug, Serialize)]
struct CheckpointView {
    text: String,
    verified: bool,
    /// What the verification said: the size and root, or where it broke.
    verdict: String,
}

/// The latest checkpoint and what its check said (see
/// [`AuditLog::checkpoint`](super::super::audit::AuditLog::checkpoint)).
fn checkpoint(ui: &Ui) -> Option<CheckpointView> {
    let (text, verdict) = ui.ctx.audit.checkpoint(&ui.ctx.store)?;
    let (verified, verdict) = match verdict {
        Ok(head) => (
            true,
            format!(
                "verifies: signed by the log's key, and the root of the controller's {} records, {}",
                head.size,
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, head.root)
            ),
        ),
        Err(e) => (false, format!("does not verify: {e}")),
    };
    Some(CheckpointView {
        text: String::from_utf8_lossy(&text).into_owned(),
        verified,
        verdict,
    })
}

/// The namespace of a record's App (`namespace/name`).
fn namespace_of(stored: &Stored) -> &str {
    stored.record.app.split_once('/').map_or("", |(ns, _)| ns)
}

/// `/audit`: the latest checkpoint, whether it verifies, and the newest
/// records the user may see.
pub async fn audit(State(ui): State<Arc<Ui>>, user: User, headers: HeaderMap) -> Response {
    let everything = ui.auth.may_get_apps(&user, None).await;
    let latest = lock(&ui.ctx.store).latest(if everything {
        AUDIT_RECORDS
    } else {
        AUDIT_RECORDS * 5
    });
    let latest = match latest {
        Ok(l) => l,
        Err(e) => return store_failed(&ui, &headers, &user, &e),
    };
    let visible = if everything {
        BTreeSet::new()
    } else {
        let namespaces = latest
            .iter()
            .map(namespace_of)
            .filter(|ns| !ns.is_empty())
            .map(String::from)
            .collect();
        allowed(&ui, &user, namespaces).await
    };
    let records: Vec<RecordRow> = latest
        .iter()
        .filter(|s| everything || visible.contains(namespace_of(s)))
        .take(AUDIT_RECORDS)
        .map(RecordRow::of)
        .collect();
    render(
        &ui,
        &headers,
        StatusCode::OK,
        "audit.html",
        context! {
            user => user.name, records, everything,
            checkpoint => checkpoint(&ui),
            log_name => ui.ctx.audit.name(),
            repository => ui.ctx.audit.repository().map(|r| r.location()),
            refused => ui.ctx.audit.refused(),
        },
    )
}

/// `/imports`: the bundles `bundle push` brought in, for users who may
/// see Apps in every namespace (an import is not any one tenant's).
pub async fn imports(State(ui): State<Arc<Ui>>, user: User, headers: HeaderMap) -> Response {
    if !ui.auth.may_get_apps(&user, None).await {
        let text = "imports are shown to users who may get Apps (apps.airgate.dev) in every namespace; an App's page names the imports of its own images";
        return message(&ui, &headers, StatusCode::FORBIDDEN, &user, text);
    }
    // Imports are the records of no App.
    let imports = match lock(&ui.ctx.store).recent("", AUDIT_RECORDS) {
        Ok(r) => r,
        Err(e) => return store_failed(&ui, &headers, &user, &e),
    };
    let imports: Vec<RecordRow> = imports
        .iter()
        .filter(|s| s.record.kind == RecordKind::Import)
        .map(RecordRow::of)
        .collect();
    render(
        &ui,
        &headers,
        StatusCode::OK,
        "imports.html",
        context! { user => user.name, imports },
    )
}

/// `GET /login`.
pub async fn login_form(State(ui): State<Arc<Ui>>, headers: HeaderMap) -> Response {
    render(
        &ui,
        &headers,
        StatusCode::OK,
        "login.html",
        context! { error => "" },
    )
}

#[derive(Debug, serde::Deserialize)]
pub struct LoginForm {
    token: String,
}

/// Whether a form post came from this UI's own pages (`Origin`, when the
/// browser sends it, names the host the request was sent to).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = header_str(headers, header::ORIGIN) else {
        return true;
    };
    let host = header_str(headers, header::HOST).unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| !host.is_empty() && rest == host)
}

/// `POST /login`: a token the apiserver accepts opens a session; the
/// cookie carries only the session's random id.
pub async fn login(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let refuse = |error: &str| {
        render(
            &ui,
            &headers,
            StatusCode::UNAUTHORIZED,
            "login.html",
            context! { error },
        )
    };
    if !same_origin(&headers) {
        return refuse("this form may be sent only from this UI's own login page");
    }
    match ui.auth.login(form.token.trim()).await {
        Ok((session, user)) => {
            log::info("UI login", serde_json::json!({"user": user.name}));
            let cookie = format!(
                "{}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age=28800",
                auth::COOKIE
            );
            ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        Err(e) => refuse(&e),
    }
}

/// `POST /logout`.
pub async fn logout(State(ui): State<Arc<Ui>>, headers: HeaderMap) -> Response {
    if let Some(id) = header_str(&headers, header::COOKIE).and_then(auth::session_cookie) {
        ui.auth.logout(id);
    }
    let cookie = format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        auth::COOKIE
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_posts_only_from_the_same_origin() {
        let cases = [
            (None, "ui:8081", true),
            (Some("http://ui:8081"), "ui:8081", true),
            (Some("https://ui:8081"), "ui:8081", true),
            (Some("http://evil.example"), "ui:8081", false),
            (Some("null"), "ui:8081", false),
        ];
        for (origin, host, ok) in cases {
            let mut h = HeaderMap::new();
            if let Some(o) = origin {
                h.insert(header::ORIGIN, o.parse().unwrap_or_else(|e| panic!("{e}")));
            }
            h.insert(header::HOST, host.parse().unwrap_or_else(|e| panic!("{e}")));
            assert_eq!(same_origin(&h), ok, "{origin:?}");
        }
    }
}
