//! What a sync of one revision would change, without changing anything
//! (`airgate diff --live`): the render, the policy verdict, and each
//! object dry-run as the App's ServiceAccount against what is live.

use airgate_core::inventory::Inventory;
use airgate_core::object::ObjectRef;
use airgate_core::policy::Violation;
use airgate_git::Commit;
use airgate_kube::Preview;
use serde_json::Value;

use super::{SyncError, SyncSpec, Syncer, hooks, images};

/// A sync, previewed.
#[derive(Debug)]
pub struct SyncPreview {
    pub commit: Commit,
    /// Each object the apply would write, live and dry-run.
    pub objects: Vec<Preview>,
    /// What the sync would prune: in `previous`, not rendered any more
    /// (empty when the App does not prune).
    pub pruned: Vec<ObjectRef>,
    /// What the policy gate would refuse: with any, the sync applies
    /// nothing.
    pub violations: Vec<Violation>,
    /// Helm hooks the sync would run (not previewed: they are run, not
    /// applied over what is there).
    pub hooks: Vec<ObjectRef>,
}

impl Syncer {
    /// The sync of `commit` previewed (see the module docs). Guarantees:
    /// nothing is written; every request to the cluster is the App's
    /// ServiceAccount's, as a sync's would be.
    pub async fn preview(
        &self,
        spec: &SyncSpec,
        commit: Commit,
        previous: &Inventory,
    ) -> Result<SyncPreview, SyncError> {
        let manifests = self.render(spec, &commit.id).await?;
        let violations = spec.policy.check(&images(spec, &commit.id, &manifests)?);
        let split = hooks::split_for(spec, &manifests, previous);
        let objects: Vec<(String, &Value)> =
            split.main.iter().map(|m| (m.origin(), &m.value)).collect();
        let objects = self.applier(spec)?.preview(&objects).await?;
        let pruned = if spec.prune {
            previous.stale(&Inventory::new(objects.iter().map(|p| p.object.clone())))
        } else {
            Vec::new()
        };
        let hooks = split
            .before
            .iter()
            .chain(&split.after)
            .filter_map(|m| ObjectRef::from_object(&m.value, &m.origin()).ok())
            .collect();
        Ok(SyncPreview {
            commit,
            objects,
            pruned,
            violations,
            hooks,
        })
    }
}
