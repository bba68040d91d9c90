//! Field paths and discovery rules.
//!
//! Images hide outside pod specs: in an env var a sidecar injector reads, in a
//! CRD field an operator turns into a Deployment. A [`Rule`] names such a
//! place as `KIND:PATH`, e.g.
//! `Deployment:spec.template.spec.containers[*].env[name=SIDECAR_IMAGE].value`
//! or `Prometheus:spec.image`. Paths are dotted keys with `[*]` (every item),
//! `[N]` (one item), `[key=value]` (items whose `key` equals `value`) and
//! `['dotted.key']` (a key with dots or slashes, such as an annotation).

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
    All,
    Select { key: String, value: String },
}

/// A path into a JSON/YAML object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("'{input}' is not a field path: {reason}")]
pub struct PathError {
    pub input: String,
    pub reason: String,
}

impl FieldPath {
    pub fn parse(input: &str) -> Result<FieldPath, PathError> {
        let fail = |reason: &str| PathError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let mut segments = Vec::new();
        let mut chars = input.char_indices().peekable();
        let mut key = String::new();
        let mut expect_key = true;
        while let Some((_, c)) = chars.next() {
            match c {
                '.' => {
                    if !key.is_empty() {
                        segments.push(Segment::Key(std::mem::take(&mut key)));
                    } else if expect_key {
                        return Err(fail("empty key before '.'"));
                    }
                    expect_key = true;
                }
                '[' => {
                    if !key.is_empty() {
                        segments.push(Segment::Key(std::mem::take(&mut key)));
                    } else if segments.is_empty() {
                        return Err(fail("a path starts with a key"));
                    }
                    let mut inner = String::new();
                    let mut closed = false;
                    let quote = chars
                        .peek()
                        .map(|(_, q)| *q)
                        .filter(|q| *q == '\'' || *q == '"');
                    if let Some(q) = quote {
                        chars.next();
                        for (_, c) in chars.by_ref() {
                            if c == q {
                                break;
                            }
                            inner.push(c);
                        }
                        if chars.next().map(|(_, c)| c) != Some(']') {
                            return Err(fail("a quoted key must be followed by ']'"));
                        }
                        segments.push(Segment::Key(inner));
                        expect_key = false;
                        continue;
                    }
                    for (_, c) in chars.by_ref() {
                        if c == ']' {
                            closed = true;
                            break;
                        }
                        inner.push(c);
                    }
                    if !closed {
                        return Err(fail("'[' without ']'"));
                    }
                    let seg = if inner == "*" {
                        Segment::All
                    } else if let Ok(n) = inner.parse::<usize>() {
                        Segment::Index(n)
                    } else if let Some((k, v)) = inner.split_once('=') {
                        if k.is_empty() {
                            return Err(fail("'[=...]' needs a key"));
                        }
                        Segment::Select {
                            key: k.to_string(),
                            value: v.to_string(),
                        }
                    } else {
                        return Err(fail(&format!(
                            "'[{inner}]' must be [*], [N], [key=value] or ['key']"
                        )));
                    };
                    segments.push(seg);
                    expect_key = false;
                }
                ']' => return Err(fail("']' without '['")),
                c => {
                    key.push(c);
                    expect_key = false;
                }
            }
        }
        if !key.is_empty() {
            segments.push(Segment::Key(key));
        } else if expect_key {
            return Err(fail("the path is empty or ends with '.'"));
        }
        Ok(FieldPath {
            text: input.to_string(),
            segments,
        })
    }

