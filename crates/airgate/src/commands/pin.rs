//! `airgate pin PATH --lock L --registry HOST:PORT[/PREFIX]`: every image
//! reference the lock covers, rewritten to the internal registry's
//! digest-pinned reference, at the path `bundle push` puts it: in plain
//! manifests (wherever discovery finds an image), in kustomize `images:`
//! entries (`newName` and `digest`), and in Helm values files (a string
//! under a key named `image`, or a path given with `--values-path`). Only
//! those bytes change ([`airgate_render::edit`]). `--check` changes nothing
//! and exits 1 naming every reference that is not pinned.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airgate_core::ImageRef;
use airgate_core::discover::{Document, images_in};
use airgate_core::lock::{ImageLock, LockedImage};
use airgate_oci::push::Target;
use airgate_render::edit::{self, Edit, Scalar};
use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::cli::{Output, PinArgs};

/// One reference found, and what it becomes.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Found {
    file: String,
    line: usize,
    field: String,
    written: String,
    /// The pinned reference, when the lock covers it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pinned: Option<String>,
}

/// The lock and where its images are inside.
struct Pinning<'a> {
    lock: &'a ImageLock,
    target: Target,
    /// `--values-path IMAGE=PATH`.
    values_paths: Vec<(ImageRef, String)>,
    /// The images kustomizations map (`images[].name`): in manifests they
    /// are placeholders, pinned where the kustomization maps them.
    mapped: Vec<String>,
}

impl Pinning<'_> {
    /// The lock entry for `image` (same name; same tag when it has one):
    /// the source's name, or the name it has in the internal registry (a
    /// reference whose tag was changed by hand, to be pinned again).
    fn entry(&self, image: &ImageRef) -> Option<&LockedImage> {
        let name = image.name();
        let mut same = self.lock.images.iter().filter(|l| {
            l.subject.is_none()
                && (l.reference.name() == name || self.repository(l).is_ok_and(|r| r == name))
        });
        match image.tag() {
            Some(tag) => same.find(|l| l.reference.tag() == Some(tag)),
            None => same.next(),
        }
    }

    /// `INTERNAL/PATH/REPO` for a locked image.
    fn repository(&self, locked: &LockedImage) -> Result<String> {
        let repo = self
            .target
            .repository_for(&locked.reference)
            .map_err(anyhow::Error::msg)?;
        Ok(format!("{}/{repo}", self.target.registry))
    }

    /// The full pinned reference: `INTERNAL/PATH/REPO[:TAG]@DIGEST`.
    fn pinned(&self, locked: &LockedImage) -> Result<String> {
        let tag = locked
            .reference
            .tag()
            .map(|t| format!(":{t}"))
            .unwrap_or_default();
        Ok(format!(
            "{}{tag}@{}",
            self.repository(locked)?,
            locked.digest
        ))
    }

    /// Whether `written` is pinned in the internal registry.
    fn is_pinned(&self, written: &str) -> bool {
        ImageRef::parse(written)
            .is_ok_and(|r| r.digest().is_some() && r.registry() == self.target.registry)
    }
}

