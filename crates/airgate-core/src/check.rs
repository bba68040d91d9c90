//! The pre-merge checks `airgate check` runs inside the perimeter, with no
//! network: policy over each rendered object, strings that would reach
//! outside the perimeter, and environment leakage. Each rule is on by
//! default; a repository allows one per path in its check file.
//!
//! Pure: the command renders and reads files; these decide.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use crate::discover::{Document, images_in};

macro_rules! rules {
    ($($variant:ident = $id:literal: $why:literal, $fix:literal;)*) => {
        /// A check, by the id findings, allow lists and SARIF use.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
        pub enum Rule { $(#[serde(rename = $id)] $variant,)* }

        impl Rule {
            pub const ALL: &'static [Rule] = &[$(Rule::$variant,)*];
            pub fn id(self) -> &'static str { match self { $(Rule::$variant => $id,)* } }
            /// What the rule guards against.
            pub fn why(self) -> &'static str { match self { $(Rule::$variant => $why,)* } }
            /// How to fix a finding.
            pub fn fix(self) -> &'static str { match self { $(Rule::$variant => $fix,)* } }
            pub fn parse(id: &str) -> Option<Rule> { Rule::ALL.iter().copied().find(|r| r.id() == id) }
        }
    };
}

rules! {
    AllowedRegistry = "allowed-registry": "an image from a registry outside the perimeter cannot be pulled inside",
        "carry it in a bundle, push it, and name it in the internal registry (airgate pin)";
    Digest = "digest": "an image by tag can change under the same name",
        "pin it by digest (airgate pin --lock)";
    Latest = "latest": "an image tagged latest (or untagged) is whatever was pushed last",
        "name a version and pin it by digest";
    PlaintextSecret = "plaintext-secret": "a Secret's values in Git are readable by everyone who can clone",
        "encrypt it (SOPS), or create it out of band and reference it";
    Privileged = "privileged": "a privileged container owns the node",
        "drop privileged, or allow the rule for this path in the check file";
    HostPath = "host-path": "a hostPath volume reaches into the node's files",
        "use a PersistentVolumeClaim, or allow the rule for this path";
    HostNetwork = "host-network": "hostNetwork puts the pod on the node's network",
        "drop hostNetwork, or allow the rule for this path";
    Resources = "resources": "a container without requests and limits can starve its neighbours",
        "set resources.requests and resources.limits (cpu and memory)";
    External = "external": "this names a host outside the perimeter, which fails only once inside",
        "vendor or mirror it, or add the host to allowedHosts in the check file";
    Leakage = "leakage": "this image reached this environment without going through the one before",
        "promote it (airgate promote) from the environment before";
    Schema = "schema": "the API server would refuse this object",
        "fix the field as the schema of the target Kubernetes version says";
}

/// One finding: where, which rule, and what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub file: String,
    pub document: usize,
    /// `Kind/namespace/name`.
    pub object: String,
    pub field: String,
    pub rule: Rule,
    pub message: String,
}

/// What the checks accept.
#[derive(Clone, Debug, Default)]
pub struct Allowed {
    /// `host[:port][/path]` images may come from.
    pub registries: Vec<String>,
    /// Host names (or `*.suffix`) strings may name.
    pub hosts: Vec<String>,
}

fn registry_allowed(allowed: &[String], image: &crate::ImageRef) -> bool {
    allowed.iter().any(|entry| {
        let entry = entry.trim_end_matches('/');
        match entry.split_once('/') {
            Some((host, path)) => {
                host == image.registry()
                    && (image.repository() == path
                        || image.repository().starts_with(&format!("{path}/")))
            }
            None => entry == image.registry(),
        }
    })
}

fn host_allowed(allowed: &[String], host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    allowed.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        match a.strip_prefix("*.") {
            Some(suffix) => host.ends_with(&format!(".{suffix}")),
            None => a == host,
        }
    })
}

