//! Watch-based drift detection, and health that follows the watches.
//!
//! After a sync, each App gets watches on exactly what it applied: one per
//! (kind, namespace) of its inventory, selected by the App labels, sent as
//! the App's ServiceAccount. So the controller never lists kinds it does
//! not manage, and needs no read rights of its own on them. Kinds without a
//! `status` subresource (ConfigMaps, Secrets, RBAC) are watched for their
//! metadata only, so a Secret's data never reaches the controller; kinds
//! with one (Deployments, Jobs, CRDs, most custom resources) are watched
//! whole, because their status is what health is judged on.
//! An event whose `managedFields` show a field airgate applied now owned by
//! someone else (see `airgate_core::drift`) is queued on the App and
//! triggers a reconcile pass; so is the deletion of an applied object.
//! Events older than airgate's own last write are ignored. With nothing
//! changing, the watches are silent: no polling, no dry-runs.
//!
//! The same watches drive health. An event on an object still on its way to
//! Ready (a status update is an event too) triggers a pass. For kinds
//! watched whole, the event itself carries the verdict (see
//! [`Seen`](super::state::Seen)), so a rollout is followed without a
//! single read; objects of metadata-only watches are read by the pass.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use airgate_core::drift::{self, Drifted};
use airgate_core::health::Health;
use airgate_core::inventory::Inventory;
use airgate_core::object::ObjectRef;
use airgate_core::ownership;
use airgate_kube::app::App;
use airgate_sync::SyncSpec;
use anyhow::Result;
use futures_util::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::discovery::{ApiCapabilities, Scope};
use kube::runtime::reflector::{ObjectRef as AppRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use super::state::{Baseline, WatchKey};
use super::{Context, log};

/// One watch: a kind in a namespace (or cluster-wide for cluster kinds).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Target {
    key: WatchKey,
    /// Whole objects (the kind has a status), not just their metadata.
    whole: bool,
}