pub fn run(args: PinArgs) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&args.lock)
        .with_context(|| format!("reading {}", args.lock.display()))?;
    let lock: ImageLock = serde_saphyr::from_str(&text)
        .with_context(|| format!("{} is not an image lock", args.lock.display()))?;
    let target =
        Target::parse(&args.registry, args.layout.into(), None).map_err(anyhow::Error::msg)?;
    let mut values_paths = Vec::new();
    for v in &args.values_paths {
        let (image, path) = v
            .split_once('=')
            .with_context(|| format!("--values-path {v}: use IMAGE=a.b.image"))?;
        values_paths.push((
            ImageRef::parse(image).with_context(|| format!("--values-path {v}"))?,
            path.to_string(),
        ));
    }
    let files = yaml_files(&args.path)?;
    let pinning = Pinning {
        lock: &lock,
        target,
        values_paths,
        mapped: mapped_names(&files),
    };
    let mut found = Vec::new();
    let mut changed_files = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).with_context(|| file.display().to_string())?;
        let (edits, mut in_file) =
            plan(&pinning, &file, &text).with_context(|| file.display().to_string())?;
        if !edits.is_empty() && !args.check {
            crate::files::write_atomically(&file, edit::apply(&text, &edits).as_bytes())?;
            changed_files += 1;
        }
        found.append(&mut in_file);
    }
    let unpinned: Vec<&Found> = found
        .iter()
        .filter(|f| !pinning.is_pinned(&f.written))
        .collect();
    match args.output {
        Output::Json => crate::out!("{}", serde_json::to_string_pretty(&found)?)?,
        Output::Text => {
            for f in found.iter().filter(|f| !pinning.is_pinned(&f.written)) {
                match (&f.pinned, args.check) {
                    (Some(p), false) => {
                        crate::out!("{}:{} {}: {} -> {p}", f.file, f.line, f.field, f.written)?
                    }
                    _ => crate::out!(
                        "{}:{} {}: {} is not pinned",
                        f.file,
                        f.line,
                        f.field,
                        f.written
                    )?,
                }
            }
        }
    }
    if args.check {
        if unpinned.is_empty() {
            eprintln!(
                "every image reference ({}) is pinned in {}",
                found.len(),
                pinning.target.registry
            );
            return Ok(ExitCode::SUCCESS);
        }
        let uncovered = unpinned.iter().filter(|f| f.pinned.is_none()).count();
        eprintln!(
            "{} of {} image references are not pinned in {}",
            unpinned.len(),
            found.len(),
            pinning.target.registry
        );
        eprintln!(
            "hint: airgate pin {} --lock {} --registry {}{}",
            args.path.display(),
            args.lock.display(),
            args.registry,
            if uncovered > 0 {
                format!(" ({uncovered} are not in the lock: lock them and carry them first)")
            } else {
                String::new()
            }
        );
        return Ok(ExitCode::from(1));
    }
    let left = unpinned.iter().filter(|f| f.pinned.is_none()).count();
    eprintln!(
        "pinned {} references in {changed_files} files{}",
        unpinned.len() - left,
        if left > 0 {
            format!("; {left} are not in the lock and were left as they are")
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// The YAML files under `path`; none is an error.
fn yaml_files(path: &Path) -> Result<Vec<PathBuf>> {
    let out = crate::files::yaml_files(path)?;
    if out.is_empty() {
        bail!("{} holds no YAML file", path.display());
    }
    Ok(out)
}

/// The names kustomizations under the files map (`images[].name`).
fn mapped_names(files: &[PathBuf]) -> Vec<String> {
    let mut out = Vec::new();
    for file in files.iter().filter(|f| {
        f.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("kustomization."))
    }) {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let Ok(parsed) = edit::parse(&text) else {
            continue;
        };
        for doc in &parsed.documents {
            for entry in doc
                .get("images")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
            {
                if let Some(name) = entry.get("name").and_then(|n| n.as_str())
                    && let Ok(image) = ImageRef::parse(name)
                {
                    out.push(image.name());
                }
            }
        }
    }
    out
}

fn is_values_file(file: &Path) -> bool {
    file.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("values"))
}

