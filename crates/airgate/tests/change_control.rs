//! The change-control commands on a plain Git work tree (no server):
//! `rollback` changes the path asked for and nothing else, and refuses to
//! mix its commit with changes someone staged.

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Result, ensure};

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=T",
            "-c",
            "user.email=t@x.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()?;
    ensure!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn airgate(dir: &Path, args: &[&str]) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_airgate"))
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "R")
        .env("GIT_AUTHOR_EMAIL", "r@x.invalid")
        .env("GIT_COMMITTER_NAME", "R")
        .env("GIT_COMMITTER_EMAIL", "r@x.invalid")
        .output()?)
}

fn write(dir: &Path, path: &str, text: &str) -> Result<()> {
    let p = dir.join(path);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(p, text)?;
    Ok(())
}

#[test]
fn rollback_returns_only_the_path_and_refuses_a_staged_change() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    git(d, &["init", "--quiet", "--initial-branch", "main"])?;
    write(d, "envs/prod/web.yaml", "image: web:1.2.3\n")?;
    write(d, "envs/stage/web.yaml", "image: web:1.2.3\n")?;
    git(d, &["add", "--all"])?;
    git(d, &["commit", "--quiet", "-m", "1.2.3"])?;
    let good = git(d, &["rev-parse", "HEAD"])?;
    write(d, "envs/prod/web.yaml", "image: web:1.2.4\n")?;
    write(d, "envs/prod/extra.yaml", "added: later\n")?;
    write(d, "envs/stage/web.yaml", "image: web:1.2.4\n")?;
    git(d, &["add", "--all"])?;
    git(d, &["commit", "--quiet", "-m", "1.2.4"])?;
    let bad = git(d, &["rev-parse", "HEAD"])?;

    // Someone's staged change: refused, nothing committed.
    write(d, "README", "draft\n")?;
    git(d, &["add", "README"])?;
    let out = airgate(d, &["rollback", "envs/prod", "--to", &good])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("staged changes") && stderr.contains("README"),
        "{stderr}"
    );
    ensure!(git(d, &["rev-parse", "HEAD"])? == bad);
    git(d, &["restore", "--staged", "README"])?;

    let out = airgate(
        d,
        &["rollback", "envs/prod", "--to", &good, "--ticket", "CHG-1"],
    )?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
    ensure!(git(d, &["rev-parse", "HEAD"])? == commit);
    // Only envs/prod changed: its file back, the file added since gone.
    let changed = git(d, &["diff", "--name-status", &bad, &commit])?;
    ensure!(
        changed == "D\tenvs/prod/extra.yaml\nM\tenvs/prod/web.yaml",
        "{changed}"
    );
    ensure!(std::fs::read_to_string(d.join("envs/stage/web.yaml"))? == "image: web:1.2.4\n");
    let message = git(d, &["log", "-1", "--format=%B"])?;
    for t in [
        format!("Rolled-back-from: {bad}"),
        format!("Rolled-back-to: {good}"),
        "Ticket: CHG-1".into(),
    ] {
        ensure!(message.contains(&t), "{message}");
    }
    let trailers = git(
        d,
        &["log", "-1", "--format=%(trailers:key=Ticket,valueonly)"],
    )?;
    ensure!(trailers == "CHG-1", "git reads the trailer: {trailers:?}");

    // Again: nothing to do.
    let out = airgate(d, &["rollback", "envs/prod", "--to", &good])?;
    ensure!(
        out.status.success() && String::from_utf8_lossy(&out.stderr).contains("nothing to commit")
    );
    ensure!(git(d, &["rev-parse", "HEAD"])? == commit);
    Ok(())
}
