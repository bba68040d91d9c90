//! The controller's decisions, as pure functions of what it knows.
//!
//! Nothing here reads the cluster, Git or the clock: the pass
//! ([`super::reconcile`]) gathers the facts, asks, and acts. Every branch
//! has a row in a table test below.

use std::time::{Duration, Instant};

use airgate_core::health::Health;
use airgate_core::object::ObjectRef;
use airgate_kube::ApplyError;
use airgate_sync::SyncError;

/// How many corrections of one object within [`CONTEST_WINDOW`] mean that
/// something else keeps undoing them.
pub const CONTEST_CORRECTIONS: usize = 3;
pub const CONTEST_WINDOW: Duration = Duration::from_secs(60);

/// What an App's generation and `airgate.dev/requested-at` say is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    /// The spec changed since the last pass of this process (or there was
    /// none): a sync is due whatever the commit.
    pub spec_changed: bool,
    /// `requested-at` has a value not acted on yet: fetch now, and try
    /// again what failed for good.
    pub asked: bool,
    /// Git is to be looked at now.
    pub fetch: bool,
}

/// What is due, from the generation this process last acted on, the App's
/// generation now, the requested-at value acted on and the one now, and
/// when a fetch was planned.
pub fn due(
    observed: Option<i64>,
    generation: Option<i64>,
    requested_before: Option<&str>,
    requested: Option<&str>,
    next_fetch: Option<Instant>,
    now: Instant,
) -> Due {
    let spec_changed = observed != generation;
    let asked = requested.is_some() && requested != requested_before;
    Due {
        spec_changed,
        asked,
        fetch: spec_changed || asked || next_fetch.is_none_or(|t| t <= now),
    }
}

/// Whether a fetched `commit` needs a sync: the spec changed, or it is not
/// what this process last applied (or this process has applied nothing,
/// and so has no drift baselines), unless it failed for good already.
pub fn needs_sync(
    spec_changed: bool,
    synced: bool,
    last_applied: Option<&str>,
    failed: Option<&str>,
    commit: &str,
) -> bool {
    spec_changed || (last_applied != Some(commit) || !synced) && failed != Some(commit)
}

