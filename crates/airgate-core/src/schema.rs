//! Objects checked against the schemas the API server would check them
//! with, offline: the cluster's OpenAPI v3 documents (exported with
//! `airgate schemas export`, carried across the gap like any file), and
//! the `openAPIV3Schema` of CustomResourceDefinitions found beside the
//! objects.
//!
//! What is checked is the structure the API server refuses: a field that
//! is not in the schema (unless the schema keeps unknown fields), a value
//! of the wrong type, a required field missing, a value outside an enum.
//! Formats, patterns and CEL rules are the API server's to judge.

use std::collections::HashMap;

use serde_json::Value;

/// The schemas of one cluster (and the CRDs seen), by group, version and
/// kind.
#[derive(Debug, Default)]
pub struct Schemas {
    /// Every named schema (`components.schemas`), across documents.
    named: HashMap<String, Value>,
    /// (group, version, kind) -> the schema of that kind.
    kinds: HashMap<(String, String, String), Value>,
}

impl Schemas {
    /// Adds one OpenAPI v3 document (`/openapi/v3/apis/GROUP/VERSION`).
    pub fn add_document(&mut self, doc: &Value) {
        let Some(schemas) = doc["components"]["schemas"].as_object() else {
            return;
        };
        for (name, schema) in schemas {
            for gvk in schema["x-kubernetes-group-version-kind"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let key = (
                    gvk["group"].as_str().unwrap_or_default().to_string(),
                    gvk["version"].as_str().unwrap_or_default().to_string(),
                    gvk["kind"].as_str().unwrap_or_default().to_string(),
                );
                self.kinds.insert(key, schema.clone());
            }
            self.named.insert(name.clone(), schema.clone());
        }
    }

    /// Adds the kinds a CustomResourceDefinition defines.
    pub fn add_crd(&mut self, crd: &Value) {
        let group = crd["spec"]["group"].as_str().unwrap_or_default();
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or_default();
        for v in crd["spec"]["versions"].as_array().into_iter().flatten() {
            let version = v["name"].as_str().unwrap_or_default();
            let mut schema = v["schema"]["openAPIV3Schema"].clone();
            if let Some(props) = schema["properties"].as_object_mut() {
                // What every object has, whatever the CRD says.
                for k in ["apiVersion", "kind"] {
                    props
                        .entry(k)
                        .or_insert(serde_json::json!({"type": "string"}));
                }
                props.entry("metadata").or_insert(serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
            }
            self.kinds
                .insert((group.into(), version.into(), kind.into()), schema);
        }
    }

    /// Whether any schema was loaded.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// The problems of `object` (field path, what is wrong); `None` when
    /// no schema knows its kind.
    pub fn check(&self, object: &Value) -> Option<Vec<(String, String)>> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let kind = object["kind"].as_str().unwrap_or_default();
        let schema = self
            .kinds
            .get(&(group.to_string(), version.to_string(), kind.to_string()))?;
        let mut out = Vec::new();
        self.walk(object, schema, String::new(), 0, &mut out);
        Some(out)
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        let mut s = schema;
        for _ in 0..8 {
            if let Some(r) = s["$ref"].as_str()
                && let Some(found) = r
                    .strip_prefix("#/components/schemas/")
                    .and_then(|n| self.named.get(n))
            {
                s = found;
                continue;
            }
            match s["allOf"].as_array().map(Vec::as_slice) {
                Some([one]) => s = one,
                _ => return s,
            }
        }
        s
    }

