//! `airgate diff --from REV --to REV PATH`: what a change does to the
//! rendered objects, before anyone merges it: each object added, removed
//! or changed between the two revisions, by field, with a Secret's values
//! masked. Rendered as the controller renders (plain YAML, Kustomize,
//! a chart directory), from the work tree's own Git objects. Exits 1
//! when they differ, like `diff` and `kubectl diff`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use airgate_core::object::ObjectRef;
use airgate_render::Renderer;
use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::cli::{DiffArgs, Output};
use crate::worktree::Worktree;

/// One object's difference.
#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectDiff {
    pub object: String,
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    /// Changed leaves: field path, value before, value after.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, Option<Value>, Option<Value>)>,
}

/// Every leaf of `v` by its path (`a.b[0].c`).
fn leaves(v: &Value, path: String, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                leaves(child, airgate_core::rule::join_key(&path, k), out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, child) in items.iter().enumerate() {
                leaves(child, format!("{path}[{i}]"), out);
            }
        }
        other => {
            out.insert(path, other.clone());
        }
    }
}

fn is_secret(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some("Secret")
}

/// A Secret's values never leave: what changed is said, not the value
/// (nor the copy `kubectl apply` keeps in an annotation).
fn masked(secret: bool, path: &str, v: Option<Value>) -> Option<Value> {
    let hidden = secret
        && (path.starts_with("data")
            || path.starts_with("stringData")
            || path.starts_with("metadata.annotations"));
    v.map(|v| {
        if hidden {
            Value::String("<masked>".into())
        } else {
            v
        }
    })
}

/// The differences between two renders (objects by reference).
pub fn differences(before: &[(ObjectRef, Value)], after: &[(ObjectRef, Value)]) -> Vec<ObjectDiff> {
    let old: BTreeMap<String, &Value> = before.iter().map(|(r, v)| (r.to_string(), v)).collect();
    let new: BTreeMap<String, &Value> = after.iter().map(|(r, v)| (r.to_string(), v)).collect();
    let mut out = Vec::new();
    for name in old.keys() {
        if !new.contains_key(name) {
            out.push(ObjectDiff {
                object: name.clone(),
                change: "removed",
                fields: Vec::new(),
            });
        }
    }
    for (name, v) in &new {
        let Some(was) = old.get(name) else {
            out.push(ObjectDiff {
                object: name.clone(),
                change: "added",
                fields: Vec::new(),
            });
            continue;
        };
        let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
        leaves(was, String::new(), &mut a);
        leaves(v, String::new(), &mut b);
        let secret = is_secret(v) || is_secret(was);
        let mut fields = Vec::new();
        for path in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
            let (x, y) = (a.get(path), b.get(path));
            if x != y {
                fields.push((
                    path.clone(),
                    masked(secret, path, x.cloned()),
                    masked(secret, path, y.cloned()),
                ));
            }
        }
        if !fields.is_empty() {
            fields.sort_by(|p, q| p.0.cmp(&q.0));
            out.push(ObjectDiff {
                object: name.clone(),
                change: "changed",
                fields,
            });
        }
    }
    out.sort_by(|p, q| p.object.cmp(&q.object));
    out
}

/// The objects `rel` renders at `rev`, from a checkout of its own.
fn render_at(
    tree: &Worktree,
    rev: &str,
    rel: &str,
    renderer: &Renderer,
) -> Result<Vec<(ObjectRef, Value)>> {
    let dir = tempfile::tempdir()?;
    let checkout = dir.path().join("tree");
    let commit = tree.commit(rev)?;
    let path = checkout.display().to_string();
    tree.git(&["worktree", "add", "--quiet", "--detach", &path, &commit])?;
    let rendered = renderer.render(&[checkout.join(rel)]);
    let _ = tree.git(&["worktree", "remove", "--force", &path]);
    let manifests = rendered
        .map_err(|e| anyhow::anyhow!(e.to_string().replace(&format!("{path}/"), "")))
        .with_context(|| format!("rendering {rel} at {rev}"))?;
    manifests
        .into_iter()
        .map(|m| {
            let r = ObjectRef::from_object(&m.value, &m.origin()).map_err(anyhow::Error::msg)?;
            Ok((r, m.value))
        })
        .collect()
}

