//! What a step of a pass ended in, and the one place that tells the world.
//!
//! Each step (spec check, fetch, sync, health, drift) returns an
//! [`Outcome`]; [`Reporter::report`] turns it into everything it means, in
//! one order: the record first (the audit trail comes before anything that
//! expires), then the metric, the log line, the status (conditions and
//! history) and the Event. Before this module the same set of writes was
//! repeated, slightly differently, in four places.

use airgate_core::provenance::VerifiedImport;
use airgate_core::status::{ConditionStatus, ConditionType, Reason, RecordKind, RecordResult};
use airgate_kube::app::{App, AppStatus, SyncSummary};
use airgate_store::SyncRecord;
use kube::Resource;
use kube::runtime::events::{Event, EventType};
use serde_json::json;

use super::{Context, log};

/// How one step ended.
#[derive(Debug)]
pub enum Outcome {
    /// The spec is not valid: nothing is done until it changes.
    InvalidSpec { message: String },
    /// `spec.suspend`; `first` when the App was not suspended before.
    Suspended { first: bool },
    /// Git could not be fetched; `first` when the App did not already say so.
    SourceFailed { message: String, first: bool },
    /// A sync applied a revision.
    Synced {
        record: SyncRecord,
        /// What changed, counted.
        summary: String,
        author: String,
        /// The imports the record names; the log records those it lacks.
        imports: Vec<VerifiedImport>,
        /// What the render warns of (see `SyncOutcome::warnings`).
        warnings: Vec<String>,
    },
    /// A sync failed; `record.result` says whether it may pass by itself.
    SyncFailed { record: SyncRecord, reason: Reason },
    /// Every object is Ready; `first` when the App was not Ready before.
    Healthy { message: String, first: bool },
    /// Objects are still on their way (`due`: the message is worth writing).
    Progressing { message: String, due: bool },
    /// An object failed, or was not Ready in time.
    Unhealthy { record: SyncRecord },
    /// Drift, corrected, reported, or not corrected: `record.drift` says
    /// which, `described` in words.
    Drift {
        record: SyncRecord,
        described: String,
    },
    /// Corrections kept being undone: not tried again until the next sync.
    Contested { message: String },
    /// The audit log cannot be proved consistent: nothing is applied.
    AuditRefused { message: String, first: bool },
    /// A change freeze holds a new revision back; `first` when the App did
    /// not already say so.
    Frozen { message: String, first: bool },
}

/// Tells the world about the outcomes of one App's pass.
pub struct Reporter<'a> {
    pub ctx: &'a Context,
    pub app: &'a App,
    /// RFC 3339, for conditions and history.
    pub now: &'a str,
}

