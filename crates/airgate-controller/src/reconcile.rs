//! One reconcile pass over one App: the shell around the decisions of
//! [`super::decide`], doing the I/O they call for.
//!
//! A pass does only what is due, in this order:
//! 1. **Drift** found by the watches ([`super::correct`]): `correct`
//!    applies the drifted objects again from the last applied revision;
//!    `warn` only reports. Either way a `drift` record names the field
//!    manager that made the change.
//! 2. **Fetch**, when the interval has passed, the spec changed or
//!    `airgate.dev/requested-at` asks. A new commit (or a new spec) means a
//!    whole **sync** ([`sync`], here: write-ahead inventory, then
//!    `airgate_sync`); the same commit means nothing to do: no dry-run, no
//!    write.
//! 3. **Health** of what the last sync applied ([`super::health`]), until
//!    all of it is Ready or `spec.timeout` passes.
//!
//! Each step ends in an [`Outcome`]; [`Reporter`] turns it into status,
//! record, Event, log line and metric. The status is written only when it
//! changed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use airgate_core::drift::Drifted;
use airgate_core::health::Health;
use airgate_core::inventory::Inventory;
use airgate_core::object::ObjectRef;
use airgate_core::status::{ConditionStatus, ConditionType, Reason, RecordKind, RecordResult};
use airgate_kube::Action as ChangeAction;
use airgate_kube::app::{App, AppStatus};
use airgate_sync::SyncSpec;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::decide::{self, Due};
use super::freeze;
use super::outcome::{self, Outcome, Reporter, epoch_seconds, short};
use super::state::{Baseline, HealthWait};
use super::{Context, correct, drift, health, key, log, metrics, spec, trust};
use airgate_core::freeze::Active;

/// Setting this annotation on an App to a new value (a timestamp, say)
/// makes the next pass fetch from Git now instead of at the interval.
pub const REQUEST_ANNOTATION: &str = "airgate.dev/requested-at";

/// How often health is looked at, at the latest, while objects are still
/// progressing; a watch event on one of them makes it sooner.
const HEALTH_POLL: Duration = Duration::from_secs(2);

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

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn spec_interval(app: &App) -> Duration {
    app.spec.interval().unwrap_or(Duration::from_secs(60))
}

fn spec_timeout(app: &App) -> Duration {
    app.spec.timeout().unwrap_or(Duration::from_secs(300))
}

/// One pass over one App, in its own span (see [`log::reconcile_span`]).
pub async fn reconcile(app: Arc<App>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    use tracing::Instrument as _;
    let span = log::reconcile_span(&app.namespace().unwrap_or_default(), &app.name_any());
    pass(app, ctx).instrument(span).await
}

