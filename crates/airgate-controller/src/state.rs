//! What the controller knows of each App between passes.
//!
//! Two writers share an [`AppState`], each on its own fields: the
//! reconciler (one pass at a time per App) owns what it decided (the
//! inventory, the drift baselines, what is due, the health it waits for);
//! the watches ([`super::drift`]) write only what they observed (queued
//! drift, health seen in events, which watches are live, which objects
//! carry the App's mark). Every access goes through `Context::with_state`,
//! under one lock, and never across an await.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use airgate_core::drift::Drifted;
use airgate_core::health::Health;
use airgate_core::inventory::Inventory;
use airgate_core::object::ObjectRef;

use super::drift;

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
    pub fn after(change: &airgate_kube::Change) -> Baseline {
        Baseline {
            fields: change.owned.clone(),
            resource_version: written(change),
        }
    }
}

/// The resourceVersion an apply left.
pub fn written(change: &airgate_kube::Change) -> Option<u64> {
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
    pub fn new(timeout: Duration, pending: Vec<ObjectRef>) -> HealthWait {
        HealthWait {
            deadline: Instant::now() + timeout,
            pending,
            checked: None,
            reported_at: None,
        }
    }

    /// How long until health may be looked at again (zero: now).
    pub fn spacing_left(&self) -> Duration {
        self.checked
            .map(|(t, read)| {
                let spacing = if read { HEALTH_SPACING } else { WATCH_SPACING };
                spacing.saturating_sub(t.elapsed())
            })
            .unwrap_or_default()
    }

    /// Whether the progress message is due for a rewrite; if so, it counts
    /// as written now.
    pub fn report_due(&mut self) -> bool {
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
    /// The last `airgate.dev/requested-at` value acted on.
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
    pub fn until_fetch(&self, interval: Duration) -> Duration {
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

#[cfg(test)]
mod tests {
    use super::*;

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
