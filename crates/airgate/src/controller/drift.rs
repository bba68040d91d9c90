//! Watch-based drift detection.
//!
//! After a sync, each App gets metadata-only watches on exactly what it
//! applied: one per (kind, namespace) of its inventory, selected by the App
//! labels, sent as the App's ServiceAccount. So the controller never lists
//! kinds it does not manage, and needs no read rights of its own on them.
//! An event whose `managedFields` show a field airgate applied now owned by
//! someone else (see `airgate_core::drift`) is queued on the App and
//! triggers a reconcile pass; so is the deletion of an applied object.
//! Events older than airgate's own last write are ignored. With nothing
//! changing, the watches are silent: no polling, no dry-runs.
//!
//! The same watches drive health: an event on an object still on its way to
//! Ready (a status update is an event too) triggers a pass that reads it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use airgate_core::drift::{self, Drifted};
use airgate_core::inventory::Inventory;
use airgate_core::object::ObjectRef;
use airgate_kube::app::App;
use airgate_sync::AppSpec as SyncSpec;
use anyhow::Result;
use futures_util::StreamExt;
use kube::api::{ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::discovery::Scope;
use kube::runtime::reflector::{ObjectRef as AppRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{Context, log};

/// One watch: a kind in a namespace (or cluster-wide for cluster kinds).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Target {
    api_version: String,
    kind: String,
    namespace: Option<String>,
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
    let mut resources: HashMap<(String, String), (ApiResource, Scope)> = HashMap::new();
    let mut targets = BTreeSet::new();
    for o in &inventory.entries {
        let k = (o.api_version.clone(), o.kind.clone());
        if !resources.contains_key(&k) {
            let (ar, caps) = applier.resource(o).await?;
            resources.insert(k.clone(), (ar, caps.scope));
        }
        let namespaced = resources
            .get(&k)
            .is_some_and(|(_, s)| *s == Scope::Namespaced);
        targets.insert(Target {
            api_version: o.api_version.clone(),
            kind: o.kind.clone(),
            namespace: if namespaced {
                o.namespace.clone()
            } else {
                None
            },
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
    for target in &targets {
        let Some((ar, _)) = resources.get(&(target.api_version.clone(), target.kind.clone()))
        else {
            continue;
        };
        let api: Api<PartialObjectMeta<DynamicObject>> = match &target.namespace {
            Some(ns) => Api::namespaced_with(applier.client(), ns, ar),
            None => Api::all_with(applier.client(), ar),
        };
        let config = watcher::Config::default().labels(&spec.selector());
        let ctx = ctx.clone();
        let (app, target) = (spec.app.clone(), target.clone());
        set.tasks.push(tokio::spawn(async move {
            let mut events = watcher::watcher(api, config).default_backoff().boxed();
            let mut reported_error = false;
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::Apply(m) | watcher::Event::InitApply(m)) => {
                        changed(&ctx, &app, &target, &m);
                        reported_error = false;
                    }
                    Ok(watcher::Event::Delete(m)) => deleted(&ctx, &app, &target, &m),
                    Ok(_) => {}
                    Err(e) => {
                        if !reported_error {
                            log::warn(
                                "drift watch failing",
                                json!({"app": app, "kind": target.kind,
                                       "namespace": target.namespace, "error": e.to_string()}),
                            );
                            reported_error = true;
                        }
                    }
                }
            }
        }));
    }
    set.targets = targets;
    Ok(())
}

fn object(target: &Target, m: &PartialObjectMeta<DynamicObject>) -> ObjectRef {
    ObjectRef {
        api_version: target.api_version.clone(),
        kind: target.kind.clone(),
        namespace: m.namespace(),
        name: m.name_any(),
    }
}

fn app_ref(app: &str) -> AppRef<App> {
    let (ns, name) = app.split_once('/').unwrap_or(("", app));
    AppRef::new(name).within(ns)
}

fn queue(ctx: &Context, app: &str, object: ObjectRef, drifted: Drifted) {
    ctx.with_state(app, |s| {
        s.drift.retain(|(o, _)| *o != object);
        s.drift.push((object, drifted));
    });
    let _ = ctx.trigger.send(app_ref(app));
}

fn changed(ctx: &Context, app: &str, target: &Target, m: &PartialObjectMeta<DynamicObject>) {
    let object = object(target, m);
    let rv: Option<u64> = m
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok());
    let manager = ctx.syncer.field_manager();
    let (found, progressing) = ctx.with_state(app, |s| {
        let progressing = s
            .health
            .as_ref()
            .is_some_and(|h| h.pending.contains(&object));
        (drift_in(s, &object, rv, m, manager), progressing)
    });
    if let Some(drifted) = found {
        queue(ctx, app, object, drifted);
    } else if progressing {
        let _ = ctx.trigger.send(app_ref(app));
    }
}

/// Drift in `object` as an event at `rv` shows it, if any.
fn drift_in(
    s: &mut super::reconcile::AppState,
    object: &ObjectRef,
    rv: Option<u64>,
    m: &PartialObjectMeta<DynamicObject>,
    manager: &str,
) -> Option<Drifted> {
    if s.syncing || s.suspended {
        return None;
    }
    let baseline = s.expected.get_mut(object)?;
    if let (Some(seen), Some(ours)) = (rv, baseline.resource_version)
        && seen <= ours
    {
        return None;
    }
    let managed = serde_json::to_value(&m.metadata.managed_fields).unwrap_or_default();
    let owners = drift::owners(&managed);
    let drifted = drift::detect(&baseline.fields, &owners, manager)?;
    // From now on, compare with what airgate still owns: one report per
    // change, not one per later event.
    baseline.fields = drift::applied_fields(&owners, manager);
    baseline.resource_version = rv;
    Some(drifted)
}

fn deleted(ctx: &Context, app: &str, target: &Target, m: &PartialObjectMeta<DynamicObject>) {
    let object = object(target, m);
    let ours = ctx.with_state(app, |s| {
        !s.syncing && !s.suspended && s.expected.remove(&object).is_some()
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
        let live: BTreeSet<String> = apps
            .state()
            .iter()
            .map(|a| super::reconcile::key(a))
            .collect();
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