async fn pass(app: Arc<App>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.metrics.reconcile();
    let key = key(&app);
    let now = now_rfc3339();
    let reporter = Reporter {
        ctx: &ctx,
        app: &app,
        now: &now,
    };
    let mut status = base_status(&ctx, &app);
    let before = status.clone();

    let checked = spec::sync_spec(&app).and_then(|s| Ok((s, freeze::windows(&app)?)));
    let (mut spec, windows) = match checked {
        Ok(checked) => checked,
        Err(message) => {
            status.observed_generation = app.metadata.generation;
            reporter
                .report(Outcome::InvalidSpec { message }, &mut status)
                .await;
            write_status(&ctx, &app, &before, status).await?;
            return Ok(Action::await_change());
        }
    };
    let frozen = windows.active(epoch_seconds());
    if frozen.is_none() {
        status.clear_condition(ConditionType::Frozen);
    }
    if app.spec.suspend {
        let was = ctx.with_state(&key, |s| std::mem::replace(&mut s.owned.suspended, true));
        reporter
            .report(Outcome::Suspended { first: !was }, &mut status)
            .await;
        write_status(&ctx, &app, &before, status).await?;
        return Ok(Action::await_change());
    }

    if let Some(message) = ctx.audit.refused() {
        let first = status
            .condition(ConditionType::Ready)
            .is_none_or(|c| c.reason != Reason::AuditLogRefused.as_str());
        reporter
            .report(Outcome::AuditRefused { message, first }, &mut status)
            .await;
        write_status(&ctx, &app, &before, status).await?;
        return Ok(Action::requeue(Duration::from_secs(30)));
    }

    let (due, drift, health) = take_due(&ctx, &app, &status);
    if !due.fetch && drift.is_empty() {
        match health {
            None => {
                let wait = ctx.with_state(&key, |s| s.owned.until_fetch(spec_interval(&app)));
                return Ok(Action::requeue(wait.max(Duration::from_secs(1))));
            }
            Some(later) if !later.is_zero() => return Ok(Action::requeue(later)),
            Some(_) => {}
        }
    }
    if spec.helm.is_some() && (due.fetch || !drift.is_empty()) {
        // The chart is read as the App, for a sync and for a correction
        // that must render again.
        match spec::chart_access(&ctx.syncer, &app, &spec).await {
            Ok(access) => {
                if let Some(h) = spec.helm.as_mut() {
                    h.access = access;
                }
            }
            Err(message) => {
                let first = !status.has_reason(ConditionType::Ready, Reason::SourceFailed);
                let outcome = Outcome::SourceFailed { message, first };
                reporter.report(outcome, &mut status).await;
                write_status(&ctx, &app, &before, status).await?;
                return Ok(Action::requeue(spec_interval(&app)));
            }
        }
    }
    let drift_mode = freeze::drift_mode(&app, frozen.is_some());
    for outcome in correct::handle(&ctx, &spec, drift, drift_mode).await {
        reporter.report(outcome, &mut status).await;
    }
    if due.fetch {
        fetch_and_sync(&ctx, &reporter, &mut spec, due, frozen, &mut status).await;
    }
    if let Some(outcome) = health::check(&ctx, &app, &spec, &status).await {
        reporter.report(outcome, &mut status).await;
    }
    write_status(&ctx, &app, &before, status).await?;

    let wait = ctx.with_state(&key, |s| {
        if s.owned.health.is_some() {
            return HEALTH_POLL;
        }
        s.owned.until_fetch(spec_interval(&app))
    });
    Ok(Action::requeue(wait.max(Duration::from_millis(500))))
}

/// The status a pass starts from: the App's, unless this controller has
/// written a newer one than the App it was handed shows.
fn base_status(ctx: &Context, app: &App) -> AppStatus {
    let seen = resource_version(app);
    let live = app.status.clone().unwrap_or_default();
    ctx.with_state(&key(app), |s| match &s.owned.written {
        Some((ours, status)) if decide::start_from_written(seen, Some(*ours)) => status.clone(),
        _ => live,
    })
}

fn resource_version(app: &App) -> Option<u64> {
    app.metadata.resource_version.as_deref()?.parse().ok()
}

/// What is due for `app` (see [`decide::due`]), the drift the watches
/// queued, and, while objects are still progressing, how long until health
/// may be looked at again. Restores what a previous controller left in
/// the status.
fn take_due(
    ctx: &Context,
    app: &App,
    status: &AppStatus,
) -> (Due, Vec<(ObjectRef, Drifted)>, Option<Duration>) {
    let key = key(app);
    let requested = app.annotations().get(REQUEST_ANNOTATION).cloned();
    let generation = app.metadata.generation;
    ctx.with_state(&key, |s| {
        if s.owned.suspended {
            s.owned.suspended = false;
            s.owned.next_fetch = None;
        }
        if !s.owned.synced && s.owned.inventory.entries.is_empty() {
            // An inventory that does not read prunes nothing (it is logged).
            s.owned.inventory = status.objects().unwrap_or_else(|e| {
                log::warn("inventory unreadable", json!({"app": key, "error": e}));
                Inventory::default()
            });
            s.owned.last_applied = status.last_applied_revision.clone();
        }
        let due = decide::due(
            s.owned.observed_generation,
            generation,
            s.owned.requested.as_deref(),
            requested.as_deref(),
            s.owned.next_fetch,
            Instant::now(),
        );
        s.owned.requested = requested.clone();
        if due.asked {
            // Asked by hand: whatever failed before is tried again.
            s.owned.failed = None;
        }
        (
            due,
            std::mem::take(&mut s.observed.drift),
            s.owned.health.as_ref().map(HealthWait::spacing_left),
        )
    })
}

