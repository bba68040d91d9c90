//! One reconcile pass over one App.
//!
//! A pass does only what is due, in this order:
//! 1. **Drift** found by the watches: `correct` applies the drifted objects
//!    again from the last applied revision; `warn` only reports. Either way
//!    a `drift` record names the field manager that made the change.
//! 2. **Fetch**, when the interval has passed or the spec changed. A new
//!    commit (or a new spec) means a whole **sync**; the same commit means
//!    nothing to do: no dry-run, no write.
//! 3. **Health** of what the last sync applied, until all of it is Ready or
//!    `spec.timeout` passes (then the App is Stalled, the object named).
//!    What the apply's answers already showed Ready is not looked at again.
//!    The rest is looked at when the watches see it change (and every
//!    [`HEALTH_POLL`] at the latest), so Ready follows the rollout closely;
//!    what a live whole-object watch has shown since airgate's own write is
//!    taken from its events ([`AppState::watched`]), the rest is read.
//!
//! The status is written only when it changed.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airgate_core::drift::Drifted;
use airgate_core::health::Health;
use airgate_core::inventory::Inventory;
use airgate_core::object::ObjectRef;
use airgate_core::policy::Policy;
use airgate_git::Access;
use airgate_kube::Action as ChangeAction;
use airgate_kube::app::{App, AppStatus, DriftMode, SyncSummary};
use airgate_store::{Drift, SyncRecord};
use airgate_sync::{AppSpec as SyncSpec, SyncError};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::{Context, drift, log};

/// Setting this annotation on an App to a new value (a timestamp, say)
/// makes the next pass fetch from Git now instead of at the interval.
pub const REQUEST_ANNOTATION: &str = "airgate.dev/requested-at";

/// How often health is looked at, at the latest, while objects are still
/// progressing; a watch event on one of them makes it sooner.
const HEALTH_POLL: Duration = Duration::from_secs(2);

/// Two reads of health are at least this far apart, however many watch
/// events a rollout sends.
const HEALTH_SPACING: Duration = Duration::from_millis(250);

/// Two looks at health that the watches answer alone (no request) are at
/// least this far apart: Ready follows the last event closely.
const WATCH_SPACING: Duration = Duration::from_millis(50);

/// While objects progress, the status's "waiting for" message is rewritten
/// at most this often (becoming Ready or Stalled is written at once).
const PROGRESS_REFRESH: Duration = Duration::from_secs(1);

/// What airgate owned in one object right after applying it.
#[derive(Clone, Debug, Default)]
pub struct Baseline {
    pub fields: BTreeSet<String>,
    /// The resourceVersion the apply left; older events are ignored.
    pub resource_version: Option<u64>,
}

impl Baseline {
    /// What an apply left.
    fn after(change: &airgate_kube::Change) -> Baseline {
        Baseline {
            fields: change.owned.clone(),
            resource_version: written(change),
        }
    }
}

/// The resourceVersion an apply left.
fn written(change: &airgate_kube::Change) -> Option<u64> {
    change.resource_version.as_deref()?.parse().ok()
}

/// An object's health as the last event of a watch that carries whole
/// objects showed it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub resource_version: u64,
    pub health: Health,
}

/// Objects applied, still on their way to Ready.
#[derive(Clone, Debug)]
pub struct HealthWait {
    pub deadline: Instant,
    pub pending: Vec<ObjectRef>,
    /// When health was last looked at, and whether that read the API.
    pub checked: Option<(Instant, bool)>,
    /// When the "waiting for" message was last put in the status.
    pub reported_at: Option<Instant>,
}

impl HealthWait {
    fn new(timeout: Duration, pending: Vec<ObjectRef>) -> HealthWait {
        HealthWait {
            deadline: Instant::now() + timeout,
            pending,
            checked: None,
            reported_at: None,
        }
    }

    /// How long until health may be looked at again (zero: now).
    fn spacing_left(&self) -> Duration {
        self.checked
            .map(|(t, read)| {
                let spacing = if read { HEALTH_SPACING } else { WATCH_SPACING };
                spacing.saturating_sub(t.elapsed())
            })
            .unwrap_or_default()
    }

    /// Whether the progress message is due for a rewrite; if so, it counts
    /// as written now.
    fn report_due(&mut self) -> bool {
        let due = self
            .reported_at
            .is_none_or(|t| t.elapsed() >= PROGRESS_REFRESH);
        if due {
            self.reported_at = Some(Instant::now());
        }
        due
    }
}

/// What this controller knows of one App between passes.
#[derive(Debug, Default)]
pub struct AppState {
    /// A sync has run in this process (so `expected` is filled).
    pub synced: bool,
    pub observed_generation: Option<i64>,
    pub last_applied: Option<String>,
    /// A revision that failed for a reason that retrying cannot fix
    /// (render, policy, dry-run): not tried again until Git or the spec moves.
    pub failed: Option<String>,
    pub inventory: Inventory,
    pub expected: HashMap<ObjectRef, Baseline>,
    pub next_fetch: Option<Instant>,
    pub health: Option<HealthWait>,
    /// Drift reported by the watches, not yet handled.
    pub drift: Vec<(ObjectRef, Drifted)>,
    /// A sync is running: watch events are its own writes.
    pub syncing: bool,
    /// The last [`REQUEST_ANNOTATION`] value acted on.
    pub requested: Option<String>,
    /// Syncs that failed in a row for a reason that may pass.
    pub failures: u32,
    /// When each object's drift was last corrected (within a minute).
    pub corrections: HashMap<ObjectRef, Vec<Instant>>,
    /// Objects left alone because their corrections kept being undone,
    /// until the next sync.
    pub contested: HashSet<ObjectRef>,
    pub suspended: bool,
    /// Health of the objects of whole-object watches, from their events.
    pub seen: HashMap<ObjectRef, Seen>,
    /// Whole-object watches that have listed and are running: an object of
    /// theirs with no event since its last [`Seen`] has not changed since.
    pub live: BTreeSet<drift::WatchKey>,
    /// Objects whose last event, on a watch running since, showed this
    /// App's ownership mark and labels: a sync need not read who owns them.
    pub marked: HashSet<ObjectRef>,
}

