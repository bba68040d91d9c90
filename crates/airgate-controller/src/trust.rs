//! Commit trust in a reconcile pass: the gate between a fetch and a sync.
//!
//! With `spec.source.verify`, a fetched revision is synced only after its
//! signatures meet the App's policy ([`airgate_sync::Syncer::verify`]);
//! otherwise nothing of it is applied, the cluster keeps the last verified
//! revision, and the refusal is reported once (condition, Event, record)
//! until Git or the signers change.
//!
//! The signers ConfigMap is read at every fetch, so an edit takes effect
//! without a restart: a changed ConfigMap re-checks the applied revision
//! (over the same range it was first verified on) and any refused one.

use airgate_core::status::{ConditionStatus, ConditionType, Reason, RecordKind, RecordResult};
use airgate_git::Commit;
use airgate_kube::app::{AppStatus, SourceVerification};
use airgate_sync::{SyncError, SyncSpec, Verification};

use super::decide::{self, TrustStep};
use super::outcome::{self, Outcome, Reporter, epoch_seconds, short};
use super::{Context, spec};

/// Whether the pass may go on to sync.
pub enum Gate {
    /// Go on; with what was verified when the revision is new.
    Open(Option<Verification>),
    /// Stop: refused (and reported), or refused before with the same signers.
    Closed,
}

/// Verifies `commit` when the App asks for it and something changed
/// (`sync_due`: a sync is about to run; or the signers changed).
pub async fn gate(
    ctx: &Context,
    reporter: &Reporter<'_>,
    spec: &SyncSpec,
    commit: &Commit,
    sync_due: bool,
    status: &mut AppStatus,
) -> Gate {
    if spec.verify.is_none() {
        return Gate::Open(None);
    }
    let app = reporter.app;
    let signers = match spec::signers(&ctx.syncer, app, spec).await {
        Ok(s) => s,
        Err(message) => {
            let marker = (commit.id.clone(), format!("unreadable: {message}"));
            if refused_before(ctx, spec, &marker) {
                return Gate::Closed;
            }
            let record = refusal_record(spec, commit, RecordResult::Failed, message, Vec::new());
            reporter
                .report(refused(record, status, reporter.now), status)
                .await;
            return Gate::Closed;
        }
    };
    let digest = signers.digest.clone();
    let applied = status.last_applied_revision.clone();
    let prior = status.verified.clone();
    let accepted = prior.as_ref().map(|p| {
        (
            p.revision.as_str(),
            p.from.as_deref(),
            p.signers_digest.as_str(),
        )
    });
    let from = match decide::trust_step(sync_due, &commit.id, applied.as_deref(), accepted, &digest)
    {
        TrustStep::Skip => return Gate::Open(None),
        TrustStep::Holds => {
            // Back at the accepted revision after a refused one (the bad
            // commit was taken out of Git): it still holds.
            if let Some(p) = &prior {
                verified(reporter, p, status);
            }
            return Gate::Open(None);
        }
        TrustStep::Check { from } => from,
    };
    let marker = (commit.id.clone(), digest);
    if refused_before(ctx, spec, &marker) {
        return Gate::Closed;
    }
    match ctx
        .syncer
        .verify(spec, commit, from.as_deref(), signers)
        .await
    {
        Ok(v) => {
            ctx.with_state(&spec.app, |s| s.owned.refused = None);
            if !sync_due {
                let s = summary(&v);
                verified(reporter, &s, status);
                status.verified = Some(s);
            }
            Gate::Open(sync_due.then_some(v))
        }
        Err(error) => {
            ctx.with_state(&spec.app, |s| s.owned.refused = Some(marker));
            refuse(reporter, spec, commit, error, applied.as_deref(), status).await;
            Gate::Closed
        }
    }
}

