//! The inventory: every object an App applied, so that pruning deletes only
//! what the App itself created and has since left Git, never anything else.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::object::ObjectRef;

/// Objects opt out of pruning with this annotation set to `disabled`.
pub const PRUNE_ANNOTATION: &str = "airgate.dev/prune";
/// Helm's way of saying the same (`keep`), honoured so a chart's objects
/// Helm would never delete are not pruned either.
pub const HELM_RESOURCE_POLICY: &str = "helm.sh/resource-policy";

/// Whether an object with these annotations opted out of pruning.
pub fn kept<'a>(mut annotation: impl FnMut(&str) -> Option<&'a str>) -> bool {
    annotation(PRUNE_ANNOTATION) == Some("disabled")
        || annotation(HELM_RESOURCE_POLICY) == Some("keep")
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub entries: BTreeSet<ObjectRef>,
}

impl Inventory {
    pub fn new(entries: impl IntoIterator<Item = ObjectRef>) -> Inventory {
        Inventory {
            entries: entries.into_iter().collect(),
        }
    }

    /// What this inventory holds and `desired` does not: the prune candidates.
    /// Cluster definitions (CRDs, Namespaces) come last, so what lives in
    /// them is deleted first.
    pub fn stale(&self, desired: &Inventory) -> Vec<ObjectRef> {
        let mut out: Vec<ObjectRef> = self.entries.difference(&desired.entries).cloned().collect();
        out.sort_by_key(|r| r.is_cluster_definition());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_opt_out_of_pruning_the_airgate_way_or_helms() {
        let table = [
            (vec![("airgate.dev/prune", "disabled")], true),
            (vec![("helm.sh/resource-policy", "keep")], true),
            (vec![("airgate.dev/prune", "enabled")], false),
            (vec![("helm.sh/resource-policy", "delete")], false),
            (vec![], false),
        ];
        for (annotations, want) in table {
            let got = kept(|k| annotations.iter().find(|(a, _)| *a == k).map(|(_, v)| *v));
            assert_eq!(got, want, "{annotations:?}");
        }
    }

    fn r(kind: &str, ns: Option<&str>, name: &str) -> ObjectRef {
        ObjectRef {
            api_version: if kind == "Deployment" {
                "apps/v1"
            } else {
                "v1"
            }
            .to_string(),
            kind: kind.to_string(),
            namespace: ns.map(String::from),
            name: name.to_string(),
        }
    }

    #[test]
    fn stale_objects_are_what_left_the_desired_set_namespaces_last() {
        let old = Inventory::new([
            r("Namespace", None, "old"),
            r("Deployment", Some("old"), "web"),
            r("ConfigMap", Some("shop"), "keep"),
        ]);
        let new = Inventory::new([r("ConfigMap", Some("shop"), "keep")]);
        let stale: Vec<String> = old.stale(&new).iter().map(|o| o.to_string()).collect();
        assert_eq!(stale, ["Deployment/old/web", "Namespace/old"]);
        assert!(new.stale(&old).is_empty());
    }
}
