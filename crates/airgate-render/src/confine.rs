//! Keeping `kustomize build` inside the repository, before it runs.
//!
//! Why this exists: a kustomization is a program. A remote base
//! (`github.com/org/repo//base?ref=v1`, `https://...`) makes kustomize and
//! git reach the network, and a path such as `../../../../etc/airgate` makes
//! it read the controller's own files and apply them. The controller renders
//! tenants' repositories, so every path a kustomization names is checked
//! first: it must be relative and stay inside the repository; anything
//! remote is refused with a hint to vendor it. Helm charts through
//! kustomize's inflator are refused too (it runs `helm pull`).
//!
//!
//! This is a check of what the files say, done on the copy of the tree
//! airgate wrote out (where no link exists: Git links are not written).

use std::path::{Component, Path, PathBuf};

use serde_json::Value;

/// Kustomization fields whose strings (or lists of strings) are paths.
const PATH_FIELDS: [&str; 9] = [
    "resources",
    "bases",
    "components",
    "crds",
    "configurations",
    "generators",
    "transformers",
    "validators",
    "patchesStrategicMerge",
];

/// Why a kustomization may not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfineError {
    #[error(
        "{file}: '{reference}' in {field} is remote; airgate renders only what is in the repository\nhint: vendor the base into the repository and refer to it by a relative path"
    )]
    Remote {
        file: String,
        field: String,
        reference: String,
    },
    #[error("{file}: '{reference}' in {field} leads outside the repository; refusing it")]
    Outside {
        file: String,
        field: String,
        reference: String,
    },
    #[error(
        "{file}: helmCharts makes kustomize pull charts; airgate does not let kustomize reach out\nhint: render the chart into the repository"
    )]
    HelmCharts { file: String },
    #[error("{file}: not a valid kustomization: {message}")]
    Invalid { file: String, message: String },
}

/// Checks every kustomization `kustomize build` of `start` would read:
/// the one in `start` (or, for a plain directory, those in directories
/// below it), and those of every directory they refer to, all under `root`
/// (the repository as written out, perhaps only in part). `shown(path)`
/// names a file in messages. Returns the paths referred to that are not
/// written out (yet): the caller, which writes out only what an App needs,
/// reads them from Git and checks again.
pub fn check_from(
    root: &Path,
    start: &Path,
    shown: &dyn Fn(&Path) -> String,
) -> Result<Vec<PathBuf>, ConfineError> {
    let mut queue = vec![start.to_path_buf()];
    let mut missing = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    while let Some(dir) = queue.pop() {
        if !seen.insert(dir.clone()) {
            continue;
        }
        let Some(file) = crate::kustomization_file(&dir) else {
            // A plain directory: the renderer walks into its subdirectories.
            queue.extend(subdirectories(&dir));
            continue;
        };
        let text = std::fs::read_to_string(&file).map_err(|e| ConfineError::Invalid {
            file: shown(&file),
            message: e.to_string(),
        })?;
        for referred in check(root, &file, &text, &shown(&file))? {
            if referred.is_dir() {
                queue.push(referred);
            } else if !referred.exists() {
                missing.push(referred);
            }
        }
    }
    Ok(missing)
}

/// Checks one kustomization file at `file` (under `root`) whose text is
/// `text`; returns the paths it refers to, resolved.
pub fn check(
    root: &Path,
    file: &Path,
    text: &str,
    shown: &str,
) -> Result<Vec<PathBuf>, ConfineError> {
    let docs = crate::parse_values(text).map_err(|message| ConfineError::Invalid {
        file: shown.to_string(),
        message,
    })?;
    let dir = file.parent().unwrap_or(root);
    let mut referred = Vec::new();
    for doc in docs {
        if doc.get("helmCharts").is_some_and(|v| !v.is_null()) {
            return Err(ConfineError::HelmCharts {
                file: shown.to_string(),
            });
        }
        for (field, reference) in references(&doc) {
            let resolved = confined(root, dir, &reference).map_err(|remote| {
                if remote {
                    ConfineError::Remote {
                        file: shown.to_string(),
                        field: field.clone(),
                        reference: crate::shown(&reference),
                    }
                } else {
                    ConfineError::Outside {
                        file: shown.to_string(),
                        field: field.clone(),
                        reference: crate::shown(&reference),
                    }
                }
            })?;
            referred.push(resolved);
        }
    }
    Ok(referred)
}

/// `text` with every `secretGenerator` literal of the kustomizations under
/// `root` (whole, and its value after `=`) replaced by `<redacted>`:
/// kustomize quotes a literal it cannot parse in its error.
pub fn scrub_literals(root: &Path, text: String) -> String {
    let mut secrets = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Some(file) = crate::kustomization_file(&dir) {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            for doc in crate::parse_values(&text).unwrap_or_default() {
                literals(&doc, &mut secrets);
            }
        }
        stack.extend(subdirectories(&dir));
    }
    airgate_core::text::redact(text, secrets)
}