impl AppState {
    /// How long until Git is due to be looked at again (`interval` when no
    /// fetch is planned).
    fn until_fetch(&self, interval: Duration) -> Duration {
        self.next_fetch
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(interval)
    }

    /// `o`'s health as its watch knows it, without a read: when the watch
    /// carries whole objects, is live, and has shown `o` at or after
    /// airgate's own last write of it. `None`: it has to be read.
    pub fn watched(&self, o: &ObjectRef) -> Option<Health> {
        if !self.live.contains(&drift::WatchKey::of(o)) {
            return None;
        }
        let seen = self.seen.get(o)?;
        let written = self.expected.get(o)?.resource_version?;
        (seen.resource_version >= written).then(|| seen.health.clone())
    }

    /// Records `o`'s health as of resourceVersion `rv`, unless something
    /// newer is known. True when that moved its verdict (to Ready,
    /// Progressing or Failed), which is worth a pass if it is pending.
    pub fn saw(&mut self, o: &ObjectRef, rv: u64, health: Health) -> bool {
        match self.seen.get_mut(o) {
            Some(seen) if seen.resource_version > rv => false,
            Some(seen) => {
                let moved = std::mem::discriminant(&seen.health) != std::mem::discriminant(&health);
                *seen = Seen {
                    resource_version: rv,
                    health,
                };
                moved
            }
            None => {
                self.seen.insert(
                    o.clone(),
                    Seen {
                        resource_version: rv,
                        health,
                    },
                );
                true
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("writing the status of App {app}: {message}")]
    Status { app: String, message: String },
}

pub fn error_policy(app: Arc<App>, err: &ReconcileError, _ctx: Arc<Context>) -> Action {
    log::warn(
        "reconcile error",
        json!({"app": key(&app), "error": err.to_string()}),
    );
    Action::requeue(Duration::from_secs(10))
}

pub fn key(app: &App) -> String {
    format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any())
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn epoch_seconds() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

fn short(rev: &str) -> &str {
    &rev[..rev.len().min(12)]
}

/// Puts `inventory` in `status`; one too large for status (the
/// write-ahead refused it before anything was applied) is logged and the
/// status keeps the one it had.
fn keep_inventory(status: &mut AppStatus, inventory: &Inventory, key: &str) {
    if let Err(e) = status.set_objects(inventory) {
        log::warn(
            "inventory not kept in status",
            json!({"app": key, "error": e}),
        );
    }
}

/// Whether a URL names a user (and maybe a password) before its host.
fn has_userinfo(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority.contains('@')
}

/// A Kubernetes object name (RFC 1123 subdomain), as ServiceAccounts have.
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The spec as the syncer wants it, without credentials yet.
fn sync_spec(app: &App) -> Result<SyncSpec, String> {
    let namespace = app.namespace().unwrap_or_default();
    let git_ref = app.spec.git_ref()?;
    app.spec.interval()?;
    app.spec.timeout()?;
    if app.spec.service_account_name.is_empty() {
        return Err("spec.serviceAccountName is empty: every apply runs as a ServiceAccount of the App's namespace".into());
    }
    if !is_dns_subdomain(&app.spec.service_account_name) {
        return Err(format!(
            "spec.serviceAccountName '{}' is not a ServiceAccount name (lowercase letters, digits, '-' and '.', at most 253)",
            airgate_core::text::shown(&app.spec.service_account_name, 100)
        ));
    }
    let url = &app.spec.source.url;
    if has_userinfo(url) {
        // Never echo it: the part before '@' is a credential.
        return Err("spec.source.url carries credentials (user:password@); refusing it\nhint: put them in a Secret named by spec.source.secretRef".into());
    }
    if !(url.starts_with("https://") || url.starts_with("file://")) {
        return Err(format!(
            "spec.source.url '{}' must start with https:// or file://",
            airgate_core::text::shown(url, 200)
        ));
    }
    Ok(SyncSpec {
        app: key(app),
        namespace,
        url: url.clone(),
        git_ref,
        path: app.spec.source.path.clone(),
        access: Access::default(),
        service_account: app.spec.service_account_name.clone(),
        policy: Policy {
            allowed_registries: app.spec.policy.allowed_registries.clone(),
            require_digests: app.spec.policy.require_digests,
        },
        prune: app.spec.prune,
    })
}

/// Git credentials and CA from `spec.source.secretRef`, read as the App's
/// ServiceAccount: an App can use only a Secret its own account may read
/// (the controller's account reads no Secret at all), so naming another
/// team's Secret sends nothing anywhere.
async fn access(ctx: &Context, app: &App, spec: &SyncSpec) -> Result<Access, String> {
    let Some(secret_ref) = &app.spec.source.secret_ref else {
        return Ok(Access::default());
    };
    let ns = app.namespace().unwrap_or_default();
    let client = ctx
        .syncer
        .applier(spec)
        .map_err(|e| e.to_string())?
        .client();
    let secrets: Api<Secret> = Api::namespaced(client, &ns);
    let secret = secrets.get(&secret_ref.name).await.map_err(|e| {
        format!(
            "reading Secret {ns}/{} (spec.source.secretRef) as ServiceAccount {ns}/{}: {}",
            secret_ref.name,
            spec.service_account,
            match e {
                kube::Error::Api(s) => s.message,
                other => other.to_string(),
            }
        )
    })?;
    let data = secret.data.unwrap_or_default();
    let text = |k: &str| {
        data.get(k).map(|b| {
            String::from_utf8_lossy(&b.0)
                .trim_end_matches('\n')
                .to_string()
        })
    };
    Ok(Access {
        username: text("username"),
        password: text("password"),
        ca_pem: data.get("ca.crt").map(|b| b.0.clone()),
    })
}

/// What one pass decided to tell the world: the record, the event.
struct Report<'a> {
    ctx: &'a Context,
    app: &'a App,
}

impl Report<'_> {
    fn record(&self, record: &SyncRecord) {
        let stored = match self.ctx.store.lock() {
            Ok(mut store) => store.append(record),
            Err(poisoned) => poisoned.into_inner().append(record),
        };
        if let Err(e) = stored {
            log::error(
                "sync record not stored",
                json!({"app": record.app, "error": e.to_string()}),
            );
        }
    }