    fn walk(
        &self,
        v: &Value,
        schema: &Value,
        path: String,
        depth: usize,
        out: &mut Vec<(String, String)>,
    ) {
        if depth > 64 || v.is_null() {
            return;
        }
        let s = self.resolve(schema);
        if let Some(all) = s["allOf"].as_array() {
            for part in all {
                self.walk(v, part, path.clone(), depth + 1, out);
            }
        }
        let shown = |p: &str| {
            if p.is_empty() {
                "(the object)".to_string()
            } else {
                p.to_string()
            }
        };
        if s["x-kubernetes-int-or-string"] == true {
            if !(v.is_string() || v.is_i64() || v.is_u64()) {
                out.push((shown(&path), "must be an integer or a string".into()));
            }
            return;
        }
        if let Some(allowed) = s["enum"].as_array()
            && !allowed.contains(v)
        {
            let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
            out.push((
                shown(&path),
                format!("{v} is not one of {}", list.join(", ")),
            ));
        }
        let ty = s["type"].as_str();
        let wrong = match (ty, v) {
            (Some("object"), Value::Object(_)) | (Some("array"), Value::Array(_)) => false,
            (Some("string"), Value::String(_)) | (Some("boolean"), Value::Bool(_)) => false,
            (Some("integer"), Value::Number(n)) => !(n.is_i64() || n.is_u64()),
            (Some("number"), Value::Number(_)) => false,
            (None, _) => false,
            _ => true,
        };
        if wrong {
            out.push((
                shown(&path),
                format!("must be {} (is {})", ty.unwrap_or("?"), kind_of(v)),
            ));
            return;
        }
        match v {
            Value::Object(map) => {
                for r in s["required"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    if !map.contains_key(r) {
                        let at = crate::rule::join_key(&path, r);
                        out.push((at, "is required".into()));
                    }
                }
                let props = s["properties"].as_object();
                let extra = &s["additionalProperties"];
                let keeps = s["x-kubernetes-preserve-unknown-fields"] == true;
                for (k, child) in map {
                    let at = crate::rule::join_key(&path, k);
                    match props.and_then(|p| p.get(k)) {
                        Some(sub) => self.walk(child, sub, at, depth + 1, out),
                        None if extra.is_object() => self.walk(child, extra, at, depth + 1, out),
                        None if props.is_some() && !keeps && extra != &Value::Bool(true) => {
                            out.push((at, "is not a field of this kind".into()));
                        }
                        None => {}
                    }
                }
            }
            Value::Array(items) if s["items"].is_object() => {
                for (i, item) in items.iter().enumerate() {
                    self.walk(item, &s["items"], format!("{path}[{i}]"), depth + 1, out);
                }
            }
            _ => {}
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schemas() -> Schemas {
        let mut s = Schemas::default();
        s.add_document(&json!({"components": {"schemas": {
            "io.k8s.api.apps.v1.Deployment": {
                "type": "object",
                "x-kubernetes-group-version-kind": [{"group": "apps", "version": "v1", "kind": "Deployment"}],
                "properties": {
                    "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                    "metadata": {"allOf": [{"$ref": "#/components/schemas/io.k8s.ObjectMeta"}]},
                    "spec": {"type": "object", "required": ["selector"], "properties": {
                        "replicas": {"type": "integer"},
                        "selector": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "strategy": {"type": "object", "properties": {"type": {"type": "string", "enum": ["Recreate", "RollingUpdate"]},
                            "maxSurge": {"x-kubernetes-int-or-string": true}}}}}}},
            "io.k8s.ObjectMeta": {"type": "object", "properties": {
                "name": {"type": "string"}, "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}
        }}}));
        s.add_crd(&json!({"spec": {"group": "shop.example.com", "names": {"kind": "Widget"},
            "versions": [{"name": "v1", "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}}));
        s
    }

    #[test]
    fn objects_are_checked_as_the_api_server_would_check_them() {
        let s = schemas();
        let table = [
            (
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"a": "b"}},
                    "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}}, "strategy": {"type": "Recreate", "maxSurge": "25%"}}}),
                vec![],
            ),
            (
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labelz": {}},
                    "spec": {"replicas": "two", "strategy": {"type": "Sometimes", "maxSurge": true}}}),
                vec![
                    ("metadata.labelz", "is not a field of this kind"),
                    ("spec.replicas", "must be integer (is a string)"),
                    ("spec.selector", "is required"),
                    ("spec.strategy.maxSurge", "must be an integer or a string"),
                    (
                        "spec.strategy.type",
                        "\"Sometimes\" is not one of \"Recreate\", \"RollingUpdate\"",
                    ),
                ],
            ),
            (
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"labels": {"a": 1}}, "spec": {"selector": {}}}),
                vec![("metadata.labels.a", "must be string (is a number)")],
            ),
            (
                json!({"apiVersion": "shop.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": "big", "colour": "red"}}),
                vec![
                    ("spec.colour", "is not a field of this kind"),
                    ("spec.size", "must be integer (is a string)"),
                ],
            ),
        ];
        for (object, want) in table {
            let mut got = s
                .check(&object)
                .unwrap_or_else(|| panic!("no schema for {object}"));
            got.sort();
            let got: Vec<(&str, &str)> =
                got.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            assert_eq!(got, want, "{object}");
        }
        assert!(
            s.check(&json!({"apiVersion": "x.example.com/v1", "kind": "Unknown"}))
                .is_none()
        );
    }
}
