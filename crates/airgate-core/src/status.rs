//! The words an App's status, its records, its Events and the docs share.
//!
//! Conditions, their reasons, record kinds and results were string
//! literals scattered through the controller, and the docs had drifted
//! from them. Each is an enum here; the strings they become are fixed by
//! `as_str` (and serde, for records, whose JSON stays byte for byte what it
//! was, so existing hash chains still verify). `ALL` lists every variant,
//! so a test can check that the README names each one.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! words {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)*
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The word as status, records and Events spell it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

words! {
    /// The conditions of an App's status (kstatus: `Ready`, with
    /// `Reconciling` and `Stalled` as abnormal-true conditions).
    ConditionType {
        /// The last revision is applied and every object is healthy.
        Ready = "Ready",
        /// Work is under way: a sync, or waiting for health.
        Reconciling = "Reconciling",
        /// It will not get better by itself: a new commit or spec is needed.
        Stalled = "Stalled",
        /// Someone else changed what airgate applied.
        Drifted = "Drifted",
        /// The revision's signatures meet `spec.source.verify` (set only when
        /// the App asks for verification).
        SourceVerified = "SourceVerified",
        /// The render succeeded, but a chart template's output is not a
        /// function of the chart and its values (`lookup`, `rand*`): what
        /// is applied may not be what `helm install` would do, or may
        /// change with every render.
        RenderWarning = "RenderWarning",
        /// A change freeze is in force: new revisions wait for its end.
        Frozen = "Frozen",
    }
}

words! {
    /// A condition's status.
    ConditionStatus {
        True = "True",
        False = "False",
        Unknown = "Unknown",
    }
}

words! {
    /// Why a condition is what it is; also the reason of the Event that
    /// reports it.
    Reason {
        /// Applied, and every object is Ready.
        Succeeded = "Succeeded",
        /// Applied; objects are on their way to Ready.
        Progressing = "Progressing",
        /// An object was not Ready within the App's timeout.
        HealthCheckFailed = "HealthCheckFailed",
        /// Git could not be fetched or read.
        SourceFailed = "SourceFailed",
        /// The render failed (YAML, kustomize, or a kustomization refused).
        RenderFailed = "RenderFailed",
        /// An image is from outside the allowed registries, or not pinned.
        PolicyViolation = "PolicyViolation",
        /// The server-side dry-run refused an object.
        DryRunFailed = "DryRunFailed",
        /// An object exists and belongs to another App, or to no App.
        OwnershipConflict = "OwnershipConflict",
        /// The apply itself failed.
        ApplyFailed = "ApplyFailed",
        /// The App's spec is not valid.
        InvalidSpec = "InvalidSpec",
        /// `spec.suspend` is true.
        Suspended = "Suspended",
        /// Something in airgate failed.
        InternalError = "InternalError",
        /// Drift found, and corrected (`drift: correct`).
        DriftCorrected = "DriftCorrected",
        /// Drift found, and reported only (`drift: warn`).
        DriftDetected = "DriftDetected",
        /// Drift could not be corrected.
        DriftNotCorrected = "DriftNotCorrected",
        /// A revision was applied (an Event; the condition says Progressing
        /// or Succeeded).
        Synced = "Synced",
        /// A correction kept being undone: not tried again until the next sync.
        CorrectionUndone = "CorrectionUndone",
        /// Every commit verified carries the signatures and trailers
        /// `spec.source.verify` asks for.
        Verified = "Verified",
        /// A commit is unsigned, signed by a key not allowed, revoked or
        /// expired; too few distinct signers; or a required trailer is
        /// missing. Nothing of the revision is applied.
        VerificationFailed = "VerificationFailed",
        /// The audit log does not verify, or does not extend its last
        /// published checkpoint: nothing is applied until it does.
        AuditLogRefused = "AuditLogRefused",
        /// An image has no import signed by a key `requireImportedBy`
        /// names (or its imports could not be read): nothing is applied.
        ImageNotImported = "ImageNotImported",
        /// A chart template calls `lookup` (it renders nothing without a
        /// cluster) or draws random values (they change with every render).
        NondeterministicTemplate = "NondeterministicTemplate",
        /// A Helm hook failed or was not done in time: nothing after it
        /// was applied.
        HookFailed = "HookFailed",
        /// A change freeze window is in force (the `Frozen` condition).
        FreezeWindow = "FreezeWindow",
        /// A commit with `Freeze-Override` was applied during a freeze.
        FreezeOverridden = "FreezeOverridden",
    }
}

words! {
    /// What a record, and an entry of `status.history`, is about.
    #[derive(Default)]
    RecordKind {
        #[default]
        Sync = "sync",
        Drift = "drift",
        Health = "health",
        /// An import (`bundle push`) the controller met when it deployed
        /// one of its images; its id is what sync records name.
        Import = "import",
    }
}

words! {
    /// How it ended.
    #[derive(Default)]
    RecordResult {
        #[default]
        Succeeded = "succeeded",
        /// Failed for a reason that may pass: tried again.
        Failed = "failed",
        /// Failed for a reason that cannot pass by itself.
        Blocked = "blocked",
        /// Applied, not healthy within the timeout.
        Unhealthy = "unhealthy",
        /// Drift corrected.
        Corrected = "corrected",
        /// Drift reported, not corrected.
        Warned = "warned",
        /// A correction kept being undone.
        Contested = "contested",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_spell_kinds_and_results_as_before() -> Result<(), serde_json::Error> {
        assert_eq!(serde_json::to_string(&RecordKind::Sync)?, "\"sync\"");
        assert_eq!(
            serde_json::to_string(&RecordResult::Blocked)?,
            "\"blocked\""
        );
        let back: RecordResult = serde_json::from_str("\"unhealthy\"")?;
        assert_eq!(back, RecordResult::Unhealthy);
        for r in Reason::ALL {
            let json = serde_json::to_string(r)?;
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
        Ok(())
    }
}