/// The policy findings of one rendered object.
pub fn policy(doc: Document<'_>, allowed: &Allowed) -> Vec<Finding> {
    let object = crate::discover::object_label(doc.value);
    let mut out = Vec::new();
    let mut find = |field: String, rule: Rule, message: String| {
        out.push(Finding {
            file: doc.source.to_string(),
            document: doc.index,
            object: object.clone(),
            field,
            rule,
            message,
        });
    };
    for f in images_in(doc, &[]).unwrap_or_default() {
        let written = &f.written;
        if !allowed.registries.is_empty() && !registry_allowed(&allowed.registries, &f.image) {
            find(
                f.field.clone(),
                Rule::AllowedRegistry,
                format!("{written} is not from {}", allowed.registries.join(", ")),
            );
        }
        if f.image.digest().is_none() {
            if f.image.tag().is_none_or(|t| t == "latest") {
                find(
                    f.field.clone(),
                    Rule::Latest,
                    format!("{written} is latest"),
                );
            }
            find(
                f.field.clone(),
                Rule::Digest,
                format!("{written} is not pinned by digest"),
            );
        }
    }
    let v = doc.value;
    if v["kind"] == "Secret" && v["apiVersion"] == "v1" {
        for key in ["data", "stringData"] {
            if v[key].as_object().is_some_and(|m| !m.is_empty()) {
                find(
                    key.to_string(),
                    Rule::PlaintextSecret,
                    format!("Secret values in {key}"),
                );
            }
        }
    }
    for (path, spec) in pod_specs(v) {
        if spec["hostNetwork"] == true {
            find(
                format!("{path}.hostNetwork"),
                Rule::HostNetwork,
                "hostNetwork: true".into(),
            );
        }
        for (i, vol) in spec["volumes"].as_array().into_iter().flatten().enumerate() {
            if vol.get("hostPath").is_some() {
                find(
                    format!("{path}.volumes[{i}].hostPath"),
                    Rule::HostPath,
                    format!(
                        "volume {} is a hostPath",
                        vol["name"].as_str().unwrap_or("?")
                    ),
                );
            }
        }
        for list in ["initContainers", "containers"] {
            for (i, c) in spec[list].as_array().into_iter().flatten().enumerate() {
                let at = format!("{path}.{list}[{i}]");
                if c["securityContext"]["privileged"] == true {
                    find(
                        format!("{at}.securityContext.privileged"),
                        Rule::Privileged,
                        "privileged: true".into(),
                    );
                }
                let missing: Vec<&str> = ["requests.cpu", "requests.memory", "limits.memory"]
                    .into_iter()
                    .filter(|p| {
                        let (k, x) = p.split_once('.').unwrap_or((p, ""));
                        c["resources"][k][x].is_null()
                    })
                    .collect();
                if !missing.is_empty() {
                    find(
                        format!("{at}.resources"),
                        Rule::Resources,
                        format!(
                            "container {} has no {}",
                            c["name"].as_str().unwrap_or("?"),
                            missing.join(", ")
                        ),
                    );
                }
            }
        }
    }
    out
}

