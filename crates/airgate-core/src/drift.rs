//! Drift: a field airgate applied has been changed by someone else.
//!
//! Server-side apply records, per field manager, the set of fields it owns
//! (`managedFields[].fieldsV1`). When another manager changes a field that
//! airgate owns (`kubectl edit`, `scale`, `set image`, a forced apply),
//! ownership of that field moves to it. So drift needs no diff of values and
//! no dry-run: compare the fields airgate owned right after its apply with the
//! fields it owns now, and name the managers that hold the ones it lost.
//! Fields airgate never owned (status, annotations another
//! controller adds) are not drift.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One entry of `metadata.managedFields`, reduced to what drift needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldOwner {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// Set for entries of a subresource (`status`, `scale`).
    pub subresource: Option<String>,
    /// The leaf fields owned, as paths (see [`leaf_paths`]).
    pub fields: BTreeSet<String>,
}

/// What changed under airgate's feet in one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Drifted {
    /// Fields airgate owned after its apply and owns no longer.
    pub fields: Vec<String>,
    /// The managers that now own them (sorted, unique); `unknown` when none
    /// does (the field was removed).
    pub managers: Vec<String>,
}

/// Every leaf of a `fieldsV1` tree as a `.`-joined path of its keys
/// (`f:spec.f:replicas`, `f:spec.f:template.f:spec.f:containers.k:{"name":"web"}.f:image`).
/// A key whose value is an empty object and that has children elsewhere is
/// still a leaf if it has none: `.` means "the item itself".
pub fn leaf_paths(fields: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        match v.as_object() {
            Some(map) if !map.is_empty() => {
                for (k, child) in map {
                    if k == "." {
                        out.insert(prefix.to_string());
                        continue;
                    }
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(child, &path, out);
                }
            }
            _ => {
                if !prefix.is_empty() {
                    out.insert(prefix.to_string());
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(fields, "", &mut out);
    out
}

/// The owners recorded in an object's `metadata.managedFields` (as JSON).
pub fn owners(managed_fields: &Value) -> Vec<FieldOwner> {
    managed_fields
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| FieldOwner {
                    manager: e
                        .get("manager")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    operation: e
                        .get("operation")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    subresource: e
                        .get("subresource")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(String::from),
                    fields: e.get("fieldsV1").map(leaf_paths).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The fields `manager` owns through apply on the object itself.
pub fn applied_fields(owners: &[FieldOwner], manager: &str) -> BTreeSet<String> {
    owners
        .iter()
        .filter(|o| o.manager == manager && o.operation == "Apply" && o.subresource.is_none())
        .flat_map(|o| o.fields.iter().cloned())
        .collect()
}

/// Compares what `manager` owned after its apply (`expected`) with the
/// object's owners now. `None` when nothing it owned has been taken.
pub fn detect(expected: &BTreeSet<String>, now: &[FieldOwner], manager: &str) -> Option<Drifted> {
    let current = applied_fields(now, manager);
    let lost: Vec<String> = expected.difference(&current).cloned().collect();
    if lost.is_empty() {
        return None;
    }
    let mut managers: Vec<String> = now
        .iter()
        .filter(|o| o.manager != manager || o.operation != "Apply")
        .filter(|o| lost.iter().any(|f| o.fields.contains(f)))
        .map(|o| {
            if o.manager.is_empty() {
                "unknown".to_string()
            } else {
                o.manager.clone()
            }
        })
        .collect();
    managers.sort();
    managers.dedup();
    if managers.is_empty() {
        // Nobody holds them: a field airgate set was removed outright, or the
        // object was replaced. Still drift.
        managers.push("unknown".to_string());
    }
    Some(Drifted {
        fields: lost,
        managers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment_fields() -> Value {
        json!({"f:metadata": {"f:labels": {"f:app": {}}},
               "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                   "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}})
    }

    #[test]
    fn leaf_paths_name_every_owned_field_and_list_items_themselves() {
        let paths = leaf_paths(&deployment_fields());
        assert!(paths.contains("f:spec.f:replicas"));
        assert!(paths.contains("f:spec.f:template.f:spec.f:containers.k:{\"name\":\"web\"}"));
        assert!(
            paths.contains("f:spec.f:template.f:spec.f:containers.k:{\"name\":\"web\"}.f:image")
        );
        assert_eq!(paths.len(), 5);
    }

    #[test]
    fn a_scale_by_kubectl_is_drift_named_after_its_manager() {
        let before = owners(&json!([
            {"manager": "airgate", "operation": "Apply", "fieldsV1": deployment_fields()}
        ]));
        let expected = applied_fields(&before, "airgate");
        let mut without_replicas = deployment_fields();
        if let Some(spec) = without_replicas
            .get_mut("f:spec")
            .and_then(Value::as_object_mut)
        {
            spec.remove("f:replicas");
        }
        let after = owners(&json!([
            {"manager": "airgate", "operation": "Apply", "fieldsV1": without_replicas},
            {"manager": "kubectl-scale", "operation": "Update", "subresource": "scale",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}}
        ]));
        let drift = detect(&expected, &after, "airgate");
        assert_eq!(
            drift,
            Some(Drifted {
                fields: vec!["f:spec.f:replicas".to_string()],
                managers: vec!["kubectl-scale".to_string()]
            })
        );
    }

    #[test]
    fn another_controller_adding_its_own_fields_is_not_drift() {
        let owners_now = owners(&json!([
            {"manager": "airgate", "operation": "Apply", "fieldsV1": deployment_fields()},
            {"manager": "kube-controller-manager", "operation": "Update",
             "fieldsV1": {"f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}}}},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
             "fieldsV1": {"f:status": {"f:replicas": {}}}}
        ]));
        let expected = leaf_paths(&deployment_fields());
        assert_eq!(detect(&expected, &owners_now, "airgate"), None);
    }

    #[test]
    fn a_field_removed_outright_is_drift_by_an_unknown_manager() {
        let expected = leaf_paths(&deployment_fields());
        let now = owners(&json!([
            {"manager": "airgate", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
        ]));
        let drift = detect(&expected, &now, "airgate");
        assert_eq!(drift.map(|d| d.managers), Some(vec!["unknown".to_string()]));
    }
}
