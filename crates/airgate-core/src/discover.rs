//! Finding the images a set of manifests needs.
//!
//! A pod spec is recognised by its shape (an object with a `containers`
//! array), wherever it sits: in a Pod, in every workload's pod template
//! (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob,
//! ReplicationController) and in any custom resource that embeds one. Its
//! `containers`, `initContainers` and `ephemeralContainers` are read. Rules add
//! other places (see [`crate::rule`]). A value that is not an image reference
//! is an error naming the source, object and field: airgate does not guess.

use serde::Serialize;
use serde_json::Value;

use crate::reference::{ImageRef, ReferenceError};
use crate::rule::{Rule, join_key};

/// The container lists of a pod spec.
pub const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// One parsed manifest document and where it came from.
#[derive(Clone, Copy, Debug)]
pub struct Document<'a> {
    /// A file path, or a description such as `DIR (kustomize build)`.
    pub source: &'a str,
    /// 1-based position of the document in its source.
    pub index: usize,
    pub value: &'a Value,
}

/// An image found in a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Found {
    /// The normalised reference.
    pub image: ImageRef,
    /// The reference as written in the manifest.
    pub written: String,
    pub source: String,
    pub document: usize,
    /// `Kind/namespace/name` or `Kind/name`.
    pub object: String,
    /// Concrete field path, e.g. `spec.template.spec.containers[0].image`.
    pub field: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{origin} (document {document}): {object} {field}: {error}")]
pub struct DiscoverError {
    /// The file (or rendered directory) the document came from.
    pub origin: String,
    pub document: usize,
    pub object: String,
    pub field: String,
    pub error: ReferenceError,
}

/// `Kind/namespace/name` (namespaced) or `Kind/name`.
pub fn object_label(obj: &Value) -> String {
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("<no kind>");
    let meta = obj.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("<no name>");
    match meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
    {
        Some(ns) => format!("{kind}/{ns}/{name}"),
        None => format!("{kind}/{name}"),
    }
}

/// Every image in `doc`: pod specs anywhere in it, plus what `rules` point at.
/// `List` objects are opened and their items read.
pub fn images_in(doc: Document<'_>, rules: &[Rule]) -> Result<Vec<Found>, Box<DiscoverError>> {
    let mut found = Vec::new();
    let fail = |object: String, field: String, error: ReferenceError| {
        Box::new(DiscoverError {
            origin: doc.source.to_string(),
            document: doc.index,
            object,
            field,
            error,
        })
    };
    let objects: Vec<(String, &Value)> = match doc.value.get("items") {
        Some(Value::Array(items)) if is_list_kind(doc.value) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("items[{i}]."), v))
            .collect(),
        Some(other) if is_list_kind(doc.value) && !other.is_null() => {
            return Err(fail(
                object_label(doc.value),
                "items".to_string(),
                not_a("a list of objects", other),
            ));
        }
        _ => vec![(String::new(), doc.value)],
    };
    for (prefix, obj) in objects {
        let object = object_label(obj);
        if !obj.is_object() {
            let field = prefix.trim_end_matches('.').to_string();
            return Err(fail(object, field, not_a("an object", obj)));
        }
        if let Some((field, value)) = misshapen_containers(obj) {
            let field = format!("{prefix}{field}");
            return Err(fail(object, field, not_a("a list of containers", value)));
        }
        let mut push = |field: String, value: &Value| -> Result<(), Box<DiscoverError>> {
            let field = format!("{prefix}{field}");
            let Some(written) = value.as_str() else {
                return Err(fail(object.clone(), field, not_a("a string", value)));
            };
            let image = ImageRef::parse(written)
                .map_err(|error| fail(object.clone(), field.clone(), error))?;
            found.push(Found {
                image,
                written: written.to_string(),
                source: doc.source.to_string(),
                document: doc.index,
                object: object.clone(),
                field,
            });
            Ok(())
        };
        let mut pod_images = Vec::new();
        walk_pod_specs(obj, String::new(), &mut pod_images);
        for (field, value) in pod_images {
            push(field, value)?;
        }
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
        for rule in rules.iter().filter(|r| r.matches_kind(kind)) {
            for (field, value) in rule.path.resolve(obj) {
                if !value.is_null() {
                    push(field, value)?;
                }
            }
        }
    }
    Ok(found)
}