    async fn event(&self, type_: EventType, reason: &str, note: String) {
        let mut note = note;
        if note.len() > 1000 {
            let mut cut = 1000;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
        }
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        if let Err(e) = self
            .ctx
            .recorder
            .publish(&event, &self.app.object_ref(&()))
            .await
        {
            log::warn(
                "event not published",
                json!({"app": key(self.app), "reason": reason, "error": e.to_string()}),
            );
        }
    }
}

fn counts(changes: &[airgate_kube::Change]) -> String {
    let n = |a| changes.iter().filter(|c| c.action == a).count();
    let mut text = format!(
        "{} created, {} configured, {} unchanged, {} recreated, {} deleted",
        n(ChangeAction::Created),
        n(ChangeAction::Configured),
        n(ChangeAction::Unchanged),
        n(ChangeAction::Recreated),
        n(ChangeAction::Deleted)
    );
    // Rare, and worth saying: left alone because it is no longer the App's.
    let disowned = n(ChangeAction::Disowned);
    if disowned > 0 {
        text.push_str(&format!(", {disowned} not deleted (no longer this App's)"));
    }
    text
}

pub async fn reconcile(app: Arc<App>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.metrics.reconcile();
    let key = key(&app);
    let mut status = app.status.clone().unwrap_or_default();
    let before = status.clone();
    let now = now_rfc3339();
    let generation = app.metadata.generation;
    let report = Report {
        ctx: &ctx,
        app: &app,
    };

    let mut spec = match sync_spec(&app) {
        Ok(s) => s,
        Err(message) => {
            status.set_condition("Ready", "False", "InvalidSpec", &message, &now);
            status.set_condition("Stalled", "True", "InvalidSpec", &message, &now);
            status.clear_condition("Reconciling");
            status.observed_generation = generation;
            write_status(&ctx, &app, &before, status).await?;
            return Ok(Action::await_change());
        }
    };
    // Both parse: checked by sync_spec.
    let interval = app.spec.interval().unwrap_or(Duration::from_secs(60));
    let timeout = app.spec.timeout().unwrap_or(Duration::from_secs(300));

    if app.spec.suspend {
        let was = ctx.with_state(&key, |s| std::mem::replace(&mut s.suspended, true));
        status.set_condition(
            "Ready",
            "Unknown",
            "Suspended",
            "spec.suspend is true: nothing is applied, drift is not corrected",
            &now,
        );
        status.clear_condition("Reconciling");
        if !was {
            report
                .event(
                    EventType::Normal,
                    "Suspended",
                    "spec.suspend is true: reconciling stopped".into(),
                )
                .await;
        }
        write_status(&ctx, &app, &before, status).await?;
        return Ok(Action::await_change());
    }

    // What is due? Restore what a previous controller left in the status.
    let requested = app.annotations().get(REQUEST_ANNOTATION).cloned();
    // `health`: Some(how long until health may be read again) while objects
    // are still progressing.
    let (spec_changed, fetch_due, drift, health) = ctx.with_state(&key, |s| {
        if s.suspended {
            s.suspended = false;
            s.next_fetch = None;
        }
        if !s.synced && s.inventory.entries.is_empty() {
            // An inventory that does not read prunes nothing (it is logged).
            s.inventory = status.objects().unwrap_or_else(|e| {
                log::warn("inventory unreadable", json!({"app": key, "error": e}));
                Inventory::default()
            });
            s.last_applied = status.last_applied_revision.clone();
        }
        // A new process has seen no generation yet: its first pass syncs,
        // which also sets the drift baselines.
        let spec_changed = s.observed_generation != generation;
        let asked = requested.is_some() && requested != s.requested;
        s.requested = requested.clone();
        if asked {
            // Asked by hand: whatever failed before is tried again.
            s.failed = None;
        }
        let fetch_due = spec_changed || asked || s.next_fetch.is_none_or(|t| t <= Instant::now());
        (
            spec_changed,
            fetch_due,
            std::mem::take(&mut s.drift),
            s.health.as_ref().map(HealthWait::spacing_left),
        )
    });
    if !fetch_due && drift.is_empty() {
        match health {
            None => {
                let wait = ctx.with_state(&key, |s| s.until_fetch(interval));
                return Ok(Action::requeue(wait.max(Duration::from_secs(1))));
            }
            Some(later) if !later.is_zero() => return Ok(Action::requeue(later)),
            Some(_) => {}
        }
    }

    if !drift.is_empty() {
        handle_drift(&ctx, &app, &spec, drift, &mut status, &now).await;
    }

    if fetch_due {
        ctx.with_state(&key, |s| s.next_fetch = Some(Instant::now() + interval));
        let fetched = match access(&ctx, &app, &spec).await {
            Ok(a) => {
                spec.access = a;
                ctx.syncer.fetch(&spec).await.map_err(|e| e.to_string())
            }
            Err(e) => Err(e),
        };
        match fetched {
            Err(message) => {
                let kept = status
                    .last_applied_revision
                    .as_deref()
                    .map(|r| format!("; the cluster keeps revision {}", short(r)))
                    .unwrap_or_default();
                let message = format!("{message}{kept}");
                if status.condition("Ready").map(|c| c.reason.as_str()) != Some("SourceFailed") {
                    report
                        .event(EventType::Warning, "SourceFailed", message.clone())
                        .await;
                }
                log::warn("source failed", json!({"app": key, "error": message}));
                status.set_condition("Ready", "False", "SourceFailed", &message, &now);
                status.clear_condition("Reconciling");
                ctx.with_state(&key, |s| s.observed_generation = generation);
                status.observed_generation = generation;
            }
            Ok(commit) => {
                let (last, failed, synced) = ctx.with_state(&key, |s| {
                    (s.last_applied.clone(), s.failed.clone(), s.synced)
                });
                // A new commit, or none synced by this process yet (its
                // drift baselines come from a sync); but a commit that
                // failed for good waits for Git or the spec to move.
                let needed = spec_changed
                    || (last.as_deref() != Some(commit.id.as_str()) || !synced)
                        && failed.as_deref() != Some(commit.id.as_str());
                if needed {
                    sync(&ctx, &app, &spec, commit, timeout, &mut status, &now).await;
                } else if status.condition("Ready").map(|c| c.reason.as_str())
                    == Some("SourceFailed")
                {
                    // Git is back and nothing changed: what is Ready now is
                    // what the cluster says, so read health again.
                    ctx.with_state(&key, |s| {
                        s.health = Some(HealthWait::new(
                            timeout,
                            s.inventory.entries.iter().cloned().collect(),
                        ));
                    });
                }
            }
        }
    }

    check_health(&ctx, &app, &spec, &mut status, &now).await;
    write_status(&ctx, &app, &before, status).await?;

    let wait = ctx.with_state(&key, |s| {
        if s.health.is_some() {
            return HEALTH_POLL;
        }
        s.until_fetch(interval)
    });
    Ok(Action::requeue(wait.max(Duration::from_millis(500))))
}