/// Fetches the ref with the App's credentials, and syncs the commit when
/// [`decide::needs_sync`] says so.
async fn fetch_and_sync(
    ctx: &Arc<Context>,
    reporter: &Reporter<'_>,
    spec: &mut SyncSpec,
    due: Due,
    frozen: Option<(Active, &str)>,
    status: &mut AppStatus,
) {
    let app = reporter.app;
    let key = spec.app.clone();
    ctx.with_state(&key, |s| {
        s.owned.next_fetch = Some(Instant::now() + spec_interval(app))
    });
    let fetched = match spec::access(&ctx.syncer, app, spec).await {
        Ok(a) => {
            spec.access = a;
            ctx.syncer.fetch(spec).await.map_err(|e| e.to_string())
        }
        Err(e) => Err(e),
    };
    let source_failed = status.has_reason(ConditionType::Ready, Reason::SourceFailed);
    let commit = match fetched {
        Ok(commit) => commit,
        Err(message) => {
            let kept = status
                .last_applied_revision
                .as_deref()
                .map(|r| format!("; the cluster keeps revision {}", short(r)))
                .unwrap_or_default();
            let generation = app.metadata.generation;
            ctx.with_state(&key, |s| s.owned.observed_generation = generation);
            status.observed_generation = generation;
            let message = format!("{message}{kept}");
            let outcome = Outcome::SourceFailed {
                message,
                first: !source_failed,
            };
            reporter.report(outcome, status).await;
            return;
        }
    };
    let (last, failed, synced) = ctx.with_state(&key, |s| {
        (
            s.owned.last_applied.clone(),
            s.owned.failed.clone(),
            s.owned.synced,
        )
    });
    log::revision(&commit.id);
    let sync_due = decide::needs_sync(
        due.spec_changed,
        synced,
        last.as_deref(),
        failed.as_deref(),
        &commit.id,
    );
    let verification = match trust::gate(ctx, reporter, spec, &commit, sync_due, status).await {
        trust::Gate::Open(v) => v,
        trust::Gate::Closed => return,
    };
    let overridden = match (&frozen, sync_due) {
        (Some((active, window)), true) => match freeze::override_reason(&commit.message) {
            Some(reason) => Some(reason),
            None => {
                hold(ctx, reporter, active, window, &commit.id, status).await;
                return;
            }
        },
        _ => None,
    };
    if sync_due {
        let mut outcome = sync(ctx, app, spec, commit, status).await;
        if let (Some(reason), Outcome::Synced { record, .. }) = (&overridden, &mut outcome) {
            record.freeze_override = Some(reason.clone());
        }
        if let Some(v) = &verification {
            trust::attach(reporter, v, &mut outcome, status);
        }
        reporter.report(outcome, status).await;
    } else if source_failed || status.has_reason(ConditionType::Ready, Reason::VerificationFailed) {
        // Git is back (or the refused commit left it) and nothing changed:
        // what is Ready now is what the cluster says, so read health again.
        let timeout = spec_timeout(app);
        ctx.with_state(&key, |s| {
            s.owned.health = Some(HealthWait::new(
                timeout,
                s.owned.inventory.entries.iter().cloned().collect(),
            ));
        });
    }
}