/// What kind of YAML/JSON value `v` is, in words ("a list", "a mapping").
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// An error for a value of the wrong type, quoting a short form of it.
fn not_a(expected: &str, found: &Value) -> ReferenceError {
    let kind = kind_of(found);
    ReferenceError {
        input: crate::text::cut(&found.to_string(), 80),
        reason: format!("expected {expected}, found {kind}"),
    }
}

/// Where the pod spec of a built-in kind keeps its containers, if its
/// container lists are there but are not lists: a manifest that would yield
/// no images without complaint.
fn misshapen_containers(obj: &Value) -> Option<(String, &Value)> {
    let kind = obj.get("kind").and_then(Value::as_str)?;
    let spec = match kind {
        "Pod" => "spec",
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => "spec.template.spec",
        "CronJob" => "spec.jobTemplate.spec.template.spec",
        _ => return None,
    };
    let mut at = obj;
    for key in spec.split('.') {
        at = at.get(key)?;
    }
    CONTAINER_LISTS.iter().find_map(|list| {
        at.get(*list)
            .filter(|v| !v.is_array() && !v.is_null())
            .map(|v| (format!("{spec}.{list}"), v))
    })
}

fn is_list_kind(v: &Value) -> bool {
    v.get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || k.ends_with("List"))
}