/// The watches of one App.
#[derive(Debug, Default)]
pub struct WatchSet {
    targets: BTreeSet<Target>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl WatchSet {
    fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

/// Makes the App's watches match its inventory (kinds and namespaces).
pub async fn watch(ctx: &Arc<Context>, spec: &SyncSpec, inventory: &Inventory) -> Result<()> {
    let applier = ctx.syncer.applier(spec)?;
    let mut resources: HashMap<(String, String), (ApiResource, ApiCapabilities)> = HashMap::new();
    let mut targets = BTreeSet::new();
    for o in &inventory.entries {
        let k = (o.api_version.clone(), o.kind.clone());
        if !resources.contains_key(&k) {
            resources.insert(k.clone(), applier.resource(o).await?);
        }
        let Some((_, caps)) = resources.get(&k) else {
            continue;
        };
        targets.insert(Target {
            key: WatchKey {
                api_version: o.api_version.clone(),
                kind: o.kind.clone(),
                namespace: if caps.scope == Scope::Namespaced {
                    o.namespace.clone()
                } else {
                    None
                },
            },
            whole: caps.subresources.iter().any(|(r, _)| r.plural == "status"),
        });
    }
    let mut watches = match ctx.watches.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let set = watches.entry(spec.app.clone()).or_default();
    if set.targets == targets {
        return Ok(());
    }
    set.stop();
    // Until a new watch has listed, no event is missing from what it saw.
    ctx.with_state(&spec.app, |s| {
        s.observed.live.clear();
        s.observed.marked.clear();
    });
    for target in &targets {
        let k = &target.key;
        let Some((ar, _)) = resources.get(&(k.api_version.clone(), k.kind.clone())) else {
            continue;
        };
        let client = applier.client();
        let config = watcher::Config::default().labels(&spec.selector());
        let (ctx, app, target) = (ctx.clone(), spec.app.clone(), target.clone());
        set.tasks.push(if target.whole {
            let events = watcher::watcher(scoped::<DynamicObject>(client, &target, ar), config);
            tokio::spawn(follow(ctx, app, target, events, |o| Some(o)))
        } else {
            // `PartialObjectMeta` makes the requests metadata-only.
            let api = scoped::<PartialObjectMeta<DynamicObject>>(client, &target, ar);
            tokio::spawn(follow(
                ctx,
                app,
                target,
                watcher::watcher(api, config),
                |_| None,
            ))
        });
    }
    set.targets = targets;
    Ok(())
}

/// The API of `target`'s kind, in its namespace or cluster-wide.
fn scoped<K>(client: kube::Client, target: &Target, ar: &ApiResource) -> Api<K>
where
    K: kube::Resource<DynamicType = ApiResource, Scope = kube::core::DynamicResourceScope>,
{
    match &target.key.namespace {
        Some(ns) => Api::namespaced_with(client, ns, ar),
        None => Api::all_with(client, ar),
    }
}

/// Handles the events of one watch until it is stopped. `whole` gives the
/// object of an event when the watch carries whole objects.
async fn follow<K>(
    ctx: Arc<Context>,
    app: String,
    target: Target,
    events: impl futures_util::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
    whole: fn(&K) -> Option<&DynamicObject>,
) where
    K: kube::Resource + Clone + std::fmt::Debug + Send + 'static,
{
    let mut events = events.default_backoff().boxed();
    let mut reported_error = false;
    let key = &target.key;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(m) | watcher::Event::InitApply(m)) => {
                let object = object(&target, m.meta());
                let health = whole(&m).map(|o| airgate_kube::judged(&object, o));
                changed(&ctx, &app, object, m.meta(), health);
                reported_error = false;
            }
            Ok(watcher::Event::Delete(m)) => deleted(&ctx, &app, object(&target, m.meta())),
            // A (re)list: what happened since the last event may be missing
            // until it is done.
            Ok(watcher::Event::Init) => {
                ctx.with_state(&app, |s| s.observed.forget(key));
            }
            Ok(watcher::Event::InitDone) => {
                if target.whole {
                    let waiting = ctx.with_state(&app, |s| {
                        s.observed.live.insert(key.clone());
                        s.owned.health.is_some()
                    });
                    // What was pending may be known now.
                    if waiting {
                        let _ = ctx.trigger.send(app_ref(&app));
                    }
                }
            }
            Err(e) => {
                ctx.with_state(&app, |s| s.observed.forget(key));
                if !reported_error {
                    log::warn(
                        "drift watch failing",
                        json!({"app": app, "kind": key.kind,
                               "namespace": key.namespace, "error": e.to_string()}),
                    );
                    reported_error = true;
                }
            }
        }
    }
}

/// Whether `m` carries `app`'s ownership mark and labels for `object`.
fn marked(app: &str, object: &ObjectRef, m: &ObjectMeta) -> bool {
    let Some((namespace, name)) = app.split_once('/') else {
        return false;
    };
    let claim = ownership::claim(
        &ownership::AppId::new(namespace, name),
        object,
        m.annotations.as_ref().unwrap_or(&Default::default()),
        m.labels.as_ref().unwrap_or(&Default::default()),
    );
    claim == ownership::Claim::Ours
}

fn object(target: &Target, m: &ObjectMeta) -> ObjectRef {
    ObjectRef {
        api_version: target.key.api_version.clone(),
        kind: target.key.kind.clone(),
        namespace: m.namespace.clone(),
        name: m.name.clone().unwrap_or_default(),
    }
}

fn app_ref(app: &str) -> AppRef<App> {
    let (ns, name) = app.split_once('/').unwrap_or(("", app));
    AppRef::new(name).within(ns)
}

fn queue(ctx: &Context, app: &str, object: ObjectRef, drifted: Drifted) {
    ctx.with_state(app, |s| {
        s.observed.drift.retain(|(o, _)| *o != object);
        s.observed.drift.push((object, drifted));
    });
    let _ = ctx.trigger.send(app_ref(app));
}

