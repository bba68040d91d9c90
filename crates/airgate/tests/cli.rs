//! Command-line behaviour that needs no server: key files and output pipes.
//! Each test is named after a finding of the security review.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::{Result, bail};

fn airgate(args: &[&str]) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_airgate"))
        .args(args)
        .output()?)
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn key_generate_force_replaces_the_file_instead_of_rewriting_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let prefix = dir.path().join("signer");
    assert!(
        airgate(&["key", "generate", "--out", &s(&prefix)])?
            .status
            .success()
    );
    let key = dir.path().join("signer.key");
    // A process holding the old key file open...
    let held = std::fs::File::open(&key)?;
    let old = std::fs::read(&key)?;
    assert!(
        airgate(&["key", "generate", "--out", &s(&prefix), "--force"])?
            .status
            .success()
    );
    // ... still reads the old key: the new one is a new file.
    let mut still = String::new();
    std::io::Read::read_to_string(&mut &held, &mut still)?;
    assert_eq!(still.as_bytes(), old.as_slice());
    assert_ne!(std::fs::read(&key)?, old);
    let mode = std::fs::metadata(&key)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    Ok(())
}

#[test]
fn key_generate_refuses_links_and_directories() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // A dangling link at PREFIX.key once created its target.
    let target = dir.path().join("elsewhere");
    std::os::unix::fs::symlink(&target, dir.path().join("k.key"))?;
    let out = airgate(&[
        "key",
        "generate",
        "--out",
        &s(&dir.path().join("k")),
        "--force",
    ])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("symbolic link"));
    assert!(!target.exists(), "the link was followed");
    assert!(
        !dir.path().join("k.pub").exists(),
        "one file without the other"
    );
    // `--out dir/` once wrote the hidden files dir/.key and dir/.pub.
    let out = airgate(&["key", "generate", "--out", &format!("{}/", s(dir.path()))])?;
    assert!(!out.status.success());
    assert!(!dir.path().join(".key").exists());
    Ok(())
}

#[test]
fn key_generate_makes_both_files_or_neither() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // PREFIX.pub exists and is not to be replaced: no PREFIX.key appears.
    std::fs::write(dir.path().join("p.pub"), "old")?;
    let out = airgate(&["key", "generate", "--out", &s(&dir.path().join("p"))])?;
    assert!(!out.status.success());
    assert!(!dir.path().join("p.key").exists());
    assert_eq!(std::fs::read_to_string(dir.path().join("p.pub"))?, "old");
    // PREFIX.pub cannot be written (a directory is in the way): the key
    // written first is taken back, not left behind alone.
    std::fs::create_dir(dir.path().join("q.pub"))?;
    std::fs::write(dir.path().join("q.pub/inside"), "x")?;
    let out = airgate(&[
        "key",
        "generate",
        "--out",
        &s(&dir.path().join("q")),
        "--force",
    ])?;
    assert!(!out.status.success());
    assert!(!dir.path().join("q.key").exists(), "q.key was left behind");
    Ok(())
}

/// The README says openssl reads both files; OpenSSL 3.0 could not read the
/// PKCS#8 v2 private key airgate wrote.
#[test]
fn openssl_reads_the_key_pair_and_its_signature_verifies() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let prefix = dir.path().join("o");
    assert!(
        airgate(&["key", "generate", "--out", &s(&prefix)])?
            .status
            .success()
    );
    let private = Command::new("openssl")
        .args(["pkey", "-noout", "-in"])
        .arg(dir.path().join("o.key"))
        .output()?;
    assert!(
        private.status.success(),
        "{}",
        String::from_utf8_lossy(&private.stderr)
    );
    // openssl derives the public key from the private one: the same as o.pub.
    let derived = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(dir.path().join("o.key"))
        .output()?;
    assert_eq!(
        String::from_utf8_lossy(&derived.stdout),
        std::fs::read_to_string(dir.path().join("o.pub"))?
    );
    Ok(())
}

/// `airgate get apps -o yaml | head -1` exited 101 with a panic.
#[test]
fn a_closed_stdout_pipe_ends_the_command_quietly() -> Result<()> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_airgate"))
        .arg("install")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Close the read end at once, as `head -c0` would.
    drop(child.stdout.take());
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(101) || stderr.contains("panicked") {
        bail!("panicked on a closed pipe: {stderr}");
    }
    assert!(out.status.success(), "{stderr}");
    Ok(())
}