/// The edits one file needs, and every reference found in it.
fn plan(p: &Pinning, file: &Path, text: &str) -> Result<(Vec<Edit>, Vec<Found>)> {
    let parsed = edit::parse(text).map_err(anyhow::Error::msg)?;
    let shown = file.display().to_string();
    let mut edits = Vec::new();
    let mut found = Vec::new();
    let scalar = |doc: usize, path: &str| {
        parsed
            .scalars
            .iter()
            .find(|s| s.document == doc && s.path == path)
    };
    for (i, doc) in parsed.documents.iter().enumerate() {
        let d = i + 1;
        if let Some(entries) = doc.get("images").and_then(|v| v.as_array())
            && doc.get("kind").is_none_or(|k| k == "Kustomization")
        {
            for (j, entry) in entries.iter().enumerate() {
                kustomize_entry(
                    p, &parsed, text, d, j, entry, &shown, &mut edits, &mut found,
                )?;
            }
            continue;
        }
        let images = images_in(
            Document {
                source: &shown,
                index: d,
                value: doc,
            },
            &[],
        )
        .unwrap_or_default();
        for f in images
            .into_iter()
            .filter(|f| !p.mapped.contains(&f.image.name()))
        {
            let Some(s) = scalar(d, &f.field) else {
                continue;
            };
            let new = p.entry(&f.image).map(|l| p.pinned(l)).transpose()?;
            note(s, new, &shown, &mut edits, &mut found);
        }
    }
    if is_values_file(file) {
        for s in &parsed.scalars {
            let by_convention = s.path == "image" || s.path.ends_with(".image");
            let given = p.values_paths.iter().find(|(_, path)| *path == s.path);
            let image = match (given, by_convention) {
                (Some((image, _)), _) => Some(image.clone()),
                (None, true) => ImageRef::parse(&s.value).ok(),
                _ => None,
            };
            let Some(image) = image else { continue };
            let locked = p.entry(&image);
            if locked.is_none() && given.is_none() && !s.value.contains('/') {
                continue;
            }
            let new = locked.map(|l| p.pinned(l)).transpose()?;
            note(s, new, &shown, &mut edits, &mut found);
        }
    }
    Ok((edits, found))
}

/// `s` found, becoming `new` when the lock covers it.
fn note(
    s: &Scalar,
    new: Option<String>,
    file: &str,
    edits: &mut Vec<Edit>,
    found: &mut Vec<Found>,
) {
    if let Some(new) = &new
        && new != &s.value
    {
        edits.push(Edit {
            span: s.span.clone(),
            text: edit::scalar_text(s, new),
        });
    }
    found.push(Found {
        file: file.to_string(),
        line: s.line,
        field: s.path.clone(),
        written: s.value.clone(),
        pinned: new,
    });
}

/// A kustomize `images:` entry: `newName` (or `name`) and `newTag` say
/// the image; `newName` and `digest` are set to the internal registry's.
#[allow(clippy::too_many_arguments)]
fn kustomize_entry(
    p: &Pinning,
    parsed: &edit::Parsed,
    text: &str,
    d: usize,
    j: usize,
    entry: &serde_json::Value,
    shown: &str,
    edits: &mut Vec<Edit>,
    found: &mut Vec<Found>,
) -> Result<()> {
    let at = |key: &str| {
        parsed
            .scalars
            .iter()
            .find(|s| s.document == d && s.path == format!("images[{j}].{key}"))
    };
    let (Some(name), new_name) = (at("name"), at("newName")) else {
        return Ok(());
    };
    let base = new_name.unwrap_or(name);
    let tag = entry.get("newTag").and_then(|t| t.as_str());
    let written = match tag {
        Some(t) => format!("{}:{t}", base.value),
        None => base.value.clone(),
    };
    let Ok(image) = ImageRef::parse(&written) else {
        return Ok(());
    };
    let digest = at("digest");
    let current = match digest {
        Some(dg) => format!("{}@{}", written, dg.value),
        None => written.clone(),
    };
    // Already rewritten or not, `entry` finds it (by either name).
    let locked = p.entry(&image);
    let mut pinned = None;
    if let Some(l) = locked {
        let repo = p.repository(l)?;
        if repo != base.value {
            edits.push(Edit {
                span: base.span.clone(),
                text: edit::scalar_text(base, &repo),
            });
        }
        let dg = l.digest.to_string();
        match digest {
            Some(s) if s.value != dg => edits.push(Edit {
                span: s.span.clone(),
                text: edit::scalar_text(s, &dg),
            }),
            Some(_) => {}
            None => edits.push(edit::add_after(text, base, "digest", &dg)),
        }
        pinned = Some(format!(
            "{repo}{}@{dg}",
            tag.map(|t| format!(":{t}")).unwrap_or_default()
        ));
    }
    found.push(Found {
        file: shown.to_string(),
        line: base.line,
        field: format!("images[{j}]"),
        written: current,
        pinned,
    });
    Ok(())
}