/// Whether a failed sync cannot succeed again without a change in Git or
/// the spec: a render error, a policy violation, an invalid object. A
/// dry-run the cluster may answer otherwise later (a webhook down, a 403
/// until someone grants a RoleBinding, an overloaded API server) is not.
fn is_permanent(error: &SyncError) -> bool {
    use airgate_kube::ApplyError;
    match error {
        SyncError::Render { .. } | SyncError::Policy(_) => true,
        SyncError::Apply(e) => match e.cause() {
            ApplyError::DryRun { retryable, .. } => !retryable,
            ApplyError::Object(_) | ApplyError::UnknownKind { .. } => true,
            _ => false,
        },
        _ => false,
    }
}

/// How long after the `failures`-th failure in a row a sync that may pass
/// is tried again: 5 s, doubling, at most `interval`.
fn retry_backoff(failures: u32, interval: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    Duration::from_secs(5)
        .saturating_mul(1u32 << exponent)
        .min(interval)
}

fn spec_interval(app: &App) -> Duration {
    app.spec.interval().unwrap_or(Duration::from_secs(60))
}

/// A whole sync of the fetched revision.
async fn sync(
    ctx: &Arc<Context>,
    app: &App,
    spec: &SyncSpec,
    commit: airgate_git::Commit,
    timeout: Duration,
    status: &mut AppStatus,
    now: &str,
) {
    let key = spec.app.clone();
    let report = Report { ctx, app };
    let (previous, vouched) = ctx.with_state(&key, |s| {
        s.syncing = true;
        (s.inventory.clone(), s.marked.clone())
    });
    let started = Instant::now();
    let started_at = epoch_seconds();
    let revision = commit.id.clone();
    // Write-ahead: what is about to be applied joins the inventory, in
    // memory and in the App's status, before the first write; a crash
    // mid-sync then leaves nothing a restarted controller does not know of.
    let (before, key_ref) = (&previous, &key);
    let write_ahead = move |intended: Vec<ObjectRef>| {
        let mut union = before.clone();
        union.entries.extend(intended);
        async move {
            if union.entries == before.entries {
                return Ok(());
            }
            ctx.with_state(key_ref, |s| s.inventory = union.clone());
            let fields = airgate_kube::app::inventory_fields(&union)?;
            let api: Api<App> =
                Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
            api.patch_status(
                &app.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": fields })),
            )
            .await
            .map(|_| ())
            .map_err(|e| format!("writing the App's inventory: {e}"))
        }
    };
    let result = ctx
        .syncer
        .sync_commit_with(spec, commit, &previous, &vouched, write_ahead)
        .await;
    let duration_ms = started.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
    let generation = app.metadata.generation;
    status.observed_generation = generation;
    match result {
        Ok(outcome) => {
            let record = outcome.record(&key, started_at, duration_ms);
            report.record(&record);
            ctx.metrics.sync("succeeded", duration_ms);
            let changes: Vec<_> = outcome
                .applied
                .changes
                .iter()
                .chain(&outcome.pruned.changes)
                .cloned()
                .collect();
            let summary = counts(&changes);
            let rev = outcome.commit.id.clone();
            log::info(
                "synced",
                json!({"app": key, "revision": rev, "changes": summary, "durationMs": duration_ms}),
            );
            report
                .event(
                    EventType::Normal,
                    "Synced",
                    format!(
                        "revision {} by {}: {summary}",
                        short(&rev),
                        outcome.commit.author.name
                    ),
                )
                .await;
            let inventory = outcome.inventory.clone();
            ctx.with_state(&key, |s| {
                s.syncing = false;
                s.synced = true;
                s.failed = None;
                s.failures = 0;
                s.corrections.clear();
                s.contested.clear();
                s.observed_generation = generation;
                s.last_applied = Some(rev.clone());
                s.inventory = inventory.clone();
                s.expected = outcome
                    .applied
                    .changes
                    .iter()
                    .map(|c| (c.object.clone(), Baseline::after(c)))
                    .collect();
                // What the apply's answers showed Ready is not read again.
                s.health = Some(HealthWait::new(
                    timeout,
                    outcome
                        .applied
                        .changes
                        .iter()
                        .filter(|c| c.health != Some(Health::Ready))
                        .map(|c| c.object.clone())
                        .collect(),
                ));
                s.drift.clear();
                s.seen.retain(|o, _| inventory.entries.contains(o));
                // An apply's answer is the object as of airgate's write: what
                // a watch shows from then on is newer. (Only for what is
                // still on its way: the rest is not waited for.)
                for c in &outcome.applied.changes {
                    if let (Some(health), Some(rv)) = (&c.health, written(c))
                        && *health != Health::Ready
                    {
                        s.saw(&c.object, rv, health.clone());
                    }
                }
            });
            status.last_applied_revision = Some(rev.clone());
            status.last_attempted_revision = Some(rev.clone());
            keep_inventory(status, &inventory, &key);
            status.clear_condition("Stalled");
            status.clear_condition("Drifted");
            status.push_history(SyncSummary {
                kind: "sync".into(),
                revision: rev,
                time: now.to_string(),
                result: "succeeded".into(),
                message: summary,
                duration_ms,
            });
            if let Err(e) = drift::watch(ctx, spec, &inventory).await {
                log::warn(
                    "drift watch not started",
                    json!({"app": key, "error": format!("{e:#}")}),
                );
            }
        }
        Err(error) => {
            let permanent = is_permanent(&error);
            let result = if permanent { "blocked" } else { "failed" };
            let message = error.to_string();
            report.record(&SyncRecord {
                app: key.clone(),
                kind: "sync".into(),
                revision: revision.clone(),
                started_at,
                duration_ms,
                result: result.into(),
                error: Some(message.clone()),
                ..Default::default()
            });
            ctx.metrics.sync(result, duration_ms);
            log::warn(
                "sync failed",
                json!({"app": key, "revision": revision, "reason": error.reason(), "error": message}),
            );
            report
                .event(EventType::Warning, error.reason(), message.clone())
                .await;
            // Whatever the failed sync wrote is in the inventory already
            // (the write-ahead put it there before the first write): the
            // status shows it, so a later sync prunes it when it leaves Git.
            let inventory = ctx.with_state(&key, |s| s.inventory.clone());
            keep_inventory(status, &inventory, &key);
            ctx.with_state(&key, |s| {
                s.syncing = false;
                s.observed_generation = generation;
                s.failed = permanent.then(|| revision.clone());
                // A failure that may pass is tried again soon, then less
                // and less often, never less often than the interval.
                s.failures = if permanent {
                    0
                } else {
                    s.failures.saturating_add(1)
                };
                if !permanent {
                    let again = Instant::now() + retry_backoff(s.failures, spec_interval(app));
                    s.next_fetch = Some(s.next_fetch.map_or(again, |t| t.min(again)));
                }
            });
            status.last_attempted_revision = Some(revision.clone());
            status.set_condition("Ready", "False", error.reason(), &message, now);
            status.clear_condition("Reconciling");
            if permanent {
                status.set_condition("Stalled", "True", error.reason(), &message, now);
            }
            status.push_history(SyncSummary {
                kind: "sync".into(),
                revision,
                time: now.to_string(),
                result: result.into(),
                message,
                duration_ms,
            });
        }
    }
}

