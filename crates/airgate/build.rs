//! Names the build in the binary: the commit it was built from and that
//! commit's date (not the time of the build, so the same commit always
//! builds the same bytes). `AIRGATE_COMMIT` and `AIRGATE_COMMIT_DATE`
//! override them (a source tarball has no Git); without either, `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit = std::env::var("AIRGATE_COMMIT")
        .ok()
        .or_else(|| git(&["rev-parse", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let date = std::env::var("AIRGATE_COMMIT_DATE")
        .ok()
        .or_else(|| git(&["log", "-1", "--format=%cd", "--date=format:%Y-%m-%d"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=AIRGATE_COMMIT={commit}");
    println!(
        "cargo:rustc-env=AIRGATE_COMMIT_SHORT={}",
        &commit[..commit.len().min(12)]
    );
    println!("cargo:rustc-env=AIRGATE_COMMIT_DATE={date}");
    println!("cargo:rerun-if-env-changed=AIRGATE_COMMIT");
    println!("cargo:rerun-if-env-changed=AIRGATE_COMMIT_DATE");
    // A new commit moves HEAD, or the branch it names. Only files that
    // exist: cargo runs a build script every time for a missing one (and
    // so builds the binary again).
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        // Refs live in the common directory (a worktree's own has HEAD only).
        let common = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"])
            .unwrap_or_else(|| dir.clone());
        let mut watched = vec![format!("{dir}/HEAD"), format!("{common}/packed-refs")];
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watched.push(format!("{common}/{branch}"));
        }
        for path in watched.iter().filter(|p| std::path::Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
