//! `airgate rollback PATH --to REV`: one commit that returns PATH, and
//! nothing else, to its content at REV. The controller applies it like any
//! commit, so a rollback never fights auto-sync (argo-cd#9570): Git says
//! what runs. Nothing is pushed.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::cli::{Output, RollbackArgs};
use crate::worktree::{Worktree, message};

pub fn run(args: RollbackArgs) -> Result<ExitCode> {
    let tree = Worktree::of(&args.path)?;
    let path = tree.relative(&args.path)?;
    tree.nothing_staged()?;
    let Some(branch) = tree.branch() else {
        bail!("HEAD is detached: check out the branch the App follows (or a new one) first");
    };
    let from = tree.commit("HEAD")?;
    let to = tree.commit(&args.to)?;
    let existed = !tree
        .git(&["ls-tree", "--name-only", &to, "--", &path])?
        .trim()
        .is_empty();
    // The path as it is now goes, the path as it was comes back: files
    // added since are removed, files removed since return.
    tree.git(&["rm", "-r", "-q", "--ignore-unmatch", "--", &path])?;
    if existed {
        tree.git(&["checkout", &to, "--", &path])?;
    }
    if tree
        .git(&["diff", "--cached", "--name-only"])?
        .trim()
        .is_empty()
    {
        eprintln!(
            "{path} is already as it was at {}: nothing to commit",
            short(&to)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let changed: Vec<String> = tree
        .git(&["diff", "--cached", "--name-status"])?
        .lines()
        .map(String::from)
        .collect();
    let mut trailers = vec![
        ("Rolled-back-from", from.clone()),
        ("Rolled-back-to", to.clone()),
    ];
    if let Some(t) = &args.ticket {
        trailers.push(("Ticket", t.clone()));
    }
    let subject = format!("rollback {path} to {}", short(&to));
    let text = message(&subject, args.message.as_deref(), &trailers);
    tree.git(&["commit", "--quiet", "-m", &text, "--", &path])
        .context("committing the rollback (git's identity and signing settings apply)")?;
    let commit = tree.commit("HEAD")?;
    let push = format!("git -C {} push origin {branch}", tree.root.display());
    match args.output {
        Output::Json => crate::out!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "commit": commit, "path": path, "from": from, "to": to,
                "changed": changed, "push": push,
            }))?
        )?,
        Output::Text => {
            crate::out!("{commit}")?;
            eprintln!(
                "rolled {path} back to {} in commit {} ({} file(s) changed; nothing else touched)",
                short(&to),
                short(&commit),
                changed.len()
            );
            eprintln!(
                "hint: review it (git show {}), then push: {push}",
                short(&commit)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn short(rev: &str) -> &str {
    &rev[..rev.len().min(12)]
}