/// A change freeze holds `revision` back: the App says so, and is looked
/// at again when the window ends (or within one interval, if sooner).
async fn hold(
    ctx: &Context,
    reporter: &Reporter<'_>,
    active: &Active,
    window: &str,
    revision: &str,
    status: &mut AppStatus,
) {
    let left = u64::try_from(active.ends_at - epoch_seconds()).unwrap_or(0);
    let at = Instant::now() + Duration::from_secs(left + 1);
    ctx.with_state(&key(reporter.app), |s| {
        s.owned.next_fetch = s.owned.next_fetch.map(|n| n.min(at)).or(Some(at));
    });
    let message = format!(
        "change freeze ({window}) until {}: revision {} waits; a commit with the trailer Freeze-Override: <reason> is applied at once",
        freeze::shown_time(active.ends_at),
        short(revision)
    );
    let first = status
        .condition(ConditionType::Frozen)
        .is_none_or(|c| c.message != message);
    reporter
        .report(Outcome::Frozen { message, first }, status)
        .await;
}

/// A whole sync of the fetched revision. Write-ahead: what is about to be
/// applied joins the inventory, in memory and in the App's status, before
/// the first write; a crash mid-sync then leaves nothing a restarted
/// controller does not know of.
async fn sync(
    ctx: &Arc<Context>,
    app: &App,
    spec: &SyncSpec,
    commit: airgate_git::Commit,
    status: &mut AppStatus,
) -> Outcome {
    let key = spec.app.clone();
    let (previous, vouched) = ctx.with_state(&key, |s| {
        s.owned.syncing = true;
        (s.owned.inventory.clone(), s.observed.marked.clone())
    });
    let started = Instant::now();
    let started_at = epoch_seconds();
    let revision = commit.id.clone();
    let author = commit.author.name.clone();
    let (before, key_ref) = (&previous, &key);
    let write_ahead = move |intended: Vec<ObjectRef>| {
        let mut union = before.clone();
        union.entries.extend(intended);
        async move {
            if union.entries == before.entries {
                return Ok(());
            }
            ctx.with_state(key_ref, |s| s.owned.inventory = union.clone());
            write_inventory(ctx, app, &union).await
        }
    };
    let result = ctx
        .syncer
        .sync_commit_with(spec, commit, &previous, &vouched, write_ahead)
        .await;
    let duration_ms = started.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
    let generation = app.metadata.generation;
    status.observed_generation = generation;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(error) => {
            let permanent = decide::is_permanent(&error);
            let mut record = outcome::record(&key, RecordKind::Sync, &revision, started_at);
            record.duration_ms = duration_ms;
            record.result = if permanent {
                RecordResult::Blocked
            } else {
                RecordResult::Failed
            };
            record.error = Some(error.to_string());
            // Whatever the failed sync wrote is in the inventory already
            // (the write-ahead put it there before the first write): the
            // status shows it, so a later sync prunes it when it leaves Git.
            let inventory = ctx.with_state(&key, |s| {
                failed(s, app, generation, permanent.then(|| revision.clone()));
                s.owned.inventory.clone()
            });
            keep_inventory(status, &inventory, &key);
            return Outcome::SyncFailed {
                record,
                reason: error.reason(),
            };
        }
    };
    let record = outcome.record(&key, started_at, duration_ms);
    applied(ctx, app, spec, &outcome, status).await;
    let changes: Vec<_> = outcome
        .applied
        .changes
        .iter()
        .chain(&outcome.pruned.changes)
        .cloned()
        .collect();
    Outcome::Synced {
        record,
        summary: counts(&changes),
        author,
        imports: outcome.imported.iter().map(|i| i.import.clone()).collect(),
        warnings: outcome.warnings.clone(),
    }
}

/// After a successful sync: the App's state and inventory, and watches on
/// what it applied.
async fn applied(
    ctx: &Arc<Context>,
    app: &App,
    spec: &SyncSpec,
    outcome: &airgate_sync::SyncOutcome,
    status: &mut AppStatus,
) {
    let key = &spec.app;
    let generation = app.metadata.generation;
    ctx.with_state(key, |s| synced(s, outcome, generation, spec_timeout(app)));
    keep_inventory(status, &outcome.inventory, key);
    if let Err(e) = drift::watch(ctx, spec, &outcome.inventory).await {
        log::warn(
            "drift watch not started",
            json!({"app": key, "error": format!("{e:#}")}),
        );
    }
}