impl Reporter<'_> {
    /// Records, counts, logs, puts in `status` and posts as an Event what
    /// `outcome` means.
    pub async fn report(&self, outcome: Outcome, status: &mut AppStatus) {
        use ConditionStatus::{False, True, Unknown};
        use ConditionType::{Drifted, Ready, Reconciling, Stalled};
        let key = super::key(self.app);
        match outcome {
            Outcome::InvalidSpec { message } => {
                status.set_condition(Ready, False, Reason::InvalidSpec, &message, self.now);
                status.set_condition(Stalled, True, Reason::InvalidSpec, &message, self.now);
                status.clear_condition(Reconciling);
            }
            Outcome::Suspended { first } => {
                let message = "spec.suspend is true: nothing is applied, drift is not corrected";
                status.set_condition(Ready, Unknown, Reason::Suspended, message, self.now);
                status.clear_condition(Reconciling);
                if first {
                    self.event(EventType::Normal, Reason::Suspended, message.into())
                        .await;
                }
            }
            Outcome::SourceFailed { message, first } => {
                log::warn("source failed", json!({"app": key, "error": message}));
                status.set_condition(Ready, False, Reason::SourceFailed, &message, self.now);
                status.clear_condition(Reconciling);
                if first {
                    self.event(EventType::Warning, Reason::SourceFailed, message)
                        .await;
                }
            }
            Outcome::Synced {
                record,
                summary,
                author,
                imports,
                warnings,
            } => {
                self.render_warnings(&warnings, status).await;
                self.synced(record, summary, author, &imports, status).await
            }
            Outcome::SyncFailed { record, reason } => {
                self.sync_failed(record, reason, status).await;
            }
            Outcome::Healthy { message, first } => {
                status.set_condition(Ready, True, Reason::Succeeded, &message, self.now);
                status.clear_condition(Reconciling);
                status.clear_condition(Stalled);
                if first {
                    self.event(EventType::Normal, Reason::Succeeded, message)
                        .await;
                }
            }
            Outcome::Progressing { message, due } => {
                if due {
                    status.set_condition(Ready, Unknown, Reason::Progressing, &message, self.now);
                    status.set_condition(
                        Reconciling,
                        True,
                        Reason::Progressing,
                        &message,
                        self.now,
                    );
                }
            }
            Outcome::Unhealthy { record } => self.unhealthy(record, status).await,
            Outcome::Drift { record, described } => {
                self.drift(record, described, status).await;
            }
            Outcome::AuditRefused { message, first } => {
                let reason = Reason::AuditLogRefused;
                status.set_condition(Ready, False, reason, &message, self.now);
                status.set_condition(Stalled, True, reason, &message, self.now);
                status.clear_condition(Reconciling);
                if first {
                    self.event(EventType::Warning, reason, message).await;
                }
            }
            Outcome::Frozen { message, first } => {
                let reason = Reason::FreezeWindow;
                status.set_condition(ConditionType::Frozen, True, reason, &message, self.now);
                if first {
                    log::info("frozen", json!({"app": key, "freeze": message}));
                    self.event(EventType::Normal, reason, message).await;
                }
            }
            Outcome::Contested { message } => {
                self.ctx.metrics.drift(RecordResult::Contested);
                log::warn(
                    "drift correction undone",
                    json!({"app": key, "drift": message}),
                );
                let reason = Reason::CorrectionUndone;
                status.set_condition(Drifted, True, reason, &message, self.now);
                self.event(EventType::Warning, reason, message).await;
            }
        }
    }

    async fn synced(
        &self,
        record: SyncRecord,
        summary: String,
        author: String,
        imports: &[VerifiedImport],
        status: &mut AppStatus,
    ) {
        if let Err(e) = self.ctx.audit.append_with_imports(
            &self.ctx.store,
            imports,
            Some(&record),
            record.started_at,
        ) {
            log::error(
                "sync record not stored",
                json!({"app": record.app, "error": e}),
            );
        }
        self.ctx.metrics.sync(record.result, record.duration_ms);
        log::info(
            "synced",
            json!({"app": record.app, "revision": record.revision, "changes": summary,
                   "durationMs": record.duration_ms}),
        );
        status.last_applied_revision = Some(record.revision.clone());
        status.last_attempted_revision = Some(record.revision.clone());
        status.clear_condition(ConditionType::Stalled);
        status.clear_condition(ConditionType::Drifted);
        self.history(status, &record, record.result, &summary);
        let note = format!(
            "revision {} by {author}: {summary}",
            short(&record.revision)
        );
        self.event(EventType::Normal, Reason::Synced, note).await;
        if let Some(why) = &record.freeze_override {
            let note = format!(
                "revision {} applied during a change freeze: Freeze-Override: {why}",
                short(&record.revision)
            );
            self.event(EventType::Warning, Reason::FreezeOverridden, note)
                .await;
        }
    }

    /// The `RenderWarning` condition, set while the applied revision's
    /// render warns; an Event when it is first set or changes.
    async fn render_warnings(&self, warnings: &[String], status: &mut AppStatus) {
        if warnings.is_empty() {
            status.clear_condition(ConditionType::RenderWarning);
            return;
        }
        let message = format!(
            "{}; `lookup` renders nothing without a cluster and random values change with every render: set them in values instead",
            warnings.join("; ")
        );
        let changed = status
            .condition(ConditionType::RenderWarning)
            .is_none_or(|c| c.message != message);
        status.set_condition(
            ConditionType::RenderWarning,
            ConditionStatus::True,
            Reason::NondeterministicTemplate,
            &message,
            self.now,
        );
        if changed {
            self.event(
                EventType::Warning,
                Reason::NondeterministicTemplate,
                message,
            )
            .await;
        }
    }

    async fn sync_failed(&self, record: SyncRecord, reason: Reason, status: &mut AppStatus) {
        use ConditionType::{Ready, Reconciling, Stalled};
        self.record(&record);
        self.ctx.metrics.sync(record.result, record.duration_ms);
        let message = record.error.clone().unwrap_or_default();
        log::warn(
            "sync failed",
            json!({"app": record.app, "revision": record.revision, "reason": reason,
                   "error": message}),
        );
        status.last_attempted_revision = Some(record.revision.clone());
        status.set_condition(Ready, ConditionStatus::False, reason, &message, self.now);
        status.clear_condition(Reconciling);
        if record.result == RecordResult::Blocked {
            status.set_condition(Stalled, ConditionStatus::True, reason, &message, self.now);
        }
        self.history(status, &record, record.result, &message);
        self.event(EventType::Warning, reason, message).await;
    }

    async fn unhealthy(&self, record: SyncRecord, status: &mut AppStatus) {
        use ConditionType::{Ready, Reconciling, Stalled};
        self.record(&record);
        let message = record.error.clone().unwrap_or_default();
        log::warn("unhealthy", json!({"app": record.app, "error": message}));
        let reason = Reason::HealthCheckFailed;
        status.set_condition(Ready, ConditionStatus::False, reason, &message, self.now);
        status.set_condition(Stalled, ConditionStatus::True, reason, &message, self.now);
        status.clear_condition(Reconciling);
        self.history(status, &record, record.result, &message);
        self.event(EventType::Warning, reason, message).await;
    }

    /// Drift corrected (every entry `corrected`), not corrected (the
    /// record failed), or reported only.
    async fn drift(&self, record: SyncRecord, described: String, status: &mut AppStatus) {
        let key = &record.app;
        let corrected = !record.drift.is_empty() && record.drift.iter().all(|d| d.corrected);
        self.record(&record);
        let (result, reason, note) = match (record.result, corrected) {
            (RecordResult::Succeeded, true) => {
                log::info("drift corrected", json!({"app": key, "drift": described}));
                let note = format!("put back: {described}");
                (RecordResult::Corrected, Reason::DriftCorrected, note)
            }
            (RecordResult::Succeeded, false) => {
                log::warn("drift detected", json!({"app": key, "drift": described}));
                let message = format!("drift: warn; not corrected: {described}");
                let reason = Reason::DriftDetected;
                status.set_condition(
                    ConditionType::Drifted,
                    ConditionStatus::True,
                    reason,
                    &message,
                    self.now,
                );
                (RecordResult::Warned, reason, described.clone())
            }
            (result, _) => {
                let error = record.error.clone().unwrap_or_default();
                log::warn(
                    "drift not corrected",
                    json!({"app": key, "drift": described, "error": error}),
                );
                let note = format!("{described}: {error}");
                (result, Reason::DriftNotCorrected, note)
            }
        };
        self.ctx.metrics.drift(result);
        self.history(status, &record, result, &described);
        self.event(EventType::Warning, reason, note).await;
    }

    fn history(
        &self,
        status: &mut AppStatus,
        record: &SyncRecord,
        result: RecordResult,
        message: &str,
    ) {
        status.push_history(SyncSummary {
            kind: record.kind.to_string(),
            revision: record.revision.clone(),
            time: self.now.to_string(),
            result: result.to_string(),
            message: message.to_string(),
            duration_ms: record.duration_ms,
        });
    }

    fn record(&self, record: &SyncRecord) {
        if let Err(e) = self.ctx.audit.append(&self.ctx.store, record) {
            log::error(
                "sync record not stored",
                json!({"app": record.app, "error": e}),
            );
        }
    }

    async fn event(&self, type_: EventType, reason: Reason, note: String) {
        let note = airgate_core::text::cut(&note, 1000);
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
                json!({"app": super::key(self.app), "reason": reason,
                       "error": e.to_string()}),
            );
        }
    }
}

