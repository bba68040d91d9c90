//! YAML edited in place: the scalars of a file with where each one is, so
//! that a value can be replaced (or a key added beside another) without
//! touching a byte around it: comments, key order, quoting and indentation
//! stay as they were. `airgate pin` rewrites image references with it.
//!
//! Each document is also given as JSON (every scalar a string), so that the
//! same discovery the other commands run finds the fields to edit, by the
//! same field paths.

use std::ops::Range;

use granit_parser::{Event, Parser, ScalarStyle, Span, StructureStyle};
use serde_json::Value;

/// A scalar value, where it is, and where its key is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scalar {
    /// 1-based document.
    pub document: usize,
    /// The field path as discovery writes it (`spec.containers[0].image`).
    pub path: String,
    pub value: String,
    /// Its bytes in the file, quotes included.
    pub span: Range<usize>,
    /// 1-based line.
    pub line: usize,
    pub quoted: Option<char>,
    /// Its key's first byte and column, for a key added beside it.
    pub key: Option<(usize, usize)>,
    /// Whether the mapping it is in is a flow mapping (`{a: b}`).
    pub flow: bool,
}

/// A file's documents, as JSON, and its scalar values.
#[derive(Debug, Default)]
pub struct Parsed {
    pub documents: Vec<Value>,
    pub scalars: Vec<Scalar>,
}

enum Frame {
    Map {
        value: serde_json::Map<String, Value>,
        key: Option<(String, usize, usize)>,
        flow: bool,
        path: String,
    },
    Seq {
        value: Vec<Value>,
        path: String,
    },
}

fn byte(span: &Span) -> Result<Range<usize>, String> {
    match (span.start.byte_offset(), span.end.byte_offset()) {
        (Some(a), Some(b)) => Ok(a..b),
        _ => Err("the YAML parser gave no byte offsets".into()),
    }
}

/// Parses `text` (see the module docs). Aliases are refused: an edit
/// through one would change every place that uses it.
pub fn parse(text: &str) -> Result<Parsed, String> {
    let mut out = Parsed::default();
    let mut stack: Vec<Frame> = Vec::new();
    let mut document = 0;
    let parser = Parser::new_from_str(text);
    for event in parser {
        let (event, span) =
            event.map_err(|e| format!("line {}: {}", e.marker().line(), e.info()))?;
        let done: Option<(Value, Option<Scalar>)> = match event {
            Event::DocumentStart(..) => {
                document += 1;
                None
            }
            Event::Alias(_) => {
                return Err(format!(
                    "line {}: an alias; airgate does not edit through YAML aliases",
                    span.start.line()
                ));
            }
            Event::MappingStart(style, ..) => {
                let path = child_path(&stack);
                stack.push(Frame::Map {
                    value: serde_json::Map::new(),
                    key: None,
                    flow: style == StructureStyle::Flow,
                    path,
                });
                None
            }
            Event::SequenceStart(..) => {
                let path = child_path(&stack);
                stack.push(Frame::Seq {
                    value: Vec::new(),
                    path,
                });
                None
            }
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map { value, .. }) => Some((Value::Object(value), None)),
                _ => return Err("unbalanced mapping".into()),
            },
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq { value, .. }) => Some((Value::Array(value), None)),
                _ => return Err("unbalanced sequence".into()),
            },
            Event::Scalar(value, style, ..) => {
                let range = byte(&span)?;
                // A mapping waiting for its key takes this one as the key.
                if let Some(Frame::Map {
                    key: key @ None, ..
                }) = stack.last_mut()
                {
                    *key = Some((value.to_string(), range.start, span.start.col()));
                    continue;
                }
                let (key, flow) = match stack.last() {
                    Some(Frame::Map {
                        key: Some((_, at, col)),
                        flow,
                        ..
                    }) => (Some((*at, *col)), *flow),
                    _ => (None, false),
                };
                let scalar = Scalar {
                    document,
                    path: child_path(&stack),
                    value: value.to_string(),
                    span: range,
                    line: span.start.line(),
                    quoted: match style {
                        ScalarStyle::SingleQuoted => Some('\''),
                        ScalarStyle::DoubleQuoted => Some('"'),
                        _ => None,
                    },
                    key,
                    flow,
                };
                let json = if style == ScalarStyle::Plain && matches!(&*value, "" | "~" | "null") {
                    Value::Null
                } else {
                    Value::String(value.to_string())
                };
                Some((json, Some(scalar)))
            }
            _ => None,
        };
        let Some((value, scalar)) = done else {
            continue;
        };
        out.scalars.extend(scalar);
        match stack.last_mut() {
            Some(Frame::Map {
                value: map, key, ..
            }) => {
                if let Some((k, ..)) = key.take() {
                    map.insert(k, value);
                }
            }
            Some(Frame::Seq { value: seq, .. }) => seq.push(value),
            None => out.documents.push(value),
        }
    }
    Ok(out)
}