/// Reads the health of what is still progressing; decides Ready.
async fn check_health(
    ctx: &Context,
    app: &App,
    spec: &SyncSpec,
    status: &mut AppStatus,
    now: &str,
) {
    let key = spec.app.clone();
    let Some((wait, watched)) = ctx.with_state(&key, |s| {
        let pending = &s.health.as_ref()?.pending;
        let watched: Vec<Option<Health>> = pending.iter().map(|o| s.watched(o)).collect();
        let h = s.health.as_mut()?;
        h.checked = Some((Instant::now(), watched.iter().any(Option::is_none)));
        Some((h.clone(), watched))
    }) else {
        return;
    };
    let report = Report { ctx, app };
    let rev = status.last_applied_revision.clone().unwrap_or_default();
    // Only what the watches cannot tell is read.
    let unknown: Vec<ObjectRef> = wait
        .pending
        .iter()
        .zip(&watched)
        .filter(|(_, w)| w.is_none())
        .map(|(o, _)| o.clone())
        .collect();
    let mut read = if unknown.is_empty() {
        Vec::new()
    } else {
        match ctx.syncer.health(spec, &unknown).await {
            Ok(r) => r,
            Err(e) => {
                log::warn(
                    "health not readable",
                    json!({"app": key, "error": e.to_string()}),
                );
                return;
            }
        }
    }
    .into_iter();
    let results: Vec<(ObjectRef, Health)> = wait
        .pending
        .iter()
        .zip(watched)
        .filter_map(|(o, w)| match w {
            Some(h) => Some((o.clone(), h)),
            None => read.next(),
        })
        .collect();
    let failed = results
        .iter()
        .find(|(_, h)| matches!(h, Health::Failed(_)))
        .cloned();
    let pending: Vec<(ObjectRef, Health)> = results
        .into_iter()
        .filter(|(_, h)| *h != Health::Ready)
        .collect();
    let timed_out = Instant::now() > wait.deadline;
    let describe = |(o, h): &(ObjectRef, Health)| match h {
        Health::Progressing(r) | Health::Failed(r) => format!("{o}: {r}"),
        Health::Ready => format!("{o}: ready"),
    };
    if pending.is_empty() {
        ctx.with_state(&key, |s| s.health = None);
        let message = format!(
            "revision {} applied; {} objects healthy",
            short(&rev),
            status.inventory_count
        );
        if status.condition("Ready").map(|c| c.status.as_str()) != Some("True") {
            report
                .event(EventType::Normal, "Ready", message.clone())
                .await;
        }
        status.set_condition("Ready", "True", "Succeeded", &message, now);
        status.clear_condition("Reconciling");
        status.clear_condition("Stalled");
    } else if failed.is_some() || timed_out {
        ctx.with_state(&key, |s| s.health = None);
        let culprit = failed
            .as_ref()
            .map(describe)
            .unwrap_or_else(|| describe(&pending[0]));
        let message = if failed.is_some() {
            format!("revision {}: {culprit}", short(&rev))
        } else {
            format!(
                "revision {} not healthy within {}: {culprit}",
                short(&rev),
                app.spec.timeout
            )
        };
        report.record(&SyncRecord {
            app: key.clone(),
            kind: "health".into(),
            revision: rev.clone(),
            started_at: epoch_seconds(),
            result: "unhealthy".into(),
            error: Some(message.clone()),
            ..Default::default()
        });
        report
            .event(EventType::Warning, "HealthCheckFailed", message.clone())
            .await;
        log::warn("unhealthy", json!({"app": key, "error": message}));
        status.set_condition("Ready", "False", "HealthCheckFailed", &message, now);
        status.set_condition("Stalled", "True", "HealthCheckFailed", &message, now);
        status.clear_condition("Reconciling");
        status.push_history(SyncSummary {
            kind: "health".into(),
            revision: rev,
            time: now.to_string(),
            result: "unhealthy".into(),
            message,
            duration_ms: 0,
        });
    } else {
        let message = format!(
            "revision {}: waiting for {} object(s); {}",
            short(&rev),
            pending.len(),
            describe(&pending[0])
        );
        let progressing =
            status.condition("Ready").map(|c| c.reason.as_str()) == Some("Progressing");
        let due = ctx.with_state(&key, |s| {
            s.health.as_mut().is_some_and(|h| {
                h.pending = pending.iter().map(|(o, _)| o.clone()).collect();
                h.report_due() || !progressing
            })
        });
        if due {
            status.set_condition("Ready", "Unknown", "Progressing", &message, now);
            status.set_condition("Reconciling", "True", "Progressing", &message, now);
        }
    }
}