/// Collects `(path, image value)` of every container of every pod spec under `v`.
fn walk_pod_specs<'v>(v: &'v Value, path: String, out: &mut Vec<(String, &'v Value)>) {
    match v {
        Value::Object(map) => {
            if map.get("containers").is_some_and(Value::is_array) {
                for list in CONTAINER_LISTS {
                    let Some(items) = map.get(list).and_then(Value::as_array) else {
                        continue;
                    };
                    for (i, c) in items.iter().enumerate() {
                        if let Some(image) = c.get("image").filter(|i| !i.is_null()) {
                            out.push((format!("{}[{i}].image", join_key(&path, list)), image));
                        }
                    }
                }
            }
            for (k, child) in map {
                if map.get("containers").is_some_and(Value::is_array)
                    && CONTAINER_LISTS.contains(&k.as_str())
                {
                    continue;
                }
                walk_pod_specs(child, join_key(&path, k), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk_pod_specs(child, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn find(v: &Value, rules: &[Rule]) -> Vec<(String, String)> {
        let doc = Document {
            source: "test.yaml",
            index: 1,
            value: v,
        };
        images_in(doc, rules)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|f| (f.field, f.image.to_string()))
            .collect()
    }

    #[test]
    fn finds_every_container_list_of_a_pod() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "image": "nginx"}],
                     "initContainers": [{"name": "i", "image": "busybox:1.36"}],
                     "ephemeralContainers": [{"name": "e", "image": "quay.io/debug/tools:v1"}]}});
        assert_eq!(
            find(&pod, &[]),
            vec![
                (
                    "spec.containers[0].image".into(),
                    "docker.io/library/nginx:latest".into()
                ),
                (
                    "spec.initContainers[0].image".into(),
                    "docker.io/library/busybox:1.36".into()
                ),
                (
                    "spec.ephemeralContainers[0].image".into(),
                    "quay.io/debug/tools:v1".into()
                ),
            ]
        );
    }

    #[test]
    fn finds_pod_templates_in_workloads_and_custom_resources() {
        let cron = json!({"kind": "CronJob", "metadata": {"name": "c", "namespace": "ns"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "x", "image": "alpine:3"}]}}}}}});
        assert_eq!(
            find(&cron, &[]),
            vec![(
                "spec.jobTemplate.spec.template.spec.containers[0].image".into(),
                "docker.io/library/alpine:3".into()
            )]
        );
        let custom = json!({"apiVersion": "example.com/v1", "kind": "Runner", "metadata": {"name": "r"},
            "spec": {"workers": {"podTemplate": {"spec": {"containers": [{"name": "w", "image": "ghcr.io/x/worker:2"}]}}}}});
        assert_eq!(
            find(&custom, &[]),
            vec![(
                "spec.workers.podTemplate.spec.containers[0].image".into(),
                "ghcr.io/x/worker:2".into()
            )]
        );
    }

    #[test]
    fn rules_find_images_in_env_values_and_crd_fields() {
        let d = json!({"kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"containers": [{"name": "x", "image": "app:1",
                "env": [{"name": "SIDECAR_IMAGE", "value": "envoy:v1"}, {"name": "OTHER", "value": "not an image"}]}]}}}});
        let rule: Rule =
            "Deployment:spec.template.spec.containers[*].env[name=SIDECAR_IMAGE].value"
                .parse()
                .unwrap_or_else(|e| panic!("{e}"));
        let found = find(&d, &[rule]);
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[1],
            (
                "spec.template.spec.containers[0].env[0].value".into(),
                "docker.io/library/envoy:v1".into()
            )
        );
        let other_kind: Rule = "StatefulSet:spec.image"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(find(&d, &[other_kind]).len(), 1);
    }

    #[test]
    fn list_items_are_opened() {
        let list = json!({"kind": "List", "items": [
            {"kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": [{"name": "a", "image": "a:1"}]}}]});
        assert_eq!(
            find(&list, &[]),
            vec![(
                "items[0].spec.containers[0].image".into(),
                "docker.io/library/a:1".into()
            )]
        );
    }

    #[test]
    fn a_bad_reference_names_source_object_and_field() {
        let d = json!({"kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"template": {"spec": {"containers": [{"name": "x", "image": "${IMAGE}"}]}}}});
        let doc = Document {
            source: "apps/web.yaml",
            index: 2,
            value: &d,
        };
        let err = images_in(doc, &[])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("apps/web.yaml (document 2): Deployment/shop/web spec.template.spec.containers[0].image:"), "{err}");
        assert!(err.contains("${IMAGE}"), "{err}");
    }

    fn error_of(v: &Value) -> String {
        let doc = Document {
            source: "apps/web.yaml",
            index: 1,
            value: v,
        };
        images_in(doc, &[])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn an_image_that_is_a_number_or_a_list_says_so_instead_of_empty() {
        for (image, found) in [(json!(12345), "a number"), (json!([1, 2]), "a list")] {
            let pod = json!({"kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "a", "image": image}]}});
            let err = error_of(&pod);
            assert!(err.contains("spec.containers[0].image"), "{err}");
            assert!(
                err.contains(&format!("expected a string, found {found}")),
                "{err}"
            );
        }
    }

    #[test]
    fn containers_given_as_a_mapping_are_an_error_naming_the_field() {
        let d = json!({"kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": {"name": "x", "image": "nginx"}}}}});
        let err = error_of(&d);
        assert!(
            err.contains("spec.template.spec.containers") && err.contains("found a mapping"),
            "{err}"
        );
    }

    #[test]
    fn a_list_whose_items_are_not_objects_is_an_error() {
        let err = error_of(&json!({"kind": "List", "items": {"a": 1}}));
        assert!(
            err.contains("items") && err.contains("found a mapping"),
            "{err}"
        );
        let err = error_of(&json!({"kind": "List", "items": [1]}));
        assert!(
            err.contains("items[0]") && err.contains("found a number"),
            "{err}"
        );
    }

    #[test]
    fn control_characters_in_images_are_escaped_and_long_ones_cut() {
        let pod = json!({"kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "image": format!("\u{1b}]0;x\u{7}{}", "a".repeat(1 << 20))}]}});
        let err = error_of(&pod);
        assert!(!err.contains('\u{1b}'), "escape printed raw");
        assert!(err.len() < 2000, "{} bytes", err.len());
    }
}
