//! Health of what the last sync applied, until all of it is Ready or
//! `spec.timeout` passes (then the App is Stalled, the object named).
//!
//! What the apply's answers already showed Ready is not looked at again.
//! The rest is looked at when the watches see it change (and every few
//! seconds at the latest), so Ready follows the rollout closely; what a
//! live whole-object watch has shown since airgate's own write is taken
//! from its events ([`AppState::watched`](super::AppState::watched)), the
//! rest is read as the App's ServiceAccount.

use std::time::Instant;

use airgate_core::health::Health;
use airgate_core::object::ObjectRef;
use airgate_core::status::{ConditionStatus, ConditionType, Reason, RecordKind, RecordResult};
use airgate_kube::app::{App, AppStatus};
use airgate_sync::SyncSpec;
use serde_json::json;

use super::decide::{self, Verdict};
use super::outcome::{self, Outcome, epoch_seconds, short};
use super::{Context, log};

/// Looks at the health of what is still progressing; `None` when nothing
/// is waited for, or health could not be read (logged; tried again).
pub async fn check(
    ctx: &Context,
    app: &App,
    spec: &SyncSpec,
    status: &AppStatus,
) -> Option<Outcome> {
    let key = spec.app.clone();
    let (wait, watched) = ctx.with_state(&key, |s| {
        let pending = &s.owned.health.as_ref()?.pending;
        let watched: Vec<Option<Health>> = pending.iter().map(|o| s.watched(o)).collect();
        let h = s.owned.health.as_mut()?;
        h.checked = Some((Instant::now(), watched.iter().any(Option::is_none)));
        Some((h.clone(), watched))
    })?;
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
                return None;
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
    let verdict = decide::verdict(results, Instant::now() > wait.deadline);
    Some(outcome_of(ctx, app, &key, status, verdict))
}

/// The outcome `verdict` means, with the App's state updated for it.
fn outcome_of(
    ctx: &Context,
    app: &App,
    key: &str,
    status: &AppStatus,
    verdict: Verdict,
) -> Outcome {
    let rev = status.last_applied_revision.clone().unwrap_or_default();
    let unhealthy = |message: String| {
        let mut record = outcome::record(key, RecordKind::Health, &rev, epoch_seconds());
        record.result = RecordResult::Unhealthy;
        record.error = Some(message);
        Outcome::Unhealthy { record }
    };
    match verdict {
        Verdict::Healthy => {
            ctx.with_state(key, |s| s.owned.health = None);
            let message = format!(
                "revision {} applied; {} objects healthy",
                short(&rev),
                status.inventory_count
            );
            Outcome::Healthy {
                message,
                first: !status.is(ConditionType::Ready, ConditionStatus::True),
            }
        }
        Verdict::Failed(culprit) => {
            ctx.with_state(key, |s| s.owned.health = None);
            unhealthy(format!("revision {}: {culprit}", short(&rev)))
        }
        Verdict::TimedOut(culprit) => {
            ctx.with_state(key, |s| s.owned.health = None);
            unhealthy(format!(
                "revision {} not healthy within {}: {culprit}",
                short(&rev),
                app.spec.timeout
            ))
        }
        Verdict::Waiting { pending, first } => {
            let message = format!(
                "revision {}: waiting for {} object(s); {first}",
                short(&rev),
                pending.len()
            );
            let progressing = status.has_reason(ConditionType::Ready, Reason::Progressing);
            let due = ctx.with_state(key, |s| {
                s.owned.health.as_mut().is_some_and(|h| {
                    h.pending = pending;
                    h.report_due() || !progressing
                })
            });
            Outcome::Progressing { message, due }
        }
    }
}
