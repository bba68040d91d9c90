//! Rendering: from the paths a user names to the Kubernetes objects they mean.
//!
//! A file is read as multi-document YAML (JSON is YAML too). A directory is
//! read recursively, in name order; a directory holding a `kustomization.yaml`
//! is rendered as one unit with the real `kustomize build`, as Argo CD does,
//! since no Rust implementation of Kustomize exists. Errors name the file and,
//! for YAML, the line.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// A parsed manifest document and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// The file, or `DIR (kustomize build)`.
    pub source: String,
    /// 1-based position among the documents of its source.
    pub index: usize,
    pub value: Value,
}

impl Manifest {
    /// Where it came from, for messages: `SOURCE (document N)`.
    pub fn origin(&self) -> String {
        format!("{} (document {})", self.source, self.index)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid YAML: {message}")]
    Yaml { path: String, message: String },
    #[error("{path} (document {index}): {message}")]
    NotAnObject {
        path: String,
        index: usize,
        message: String,
    },
    #[error(
        "{dir} has a kustomization file, but no kustomize binary was found\n\
         hint: install kustomize, or name it with --kustomize PATH or AIRGATE_KUSTOMIZE"
    )]
    NoKustomize { dir: String },
    #[error("kustomize build {dir} failed: {stderr}")]
    Kustomize { dir: String, stderr: String },
}

/// Files recognised inside directories (a file named explicitly is always read).
const MANIFEST_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];
const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// How to render: where the kustomize binary is.
#[derive(Clone, Debug, Default)]
pub struct Renderer {
    kustomize: Option<PathBuf>,
}

impl Renderer {
    /// `kustomize` is the binary to use; `None` looks for `$AIRGATE_KUSTOMIZE`,
    /// then `kustomize` on `PATH`, when a kustomization is met.
    pub fn new(kustomize: Option<PathBuf>) -> Renderer {
        Renderer { kustomize }
    }

    /// Every object under `paths`, in order.
    pub fn render(&self, paths: &[PathBuf]) -> Result<Vec<Manifest>, RenderError> {
        let mut out = Vec::new();
        for path in paths {
            self.render_path(path, &mut out)?;
        }
        Ok(out)
    }

    fn render_path(&self, path: &Path, out: &mut Vec<Manifest>) -> Result<(), RenderError> {
        let meta = std::fs::metadata(path).map_err(|source| io(path, source))?;
        if !meta.is_dir() {
            let text = std::fs::read_to_string(path).map_err(|source| io(path, source))?;
            out.extend(parse_documents(&path.display().to_string(), &text)?);
            return Ok(());
        }
        if KUSTOMIZATION_FILES.iter().any(|k| path.join(k).is_file()) {
            out.extend(self.kustomize_build(path)?);
            return Ok(());
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|source| io(path, source))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(|source| io(path, source))?;
        entries.sort();
        for entry in entries {
            let name = entry
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with('.') {
                continue;
            }
            let manifest_file = entry
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e));
            if entry.is_dir() || manifest_file {
                self.render_path(&entry, out)?;
            }
        }
        Ok(())
    }

    fn kustomize_binary(&self) -> Option<PathBuf> {
        if let Some(k) = &self.kustomize {
            return Some(k.clone());
        }
        if let Some(k) = std::env::var_os("AIRGATE_KUSTOMIZE") {
            return Some(PathBuf::from(k));
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join("kustomize"))
            .find(|p| p.is_file())
    }

    fn kustomize_build(&self, dir: &Path) -> Result<Vec<Manifest>, RenderError> {
        let shown = dir.display().to_string();
        let Some(bin) = self.kustomize_binary() else {
            return Err(RenderError::NoKustomize { dir: shown });
        };
        let out = Command::new(&bin)
            .arg("build")
            .arg(dir)
            .output()
            .map_err(|source| io(&bin, source))?;
        if !out.status.success() {
            return Err(RenderError::Kustomize {
                dir: shown,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        parse_documents(&format!("{shown} (kustomize build)"), &text)
    }
}

fn io(path: &Path, source: std::io::Error) -> RenderError {
    RenderError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Parses multi-document YAML into objects; empty documents are skipped.
pub fn parse_documents(source: &str, text: &str) -> Result<Vec<Manifest>, RenderError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| RenderError::Yaml {
        path: source.to_string(),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    for (i, value) in docs.into_iter().enumerate() {
        let index = i + 1;
        match &value {
            Value::Null => continue,
            Value::Object(map) => {
                if !map.get("kind").is_some_and(Value::is_string) {
                    return Err(RenderError::NotAnObject {
                        path: source.to_string(),
                        index,
                        message: "a Kubernetes object needs a 'kind'".to_string(),
                    });
                }
            }
            other => {
                return Err(RenderError::NotAnObject {
                    path: source.to_string(),
                    index,
                    message: format!(
                        "expected a Kubernetes object (a mapping), found {}",
                        type_name(other)
                    ),
                });
            }
        }
        out.push(Manifest {
            source: source.to_string(),
            index,
            value,
        });
    }
    Ok(out)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_keeps_order_and_skips_empty_documents() {
        let text = "---\nkind: A\nmetadata: {name: a}\n---\n---\nkind: B\nmetadata: {name: b, labels: {on: 'x'}}\n";
        let docs = parse_documents("f.yaml", text).unwrap_or_else(|e| panic!("{e}"));
        let kinds: Vec<_> = docs
            .iter()
            .map(|d| d.value["kind"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(kinds, ["A", "B"]);
        // YAML 1.2: `on` stays a string key, as Kubernetes reads it.
        assert_eq!(docs[1].value["metadata"]["labels"]["on"], "x");
    }

    #[test]
    fn malformed_yaml_names_the_file_and_line() {
        let text = "kind: A\nmetadata:\n  name: a\n  labels: {x: [1, 2}\n";
        let err = parse_documents("apps/a.yaml", text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("apps/a.yaml: invalid YAML"), "{err}");
        assert!(
            err.contains("line 4") || err.contains(":4:") || err.contains(" 4"),
            "{err}"
        );
    }

    #[test]
    fn a_document_that_is_not_an_object_is_refused() {
        let err = parse_documents("x.yaml", "- a\n- b\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("x.yaml (document 1)") && err.contains("a list"),
            "{err}"
        );
    }

    #[test]
    fn directories_are_read_recursively_in_name_order() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("b/.hidden"))?;
        std::fs::write(dir.path().join("b/2.yaml"), "kind: Two\n")?;
        std::fs::write(dir.path().join("b/.hidden/x.yaml"), "kind: Hidden\n")?;
        std::fs::write(dir.path().join("a.yml"), "kind: One\n")?;
        std::fs::write(dir.path().join("notes.txt"), "not yaml: [")?;
        let docs = Renderer::default().render(&[dir.path().to_path_buf()])?;
        let kinds: Vec<_> = docs
            .iter()
            .map(|d| d.value["kind"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(kinds, ["One", "Two"]);
        Ok(())
    }

    #[test]
    fn a_kustomization_without_kustomize_says_what_to_do() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("kustomization.yaml"), "resources: []\n")?;
        let missing = dir.path().join("no-such-kustomize");
        let err = Renderer::new(Some(missing)).render(&[dir.path().to_path_buf()]);
        assert!(err.is_err());
        Ok(())
    }
}
