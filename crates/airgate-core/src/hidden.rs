//! Images named outside pod specs: the ones operators hide.
//!
//! Why: real release manifests name images where no pod spec is. An
//! operator takes `--prometheus-config-reloader=quay.io/...` as an
//! argument, a CSI driver reads `CSI_ATTACHER_IMAGE` from its env, a
//! Prometheus custom resource has `spec.image`. Carry only pod-spec images
//! and the operator fails inside the perimeter. Two ways find them:
//!
//! - **Rules, certain.** [`BUILTIN_RULES`] name the image fields of common
//!   operators' custom resources; `--rule` adds more. What a rule finds is
//!   an image as surely as a container's `image`.
//! - **A scan, possible.** Every other string value (arguments, env values,
//!   custom resource fields, ConfigMap data) is split into words, and a
//!   word that names a registry host (a dot, a port or `localhost` before
//!   the first `/`) and a tag or digest, and parses as a reference, is a
//!   possible image, reported with where it was found. Nothing is guessed
//!   into a lock unless asked (`--possible`).
//!
//! Guarantees: a possible image is never reported at a field a certain one
//! was found at; `kubectl.kubernetes.io/last-applied-configuration` (a copy
//! of the object) and `managedFields` are not scanned.

use serde_json::Value;

use crate::discover::{Document, Found, object_label};
use crate::reference::ImageRef;
use crate::rule::{Rule, join_key};

/// Image fields of custom resources whose operators run them, as rules.
pub const BUILTIN_RULES: [&str; 14] = [
    // prometheus-operator
    "Prometheus:spec.image",
    "PrometheusAgent:spec.image",
    "Alertmanager:spec.image",
    "ThanosRuler:spec.image",
    // Kubeflow's Spark operator
    "SparkApplication:spec.image",
    "SparkApplication:spec.driver.image",
    "SparkApplication:spec.executor.image",
    "ScheduledSparkApplication:spec.template.image",
    // Elastic Cloud on Kubernetes
    "Elasticsearch:spec.image",
    "Kibana:spec.image",
    "ApmServer:spec.image",
    "Beat:spec.image",
    // Strimzi
    "Kafka:spec.kafka.image",
    "KafkaConnect:spec.image",
];