/// Corrects or reports drift the watches found.
async fn handle_drift(
    ctx: &Context,
    app: &App,
    spec: &SyncSpec,
    drift: Vec<(ObjectRef, Drifted)>,
    status: &mut AppStatus,
    now: &str,
) {
    let key = spec.app.clone();
    let report = Report { ctx, app };
    let Some(revision) = ctx.with_state(&key, |s| s.last_applied.clone()) else {
        return;
    };
    let drift = relabelled(ctx, spec, drift).await;
    let correct = app.spec.drift == DriftMode::Correct;
    // An object whose corrections are undone again and again (another App
    // or controller applies it too) is left alone and reported once,
    // instead of two writers taking turns for ever.
    let drift = if correct {
        let (fight, rest) = ctx.with_state(&key, |s| {
            let now = Instant::now();
            let (fight, rest): (Vec<_>, Vec<_>) = drift.into_iter().partition(|(o, _)| {
                s.corrections
                    .get(o)
                    .is_some_and(|times| contested(times, now))
            });
            let new: Vec<_> = fight
                .into_iter()
                .filter(|(o, _)| s.contested.insert(o.clone()))
                .collect();
            (new, rest)
        });
        if !fight.is_empty() {
            report_contested(&report, &fight, status, now).await;
        }
        if rest.is_empty() {
            return;
        }
        rest
    } else {
        drift
    };
    let started = Instant::now();
    let started_at = epoch_seconds();
    let objects: Vec<ObjectRef> = drift.iter().map(|(o, _)| o.clone()).collect();
    let described: Vec<String> = drift
        .iter()
        .map(|(o, d)| {
            let fields = if d.fields.is_empty() {
                "deleted".to_string()
            } else {
                d.fields.join(", ")
            };
            format!("{o} ({fields}) by {}", d.managers.join(", "))
        })
        .collect();
    let mut record = SyncRecord {
        app: key.clone(),
        kind: "drift".into(),
        revision: revision.clone(),
        started_at,
        result: "succeeded".into(),
        drift: drift
            .iter()
            .map(|(o, d)| Drift {
                object: o.to_string(),
                field_manager: d.managers.join(","),
                fields: d.fields.clone(),
                corrected: correct,
            })
            .collect(),
        ..Default::default()
    };
    // The Event is posted after the record is written: the audit trail
    // comes first, and the record's duration is the correction's alone.
    let event = if correct {
        match ctx.syncer.reapply(spec, &revision, &objects).await {
            Ok(changes) => {
                ctx.with_state(&key, |s| {
                    let at = Instant::now();
                    for c in &changes.changes {
                        s.expected.insert(c.object.clone(), Baseline::after(c));
                        let times = s.corrections.entry(c.object.clone()).or_default();
                        times.retain(|t| at.duration_since(*t) < CONTEST_WINDOW);
                        times.push(at);
                    }
                });
                record.objects = airgate_sync::object_changes(&changes.changes);
                ctx.metrics.drift("corrected");
                log::info("drift corrected", json!({"app": key, "drift": described}));
                (
                    "DriftCorrected",
                    format!("put back: {}", described.join("; ")),
                )
            }
            Err(e) => {
                record.result = "failed".into();
                record.error = Some(e.to_string());
                for d in &mut record.drift {
                    d.corrected = false;
                }
                log::warn(
                    "drift not corrected",
                    json!({"app": key, "drift": described, "error": e.to_string()}),
                );
                (
                    "DriftNotCorrected",
                    format!("{}: {e}", described.join("; ")),
                )
            }
        }
    } else {
        ctx.metrics.drift("warned");
        let note = described.join("; ");
        log::warn("drift detected", json!({"app": key, "drift": described}));
        status.set_condition(
            "Drifted",
            "True",
            "DriftDetected",
            &format!("drift: warn; not corrected: {note}"),
            now,
        );
        ("DriftDetected", note)
    };
    record.duration_ms = started.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
    report.record(&record);
    report.event(EventType::Warning, event.0, event.1).await;
    status.push_history(SyncSummary {
        kind: "drift".into(),
        revision,
        time: now.to_string(),
        result: if correct && record.result == "succeeded" {
            "corrected".into()
        } else {
            record.result.clone()
        },
        message: described.join("; "),
        duration_ms: record.duration_ms,
    });
}