/// Seconds since the epoch, now.
pub fn epoch_seconds() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

/// The first 12 characters of a commit id.
pub fn short(rev: &str) -> &str {
    &rev[..rev.len().min(12)]
}

/// A record of `kind` for the App, `revision`, now: the fields every
/// record has; the rest default.
pub fn record(app: &str, kind: RecordKind, revision: &str, started_at: i64) -> SyncRecord {
    SyncRecord {
        app: app.to_string(),
        kind,
        revision: revision.to_string(),
        started_at,
        ..SyncRecord::default()
    }
}

#[cfg(test)]
mod tests {
    use airgate_core::status::{ConditionType, Reason, RecordKind, RecordResult};

    /// The docs had drifted from the code: every condition, reason, record
    /// kind and result is named in the README, in backquotes.
    #[test]
    fn the_readme_names_every_condition_reason_record_kind_and_result() {
        let readme = include_str!("../../../README.md");
        let words = ConditionType::ALL
            .iter()
            .map(|w| w.as_str())
            .chain(Reason::ALL.iter().map(|w| w.as_str()))
            .chain(RecordKind::ALL.iter().map(|w| w.as_str()))
            .chain(RecordResult::ALL.iter().map(|w| w.as_str()));
        let missing: Vec<&str> = words
            .filter(|w| !readme.contains(&format!("`{w}`")))
            .collect();
        assert!(missing.is_empty(), "the README does not name {missing:?}");
    }
}