/// [`BUILTIN_RULES`], parsed.
pub fn builtin_rules() -> Vec<Rule> {
    BUILTIN_RULES
        .iter()
        .filter_map(|r| r.parse().ok())
        .collect()
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Characters that end a word: none of them is in an image reference.
fn is_separator(c: char) -> bool {
    c.is_whitespace() || "\"'`,;=()[]{}<>|\\".contains(c)
}

/// The image `word` names, if it names one with a registry host and a tag
/// or digest.
pub fn image_word(word: &str) -> Option<ImageRef> {
    let word = word.trim_end_matches(['.', ':']);
    if word.contains("://") || word.starts_with('-') {
        return None;
    }
    let (host, rest) = word.split_once('/')?;
    let registry_host = host.contains('.') || host.contains(':') || host == "localhost";
    let last = rest.rsplit('/').next().unwrap_or(rest);
    let pinned = last.contains(':') || word.contains("@sha256:");
    if !registry_host || !pinned {
        return None;
    }
    ImageRef::parse(word).ok()
}

/// Every possible image in `doc` (see the module docs), skipping the
/// fields where `certain` found one.
pub fn possible_in(doc: Document<'_>, certain: &[Found]) -> Vec<Found> {
    let object = object_label(doc.value);
    let mut out = Vec::new();
    let mut strings = Vec::new();
    walk(doc.value, String::new(), &mut strings);
    for (field, text) in strings {
        if certain
            .iter()
            .any(|f| f.field == field && f.object == object && f.document == doc.index)
        {
            continue;
        }
        for word in text.split(is_separator).filter(|w| !w.is_empty()) {
            if let Some(image) = image_word(word) {
                out.push(Found {
                    image,
                    written: word.to_string(),
                    source: doc.source.to_string(),
                    document: doc.index,
                    object: object.clone(),
                    field: field.clone(),
                });
            }
        }
    }
    out
}

fn walk<'v>(v: &'v Value, path: String, out: &mut Vec<(String, &'v str)>) {
    match v {
        Value::String(s) => out.push((path, s)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (k, child) in map {
                let skip = (path == "metadata" && k == "managedFields")
                    || (path == "metadata.annotations" && k == LAST_APPLIED);
                if !skip {
                    walk(child, join_key(&path, k), out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::images_in;
    use serde_json::json;

    #[test]
    fn a_word_is_an_image_only_with_a_registry_host_and_a_tag_or_digest() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let cases = [
            (
                "quay.io/prometheus-operator/prometheus-config-reloader:v0.75.0",
                true,
            ),
            ("registry.k8s.io/sig-storage/csi-attacher:v4.6.1", true),
            ("localhost:5000/app:1", true),
            ("127.0.0.1:5000/team/app:2.1", true),
            (&*format!("ghcr.io/org/app@{digest}"), true),
            ("nginx:1.27", false), // no registry host: too common a word
            ("quay.io/prometheus/prometheus", false), // no tag
            ("app.kubernetes.io/name", false), // a label key
            ("https://charts.example.com/x:1", false), // a URL
            ("--image=quay.io/x/y:1", false), // split on '=' first
            ("kubernetes.io/service-account-token", false),
            ("example.com/path:with:colons:", false),
        ];
        for (word, want) in cases {
            assert_eq!(image_word(word).is_some(), want, "{word}");
        }
    }

    #[test]
    fn possible_images_are_found_in_args_env_and_data_but_not_where_certain() {
        let operator = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "operator", "namespace": "monitoring",
                "annotations": {LAST_APPLIED: "{\"image\": \"quay.io/x/copy:1\"}"}},
            "spec": {"template": {"spec": {"containers": [{
                "name": "operator", "image": "quay.io/prometheus-operator/prometheus-operator:v0.75.0",
                "args": ["--prometheus-config-reloader=quay.io/prometheus-operator/prometheus-config-reloader:v0.75.0",
                         "--log-level=info"],
                "env": [{"name": "CSI_ATTACHER_IMAGE", "value": "registry.k8s.io/sig-storage/csi-attacher:v4.6.1"}]}]}}}});
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "images"},
            "data": {"values.yaml": "sidecar:\n  image: \"docker.io/istio/proxyv2:1.22.0\"\n"}});
        let prometheus = json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus",
            "metadata": {"name": "k8s"}, "spec": {"image": "quay.io/prometheus/prometheus:v2.53.0"}});
        let rules = builtin_rules();
        let mut got: Vec<(String, String, bool)> = Vec::new();
        for (i, v) in [&operator, &config, &prometheus].into_iter().enumerate() {
            let doc = Document {
                source: "x.yaml",
                index: i + 1,
                value: v,
            };
            let certain = images_in(doc, &rules).unwrap_or_default();
            got.extend(
                certain
                    .iter()
                    .map(|f| (f.field.clone(), f.image.to_string(), true)),
            );
            got.extend(
                possible_in(doc, &certain)
                    .into_iter()
                    .map(|f| (f.field, f.image.to_string(), false)),
            );
        }
        assert_eq!(
            got,
            vec![
                (
                    "spec.template.spec.containers[0].image".into(),
                    "quay.io/prometheus-operator/prometheus-operator:v0.75.0".into(),
                    true
                ),
                (
                    "spec.template.spec.containers[0].args[0]".into(),
                    "quay.io/prometheus-operator/prometheus-config-reloader:v0.75.0".into(),
                    false
                ),
                (
                    "spec.template.spec.containers[0].env[0].value".into(),
                    "registry.k8s.io/sig-storage/csi-attacher:v4.6.1".into(),
                    false
                ),
                (
                    "data['values.yaml']".into(),
                    "docker.io/istio/proxyv2:1.22.0".into(),
                    false
                ),
                (
                    "spec.image".into(),
                    "quay.io/prometheus/prometheus:v2.53.0".into(),
                    true
                ),
            ]
        );
        assert_eq!(builtin_rules().len(), BUILTIN_RULES.len());
    }
}
