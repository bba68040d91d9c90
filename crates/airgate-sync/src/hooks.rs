//! Helm hooks, mapped onto the staged apply (Argo CD maps them by its own
//! rules, wrongly for some: argo-cd#7536; this is the mapping, documented
//! in the README's Helm section):
//!
//! - `pre-install` / `pre-upgrade`: after the first stage (CRDs and
//!   Namespaces), before anything else is written. A sync is an install
//!   when the App has applied nothing yet, an upgrade otherwise.
//! - `post-install` / `post-upgrade`: once every object the sync applied
//!   is healthy (within the App's timeout).
//! - Hooks for other events (`test`, `pre-delete`, `post-delete`,
//!   `pre-rollback`, `post-rollback`): not applied.
//!
//! Each hook runs in `helm.sh/hook-weight` order (then by name), applied
//! as the App (with its ownership mark, never in its inventory: hooks are
//! not part of what is pruned), and waited on until healthy (a Job until
//! Complete). `helm.sh/hook-delete-policy`: `before-hook-creation` (the
//! default) deletes the previous run's object first, `hook-succeeded` and
//! `hook-failed` delete it after. A hook that fails, or is not done within
//! the timeout, fails the sync naming it and the Job's reason, and nothing
//! after it is applied.

use std::time::{Duration, Instant};

use airgate_core::chart::{HookStage, hook_delete, hook_stage, hook_weight};
use airgate_core::health::Health;
use airgate_core::inventory::Inventory;
use airgate_core::object::ObjectRef;
use airgate_kube::{Applier, ApplyError, ChangeSet};
use airgate_render::Manifest;

const HOOK: &str = "helm.sh/hook";
const DELETE_POLICY: &str = "helm.sh/hook-delete-policy";
const WEIGHT: &str = "helm.sh/hook-weight";
/// How often a hook (or the health before post hooks) is looked at.
const POLL: Duration = Duration::from_millis(500);

fn annotation<'a>(m: &'a Manifest, key: &str) -> Option<&'a str> {
    m.value["metadata"]["annotations"][key].as_str()
}

/// A Helm App's objects split by when they are applied.
#[derive(Debug, Default)]
pub(crate) struct Split<'a> {
    /// Applied by the staged apply.
    pub main: Vec<&'a Manifest>,
    /// Between the first stage and the second, in order.
    pub before: Vec<&'a Manifest>,
    /// After the applied objects are healthy, in order.
    pub after: Vec<&'a Manifest>,
}

/// Splits `manifests` (see the module docs); `install`: the App has
/// applied nothing yet.
pub(crate) fn split(manifests: &[Manifest], install: bool) -> Split<'_> {
    let mut out = Split::default();
    for m in manifests {
        match hook_stage(annotation(m, HOOK), install) {
            HookStage::None => out.main.push(m),
            HookStage::Before => out.before.push(m),
            HookStage::After => out.after.push(m),
            HookStage::Skipped => {}
        }
    }
    let order = |m: &&Manifest| {
        (
            hook_weight(annotation(m, WEIGHT)),
            m.value["kind"].as_str().unwrap_or_default().to_string(),
            m.value["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    out.before.sort_by_key(order);
    out.after.sort_by_key(order);
    out
}

/// [`split`] for a Helm App (an install when `previous` is empty); for
/// any other App, every object is applied by the staged apply.
pub(crate) fn split_for<'a>(
    spec: &crate::SyncSpec,
    manifests: &'a [Manifest],
    previous: &Inventory,
) -> Split<'a> {
    match &spec.helm {
        Some(_) => split(manifests, previous.entries.is_empty()),
        None => Split {
            main: manifests.iter().collect(),
            ..Default::default()
        },
    }
}

