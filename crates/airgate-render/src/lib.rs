//! Rendering: from the paths a user names to the Kubernetes objects they mean.
//!
//! A file is read as multi-document YAML (JSON is YAML too). A directory is
//! read recursively, in name order; a directory holding a `kustomization.yaml`
//! is rendered as one unit with the real `kustomize build`, as Argo CD does,
//! since no Rust implementation of Kustomize exists; a Helm chart with the
//! real `helm template` ([`helm`]). Errors name the file and,
//! for YAML, the line.

pub mod confine;
pub mod edit;
pub mod helm;

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
        "{path} is a symbolic link that leads outside the directory being read; airgate does not follow it\n\
         hint: copy the file into the tree, or name it on the command line"
    )]
    Outside { path: String },
    #[error("{path} is not a regular file (a FIFO, device or socket); refusing to read it")]
    NotAFile { path: String },
    #[error("{path} is larger than {MAX_FILE} bytes; refusing to read it")]
    TooLarge { path: String },
    #[error(
        "{dir} has a kustomization file, but no kustomize binary was found\n\
         hint: install kustomize, or name it with --kustomize PATH or AIRGATE_KUSTOMIZE"
    )]
    NoKustomize { dir: String },
    #[error("kustomize build {dir} failed: {stderr}")]
    Kustomize { dir: String, stderr: String },
    #[error(
        "{chart} is a Helm chart, but no helm binary was found\n\
         hint: install helm (v3 or v4), or name it with --helm PATH or AIRGATE_HELM"
    )]
    NoHelm { chart: String },
    #[error("helm template {chart} failed: {stderr}")]
    Helm { chart: String, stderr: String },
}

/// One thing a directory walk renders.
enum Unit {
    File(PathBuf, std::fs::Metadata),
    Kustomize(PathBuf),
}

/// Files recognised inside directories (a file named explicitly is always read).
const MANIFEST_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];
const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// How to render: where the kustomize and helm binaries are, and what a
/// chart is rendered with.
#[derive(Clone, Debug, Default)]
pub struct Renderer {
    kustomize: Option<PathBuf>,
    helm: Option<PathBuf>,
    helm_options: helm::HelmOptions,
}

impl Renderer {
    /// `kustomize` is the binary to use; `None` looks for `$AIRGATE_KUSTOMIZE`,
    /// then `kustomize` on `PATH`, when a kustomization is met.
    pub fn new(kustomize: Option<PathBuf>) -> Renderer {
        Renderer {
            kustomize,
            ..Renderer::default()
        }
    }

    /// Renders charts with `helm` (`None`: `$AIRGATE_HELM`, then `helm` on
    /// `PATH`) and `options`.
    pub fn with_helm(mut self, helm: Option<PathBuf>, options: helm::HelmOptions) -> Renderer {
        self.helm = helm;
        self.helm_options = options;
        self
    }

    /// The objects of the chart `chart` rendered with `options`.
    pub fn chart(
        &self,
        chart: &Path,
        options: &helm::HelmOptions,
    ) -> Result<Vec<Manifest>, RenderError> {
        let bin =
            binary(&self.helm, "AIRGATE_HELM", "helm").ok_or_else(|| RenderError::NoHelm {
                chart: chart.display().to_string(),
            })?;
        helm::template(&bin, chart, options)
    }

    /// Every object under `paths`, in order.
    ///
    /// Guarantees, for each directory named: the walk stays inside it. A
    /// symbolic link is followed only when it resolves inside that directory
    /// and to a regular file (links to directories are not followed: what
    /// they point at inside the tree is read under its own name, and links
    /// to `.` cannot make the walk loop); a link out of the tree, a FIFO, a
    /// device or a socket is refused naming it, so nothing outside the tree
    /// is ever read, let alone quoted in an error. Every file is at most
    /// [`MAX_FILE`] bytes.
    pub fn render(&self, paths: &[PathBuf]) -> Result<Vec<Manifest>, RenderError> {
        let mut out = Vec::new();
        for path in paths {
            if helm::is_chart(path) {
                out.extend(self.chart(path, &self.helm_options)?);
                continue;
            }
            let meta = std::fs::metadata(path).map_err(|source| io(path, source))?;
            if meta.is_dir() {
                let root = path.canonicalize().map_err(|source| io(path, source))?;
                self.render_dir(&root, path, &mut out)?;
            } else {
                // A file named explicitly is the user's choice; it must
                // still be a regular file of bounded size.
                read_manifest_file(path, &meta, &mut out)?;
            }
        }
        Ok(out)
    }

