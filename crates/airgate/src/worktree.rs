//! A Git work tree as the change-control commands use it: through the
//! user's own `git` (their identity, their signing configuration), never
//! pushing. airgate prepares the commit; the user reviews and pushes it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A work tree, found from a path inside it.
#[derive(Debug)]
pub struct Worktree {
    pub root: PathBuf,
}

impl Worktree {
    /// The work tree `path` is in.
    pub fn of(path: &Path) -> Result<Worktree> {
        let dir = if path.is_dir() {
            path.to_path_buf()
        } else {
            path.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let root = git_in(&dir, &["rev-parse", "--show-toplevel"])
            .with_context(|| format!("{} is not in a Git work tree", path.display()))?;
        Ok(Worktree {
            root: PathBuf::from(root.trim()),
        })
    }

    /// `git ARGS` in the work tree's root; its stdout.
    pub fn git(&self, args: &[&str]) -> Result<String> {
        git_in(&self.root, args)
    }

    /// `path` relative to the root, as Git names it (`.` for the root).
    pub fn relative(&self, path: &Path) -> Result<String> {
        let absolute = std::fs::canonicalize(path)
            .or_else(|_| {
                // A path that does not exist now may have existed at the
                // revision asked for: resolve its parent.
                let parent = path.parent().unwrap_or(Path::new("."));
                let parent = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                std::fs::canonicalize(parent).map(|p| p.join(path.file_name().unwrap_or_default()))
            })
            .with_context(|| path.display().to_string())?;
        let root = std::fs::canonicalize(&self.root)?;
        let rel = absolute.strip_prefix(&root).with_context(|| {
            format!(
                "{} is outside the work tree {}",
                path.display(),
                root.display()
            )
        })?;
        let rel = rel.to_string_lossy().to_string();
        Ok(if rel.is_empty() { ".".into() } else { rel })
    }

    /// The full commit id `rev` names.
    pub fn commit(&self, rev: &str) -> Result<String> {
        if rev.starts_with('-') {
            bail!("'{rev}' is not a revision");
        }
        Ok(self
            .git(&[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{rev}^{{commit}}"),
            ])
            .with_context(|| format!("'{rev}' names no commit here"))?
            .trim()
            .to_string())
    }

    /// Refuses when anything is staged: the commit must hold only what
    /// airgate changes.
    pub fn nothing_staged(&self) -> Result<()> {
        let staged = self.git(&["diff", "--cached", "--name-only"])?;
        if !staged.trim().is_empty() {
            bail!(
                "the index of {} has staged changes ({}); airgate's commit must hold only its own\nhint: commit or unstage them first (git restore --staged ...)",
                self.root.display(),
                staged.lines().take(5).collect::<Vec<_>>().join(", ")
            );
        }
        Ok(())
    }

    /// The branch checked out, or `None` for a detached HEAD.
    pub fn branch(&self) -> Option<String> {
        self.git(&["symbolic-ref", "--quiet", "--short", "HEAD"])
            .ok()
            .map(|b| b.trim().to_string())
            .filter(|b| !b.is_empty())
    }
}

fn git_in(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .context("running git (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A commit message: `subject`, an optional body, then trailers (`Key:
/// value`), as `git interpret-trailers` reads them.
pub fn message(subject: &str, body: Option<&str>, trailers: &[(&str, String)]) -> String {
    let mut out = subject.trim().to_string();
    if let Some(body) = body.filter(|b| !b.trim().is_empty()) {
        out.push_str("\n\n");
        out.push_str(body.trim());
    }
    if !trailers.is_empty() {
        out.push_str("\n\n");
        for (k, v) in trailers {
            out.push_str(&format!("{k}: {}\n", v.trim()));
        }
    }
    out
}
