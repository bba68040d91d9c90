//! Commit trust for a sync: the revision's signatures checked in the App's
//! (whole-history) mirror before anything of it is rendered or applied.
//! The rules are `airgate_core::trust`'s, the signature checks
//! `airgate_git::trust`'s; this is where they meet the Syncer.

use airgate_core::trust::{CommitTrust, TrustPolicy, judge};
use airgate_git::Commit;
use airgate_git::trust::Signers;

use crate::{SyncError, SyncSpec, Syncer};

/// `spec.source.verify`, checked.
#[derive(Clone, Debug)]
pub struct Verify {
    pub policy: TrustPolicy,
    /// The ConfigMap of allowed signers, in the App's namespace.
    pub config_map: String,
}

/// What commit trust accepted.
#[derive(Clone, Debug)]
pub struct Verification {
    /// The revision verified (the commit applied).
    pub revision: String,
    /// Where the range started: the last applied revision, if any.
    pub from: Option<String>,
    /// Each commit verified, the applied one first.
    pub trust: Vec<CommitTrust>,
    /// The distinct signers, by principal.
    pub signers: Vec<String>,
    pub signers_digest: String,
}

impl Syncer {
    /// Commit trust: verifies `commit` (the tag that named it, for a tag)
    /// and, in history mode, every commit since `from` (the last applied
    /// revision), against `signers`; fails closed with
    /// [`SyncError::Unverified`] naming each problem.
    pub async fn verify(
        &self,
        spec: &SyncSpec,
        commit: &Commit,
        from: Option<&str>,
        signers: Signers,
    ) -> Result<Verification, SyncError> {
        let Some(verify) = spec.verify.clone() else {
            return Err(SyncError::Internal(
                "verify called for an App that does not ask for it".into(),
            ));
        };
        let mirror = self.mirror_for(spec);
        let url = spec.url.clone();
        let head = commit.tag.clone().unwrap_or_else(|| commit.id.clone());
        let (revision, from) = (commit.id.clone(), from.map(str::to_string));
        tokio::task::spawn_blocking(move || {
            let now = airgate_git::trust::now();
            let verified =
                mirror.verify(&url, &head, from.as_deref(), &verify.policy, &signers, now)?;
            let trust: Vec<CommitTrust> = verified.all().cloned().collect();
            match judge(&verify.policy, &verified.head, &verified.range) {
                Ok(verdict) => Ok(Verification {
                    revision,
                    from,
                    trust,
                    signers: verdict.signers.into_iter().collect(),
                    signers_digest: signers.digest.clone(),
                }),
                Err(refusal) => Err(SyncError::Unverified {
                    revision,
                    refusal,
                    trust,
                }),
            }
        })
        .await
        .map_err(|e| SyncError::Internal(e.to_string()))?
    }
}