/// An object was created or changed; `health` is its verdict when the
/// watch carries whole objects.
fn changed(ctx: &Context, app: &str, object: ObjectRef, m: &ObjectMeta, health: Option<Health>) {
    let rv: Option<u64> = m.resource_version.as_deref().and_then(|v| v.parse().ok());
    let manager = ctx.syncer.field_manager();
    let ours = marked(app, &object, m);
    let (found, wake) = ctx.with_state(app, |s| {
        if ours {
            s.observed.marked.insert(object.clone());
        } else {
            s.observed.marked.remove(&object);
        }
        s.observed.gone.remove(&object);
        let progressing = s
            .owned
            .health
            .as_ref()
            .is_some_and(|h| h.pending.contains(&object));
        // A pass is worth it when a pending object's verdict may have
        // moved: always for metadata-only watches, and for whole ones
        // when it did (not on every status update of a rollout).
        let wake = match (health, rv) {
            (Some(health), Some(rv)) => s.observed.saw(&object, rv, health) && progressing,
            _ => progressing,
        };
        (drift_in(s, &object, rv, m, manager), wake)
    });
    if let Some(drifted) = found {
        queue(ctx, app, object, drifted);
    } else if wake {
        let _ = ctx.trigger.send(app_ref(app));
    }
}

/// Drift in `object` as an event at `rv` shows it, if any.
fn drift_in(
    s: &mut super::AppState,
    object: &ObjectRef,
    rv: Option<u64>,
    m: &ObjectMeta,
    manager: &str,
) -> Option<Drifted> {
    if s.owned.syncing || s.owned.suspended {
        return None;
    }
    let expected = s.owned.expected.get(object)?;
    // What this watch already reported past airgate's write, if anything.
    let baseline = match s.observed.reported.get(object) {
        Some(r) if r.resource_version >= expected.resource_version => r,
        _ => expected,
    };
    if let (Some(seen), Some(ours)) = (rv, baseline.resource_version)
        && seen <= ours
    {
        return None;
    }
    let managed = serde_json::to_value(&m.managed_fields).unwrap_or_default();
    let owners = drift::owners(&managed);
    let drifted = drift::detect(&baseline.fields, &owners, manager)?;
    // From now on, compare with what airgate still owns: one report per
    // change, not one per later event.
    let still = Baseline {
        fields: drift::applied_fields(&owners, manager),
        resource_version: rv,
        answer: None,
    };
    s.observed.reported.insert(object.clone(), still);
    Some(drifted)
}

fn deleted(ctx: &Context, app: &str, object: ObjectRef) {
    let ours = ctx.with_state(app, |s| {
        s.observed.seen.remove(&object);
        s.observed.marked.remove(&object);
        s.observed.reported.remove(&object);
        !s.owned.syncing
            && !s.owned.suspended
            && s.owned.expected.contains_key(&object)
            && s.observed.gone.insert(object.clone())
    });
    if ours {
        queue(
            ctx,
            app,
            object,
            Drifted {
                fields: Vec::new(),
                managers: vec!["unknown (deleted)".to_string()],
            },
        );
    }
}

/// Stops the watches and forgets the state of Apps that were deleted.
pub async fn forget_deleted_apps(ctx: Arc<Context>, apps: Store<App>) {
    if apps.wait_until_ready().await.is_err() {
        return;
    }
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        let live: BTreeSet<String> = apps.state().iter().map(|a| super::key(a)).collect();
        if let Ok(mut watches) = ctx.watches.lock() {
            watches.retain(|app, set| {
                let keep = live.contains(app);
                if !keep {
                    set.stop();
                }
                keep
            });
        }
        if let Ok(mut states) = ctx.apps.lock() {
            states.retain(|app, _| live.contains(app));
        }
        ctx.syncer.retain_apps(&live);
        ctx.metrics.retain(&live);
    }
}
