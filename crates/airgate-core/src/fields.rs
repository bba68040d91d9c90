//! Field paths: which fields of an object a change set, so the audit log
//! can answer "which sync last set the memory limit of `web`".
//!
//! Why paths of the desired state: airgate applies what Git says, so what
//! one sync changed is the difference between the object as the last
//! applied revision rendered it and as this one does. The live object is
//! not compared: it carries defaults and other managers' fields, and those
//! are drift, recorded apart. Only paths are kept, never values, so a
//! Secret's content never reaches the log.
//!
//! Path syntax: `.spec.replicas`; a list whose items all have a distinct
//! `name` is keyed by it (`.spec.template.spec.containers[web]`), any
//! other list is one field; a key that is not a plain word is quoted
//! (`.metadata.labels["app.kubernetes.io/name"]`). A field added or
//! removed whole is named once, at its root.

use std::collections::BTreeSet;

use serde_json::Value;

/// Paths kept per object; past it, paths are cut to their first two
/// segments (`.spec.template`), then to one (`.data`), which still answer
/// a blame, less sharply.
pub const MAX_PATHS: usize = 256;

fn key(path: &str, k: &str) -> String {
    let plain = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        format!("{path}.{k}")
    } else {
        format!("{path}[{}]", serde_json::Value::from(k))
    }
}

fn find<'a>(list: &[(&str, &'a Value)], name: &str) -> Option<&'a Value> {
    list.iter().find(|(m, _)| *m == name).map(|(_, v)| *v)
}

/// The items of `list` by their `name`, if every item has a distinct one.
fn named(list: &[Value]) -> Option<Vec<(&str, &Value)>> {
    let mut seen = BTreeSet::new();
    list.iter()
        .map(|v| {
            let name = v.get("name")?.as_str()?;
            seen.insert(name).then_some((name, v))
        })
        .collect()
}

fn diff(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff(&key(path, k), x, y, out),
                    _ => out.push(key(path, k)),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => match (named(a), named(b)) {
            (Some(a), Some(b)) if a != b => {
                let names: BTreeSet<&str> = a.iter().chain(&b).map(|(n, _)| *n).collect();
                for n in names {
                    let at = format!("{path}[{n}]");
                    match (find(&a, n), find(&b, n)) {
                        (Some(x), Some(y)) => diff(&at, x, y, out),
                        _ => out.push(at),
                    }
                }
            }
            _ if a != b => out.push(path.to_string()),
            _ => {}
        },
        _ if old != new => out.push(path.to_string()),
        _ => {}
    }
}

/// What identifies the object is not one of its fields.
fn without_identity(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("apiVersion");
        o.remove("kind");
        o.remove("status");
        if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("name");
            m.remove("namespace");
        }
    }
    v
}

/// The paths `new` sets or removes relative to `old` (`None`: the object
/// is new, and each of its top-level fields is named).
pub fn changed(old: Option<&Value>, new: &Value) -> Vec<String> {
    let new = without_identity(new);
    let mut out = Vec::new();
    match old {
        Some(old) => diff("", &without_identity(old), &new, &mut out),
        None => {
            for (k, v) in new.as_object().into_iter().flatten() {
                match (k.as_str(), v.as_object()) {
                    ("metadata", Some(m)) => out.extend(m.keys().map(|m| key(".metadata", m))),
                    _ => out.push(key("", k)),
                }
            }
        }
    }
    for segments in [2, 1] {
        if out.len() <= MAX_PATHS {
            break;
        }
        out = out.iter().map(|p| prefix(p, segments)).collect();
        out.dedup();
    }
    out
}

/// The first `n` segments of `path` (`.spec.template.spec`, 2 ->
/// `.spec.template`). A quoted key's dots and brackets are its own.
fn prefix(path: &str, n: usize) -> String {
    let mut quoted = false;
    let mut seen = 0;
    for (i, c) in path.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '.' | '[' if !quoted && i > 0 => {
                seen += 1;
                if seen == n {
                    return path[..i].to_string();
                }
            }
            _ => {}
        }
    }
    path.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(memory: &str, image: &str, replicas: u32) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app.kubernetes.io/name": "web"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                {"name": "web", "image": image, "resources": {"limits": {"memory": memory}}, "args": ["--a"]},
                {"name": "sidecar", "image": "s"}
            ]}}}
        })
    }

    #[test]
    fn paths_name_exactly_what_changed_and_never_a_value() {
        let base = deployment("128Mi", "web:1", 2);
        let secret_old = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "data": {"password": "aHVudGVyMg=="}});
        let secret_new = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "data": {"password": "c2VjcmV0", "user": "YQ=="}});
        let mut no_sidecar = base.clone();
        if let Some(c) = no_sidecar
            .pointer_mut("/spec/template/spec/containers")
            .and_then(Value::as_array_mut)
        {
            c.pop();
        }
        let mut args = base.clone();
        if let Some(a) = args.pointer_mut("/spec/template/spec/containers/0/args") {
            *a = json!(["--b"]);
        }
        let cases: Vec<(&str, Option<&Value>, Value, Vec<&str>)> = vec![
            ("nothing", Some(&base), base.clone(), vec![]),
            (
                "the memory limit",
                Some(&base),
                deployment("256Mi", "web:1", 2),
                vec![".spec.template.spec.containers[web].resources.limits.memory"],
            ),
            (
                "image and replicas",
                Some(&base),
                deployment("128Mi", "web:2", 3),
                vec![
                    ".spec.replicas",
                    ".spec.template.spec.containers[web].image",
                ],
            ),
            (
                "a container removed",
                Some(&base),
                no_sidecar,
                vec![".spec.template.spec.containers[sidecar]"],
            ),
            (
                "a plain list",
                Some(&base),
                args,
                vec![".spec.template.spec.containers[web].args"],
            ),
            (
                "a new object",
                None,
                base.clone(),
                vec![".metadata.labels", ".spec"],
            ),
            (
                "a Secret: keys, never values",
                Some(&secret_old),
                secret_new,
                vec![".data.password", ".data.user"],
            ),
        ];
        for (name, old, new, want) in cases {
            let got = changed(old, &new);
            assert_eq!(got, want, "{name}");
            assert!(!got.iter().any(|p| p.contains("c2VjcmV0")), "{name}");
        }
        let mut labels = base.clone();
        labels["metadata"]["labels"]["app.kubernetes.io/part-of"] = json!("shop");
        assert_eq!(
            changed(Some(&base), &labels),
            vec![".metadata.labels[\"app.kubernetes.io/part-of\"]"]
        );
    }

    #[test]
    fn a_huge_change_is_cut_to_two_segments() {
        let old = json!({"kind": "ConfigMap", "data": {}});
        let data: serde_json::Map<String, Value> =
            (0..1000).map(|i| (format!("k{i}"), json!("v"))).collect();
        let new = json!({"kind": "ConfigMap", "data": data});
        assert_eq!(changed(Some(&old), &new), vec![".data"]);
        let old = json!({"kind": "ConfigMap", "data": {"x": {}}});
        let inner: serde_json::Map<String, Value> =
            (0..1000).map(|i| (format!("k{i}"), json!("v"))).collect();
        let new = json!({"kind": "ConfigMap", "data": {"x": inner}});
        assert_eq!(changed(Some(&old), &new), vec![".data.x"]);
        assert_eq!(prefix(".spec.template.spec", 2), ".spec.template");
        assert_eq!(prefix(".data[\"a.b\"].c", 2), ".data[\"a.b\"]");
        assert_eq!(prefix(".data[\"a.b\"].c", 1), ".data");
    }
}
