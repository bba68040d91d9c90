//! Object references: which Kubernetes object a manifest, a change or an
//! inventory entry is about.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `apiVersion`, `kind`, namespace (for namespaced kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{what}: {missing} is missing or not a string")]
pub struct ObjectRefError {
    pub what: String,
    pub missing: &'static str,
}

impl ObjectRef {
    /// Reads the reference from an object; `what` names it in errors.
    pub fn from_object(obj: &Value, what: &str) -> Result<ObjectRef, ObjectRefError> {
        let get = |v: Option<&Value>, missing: &'static str| {
            v.and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .ok_or(ObjectRefError {
                    what: what.to_string(),
                    missing,
                })
        };
        Ok(ObjectRef {
            api_version: get(obj.get("apiVersion"), "apiVersion")?,
            kind: get(obj.get("kind"), "kind")?,
            namespace: obj
                .get("metadata")
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
                .map(String::from),
            name: get(
                obj.get("metadata").and_then(|m| m.get("name")),
                "metadata.name",
            )?,
        })
    }

    /// The API group (`""` for the core group).
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(g, _)| g)
    }

    pub fn version(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or(self.api_version.as_str(), |(_, v)| v)
    }

    /// Cluster definitions apply before everything else: CRDs and Namespaces.
    pub fn is_cluster_definition(&self) -> bool {
        (self.kind == "CustomResourceDefinition" && self.group() == "apiextensions.k8s.io")
            || (self.kind == "Namespace" && self.group().is_empty())
    }

    /// A workload starts pods: it applies after everything else of its
    /// stage, so that the ServiceAccounts, Secrets, ConfigMaps and claims
    /// its pods name exist when the first pod is made (as Flux and Helm
    /// order kinds). Only the built-in kinds are known; a custom resource
    /// that makes pods applies with the rest.
    pub fn is_workload(&self) -> bool {
        matches!(
            (self.group(), self.kind.as_str()),
            ("", "Pod" | "ReplicationController")
                | (
                    "apps",
                    "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet"
                )
                | ("batch", "Job" | "CronJob")
        )
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{ns}/{}", self.kind, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_references_and_names_what_is_missing() {
        let r = ObjectRef::from_object(
            &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"}}),
            "f.yaml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.group(), r.version()), ("apps", "v1"));
        assert_eq!(r.to_string(), "Deployment/shop/web");
        let ns = ObjectRef::from_object(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
            "x",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(ns.is_cluster_definition() && ns.group().is_empty());
        let err = ObjectRef::from_object(
            &json!({"apiVersion": "v1", "kind": "ConfigMap"}),
            "a.yaml (document 2)",
        );
        assert_eq!(
            err.err().map(|e| e.to_string()).as_deref(),
            Some("a.yaml (document 2): metadata.name is missing or not a string")
        );
    }
}