/// Whether a failed sync cannot succeed again without a change in Git or
/// the spec: a render error, a policy violation, an invalid object. A
/// dry-run the cluster may answer otherwise later (a webhook down, a 403
/// until someone grants a RoleBinding, an overloaded API server), and an
/// object another App still owns, may pass.
pub fn is_permanent(error: &SyncError) -> bool {
    match error {
        SyncError::Render { .. } | SyncError::Policy(_) | SyncError::Unverified { .. } => true,
        SyncError::Apply(e) => match e.cause() {
            ApplyError::DryRun { retryable, .. } => !retryable,
            // A failed hook (a migration Job) is not run again and again:
            // it waits for a new commit or spec, or a request.
            ApplyError::Object(_) | ApplyError::UnknownKind { .. } | ApplyError::Hook { .. } => {
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// How long after the `failures`-th failure in a row a sync that may pass
/// is tried again: 5 s, doubling, at most `interval`.
pub fn retry_backoff(failures: u32, interval: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    Duration::from_secs(5)
        .saturating_mul(1u32 << exponent)
        .min(interval)
}

/// Whether corrections at `times` were undone too often to try again.
pub fn contested(times: &[Instant], now: Instant) -> bool {
    times
        .iter()
        .filter(|t| now.duration_since(**t) < CONTEST_WINDOW)
        .count()
        >= CONTEST_CORRECTIONS
}

/// Whether a pass starts from the status this controller last wrote (at
/// resourceVersion `written`) rather than the one on the App it was handed
/// (at `seen`): only when the App is older than that write. A status
/// computed from a stale App and written back once undid a sync's
/// `lastAppliedRevision` and history, and the App said Ready at the
/// revision before.
pub fn start_from_written(seen: Option<u64>, written: Option<u64>) -> bool {
    matches!((seen, written), (Some(seen), Some(written)) if seen < written)
}

/// What the health of the objects waited for says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every one is Ready.
    Healthy,
    /// One failed: it, described.
    Failed(String),
    /// The timeout passed: the first one not Ready, described.
    TimedOut(String),
    /// Still waiting for `pending`; the first one, described.
    Waiting {
        pending: Vec<ObjectRef>,
        first: String,
    },
}

/// The verdict on `results` (each object waited for, with its health now).
pub fn verdict(results: Vec<(ObjectRef, Health)>, timed_out: bool) -> Verdict {
    let describe = |o: &ObjectRef, h: &Health| match h {
        Health::Progressing(r) | Health::Failed(r) => format!("{o}: {r}"),
        Health::Ready => format!("{o}: ready"),
    };
    if let Some((o, h)) = results.iter().find(|(_, h)| matches!(h, Health::Failed(_))) {
        return Verdict::Failed(describe(o, h));
    }
    let pending: Vec<(ObjectRef, Health)> = results
        .into_iter()
        .filter(|(_, h)| *h != Health::Ready)
        .collect();
    let Some((o, h)) = pending.first() else {
        return Verdict::Healthy;
    };
    let first = describe(o, h);
    if timed_out {
        return Verdict::TimedOut(first);
    }
    Verdict::Waiting {
        pending: pending.into_iter().map(|(o, _)| o).collect(),
        first,
    }
}

/// What commit trust does with a fetched revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustStep {
    /// Nothing: the revision is not new and the signers did not change
    /// (or it is a revision that is neither applied nor due).
    Skip,
    /// The applied revision, accepted under these very signers: it holds.
    Holds,
    /// Verify, over the range from this revision (none: the first time).
    Check { from: Option<String> },
}

/// Whether `commit` needs verifying: before every sync (`sync_due`), from
/// the applied revision; otherwise only when the signers' digest changed
/// since the applied revision was accepted (`accepted`: its revision, the
/// range it was accepted from, and the digest), over that same range.
pub fn trust_step(
    sync_due: bool,
    commit: &str,
    applied: Option<&str>,
    accepted: Option<(&str, Option<&str>, &str)>,
    digest: &str,
) -> TrustStep {
    if sync_due {
        return TrustStep::Check {
            from: applied.map(str::to_string),
        };
    }
    if applied != Some(commit) {
        return TrustStep::Skip;
    }
    match accepted {
        Some((revision, _, d)) if revision == commit && d == digest => TrustStep::Holds,
        Some((revision, from, _)) if revision == commit => TrustStep::Check {
            from: from.map(str::to_string),
        },
        // Applied before verification was asked for, or by another
        // revision's acceptance: check the revision by itself.
        _ => TrustStep::Check { from: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_commit_trust_checks() {
        let check = |from: Option<&str>| TrustStep::Check {
            from: from.map(str::to_string),
        };
        let cases = [
            (
                "a new revision, from the applied one",
                true,
                "b",
                Some("a"),
                Some(("a", None, "d1")),
                "d1",
                check(Some("a")),
            ),
            ("the first sync", true, "a", None, None, "d1", check(None)),
            (
                "nothing new, same signers",
                false,
                "a",
                Some("a"),
                Some(("a", Some("z"), "d1")),
                "d1",
                TrustStep::Holds,
            ),
            (
                "signers changed: same range again",
                false,
                "a",
                Some("a"),
                Some(("a", Some("z"), "d1")),
                "d2",
                check(Some("z")),
            ),
            (
                "verification asked for after the apply",
                false,
                "a",
                Some("a"),
                None,
                "d1",
                check(None),
            ),
            (
                "a refused revision, not due",
                false,
                "b",
                Some("a"),
                Some(("a", None, "d1")),
                "d2",
                TrustStep::Skip,
            ),
        ];
        for (name, due, commit, applied, accepted, digest, want) in cases {
            assert_eq!(
                trust_step(due, commit, applied, accepted, digest),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn what_is_due() {
        let now = Instant::now();
        let past = now.checked_sub(Duration::from_secs(1));
        let later = Some(now + Duration::from_secs(30));
        #[rustfmt::skip]
        let table = [
            // observed, generation, requested before, now, next fetch -> spec changed, asked, fetch
            ("a new process", None, Some(1), None, None, None, (true, false, true)),
            ("nothing changed, fetch later", Some(1), Some(1), None, None, later, (false, false, false)),
            ("the interval passed", Some(1), Some(1), None, None, past, (false, false, true)),
            ("the spec changed", Some(1), Some(2), None, None, later, (true, false, true)),
            ("asked by hand", Some(1), Some(1), None, Some("t1"), later, (false, true, true)),
            ("asked again, same value", Some(1), Some(1), Some("t1"), Some("t1"), later, (false, false, false)),
            ("asked again, new value", Some(1), Some(1), Some("t1"), Some("t2"), later, (false, true, true)),
            ("the annotation removed", Some(1), Some(1), Some("t1"), None, later, (false, false, false)),
        ];
        for (case, observed, generation, before, requested, next, (spec, asked, fetch)) in table {
            let got = due(observed, generation, before, requested, next, now);
            assert_eq!(
                got,
                Due {
                    spec_changed: spec,
                    asked,
                    fetch
                },
                "{case}"
            );
        }
    }

    #[test]
    fn when_a_fetched_commit_needs_a_sync() {
        #[rustfmt::skip]
        let table = [
            // spec changed, synced, last applied, failed for good -> sync
            ("a new commit", false, true, Some("a"), None, true),
            ("the same commit", false, true, Some("b"), None, false),
            ("the same commit, nothing synced by this process", false, false, Some("b"), None, true),
            ("the commit failed for good", false, true, Some("a"), Some("b"), false),
            ("it failed for good, but the spec changed", true, true, Some("a"), Some("b"), true),
            ("another commit failed for good", false, true, Some("a"), Some("c"), true),
        ];
        for (case, spec_changed, synced, last, failed, want) in table {
            assert_eq!(
                needs_sync(spec_changed, synced, last, failed, "b"),
                want,
                "{case}"
            );
        }
    }

    #[test]
    fn failures_that_may_pass_are_retried_with_backoff_and_the_rest_wait_for_a_change() {
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
                SyncError::Apply(ApplyError::Ownership(vec!["x".into()])),
                false,
            ),
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
    fn a_pass_handed_an_app_older_than_its_own_write_starts_from_that_write() {
        for (seen, written, want) in [
            (Some(10), None, false),
            (Some(10), Some(12), true),
            (Some(12), Some(12), false),
            (Some(15), Some(12), false),
            (None, Some(12), false),
        ] {
            assert_eq!(
                start_from_written(seen, written),
                want,
                "{seen:?} {written:?}"
            );
        }
    }

    #[test]
    fn the_health_verdict() {
        let o = |name: &str| ObjectRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: Some("shop".into()),
            name: name.into(),
        };
        let waiting = Health::Progressing("0 of 1 updated".into());
        let failed = Health::Failed("BackoffLimitExceeded".into());
        let table = [
            ("nothing waited for", vec![], false, Verdict::Healthy),
            (
                "all Ready",
                vec![(o("a"), Health::Ready)],
                true,
                Verdict::Healthy,
            ),
            (
                "one on its way",
                vec![(o("a"), Health::Ready), (o("b"), waiting.clone())],
                false,
                Verdict::Waiting {
                    pending: vec![o("b")],
                    first: "Deployment/shop/b: 0 of 1 updated".into(),
                },
            ),
            (
                "on its way past the timeout",
                vec![(o("b"), waiting.clone())],
                true,
                Verdict::TimedOut("Deployment/shop/b: 0 of 1 updated".into()),
            ),
            (
                "a failure wins over waiting",
                vec![(o("a"), waiting.clone()), (o("c"), failed)],
                false,
                Verdict::Failed("Deployment/shop/c: BackoffLimitExceeded".into()),
            ),
        ];
        for (case, results, timed_out, want) in table {
            assert_eq!(verdict(results, timed_out), want, "{case}");
        }
    }
}