/// The directories directly in `dir` (not through links).
fn subdirectories(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

fn literals(doc: &Value, out: &mut Vec<String>) {
    let generators = doc.get("secretGenerator").and_then(Value::as_array);
    for g in generators.into_iter().flatten() {
        for l in g
            .get("literals")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(l) = l.as_str() {
                out.push(l.to_string());
                if let Some((_, value)) = l.split_once('=') {
                    out.push(value.to_string());
                }
            }
        }
    }
}

/// Every `(field, path)` a kustomization names.
fn references(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut push = |field: &str, v: &Value| {
        if let Some(s) = v.as_str() {
            out.push((field.to_string(), s.to_string()));
        }
    };
    for field in PATH_FIELDS {
        match doc.get(field) {
            Some(Value::Array(items)) => items.iter().for_each(|v| push(field, v)),
            Some(v) => push(field, v),
            None => {}
        }
    }
    for field in ["patches", "patchesJson6902", "replacements"] {
        for item in doc
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match item {
                Value::String(_) => push(field, item),
                other => push(field, other.get("path").unwrap_or(&Value::Null)),
            }
        }
    }
    if let Some(path) = doc.get("openapi").and_then(|o| o.get("path")) {
        push("openapi.path", path);
    }
    for field in ["configMapGenerator", "secretGenerator"] {
        for item in doc
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for key in ["files", "envs"] {
                for f in item
                    .get(key)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    // `files` entries may be `key=path`.
                    if let Some(s) = f.as_str() {
                        let path = s.split_once('=').map_or(s, |(_, p)| p);
                        push(&format!("{field}.{key}"), &Value::String(path.to_string()));
                    }
                }
            }
            if let Some(env) = item.get("env") {
                push(&format!("{field}.env"), env);
            }
        }
    }
    out
}

/// The path `reference` names when it is relative and stays inside
/// `root`; `Err(true)` when it is remote, `Err(false)` when it leaves.
fn confined(root: &Path, dir: &Path, reference: &str) -> Result<PathBuf, bool> {
    let remote = reference.contains("://")
        || reference.starts_with("git@")
        || reference.contains("?ref=")
        || reference.contains("//")
        || ["github.com/", "gitlab.com/", "bitbucket.org/"]
            .iter()
            .any(|h| reference.starts_with(h));
    if remote {
        return Err(true);
    }
    let path = Path::new(reference);
    if path.is_absolute() {
        return Err(false);
    }
    let mut at: PathBuf = dir.to_path_buf();
    for c in path.components() {
        match c {
            Component::Normal(n) => at.push(n),
            Component::ParentDir => {
                if !at.pop() {
                    return Err(false);
                }
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err(false),
        }
    }
    if at.starts_with(root) {
        Ok(at)
    } else {
        Err(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(text: &str) -> Result<(), ConfineError> {
        let root = Path::new("/repo");
        check(
            root,
            Path::new("/repo/overlays/prod/kustomization.yaml"),
            text,
            "k",
        )
        .map(|_| ())
    }

    #[test]
    fn secret_generator_literals_are_scrubbed_from_kustomize_errors() -> Result<(), std::io::Error>
    {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            "secretGenerator:\n- name: s\n  literals: [hunter2-secret, \"user=also-secret\"]\n",
        )?;
        let stderr = "Error: loading KV pairs: literal sources [hunter2-secret]: invalid literal source hunter2-secret, expected key=value; also-secret".to_string();
        let out = scrub_literals(dir.path(), stderr);
        assert!(
            !out.contains("hunter2") && !out.contains("also-secret"),
            "{out}"
        );
        assert!(out.contains("invalid literal source <redacted>"), "{out}");
        Ok(())
    }

    #[test]
    fn relative_paths_inside_the_repository_pass() {
        let ok = "resources:\n- ../../base\n- deploy.yaml\npatches:\n- path: p.yaml\n- patch: |-\n    - op: add\nconfigMapGenerator:\n- name: c\n  files: [k=conf/a.txt]\n";
        assert_eq!(verdict(ok), Ok(()));
    }

    #[test]
    fn remote_bases_and_paths_out_of_the_repository_are_refused() {
        for (text, remote) in [
            ("resources:\n- github.com/org/repo//base?ref=v1\n", true),
            ("resources:\n- https://example.invalid/app.yaml\n", true),
            ("bases:\n- git@github.com:org/repo.git\n", true),
            ("resources:\n- ../../../../etc/airgate\n", false),
            ("resources:\n- /etc/passwd\n", false),
            ("components:\n- ../../../x\n", false),
            ("patches:\n- path: ../../../../secret.yaml\n", false),
            (
                "secretGenerator:\n- name: s\n  files: [k=../../../../root/.ssh/id_rsa]\n",
                false,
            ),
            (
                "configMapGenerator:\n- name: c\n  envs: [/proc/self/environ]\n",
                false,
            ),
        ] {
            match verdict(text) {
                Err(ConfineError::Remote { .. }) if remote => {}
                Err(ConfineError::Outside { .. }) if !remote => {}
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(
            verdict("helmCharts:\n- name: x\n  repo: https://charts.invalid\n"),
            Err(ConfineError::HelmCharts { .. })
        ));
    }
}