/// Reports a refusal: record, Event, `SourceVerified=False`, Stalled.
async fn refuse(
    reporter: &Reporter<'_>,
    spec: &SyncSpec,
    commit: &Commit,
    error: SyncError,
    applied: Option<&str>,
    status: &mut AppStatus,
) {
    let (message, trust) = match &error {
        SyncError::Unverified { trust, .. } => (error.to_string(), trust.clone()),
        other => (other.to_string(), Vec::new()),
    };
    let kept = applied
        .map(|r| format!("; the cluster keeps revision {}", short(r)))
        .unwrap_or_default();
    let record = refusal_record(
        spec,
        commit,
        RecordResult::Blocked,
        format!("{message}{kept}"),
        trust,
    );
    reporter
        .report(refused(record, status, reporter.now), status)
        .await;
}

/// After a sync of a verified revision: the record keeps what was
/// verified, and the status says who signed.
pub fn attach(
    reporter: &Reporter<'_>,
    v: &Verification,
    outcome: &mut Outcome,
    status: &mut AppStatus,
) {
    match outcome {
        Outcome::Synced { record, .. } => {
            record.trust = v.trust.clone();
            let summary = summary(v);
            verified(reporter, &summary, status);
            status.verified = Some(summary);
        }
        Outcome::SyncFailed { record, .. } => record.trust = v.trust.clone(),
        _ => {}
    }
}

fn refused_before(ctx: &Context, spec: &SyncSpec, marker: &(String, String)) -> bool {
    ctx.with_state(&spec.app, |s| s.owned.refused.as_ref() == Some(marker))
}

fn refusal_record(
    spec: &SyncSpec,
    commit: &Commit,
    result: RecordResult,
    error: String,
    trust: Vec<airgate_core::trust::CommitTrust>,
) -> airgate_store::SyncRecord {
    let mut record = outcome::record(&spec.app, RecordKind::Sync, &commit.id, epoch_seconds());
    record.author = person(&commit.author);
    record.committer = person(&commit.committer);
    record.message = commit.message.clone();
    record.result = result;
    record.error = Some(error);
    record.trust = trust;
    record
}

fn person(s: &airgate_git::Signature) -> airgate_store::Person {
    airgate_store::Person {
        name: s.name.clone(),
        email: s.email.clone(),
    }
}

fn refused(record: airgate_store::SyncRecord, status: &mut AppStatus, now: &str) -> Outcome {
    let message = record.error.clone().unwrap_or_default();
    status.set_condition(
        ConditionType::SourceVerified,
        ConditionStatus::False,
        Reason::VerificationFailed,
        &message,
        now,
    );
    Outcome::SyncFailed {
        record,
        reason: Reason::VerificationFailed,
    }
}

/// What `status.verified` keeps of a verification.
pub fn summary(v: &Verification) -> SourceVerification {
    let head = v.trust.first();
    let signers = v
        .signers
        .iter()
        .map(|p| {
            let key = v
                .trust
                .iter()
                .filter_map(|c| c.signer.as_ref())
                .find(|s| s.principal.eq_ignore_ascii_case(p));
            match key {
                Some(k) => format!("{p} ({} {})", k.key_type, k.fingerprint),
                None => p.clone(),
            }
        })
        .collect();
    SourceVerification {
        revision: v.revision.clone(),
        from: v.from.clone(),
        signers_digest: v.signers_digest.clone(),
        signers,
        trailers: head
            .map(|h| {
                h.trailers
                    .iter()
                    .flat_map(|(k, vs)| vs.iter().map(move |x| format!("{k}: {x}")))
                    .collect()
            })
            .unwrap_or_default(),
        commits: v.trust.len() as u64,
    }
}

/// Sets `SourceVerified=True` for what was verified.
pub fn verified(reporter: &Reporter<'_>, s: &SourceVerification, status: &mut AppStatus) {
    let mut message = format!(
        "revision {}: {} commit(s) verified, signed by {}",
        short(&s.revision),
        s.commits,
        s.signers.join(", ")
    );
    if !s.trailers.is_empty() {
        message.push_str(&format!("; {}", s.trailers.join("; ")));
    }
    status.set_condition(
        ConditionType::SourceVerified,
        ConditionStatus::True,
        Reason::Verified,
        &message,
        reporter.now,
    );
}
