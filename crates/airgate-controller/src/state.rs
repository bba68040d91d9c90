//! What the controller knows of each App between passes.
//!
//! An [`AppState`] has two parts with one writer each: [`Owned`], what the
//! reconciler (one pass at a time per App) decided (the inventory, the
//! drift baselines as of airgate's own writes, what is due, the health it
//! waits for); and [`Observed`], what the watches ([`super::drift`]) saw
//! (queued drift, health in events, which watches are live, which objects
//! carry the App's mark, which baselines they have moved past). Each reads
//! the other; the reconciler only takes the drift queue. Every access goes
//! through `Context::with_state`, under one lock, never across an await.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use airgate_core::drift::Drifted;
use airgate_core::health::Health;
use airgate_core::inventory::Inventory;
use airgate_core::object::ObjectRef;
use airgate_kube::app::AppStatus;

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
    /// The object's health as the apply's answer showed it (at
    /// `resource_version`): a watch has nothing newer until its next event.
    pub answer: Option<Health>,
}

impl Baseline {
    /// What an apply left.
    pub fn after(change: &airgate_kube::Change) -> Baseline {
        Baseline {
            fields: change.owned.clone(),
            resource_version: written(change),
            answer: change.health.clone(),
        }
    }
}

/// The resourceVersion an apply left.
pub fn written(change: &airgate_kube::Change) -> Option<u64> {
    change.resource_version.as_deref()?.parse().ok()
}

/// Which watch sees an object: its kind, and its namespace for namespaced
/// kinds (an inventory entry of a cluster kind has no namespace).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchKey {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
}

impl WatchKey {
    pub fn of(o: &ObjectRef) -> WatchKey {
        WatchKey {
            api_version: o.api_version.clone(),
            kind: o.kind.clone(),
            namespace: o.namespace.clone(),
        }
    }
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
    pub owned: Owned,
    pub observed: Observed,
}

/// What the reconciler decided; only it writes these.
#[derive(Debug, Default)]
pub struct Owned {
    /// A sync has run in this process (so `expected` is filled).
    pub synced: bool,
    pub observed_generation: Option<i64>,
    pub last_applied: Option<String>,
    /// A revision that failed for a reason that retrying cannot fix
    /// (render, policy, dry-run): not tried again until Git or the spec moves.
    pub failed: Option<String>,
    /// A revision commit trust refused, with the signers' digest it was
    /// refused under: not reported again until either changes.
    pub refused: Option<(String, String)>,
    pub inventory: Inventory,
    /// What airgate owned in each object after its own last write.
    pub expected: HashMap<ObjectRef, Baseline>,
    pub next_fetch: Option<Instant>,
    pub health: Option<HealthWait>,
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
    /// The status this controller last wrote, and the App's resourceVersion
    /// after that write: a pass handed an older App (the watch has not
    /// caught up with airgate's own write) starts from this, not from the
    /// stale status, which it would otherwise write back.
    pub written: Option<(u64, AppStatus)>,
}

/// What the watches saw; only they write these (the reconciler takes the
/// drift queue).
#[derive(Debug, Default)]
pub struct Observed {
    /// Drift found, not yet handled.
    pub drift: Vec<(ObjectRef, Drifted)>,
    /// Health of the objects of whole-object watches, from their events.
    pub seen: HashMap<ObjectRef, Seen>,
    /// Whole-object watches that have listed and are running: an object of
    /// theirs with no event since its last [`Seen`] has not changed since.
    pub live: BTreeSet<WatchKey>,
    /// Objects whose last event, on a watch running since, showed this
    /// App's ownership mark and labels: a sync need not read who owns them.
    pub marked: HashSet<ObjectRef>,
    /// What airgate still owned in an object when a watch last reported
    /// drift in it: the next report compares with this, not with the
    /// baseline of airgate's write (one report per change).
    pub reported: HashMap<ObjectRef, Baseline>,
    /// Objects reported deleted (once), until they are seen again.
    pub gone: HashSet<ObjectRef>,
}

impl Owned {
    /// How long until Git is due to be looked at again (`interval` when no
    /// fetch is planned).
    pub fn until_fetch(&self, interval: Duration) -> Duration {
        self.next_fetch
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(interval)
    }
}

impl AppState {
    /// `o`'s health as its watch knows it, without a read: when the watch
    /// carries whole objects, is live, and has shown `o` at or after
    /// airgate's own last write of it (or nothing since, and the apply's
    /// answer said). `None`: it has to be read.
    pub fn watched(&self, o: &ObjectRef) -> Option<Health> {
        let seen = &self.observed;
        if !seen.live.contains(&WatchKey::of(o)) || seen.gone.contains(o) {
            return None;
        }
        let base = self.owned.expected.get(o)?;
        let written = base.resource_version?;
        match seen.seen.get(o) {
            Some(s) if s.resource_version >= written => Some(s.health.clone()),
            _ => base.answer.clone(),
        }
    }
}

impl Observed {
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

    /// What a watch's (re)list or failure leaves unknown: what it showed
    /// of `key`.
    pub fn forget(&mut self, key: &WatchKey) {
        self.live.remove(key);
        self.marked.retain(|o| WatchKey::of(o) != *key);
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

    /// airgate wrote `o` at resourceVersion 10; the apply answered `answer`.
    fn written_at_10(o: &ObjectRef, answer: Option<Health>) -> AppState {
        let mut s = AppState::default();
        s.owned.expected.insert(
            o.clone(),
            Baseline {
                fields: BTreeSet::new(),
                resource_version: Some(10),
                answer,
            },
        );
        s
    }

    #[test]
    fn health_is_read_until_a_live_watch_has_shown_airgates_own_write() {
        let o = deployment();
        let mut s = written_at_10(&o, None);
        s.observed.saw(&o, 12, Health::Ready);
        // Not live (not yet listed, or failing): it could have missed events.
        assert_eq!(s.watched(&o), None);
        s.observed.live.insert(WatchKey::of(&o));
        assert_eq!(s.watched(&o), Some(Health::Ready));
        // Shown only before airgate's write: the watch has not caught up.
        let mut s = written_at_10(&o, None);
        s.observed.live.insert(WatchKey::of(&o));
        s.observed.saw(&o, 9, Health::Ready);
        assert_eq!(s.watched(&o), None);
        s.observed.saw(&o, 10, progressing());
        assert_eq!(s.watched(&o), Some(progressing()));
        // Nothing since the write: the apply's answer holds.
        let mut s = written_at_10(&o, Some(progressing()));
        s.observed.live.insert(WatchKey::of(&o));
        assert_eq!(s.watched(&o), Some(progressing()));
        s.observed.saw(&o, 11, Health::Ready);
        assert_eq!(s.watched(&o), Some(Health::Ready));
        // Reported deleted: read it.
        s.observed.gone.insert(o.clone());
        assert_eq!(s.watched(&o), None);
    }

    #[test]
    fn an_older_event_never_overrides_a_newer_verdict_and_only_a_moved_verdict_wakes() {
        let o = deployment();
        let mut s = Observed::default();
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