pub fn run(args: DiffArgs) -> Result<ExitCode> {
    if let Some(app) = &args.live {
        return super::diff_live::run(app, &args);
    }
    let (Some(path), Some(from)) = (&args.path, &args.from) else {
        anyhow::bail!("airgate diff needs PATH and --from REV, or --live APP");
    };
    let tree = Worktree::of(path)?;
    let rel = tree.relative(path)?;
    let renderer =
        Renderer::new(args.kustomize.clone()).with_helm(args.helm.clone(), Default::default());
    let before = render_at(&tree, from, &rel, &renderer)?;
    let after = render_at(&tree, &args.to, &rel, &renderer)?;
    let diffs = differences(&before, &after);
    report(&diffs, args.output)?;
    eprintln!(
        "{rel}: {} object(s) differ between {from} and {}",
        diffs.len(),
        args.to
    );
    Ok(exit_code(&diffs))
}

/// 0 when nothing differs, 1 otherwise (as `diff` and `kubectl diff`).
pub fn exit_code(diffs: &[ObjectDiff]) -> ExitCode {
    if diffs.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The differences on stdout, as `output` asks.
pub fn report(diffs: &[ObjectDiff], output: Output) -> Result<()> {
    match output {
        Output::Json => crate::out!("{}", serde_json::to_string_pretty(diffs)?)?,
        Output::Text => {
            for d in diffs {
                let mark = match d.change {
                    "added" => "+",
                    "removed" => "-",
                    _ => "~",
                };
                crate::out!("{mark} {}", d.object)?;
                for (path, x, y) in &d.fields {
                    let shown = |v: &Option<Value>| {
                        v.as_ref().map_or("(none)".to_string(), |v| v.to_string())
                    };
                    crate::out!("    {path}: {} -> {}", shown(x), shown(y))?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> (ObjectRef, Value) {
        (
            ObjectRef::from_object(&v, "test").unwrap_or_else(|e| panic!("{e}")),
            v,
        )
    }

    #[test]
    fn objects_differ_by_field_and_secret_values_are_masked() {
        let before = [
            obj(
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
                       "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:1.2.3"}]}}}}),
            ),
            obj(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"}, "data": {"password": "b2xk"}}),
            ),
            obj(
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "old", "namespace": "shop"}}),
            ),
        ];
        let after = [
            obj(
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
                       "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:1.2.4",
                                                                       "env": [{"name": "FEATURE_X", "value": "on"}]}]}}}}),
            ),
            obj(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"}, "data": {"password": "bmV3"}}),
            ),
            obj(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "new", "namespace": "shop"}}),
            ),
        ];
        let d = differences(&before, &after);
        let summary: Vec<(String, &str)> = d.iter().map(|o| (o.object.clone(), o.change)).collect();
        assert_eq!(
            summary,
            [
                ("ConfigMap/shop/new".to_string(), "added"),
                ("Deployment/shop/web".to_string(), "changed"),
                ("Secret/shop/db".to_string(), "changed"),
                ("Service/shop/old".to_string(), "removed"),
            ]
        );
        assert_eq!(
            d[1].fields,
            [
                (
                    "spec.template.spec.containers[0].env[0].name".to_string(),
                    None,
                    Some(json!("FEATURE_X"))
                ),
                (
                    "spec.template.spec.containers[0].env[0].value".to_string(),
                    None,
                    Some(json!("on"))
                ),
                (
                    "spec.template.spec.containers[0].image".to_string(),
                    Some(json!("web:1.2.3")),
                    Some(json!("web:1.2.4"))
                ),
            ]
        );
        assert_eq!(
            d[2].fields,
            [(
                "data.password".to_string(),
                Some(json!("<masked>")),
                Some(json!("<masked>"))
            )]
        );
        assert!(
            !serde_json::to_string(&d)
                .unwrap_or_default()
                .contains("bmV3")
        );
    }
}