/// The path of the node about to be added to the top of `stack`.
fn child_path(stack: &[Frame]) -> String {
    match stack.last() {
        Some(Frame::Map {
            key: Some((k, ..)),
            path,
            ..
        }) => airgate_core::rule::join_key(path, k),
        Some(Frame::Seq { value, path }) => format!("{path}[{}]", value.len()),
        _ => String::new(),
    }
}

/// One change to a file: the bytes at `span` become `text`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    pub span: Range<usize>,
    pub text: String,
}

/// `value` written as `like` was: in its quotes, or plain.
pub fn scalar_text(like: &Scalar, value: &str) -> String {
    match like.quoted {
        Some('\'') => format!("'{}'", value.replace('\'', "''")),
        Some(_) => format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"")),
        None => value.to_string(),
    }
}

/// The edit that adds `key: value` to the mapping `beside` is in, right
/// after it: a new line at its key's column in a block mapping, `, key:
/// value` in a flow mapping.
pub fn add_after(text: &str, beside: &Scalar, key: &str, value: &str) -> Edit {
    let at = beside.span.end;
    if beside.flow {
        return Edit {
            span: at..at,
            text: format!(", {key}: {value}"),
        };
    }
    let col = beside.key.map(|(_, c)| c).unwrap_or(0);
    let newline = if text[..at].contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    Edit {
        span: at..at,
        text: format!("{newline}{}{key}: {value}", " ".repeat(col)),
    }
}

/// `text` with `edits` made (they must not overlap).
pub fn apply(text: &str, edits: &[Edit]) -> String {
    let mut edits: Vec<&Edit> = edits.iter().collect();
    edits.sort_by_key(|e| e.span.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for e in edits {
        if e.span.start < at {
            continue;
        }
        out.push_str(&text[at..e.span.start]);
        out.push_str(&e.text);
        at = e.span.end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# the web\napiVersion: apps/v1   # trailing\nkind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - name: web\n          image: 'web:1'  # pinned later\n        - {name: side, image: \"side:2\"}\n---\nimages:\n  - name: shop/web\n    newName: up/web\n";

    #[test]
    fn scalars_carry_their_paths_spans_and_quotes() -> Result<(), String> {
        let parsed = parse(TEXT)?;
        assert_eq!(parsed.documents.len(), 2);
        let image = |path: &str| parsed.scalars.iter().find(|s| s.path == path).cloned();
        let web = image("spec.template.spec.containers[0].image").ok_or("no web image")?;
        assert_eq!(
            (
                web.value.as_str(),
                &TEXT[web.span.clone()],
                web.quoted,
                web.line
            ),
            ("web:1", "'web:1'", Some('\''), 9)
        );
        let side = image("spec.template.spec.containers[1].image").ok_or("no side image")?;
        assert_eq!((&TEXT[side.span.clone()], side.flow), ("\"side:2\"", true));
        let new_name = parsed
            .scalars
            .iter()
            .find(|s| s.document == 2 && s.path == "images[0].newName")
            .ok_or("no newName")?;
        assert_eq!(new_name.key.map(|(_, c)| c), Some(4));
        assert_eq!(
            parsed.documents[0]["spec"]["template"]["spec"]["containers"][1]["image"],
            "side:2"
        );
        Ok(())
    }

    #[test]
    fn edits_change_those_bytes_and_nothing_else() -> Result<(), String> {
        let parsed = parse(TEXT)?;
        let find = |path: &str, doc: usize| {
            parsed
                .scalars
                .iter()
                .find(|s| s.path == path && s.document == doc)
                .cloned()
                .ok_or(path.to_string())
        };
        let web = find("spec.template.spec.containers[0].image", 1)?;
        let side = find("spec.template.spec.containers[1].image", 1)?;
        let new_name = find("images[0].newName", 2)?;
        let edits = [
            Edit {
                span: web.span.clone(),
                text: scalar_text(&web, "r/web:1@sha256:ab"),
            },
            Edit {
                span: side.span.clone(),
                text: scalar_text(&side, "r/side:2"),
            },
            Edit {
                span: new_name.span.clone(),
                text: scalar_text(&new_name, "r/up/web"),
            },
            add_after(TEXT, &new_name, "digest", "sha256:ab"),
        ];
        let out = apply(TEXT, &edits);
        let want = TEXT
            .replace("'web:1'", "'r/web:1@sha256:ab'")
            .replace("\"side:2\"", "\"r/side:2\"")
            .replace(
                "    newName: up/web\n",
                "    newName: r/up/web\n    digest: sha256:ab\n",
            );
        assert_eq!(out, want);
        Ok(())
    }

    #[test]
    fn aliases_are_refused() {
        assert!(parse("a: &x web:1\nb: *x\n").is_err_and(|e| e.contains("alias")));
    }
}