    /// Every object under `dir`, in name order. Files are parsed on every
    /// core (contiguous runs of them, so the order stays the walk's).
    fn render_dir(
        &self,
        root: &Path,
        dir: &Path,
        out: &mut Vec<Manifest>,
    ) -> Result<(), RenderError> {
        let mut units = Vec::new();
        self.walk(root, dir, &mut units)?;
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(units.len().max(1));
        let per = units.len().div_ceil(threads).max(1);
        let results: Vec<Result<Vec<Manifest>, RenderError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = units
                .chunks(per)
                .map(|chunk| {
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .map(|unit| match unit {
                                Unit::File(path, meta) => {
                                    let mut objects = Vec::new();
                                    read_manifest_file(path, meta, &mut objects).map(|_| objects)
                                }
                                Unit::Kustomize(dir) => self.kustomize_build(root, dir),
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| {
                    h.join().unwrap_or_else(|_| {
                        vec![Err(RenderError::Io {
                            path: dir.display().to_string(),
                            source: std::io::Error::other("a reader thread failed"),
                        })]
                    })
                })
                .collect()
        });
        for r in results {
            out.extend(r?);
        }
        Ok(())
    }

    /// What `dir` holds to render, in order: files to read, and
    /// directories with a kustomization to build (see [`Renderer::render`]
    /// for what the walk refuses).
    fn walk(&self, root: &Path, dir: &Path, units: &mut Vec<Unit>) -> Result<(), RenderError> {
        if kustomization_file(dir).is_some() {
            units.push(Unit::Kustomize(dir.to_path_buf()));
            return Ok(());
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| io(dir, source))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(|source| io(dir, source))?;
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
            let own = std::fs::symlink_metadata(&entry).map_err(|source| io(&entry, source))?;
            if own.is_dir() {
                self.walk(root, &entry, units)?;
                continue;
            }
            if !manifest_file {
                continue;
            }
            if own.file_type().is_symlink() {
                let target = entry.canonicalize().map_err(|source| io(&entry, source))?;
                if !target.starts_with(root) {
                    return Err(RenderError::Outside {
                        path: entry.display().to_string(),
                    });
                }
                let meta = std::fs::metadata(&target).map_err(|source| io(&entry, source))?;
                if meta.is_dir() {
                    continue;
                }
                units.push(Unit::File(entry, meta));
            } else {
                units.push(Unit::File(entry, own));
            }
        }
        Ok(())
    }