/// Puts the App's inventory in its status (the write-ahead).
async fn write_inventory(ctx: &Context, app: &App, inventory: &Inventory) -> Result<(), String> {
    let fields = airgate_kube::app::inventory_fields(inventory)?;
    let api: Api<App> = Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
    api.patch_status(
        &app.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": fields })),
    )
    .await
    .map(|_| ())
    .map_err(|e| format!("writing the App's inventory: {e}"))
}

/// What a successful sync leaves in the App's state: the new inventory and
/// drift baselines, and the health to wait for (what the apply's answers
/// showed Ready is not read again).
fn synced(
    s: &mut super::AppState,
    outcome: &airgate_sync::SyncOutcome,
    generation: Option<i64>,
    timeout: Duration,
) {
    s.owned.syncing = false;
    s.owned.synced = true;
    s.owned.failed = None;
    s.owned.failures = 0;
    s.owned.corrections.clear();
    s.owned.contested.clear();
    s.owned.observed_generation = generation;
    s.owned.last_applied = Some(outcome.commit.id.clone());
    s.owned.inventory = outcome.inventory.clone();
    let applied = &outcome.applied.changes;
    s.owned.expected = applied
        .iter()
        .map(|c| (c.object.clone(), Baseline::after(c)))
        .collect();
    let pending = applied
        .iter()
        .filter(|c| c.health != Some(Health::Ready))
        .map(|c| c.object.clone())
        .collect();
    s.owned.health = Some(HealthWait::new(timeout, pending));
    // Drift queued before this sync is about what it replaced. (What the
    // apply's answers showed of health is in the baselines: see
    // `AppState::watched`.)
    s.observed.drift.clear();
}

/// What a failed sync leaves in the App's state: a revision that failed
/// for good (`blocked`) waits for Git or the spec to move; a failure that
/// may pass is tried again soon, then less and less often, never less
/// often than the interval.
fn failed(s: &mut super::AppState, app: &App, generation: Option<i64>, blocked: Option<String>) {
    s.owned.syncing = false;
    s.owned.observed_generation = generation;
    let permanent = blocked.is_some();
    s.owned.failed = blocked;
    if permanent {
        s.owned.failures = 0;
        return;
    }
    s.owned.failures = s.owned.failures.saturating_add(1);
    let again = Instant::now() + decide::retry_backoff(s.owned.failures, spec_interval(app));
    s.owned.next_fetch = Some(s.owned.next_fetch.map_or(again, |t| t.min(again)));
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

/// What the App's per-App metrics show, from its spec and new status.
fn gauges(app: &App, status: &AppStatus) -> metrics::AppGauges {
    let last_applied = status
        .history
        .iter()
        .find(|h| {
            h.kind == RecordKind::Sync.as_str() && h.result == RecordResult::Succeeded.as_str()
        })
        .and_then(|h| h.time.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .map(|t| t.as_second());
    metrics::AppGauges {
        ready: status.is(ConditionType::Ready, ConditionStatus::True),
        suspended: app.spec.suspend,
        frozen: status.is(ConditionType::Frozen, ConditionStatus::True),
        drifted: status.is(ConditionType::Drifted, ConditionStatus::True),
        last_applied,
    }
}

/// Writes the status when it differs from what the App had.
async fn write_status(
    ctx: &Context,
    app: &App,
    before: &AppStatus,
    status: AppStatus,
) -> Result<(), ReconcileError> {
    ctx.with_state(&key(app), |s| s.owned.suspended = app.spec.suspend);
    ctx.metrics.set_app(
        &app.namespace().unwrap_or_default(),
        &app.name_any(),
        &gauges(app, &status),
    );
    if &status == before {
        return Ok(());
    }
    let api: Api<App> = Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
    let written = api
        .patch_status(
            &app.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .map_err(|e| ReconcileError::Status {
            app: key(app),
            message: e.to_string(),
        })?;
    if let Some(rv) = resource_version(&written) {
        ctx.with_state(&key(app), |s| s.owned.written = Some((rv, status)));
    }
    ctx.changed();
    Ok(())
}
