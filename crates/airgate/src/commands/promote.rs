//! `airgate promote --from envs/stage --to envs/prod`: the version fields
//! of one environment copied to another, and nothing else, in one commit
//! on a new branch with `Promoted-from` and `Ticket` trailers. Version
//! fields: images found in manifests (by document and field), kustomize
//! `images:` entries (`newName`, `newTag`, `digest`, by `name`), a Helm
//! App's chart `version` and `digest`, and `image` values in Helm values
//! files. A digest the internal registry does not have is refused before
//! anything is written. Whatever else differs is left as it is, and said.
//! Nothing is pushed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airgate_core::ImageRef;
use airgate_core::discover::{Document, images_in};
use airgate_oci::RegistryClient;
use airgate_render::edit::{self, Edit, Parsed, Scalar};
use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cli::PromoteArgs;
use crate::worktree::{Worktree, message};

/// A version field: where it is in a file, by document and path.
type Fields = BTreeMap<(usize, String), Scalar>;

/// The version fields of a parsed file, keyed so that the same field in
/// another environment's copy has the same key.
fn version_fields(parsed: &Parsed, file: &Path, only: &[String]) -> Fields {
    let mut out = Fields::new();
    let at = |d: usize, path: &str| {
        parsed
            .scalars
            .iter()
            .find(|s| s.document == d && s.path == path)
            .cloned()
    };
    let wanted = |image: &str| {
        only.is_empty()
            || ImageRef::parse(image).is_ok_and(|r| {
                let last = r
                    .repository()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                only.contains(&last)
            })
    };
    let values_file = file
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("values"));
    for (i, doc) in parsed.documents.iter().enumerate() {
        let d = i + 1;
        if let Some(entries) = doc.get("images").and_then(Value::as_array) {
            for (j, entry) in entries.iter().enumerate() {
                let name = entry
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if !only.is_empty() && !only.iter().any(|o| name.ends_with(o.as_str())) {
                    continue;
                }
                for key in ["newName", "newTag", "digest"] {
                    if let Some(s) = at(d, &format!("images[{j}].{key}")) {
                        out.insert((d, format!("images[name={name}].{key}")), s);
                    }
                }
            }
            continue;
        }
        if doc.get("kind").and_then(Value::as_str) == Some("App") {
            let name = doc["metadata"]["name"].as_str().unwrap_or_default();
            if only.is_empty() || only.iter().any(|o| o == name) {
                for key in ["version", "digest"] {
                    let path = format!("spec.source.helm.{key}");
                    if let Some(s) = at(d, &path) {
                        out.insert((d, path), s);
                    }
                }
            }
            continue;
        }
        let source = file.display().to_string();
        let doc_ref = Document {
            source: &source,
            index: d,
            value: doc,
        };
        for f in images_in(doc_ref, &[]).unwrap_or_default() {
            if let Some(s) = at(d, &f.field).filter(|s| wanted(&s.value)) {
                out.insert((d, f.field.clone()), s);
            }
        }
    }
    if values_file {
        for s in &parsed.scalars {
            if (s.path == "image" || s.path.ends_with(".image")) && wanted(&s.value) {
                out.insert((s.document, s.path.clone()), s.clone());
            }
        }
    }
    out
}

/// One file's promotion: the edits, and what differs that is not a
/// version field.
fn promote_file(
    from: &str,
    to: &str,
    path: &Path,
    only: &[String],
) -> Result<(Vec<Edit>, Vec<String>)> {
    let (pf, pt) = (
        edit::parse(from).map_err(anyhow::Error::msg)?,
        edit::parse(to).map_err(anyhow::Error::msg)?,
    );
    let (vf, vt) = (
        version_fields(&pf, path, only),
        version_fields(&pt, path, only),
    );
    let mut edits = Vec::new();
    for (key, there) in &vt {
        if let Some(source) = vf.get(key)
            && source.value != there.value
        {
            edits.push(Edit {
                span: there.span.clone(),
                text: edit::scalar_text(there, &source.value),
            });
        }
    }
    // A kustomize digest the source has and the target lacks: added.
    for ((d, path), source) in vf.iter().filter(|((_, p), _)| p.ends_with("].digest")) {
        let new_name = path.replace("].digest", "].newName");
        if !vt.contains_key(&(*d, path.clone()))
            && let Some(beside) = vt.get(&(*d, new_name))
        {
            edits.push(edit::add_after(to, beside, "digest", &source.value));
        }
    }
    // What still differs, version fields aside.
    let promoted = edit::apply(to, &edits);
    let after = edit::parse(&promoted).map_err(anyhow::Error::msg)?;
    let mut left = Vec::new();
    for (i, (a, b)) in pf.documents.iter().zip(&after.documents).enumerate() {
        let versions: Vec<String> = vf
            .keys()
            .filter(|(d, _)| *d == i + 1)
            .map(|(_, p)| p.clone())
            .collect();
        for field in airgate_core::fields::changed(Some(b), a) {
            if !versions.iter().any(|v| {
                v == &field
                    || v.starts_with(&format!("{field}."))
                    || field.starts_with(&format!("{v}."))
            }) {
                left.push(format!("document {}: {field}", i + 1));
            }
        }
    }
    Ok((edits, left))
}

