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

/// `airgate pin` over a corpus (comments, quotes of each kind, flow and
/// block style, key order, a kustomization without a digest, values files
/// by convention and by `--values-path`): the result is byte for byte the
/// expected file, where only version fields differ; a second run changes
/// nothing; `--check` names exactly what the lock does not cover; and
/// kustomize, the real consumer, renders the pinned reference.
#[test]
fn pin_changes_exactly_the_version_fields_and_check_names_what_is_not_pinned() -> Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pin");
    let dir = tempfile::tempdir()?;
    let tree = dir.path().join("tree");
    copy(&corpus.join("in"), &tree)?;
    let pin = |check: bool| -> Result<Output> {
        let lock = corpus.join("airgate.lock").display().to_string();
        let mut args = vec![
            "pin",
            "tree",
            "--lock",
            &lock,
            "--registry",
            "registry.internal:5000/mirror",
            "--values-path",
            "registry.example.com/shop/api:2.0=api.container.ref",
        ];
        if check {
            args.push("--check");
        }
        airgate(dir.path(), &args)
    };
    let out = pin(false)?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "deployment.yaml",
        "values.yaml",
        "overlay/kustomization.yaml",
        "overlay/base.yaml",
    ] {
        let got = std::fs::read(tree.join(name))?;
        let want = std::fs::read(corpus.join("out").join(name))?;
        ensure!(got == want, "{name}:\n{}", String::from_utf8_lossy(&got));
    }
    // Idempotent.
    let out = pin(false)?;
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("in 0 files"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --check: exactly the three references the lock does not cover.
    let out = pin(true)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.code() == Some(1) && stdout.lines().count() == 3,
        "{stdout}"
    );
    for what in [
        "not-in-the-lock:9",
        "images[1]: shop/api:2.0",
        "images[2]: registry.example.com/shop/nothing:1",
    ] {
        ensure!(stdout.contains(what), "{stdout}");
    }
    // The consumer: kustomize renders the pinned reference.
    let p = airgate_testkit::Perimeter::get();
    let built = Command::new(&p.kustomize)
        .arg("build")
        .arg(tree.join("overlay"))
        .output()?;
    let built = String::from_utf8_lossy(&built.stdout);
    ensure!(
        built.contains(&format!(
            "image: registry.internal:5000/mirror/registry.example.com/shop/web:1.2.4@sha256:{}",
            "a".repeat(64)
        )),
        "{built}"
    );
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            copy(&e.path(), &to.join(e.file_name()))?;
        } else {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}