/// Runs `hooks` in order (see the module docs); the changes they made.
pub(crate) async fn run(
    applier: &Applier,
    hooks: &[&Manifest],
    timeout: Duration,
) -> Result<ChangeSet, ApplyError> {
    let mut changes = ChangeSet::default();
    for hook in hooks {
        let reference = ObjectRef::from_object(&hook.value, &hook.origin())
            .map_err(|e| ApplyError::Object(e.to_string()))?;
        let shown = reference.to_string();
        let policy = hook_delete(annotation(hook, DELETE_POLICY));
        if policy.before_creation {
            changes
                .changes
                .extend(delete(applier, &reference).await?.changes);
        }
        let applied = applier.apply(&[(hook.origin(), &hook.value)]).await?;
        let applied_ref = applied
            .changes
            .first()
            .map(|c| c.object.clone())
            .unwrap_or(reference);
        changes.changes.extend(applied.changes);
        let failed = wait(applier, std::slice::from_ref(&applied_ref), timeout)
            .await
            .err();
        if (failed.is_none() && policy.on_success) || (failed.is_some() && policy.on_failure) {
            changes
                .changes
                .extend(delete(applier, &applied_ref).await?.changes);
        }
        if let Some(message) = failed {
            // Not `after(changes)`: hooks are not in the inventory.
            return Err(ApplyError::Hook {
                hook: shown,
                message,
            });
        }
    }
    Ok(changes)
}

/// Deletes a hook's object from an earlier run, when it carries the App's
/// mark, and waits until it is gone (a Job's name is reused).
async fn delete(applier: &Applier, reference: &ObjectRef) -> Result<ChangeSet, ApplyError> {
    let deleted = applier
        .prune(std::slice::from_ref(reference), &Inventory::default())
        .await?;
    let started = Instant::now();
    while deleted
        .changes
        .iter()
        .any(|c| c.action == airgate_kube::Action::Deleted)
        && applier.live(reference).await?.is_some()
    {
        if started.elapsed() > Duration::from_secs(60) {
            return Err(ApplyError::Hook {
                hook: reference.to_string(),
                message: "its object from an earlier run was not gone within 60s".into(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(deleted)
}

/// Waits until every one of `objects` is healthy; the reason when one
/// fails or the timeout passes.
pub(crate) async fn wait(
    applier: &Applier,
    objects: &[ObjectRef],
    timeout: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let healths = applier
            .health_of(objects)
            .await
            .map_err(|e| e.to_string())?;
        let mut waiting = None;
        for (o, h) in objects.iter().zip(&healths) {
            match h {
                Health::Ready => {}
                Health::Failed(reason) => return Err(format!("{o}: {reason}")),
                Health::Progressing(reason) => waiting = waiting.or(Some((o, reason))),
            }
        }
        let Some((o, reason)) = waiting else {
            return Ok(());
        };
        if started.elapsed() > timeout {
            return Err(format!(
                "not done within {}s: {o}: {reason}",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(name: &str, hook: Option<&str>, weight: Option<&str>) -> Manifest {
        let mut annotations = serde_json::Map::new();
        if let Some(h) = hook {
            annotations.insert(HOOK.into(), json!(h));
        }
        if let Some(w) = weight {
            annotations.insert(WEIGHT.into(), json!(w));
        }
        Manifest {
            source: "chart".into(),
            index: 1,
            value: json!({"apiVersion": "batch/v1", "kind": "Job",
                          "metadata": {"name": name, "annotations": annotations}}),
        }
    }

    #[test]
    fn hooks_are_split_by_event_and_ordered_by_weight_then_name() {
        let manifests = [
            manifest("app", None, None),
            manifest("migrate-b", Some("pre-upgrade"), Some("5")),
            manifest("migrate-a", Some("pre-install,pre-upgrade"), Some("5")),
            manifest("backup", Some("pre-upgrade"), Some("-1")),
            manifest("smoke", Some("post-upgrade,post-install"), None),
            manifest("test", Some("test"), None),
            manifest("cleanup", Some("pre-delete"), None),
        ];
        let names = |v: &[&Manifest]| -> Vec<String> {
            v.iter()
                .map(|m| {
                    m.value["metadata"]["name"]
                        .as_str()
                        .unwrap_or("")
                        .to_string()
                })
                .collect()
        };
        let upgrade = split(&manifests, false);
        assert_eq!(names(&upgrade.main), ["app"]);
        assert_eq!(names(&upgrade.before), ["backup", "migrate-a", "migrate-b"]);
        assert_eq!(names(&upgrade.after), ["smoke"]);
        let install = split(&manifests, true);
        assert_eq!(names(&install.before), ["migrate-a"]);
        assert_eq!(names(&install.after), ["smoke"]);
    }
}
