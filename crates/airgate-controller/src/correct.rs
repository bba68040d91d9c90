//! Drift the watches found, corrected or reported.
//!
//! `drift: correct` applies the drifted objects again from the last applied
//! revision, as the App's ServiceAccount; `warn` only reports. Either way
//! a `drift` record names the field manager that made the change. An
//! object whose corrections are undone again and again (another App or
//! controller applies it too) is left alone and reported once, instead of
//! two writers taking turns for ever.

use std::collections::BTreeSet;
use std::time::Instant;

use airgate_core::drift::Drifted;
use airgate_core::object::ObjectRef;
use airgate_core::status::{RecordKind, RecordResult};
use airgate_kube::app::DriftMode;
use airgate_store::Drift;
use airgate_sync::SyncSpec;

use super::Context;
use super::decide::{self, CONTEST_CORRECTIONS, CONTEST_WINDOW};
use super::outcome::{self, Outcome, epoch_seconds};
use super::state::Baseline;

/// Drift found on objects, as the watches queue it.
type Found = Vec<(ObjectRef, Drifted)>;

/// Corrects or reports `drift`; what it ended in (nothing when no revision
/// was applied by this process yet).
pub async fn handle(
    ctx: &Context,
    spec: &SyncSpec,
    drift: Vec<(ObjectRef, Drifted)>,
    mode: DriftMode,
) -> Vec<Outcome> {
    let key = spec.app.clone();
    let mut outcomes = Vec::new();
    if drift.is_empty() {
        return outcomes;
    }
    let Some(revision) = ctx.with_state(&key, |s| s.owned.last_applied.clone()) else {
        return outcomes;
    };
    let drift = relabelled(ctx, spec, drift).await;
    let correct = mode == DriftMode::Correct;
    let drift = if correct {
        let (fight, rest) = uncontested(ctx, &key, drift);
        if !fight.is_empty() {
            outcomes.push(contested(&fight));
        }
        rest
    } else {
        drift
    };
    if drift.is_empty() {
        return outcomes;
    }
    let started = Instant::now();
    let described: Vec<String> = drift.iter().map(describe).collect();
    let mut record = outcome::record(&key, RecordKind::Drift, &revision, epoch_seconds());
    record.drift = drift
        .iter()
        .map(|(o, d)| Drift {
            object: o.to_string(),
            field_manager: d.managers.join(","),
            fields: d.fields.clone(),
            corrected: correct,
        })
        .collect();
    if correct {
        let objects: Vec<ObjectRef> = drift.into_iter().map(|(o, _)| o).collect();
        match ctx.syncer.reapply(spec, &revision, &objects).await {
            Ok(changes) => {
                ctx.with_state(&key, |s| {
                    let at = Instant::now();
                    for c in &changes.changes {
                        s.owned
                            .expected
                            .insert(c.object.clone(), Baseline::after(c));
                        let times = s.owned.corrections.entry(c.object.clone()).or_default();
                        times.retain(|t| at.duration_since(*t) < CONTEST_WINDOW);
                        times.push(at);
                    }
                });
                record.objects = airgate_sync::object_changes(&changes.changes);
            }
            Err(e) => {
                record.result = RecordResult::Failed;
                record.error = Some(e.to_string());
                for d in &mut record.drift {
                    d.corrected = false;
                }
            }
        }
    }
    // The record's duration is the correction's alone.
    record.duration_ms = started.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
    outcomes.push(Outcome::Drift {
        record,
        described: described.join("; "),
    });
    outcomes
}

/// One drifted object in words: what changed, and by whom.
fn describe((o, d): &(ObjectRef, Drifted)) -> String {
    let fields = if d.fields.is_empty() {
        "deleted".to_string()
    } else {
        d.fields.join(", ")
    };
    format!("{o} ({fields}) by {}", d.managers.join(", "))
}

/// Splits `drift` into objects whose corrections keep being undone (each
/// reported only once until the next sync) and the rest.
fn uncontested(ctx: &Context, key: &str, drift: Vec<(ObjectRef, Drifted)>) -> (Found, Found) {
    ctx.with_state(key, |s| {
        let now = Instant::now();
        let (fight, rest): (Vec<_>, Vec<_>) = drift.into_iter().partition(|(o, _)| {
            s.owned
                .corrections
                .get(o)
                .is_some_and(|times| decide::contested(times, now))
        });
        let new: Vec<_> = fight
            .into_iter()
            .filter(|(o, _)| s.owned.contested.insert(o.clone()))
            .collect();
        (new, rest)
    })
}

/// Says that `fight`'s corrections keep being undone.
fn contested(fight: &[(ObjectRef, Drifted)]) -> Outcome {
    let described: Vec<String> = fight
        .iter()
        .map(|(o, d)| format!("{o} (by {})", d.managers.join(", ")))
        .collect();
    Outcome::Contested {
        message: format!(
            "put back {CONTEST_CORRECTIONS} times within {}s and changed again each time, so not corrected again until the next sync: {}\nhint: another App or controller applies the same object; give it one owner",
            CONTEST_WINDOW.as_secs(),
            described.join("; ")
        ),
    }
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