/// A watch loses an object both when it is deleted and when it is
/// relabelled away from the App (the watch selects by the App's labels).
/// For each one reported deleted, looks: if it is still there, it was
/// relabelled, and the field managers of its labels say by whom.
async fn relabelled(
    ctx: &Context,
    spec: &SyncSpec,
    drift: Vec<(ObjectRef, Drifted)>,
) -> Vec<(ObjectRef, Drifted)> {
    let Ok(applier) = ctx.syncer.applier(spec) else {
        return drift;
    };
    let mut out = Vec::with_capacity(drift.len());
    for (object, mut d) in drift {
        if d.fields.is_empty()
            && let Ok(Some(live)) = applier.live(&object).await
        {
            let managed = serde_json::to_value(&live.metadata.managed_fields).unwrap_or_default();
            let by: BTreeSet<String> = airgate_core::drift::owners(&managed)
                .into_iter()
                .filter(|o| o.manager != ctx.syncer.field_manager())
                .filter(|o| o.fields.iter().any(|f| f.contains("f:labels")))
                .map(|o| o.manager)
                .collect();
            let by = if by.is_empty() {
                "unknown".to_string()
            } else {
                by.into_iter().collect::<Vec<_>>().join(", ")
            };
            d.managers = vec![format!("{by} (relabelled: no longer this App's)")];
        }
        out.push((object, d));
    }
    out
}

/// How many corrections of one object within [`CONTEST_WINDOW`] mean that
/// something else keeps undoing them.
const CONTEST_CORRECTIONS: usize = 3;
const CONTEST_WINDOW: Duration = Duration::from_secs(60);

/// Whether corrections at `times` were undone too often to try again.
fn contested(times: &[Instant], now: Instant) -> bool {
    times
        .iter()
        .filter(|t| now.duration_since(**t) < CONTEST_WINDOW)
        .count()
        >= CONTEST_CORRECTIONS
}