/// The YAML files under `dir`, relative to it.
fn yaml_under(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(crate::files::yaml_files(dir)?
        .into_iter()
        .filter_map(|p| p.strip_prefix(dir).ok().map(Path::to_path_buf))
        .collect())
}

pub fn run(args: PromoteArgs) -> Result<ExitCode> {
    let tree = Worktree::of(&args.to)?;
    let (from_rel, to_rel) = (tree.relative(&args.from)?, tree.relative(&args.to)?);
    tree.nothing_staged()?;
    if !tree
        .git(&["status", "--porcelain", "--", &to_rel, &from_rel])?
        .trim()
        .is_empty()
    {
        bail!(
            "{to_rel} or {from_rel} has changes not committed: promote from and to committed content only\nhint: commit or stash them first"
        );
    }
    let from_rev = tree.commit("HEAD")?;
    let mut planned = Vec::new();
    let mut left = Vec::new();
    for rel in yaml_under(&args.to)? {
        let source = args.from.join(&rel);
        if !source.is_file() {
            continue;
        }
        let target = args.to.join(&rel);
        let (from, to) = (
            std::fs::read_to_string(&source)?,
            std::fs::read_to_string(&target)?,
        );
        let (edits, differs) = promote_file(&from, &to, &rel, &args.only)
            .with_context(|| format!("{} -> {}", source.display(), target.display()))?;
        left.extend(
            differs
                .into_iter()
                .map(|d| format!("{}: {d}", rel.display())),
        );
        if !edits.is_empty() {
            planned.push((target, edit::apply(&to, &edits), edits.len()));
        }
    }
    if planned.is_empty() {
        eprintln!("{to_rel} already has {from_rel}'s versions: nothing to promote");
        return Ok(ExitCode::SUCCESS);
    }
    // Every digest promoted must be in the internal registry.
    let client = RegistryClient::new(crate::registry_options::options(&args.registry)?)?;
    let mut missing = Vec::new();
    for (_, text, _) in &planned {
        let parsed = edit::parse(text).map_err(anyhow::Error::msg)?;
        for s in &parsed.scalars {
            let Ok(image) = ImageRef::parse(&s.value) else {
                continue;
            };
            let Some(digest) = image.digest() else {
                continue;
            };
            if !args.internal.iter().any(|r| r == image.registry()) {
                continue;
            }
            let found = crate::block_on(async {
                Ok(client
                    .manifest_digest(image.registry(), image.repository(), digest.as_str())
                    .await?)
            });
            if !matches!(found, Ok(Some(_))) {
                missing.push(image.to_string());
            }
        }
    }
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        bail!(
            "the internal registry does not have: {}; nothing was written\nhint: carry them with a bundle and bundle push first",
            missing.join(", ")
        );
    }
    let branch = args.branch.clone().unwrap_or_else(|| {
        let name = to_rel.replace('/', "-");
        format!("promote/{name}-{}", &from_rev[..12])
    });
    tree.git(&["checkout", "--quiet", "-b", &branch])?;
    let mut changed = 0;
    for (file, text, n) in &planned {
        crate::files::write_atomically(file, text.as_bytes())?;
        changed += n;
    }
    tree.git(&["add", "--", &to_rel])?;
    let mut trailers = vec![("Promoted-from", format!("{from_rel}@{from_rev}"))];
    if let Some(t) = &args.ticket {
        trailers.push(("Ticket", t.clone()));
    }
    let subject = format!("promote {from_rel} to {to_rel}");
    let body = args.message.clone();
    tree.git(&[
        "commit",
        "--quiet",
        "-m",
        &message(&subject, body.as_deref(), &trailers),
        "--",
        &to_rel,
    ])?;
    let commit = tree.commit("HEAD")?;
    crate::out!("{commit}")?;
    eprintln!(
        "promoted {changed} version field(s) from {from_rel} to {to_rel} on branch {branch} (commit {})",
        &commit[..12]
    );
    if !left.is_empty() {
        eprintln!("left as it is (not a version field; change it by hand if it should follow):");
        for l in &left {
            eprintln!("  {l}");
        }
    }
    eprintln!(
        "hint: review it (git show {}), then push: git -C {} push origin {branch}",
        &commit[..12],
        tree.root.display()
    );
    Ok(ExitCode::SUCCESS)
}