    fn kustomize_build(&self, root: &Path, dir: &Path) -> Result<Vec<Manifest>, RenderError> {
        let shown = dir.display().to_string();
        let Some(bin) = binary(&self.kustomize, "AIRGATE_KUSTOMIZE", "kustomize") else {
            return Err(RenderError::NoKustomize { dir: shown });
        };
        let out = Command::new(&bin)
            .arg("build")
            .arg(dir)
            .output()
            .map_err(|source| io(&bin, source))?;
        if !out.status.success() {
            // kustomize quotes a bad secretGenerator literal whole.
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(RenderError::Kustomize {
                dir: shown,
                stderr: confine::scrub_literals(root, stderr),
            });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        parse_documents(&format!("{shown} (kustomize build)"), &text)
    }
}

/// The binary to run: the one given, else `$VAR`, else `name` on `PATH`.
fn binary(given: &Option<PathBuf>, var: &str, name: &str) -> Option<PathBuf> {
    if let Some(b) = given {
        return Some(b.clone());
    }
    if let Some(b) = std::env::var_os(var) {
        return Some(PathBuf::from(b));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The largest manifest file read; larger ones are refused, not loaded.
pub const MAX_FILE: u64 = 64 << 20;

/// Reads one manifest file, which `meta` (already looked at) says is what.
fn read_manifest_file(
    path: &Path,
    meta: &std::fs::Metadata,
    out: &mut Vec<Manifest>,
) -> Result<(), RenderError> {
    use std::io::Read;
    if !meta.is_file() {
        return Err(RenderError::NotAFile {
            path: path.display().to_string(),
        });
    }
    let file = std::fs::File::open(path).map_err(|source| io(path, source))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| io(path, source))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(RenderError::TooLarge {
            path: path.display().to_string(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| RenderError::Yaml {
        path: path.display().to_string(),
        message: "not UTF-8 text".to_string(),
    })?;
    out.extend(parse_documents(&path.display().to_string(), &text)?);
    Ok(())
}

fn io(path: &Path, source: std::io::Error) -> RenderError {
    RenderError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What one YAML stream may cost. The parser's defaults (1,024 documents,
/// 250,000 nodes) refused real streams: a 12 MB file of 262 documents, and
/// `kustomize build` of kube-prometheus, Argo CD and cert-manager together.
/// These are sized for a [`MAX_FILE`] stream of real manifests (about one
/// node per 40 bytes); alias expansion keeps the parser's own limits, so an
/// alias bomb is still refused.
fn budget() -> serde_saphyr::Budget {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = 1_000_000;
    budget.max_nodes = 20_000_000;
    budget.max_events = 40_000_000;
    budget.max_total_scalar_bytes = 512 << 20;
    budget.max_depth = 128;
    budget
}

/// The kustomization file of `dir`, if it has one.
pub(crate) fn kustomization_file(dir: &Path) -> Option<PathBuf> {
    KUSTOMIZATION_FILES
        .iter()
        .map(|k| dir.join(k))
        .find(|f| f.is_file())
}

/// Untrusted text for a message: escaped and short.
pub(crate) fn shown(s: &str) -> String {
    airgate_core::text::shown(s, 200)
}

/// Parses multi-document YAML into values, with the budget and without
/// quoting the input in errors.
pub(crate) fn parse_values(text: &str) -> Result<Vec<Value>, String> {
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget());
    options.with_snippet = false;
    serde_saphyr::from_multiple_with_options(text, options).map_err(|e| e.to_string())
}

/// Parses multi-document YAML into objects; empty documents are skipped.
/// Errors give the line and column, never a snippet of the input: a
/// manifest may hold a Secret, and an error must not quote it.
pub fn parse_documents(source: &str, text: &str) -> Result<Vec<Manifest>, RenderError> {
    let docs: Vec<Value> = parse_values(text).map_err(|message| RenderError::Yaml {
        path: source.to_string(),
        message,
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
                        airgate_core::discover::kind_of(other)
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

    /// A stream the size of kube-prometheus, Argo CD and cert-manager
    /// rendered together (CRDs with deep schemas, thousands of documents).
    #[test]
    fn large_real_world_streams_pass_the_parser_budget() {
        let mut text = String::new();
        for i in 0..300 {
            text.push_str(&format!(
                "---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: crd{i}.example.com}}\nspec:\n  versions:\n"
            ));
            let mut indent = String::from("    ");
            text.push_str(&format!("{indent}- name: v1\n{indent}  schema:\n"));
            for depth in 0..20 {
                indent.push_str("  ");
                text.push_str(&format!("{indent}p{depth}:\n"));
            }
            for k in 0..1200 {
                text.push_str(&format!(
                    "{indent}  f{k}: {{type: string, description: \"field {k}\"}}\n"
                ));
            }
        }
        for i in 0..3000 {
            text.push_str(&format!("---\nkind: ConfigMap\nmetadata: {{name: c{i}}}\n"));
        }
        assert!(text.len() > 12 << 20, "{} bytes", text.len());
        let docs = parse_documents("big.yaml", &text);
        assert_eq!(docs.map(|d| d.len()).map_err(|e| e.to_string()), Ok(3300));
    }

    #[test]
    fn an_alias_bomb_is_still_refused() {
        let mut text = String::from("kind: Bomb\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        assert!(parse_documents("bomb.yaml", &text).is_err());
    }

    #[test]
    fn yaml_errors_do_not_quote_the_input() {
        let text = "kind: Secret\nstringData:\n  password: hunter2-very-secret\n  bad: [\n";
        let err = parse_documents("s.yaml", text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("s.yaml"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
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
    fn links_to_dot_do_not_make_the_walk_loop_or_explode() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("a.yaml"), "kind: One\n")?;
        std::os::unix::fs::symlink(".", dir.path().join("l1"))?;
        std::os::unix::fs::symlink(".", dir.path().join("l2.yaml"))?;
        std::os::unix::fs::symlink("a.yaml", dir.path().join("b.yaml"))?;
        let started = std::time::Instant::now();
        let docs = Renderer::default().render(&[dir.path().to_path_buf()])?;
        assert_eq!(docs.len(), 2, "a.yaml, and b.yaml that links to it");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        Ok(())
    }

    #[test]
    fn a_link_out_of_the_tree_is_refused_without_quoting_its_target()
    -> Result<(), Box<dyn std::error::Error>> {
        let outside = tempfile::tempdir()?;
        let secret = outside.path().join("token.yaml");
        std::fs::write(&secret, "API_TOKEN=s3cr3t\n")?;
        let dir = tempfile::tempdir()?;
        std::os::unix::fs::symlink(&secret, dir.path().join("x.yaml"))?;
        let err = Renderer::default()
            .render(&[dir.path().to_path_buf()])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("outside the directory"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
        Ok(())
    }

    #[test]
    fn fifos_and_devices_are_refused_not_read() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let fifo = dir.path().join("pipe.yaml");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status()?;
        assert!(made.success());
        let err = Renderer::default().render(&[dir.path().to_path_buf()]);
        assert!(err.is_err_and(|e| e.to_string().contains("not a regular file")));
        let err = Renderer::default().render(&[PathBuf::from("/dev/zero")]);
        assert!(err.is_err_and(|e| e.to_string().contains("not a regular file")));
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