/// Says once that `fight`'s corrections keep being undone.
async fn report_contested(
    report: &Report<'_>,
    fight: &[(ObjectRef, Drifted)],
    status: &mut AppStatus,
    now: &str,
) {
    let described: Vec<String> = fight
        .iter()
        .map(|(o, d)| format!("{o} (by {})", d.managers.join(", ")))
        .collect();
    let message = format!(
        "put back {CONTEST_CORRECTIONS} times within {}s and changed again each time, so not corrected again until the next sync: {}\nhint: another App or controller applies the same object; give it one owner",
        CONTEST_WINDOW.as_secs(),
        described.join("; ")
    );
    report.ctx.metrics.drift("contested");
    log::warn(
        "drift correction undone",
        json!({"app": key(report.app), "drift": described}),
    );
    status.set_condition("Drifted", "True", "CorrectionUndone", &message, now);
    report
        .event(EventType::Warning, "CorrectionUndone", message)
        .await;
}

/// Writes the status when it differs from what the App had.
async fn write_status(
    ctx: &Context,
    app: &App,
    before: &AppStatus,
    status: AppStatus,
) -> Result<(), ReconcileError> {
    let ready = status
        .condition("Ready")
        .is_some_and(|c| c.status == "True");
    ctx.with_state(&key(app), |s| s.suspended = app.spec.suspend);
    ctx.metrics.set_ready(&key(app), ready);
    if &status == before {
        return Ok(());
    }
    let api: Api<App> = Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
    api.patch_status(
        &app.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .map(|_| ())
    .map_err(|e| ReconcileError::Status {
        app: key(app),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_that_may_pass_are_retried_with_backoff_and_the_rest_wait_for_a_change() {
        use airgate_kube::ApplyError;
        let dry_run = |retryable| {
            SyncError::Apply(ApplyError::DryRun {
                object: "ConfigMap/x".into(),
                message: "m".into(),
                retryable,
            })
        };
        let cases = [
            (dry_run(true), false),
            (dry_run(false), true),
            (SyncError::Policy(vec![]), true),
            (SyncError::Apply(ApplyError::Object("bad".into())), true),
            (
                SyncError::Apply(ApplyError::Apply {
                    object: "x".into(),
                    message: "conn reset".into(),
                }),
                false,
            ),
        ];
        for (error, permanent) in &cases {
            assert_eq!(is_permanent(error), *permanent, "{error}");
        }
        let minute = Duration::from_secs(60);
        let backoff: Vec<u64> = (1..=6)
            .map(|n| retry_backoff(n, minute).as_secs())
            .collect();
        assert_eq!(backoff, [5, 10, 20, 40, 60, 60]);
        assert_eq!(retry_backoff(u32::MAX, minute), minute);
    }

    #[test]
    fn a_correction_undone_three_times_in_a_minute_is_not_tried_again() {
        let now = Instant::now();
        let ago = |s: u64| now.checked_sub(Duration::from_secs(s)).unwrap_or(now);
        for (times, fight) in [
            (vec![], false),
            (vec![ago(1), ago(2)], false),
            (vec![ago(1), ago(2), ago(3)], true),
            (vec![ago(1), ago(2), ago(90)], false),
        ] {
            assert_eq!(contested(&times, now), fight, "{times:?}");
        }
    }

    #[test]
    fn credentials_in_a_git_url_are_refused_and_never_echoed() {
        for (url, has) in [
            ("https://u:pw@git.internal/x.git", true),
            ("https://token@git.internal/x.git", true),
            ("https://git.internal/x.git", false),
            ("https://git.internal/a@b.git", false),
            ("file:///srv/git/x.git", false),
        ] {
            assert_eq!(has_userinfo(url), has, "{url}");
        }
        assert!(is_dns_subdomain("shop-deployer"));
        for bad in ["x:y", "", "Upper", "-a", "a..b", "a_b"] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
    }

    fn deployment() -> ObjectRef {
        ObjectRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: Some("shop".into()),
            name: "web".into(),
        }
    }

    fn progressing() -> Health {
        Health::Progressing("0 of 1 replicas updated".into())
    }

    /// airgate wrote `o` at resourceVersion 10.
    fn written_at_10(o: &ObjectRef) -> AppState {
        let mut s = AppState::default();
        s.expected.insert(
            o.clone(),
            Baseline {
                fields: BTreeSet::new(),
                resource_version: Some(10),
            },
        );
        s
    }

    #[test]
    fn health_is_read_until_a_live_watch_has_shown_airgates_own_write() {
        let o = deployment();
        let mut s = written_at_10(&o);
        s.saw(&o, 12, Health::Ready);
        // Not live (not yet listed, or failing): it could have missed events.
        assert_eq!(s.watched(&o), None);
        s.live.insert(drift::WatchKey::of(&o));
        assert_eq!(s.watched(&o), Some(Health::Ready));
        // Shown only before airgate's write: the watch has not caught up.
        let mut s = written_at_10(&o);
        s.live.insert(drift::WatchKey::of(&o));
        s.saw(&o, 9, Health::Ready);
        assert_eq!(s.watched(&o), None);
        s.saw(&o, 10, progressing());
        assert_eq!(s.watched(&o), Some(progressing()));
    }

    #[test]
    fn an_older_event_never_overrides_a_newer_verdict_and_only_a_moved_verdict_wakes() {
        let o = deployment();
        let mut s = AppState::default();
        assert!(s.saw(&o, 10, progressing()), "first verdict");
        assert!(
            !s.saw(&o, 11, Health::Progressing("1 of 1 updated".into())),
            "same verdict"
        );
        assert!(s.saw(&o, 13, Health::Ready), "now Ready");
        assert!(!s.saw(&o, 12, progressing()), "an older event");
        assert_eq!(
            s.seen.get(&o).map(|x| x.health.clone()),
            Some(Health::Ready)
        );
    }
}
