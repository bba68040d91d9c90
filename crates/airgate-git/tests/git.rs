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