    /// Every value the path reaches in `root`, with the concrete path to it
    /// (wildcards and selectors replaced by indices).
    pub fn resolve<'v>(&self, root: &'v Value) -> Vec<(String, &'v Value)> {
        let mut current: Vec<(String, &Value)> = vec![(String::new(), root)];
        for seg in &self.segments {
            let mut next = Vec::new();
            for (path, v) in current {
                match seg {
                    Segment::Key(k) => {
                        if let Some(child) = v.get(k) {
                            next.push((join_key(&path, k), child));
                        }
                    }
                    Segment::Index(i) => {
                        if let Some(child) = v.get(*i) {
                            next.push((format!("{path}[{i}]"), child));
                        }
                    }
                    Segment::All => {
                        if let Some(items) = v.as_array() {
                            for (i, child) in items.iter().enumerate() {
                                next.push((format!("{path}[{i}]"), child));
                            }
                        }
                    }
                    Segment::Select { key, value } => {
                        if let Some(items) = v.as_array() {
                            for (i, child) in items.iter().enumerate() {
                                if child.get(key).and_then(Value::as_str) == Some(value.as_str()) {
                                    next.push((format!("{path}[{i}]"), child));
                                }
                            }
                        }
                    }
                }
            }
            current = next;
        }
        current
    }
}

/// Appends `key` to a concrete path, quoting keys that hold dots or slashes.
pub fn join_key(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (path.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}['{key}']"),
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// An extra place images are found: objects of `kind` (or `*`, any kind), at `path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub kind: String,
    pub path: FieldPath,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error(
        "rule '{0}' must be KIND:PATH, e.g. Deployment:spec.template.spec.containers[*].env[name=IMAGE].value"
    )]
    Shape(String),
    #[error("rule '{rule}': {source}")]
    Path { rule: String, source: PathError },
}

impl Rule {
    pub fn matches_kind(&self, kind: &str) -> bool {
        self.kind == "*" || self.kind == kind
    }
}

impl FromStr for Rule {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((kind, path)) = s.split_once(':') else {
            return Err(RuleError::Shape(s.to_string()));
        };
        if kind.is_empty() || path.is_empty() || kind.contains(char::is_whitespace) {
            return Err(RuleError::Shape(s.to_string()));
        }
        let path = FieldPath::parse(path).map_err(|source| RuleError::Path {
            rule: s.to_string(),
            source,
        })?;
        Ok(Rule {
            kind: kind.to_string(),
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resolve(path: &str, v: &Value) -> Vec<(String, Value)> {
        FieldPath::parse(path)
            .unwrap_or_else(|e| panic!("{e}"))
            .resolve(v)
            .into_iter()
            .map(|(p, v)| (p, v.clone()))
            .collect()
    }

    #[test]
    fn resolves_wildcards_selectors_and_quoted_keys() {
        let v = json!({"metadata": {"annotations": {"example.com/image": "a:1"}},
                       "spec": {"containers": [
                           {"name": "x", "env": [{"name": "IMG", "value": "b:2"}, {"name": "O", "value": "c"}]},
                           {"name": "y", "env": [{"name": "IMG", "value": "d:3"}]}]}});
        assert_eq!(
            resolve("spec.containers[*].env[name=IMG].value", &v),
            vec![
                ("spec.containers[0].env[0].value".to_string(), json!("b:2")),
                ("spec.containers[1].env[0].value".to_string(), json!("d:3")),
            ]
        );
        assert_eq!(
            resolve("metadata.annotations['example.com/image']", &v),
            vec![(
                "metadata.annotations['example.com/image']".to_string(),
                json!("a:1")
            )]
        );
        assert_eq!(
            resolve("spec.containers[1].name", &v),
            vec![("spec.containers[1].name".to_string(), json!("y"))]
        );
        assert!(resolve("spec.nothing[*]", &v).is_empty());
    }

    #[test]
    fn refuses_malformed_paths_and_rules() {
        for bad in [
            "", ".a", "a.", "a..b", "a[", "a]", "[*]", "a[x]", "a[=v]", "a['k'",
        ] {
            assert!(FieldPath::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            "spec.image".parse::<Rule>(),
            Err(RuleError::Shape(_))
        ));
        assert!(matches!(
            "Kind:a..b".parse::<Rule>(),
            Err(RuleError::Path { .. })
        ));
        let r: Rule = "*:spec.image".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(r.matches_kind("Anything"));
    }
}