/// The pod specs of an object, with their paths: a Pod's spec, a
/// workload's template, a CronJob's job template.
fn pod_specs(v: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    if v["kind"] == "Pod" {
        out.push(("spec".to_string(), &v["spec"]));
    }
    if v["spec"]["template"]["spec"].is_object() {
        out.push((
            "spec.template.spec".to_string(),
            &v["spec"]["template"]["spec"],
        ));
    }
    if v["spec"]["jobTemplate"]["spec"]["template"]["spec"].is_object() {
        out.push((
            "spec.jobTemplate.spec.template.spec".to_string(),
            &v["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        ));
    }
    out
}

/// Hosts named in the strings of an object (URLs, `git@host:`, `oci://`),
/// outside `allowed` and not the object's own images (policy covers
/// those): (field, host, the string).
pub fn external(doc: Document<'_>, allowed: &Allowed) -> Vec<Finding> {
    let object = crate::discover::object_label(doc.value);
    let mut strings = Vec::new();
    walk_strings(doc.value, String::new(), &mut strings);
    let mut out = Vec::new();
    for (field, text) in strings {
        for host in hosts_in(&text) {
            if host_allowed(&allowed.hosts, &host)
                || allowed.registries.iter().any(|r| {
                    r.split('/')
                        .next()
                        .is_some_and(|h| h.split(':').next() == Some(host.as_str()))
                })
            {
                continue;
            }
            out.push(Finding {
                file: doc.source.to_string(),
                document: doc.index,
                object: object.clone(),
                field: field.clone(),
                rule: Rule::External,
                message: format!("names {host} ({})", crate::text::shown(&text, 120)),
            });
        }
    }
    out
}

fn walk_strings(v: &Value, path: String, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => out.push((path, s.clone())),
        Value::Array(items) => {
            for (i, c) in items.iter().enumerate() {
                walk_strings(c, format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (k, c) in map {
                walk_strings(c, crate::rule::join_key(&path, k), out);
            }
        }
        _ => {}
    }
}

/// The hosts `text` names by URL (`scheme://host`) or scp-style Git
/// (`git@host:`), lowercase, loopback and cluster-local names aside.
pub fn hosts_in(text: &str) -> Vec<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let scheme: String = rest[..i]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '+')
            .collect();
        let after = &rest[i + 3..];
        let authority: String = after
            .chars()
            .take_while(|c| !matches!(c, '/' | '?' | '#' | ' ' | '"' | '\'' | '\n' | ',' | ')'))
            .collect();
        let host = authority.rsplit('@').next().unwrap_or("");
        let host = if host.starts_with('[') {
            host
        } else {
            host.split(':').next().unwrap_or("")
        };
        if !scheme.is_empty()
            && !matches!(scheme.chars().rev().collect::<String>().as_str(), "file")
        {
            out.insert(host.to_ascii_lowercase());
        }
        rest = after;
    }
    if let Some(at) = text.find("git@") {
        let host: String = text[at + 4..]
            .chars()
            .take_while(|c| *c != ':' && !c.is_whitespace())
            .collect();
        out.insert(host.to_ascii_lowercase());
    }
    out.into_iter()
        .filter(|h| {
            !h.is_empty()
                && h.contains('.')
                && !h.starts_with("127.")
                && h != "localhost"
                && !h.ends_with(".svc")
                && !h.ends_with(".cluster.local")
                && !h.contains('{')
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: &Value) -> Document<'_> {
        Document {
            source: "envs/prod/web.yaml",
            index: 1,
            value: v,
        }
    }

    fn rules(found: &[Finding]) -> Vec<(&str, &str)> {
        found
            .iter()
            .map(|f| (f.rule.id(), f.field.as_str()))
            .collect()
    }

    #[test]
    fn every_policy_rule_finds_its_case_and_a_clean_object_has_none() {
        let allowed = Allowed {
            registries: vec!["registry.internal:5000".into()],
            hosts: vec![],
        };
        let digest = format!("sha256:{}", "a".repeat(64));
        let bad = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"template": {"spec": {"hostNetwork": true,
                "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
                "containers": [
                    {"name": "web", "image": "docker.io/shop/web", "securityContext": {"privileged": true}},
                    {"name": "ok", "image": format!("registry.internal:5000/shop/ok:1@{digest}"),
                     "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}}]}}}});
        assert_eq!(
            rules(&policy(doc(&bad), &allowed)),
            [
                ("allowed-registry", "spec.template.spec.containers[0].image"),
                ("latest", "spec.template.spec.containers[0].image"),
                ("digest", "spec.template.spec.containers[0].image"),
                ("host-network", "spec.template.spec.hostNetwork"),
                ("host-path", "spec.template.spec.volumes[0].hostPath"),
                (
                    "privileged",
                    "spec.template.spec.containers[0].securityContext.privileged"
                ),
                ("resources", "spec.template.spec.containers[0].resources"),
            ]
        );
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"p": "x"}});
        assert_eq!(
            rules(&policy(doc(&secret), &allowed)),
            [("plaintext-secret", "stringData")]
        );
        let sealed = json!({"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret", "metadata": {"name": "db"}, "spec": {"encryptedData": {"p": "AgB..."}}});
        assert!(policy(doc(&sealed), &allowed).is_empty());
        let clean = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "image": format!("registry.internal:5000/a:1@{digest}"),
             "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}}]}});
        assert!(policy(doc(&clean), &allowed).is_empty());
    }

    #[test]
    fn hosts_outside_the_perimeter_are_found_in_any_string() {
        let table = [
            (
                "https://github.com/org/repo//base?ref=v1",
                vec!["github.com"],
            ),
            (
                "git@gitlab.example.com:org/repo.git",
                vec!["gitlab.example.com"],
            ),
            (
                "--plugin-url=https://artifacts.opensearch.org/x.zip and http://mirror.internal/y",
                vec!["artifacts.opensearch.org", "mirror.internal"],
            ),
            ("oci://ghcr.io/aquasecurity/trivy-db", vec!["ghcr.io"]),
            (
                "http://127.0.0.1:8080/x http://localhost/ http://web.shop.svc.cluster.local/",
                vec![],
            ),
            (
                "https://user:pw@host.example.com:8443/x",
                vec!["host.example.com"],
            ),
            ("file:///etc/x", vec![]),
            ("no url here", vec![]),
        ];
        for (text, want) in table {
            assert_eq!(hosts_in(text), want, "{text}");
        }
        let allowed = Allowed {
            registries: vec!["registry.internal:5000".into()],
            hosts: vec!["*.internal".into()],
        };
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"a": "https://mirror.internal/x", "b": "https://rules.falco.org/index.yaml"}});
        assert_eq!(
            rules(&external(doc(&cm), &allowed)),
            [("external", "data.b")]
        );
    }
}
