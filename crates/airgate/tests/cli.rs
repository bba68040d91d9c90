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
        .args(["install", "--image", "r.internal/airgate@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"])
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

/// `git` in `dir` with no system or global configuration.
fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// What CI runs before merge: the controller's check on a clone. Two
/// signers and a ticket pass; one signer, a missing ticket, an unsigned
/// commit or a key nobody allowed exit 1 naming the commit and the problem.
#[test]
fn verify_commits_refuses_in_ci_what_the_controller_would_refuse() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo)?;
    let mut allowed = String::new();
    for who in ["dev", "rel", "stranger"] {
        let key = dir.path().join(who);
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", who, "-f", &s(&key)])
            .status()?
            .success();
        assert!(ok, "ssh-keygen");
        if who != "stranger" {
            let public = std::fs::read_to_string(key.with_extension("pub"))?;
            let fields: Vec<&str> = public.split_whitespace().take(2).collect();
            allowed.push_str(&format!("{who}@corp.example {}\n", fields.join(" ")));
        }
    }
    let signers = dir.path().join("allowed_signers");
    std::fs::write(&signers, allowed)?;
    let commit = |who: &str, message: &str| -> Result<String> {
        let key = s(&dir.path().join(who));
        let email = format!("user.email={who}@corp.example");
        let mut args = vec!["-c", "user.name=x", "-c", &email, "-c", "gpg.format=ssh"];
        let signing = format!("user.signingkey={key}");
        if who != "nobody" {
            args.extend(["-c", &signing]);
        }
        args.extend(["commit", "-q", "--allow-empty", "-m", message]);
        if who != "nobody" {
            args.push("-S");
        }
        git(&repo, &args)?;
        git(&repo, &["rev-parse", "HEAD"])
    };
    git(&repo, &["init", "-q", "--initial-branch", "main"])?;
    let base = commit("rel", "base")?;
    commit("dev", "change")?;
    let approved = commit("rel", "approve\n\nTicket: T-7\nReviewed-by: rel")?;
    let verify = |extra: &[&str]| -> Result<Output> {
        let mut args = vec![
            "verify-commits",
            repo.to_str().unwrap_or_default(),
            "--signers",
        ];
        let signers = s(&signers);
        args.push(&signers);
        args.extend(extra);
        airgate(&args)
    };

    let ok = verify(&[
        "--from",
        &base,
        "--min-distinct-signers",
        "2",
        "--require-trailer",
        "Ticket",
    ])?;
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(ok.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "verified 2 commit(s): 2 distinct signer(s) (dev@corp.example, rel@corp.example)"
        ),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        stdout.starts_with(&format!(
            "good               {approved} rel@corp.example ssh-ed25519 SHA256:"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("Ticket: T-7"), "{stdout}");

    // Only the head: one signer, so the two-person rule fails.
    let one = verify(&["--head-only", "--min-distinct-signers", "2"])?;
    assert_eq!(one.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&one.stderr);
    assert!(
        stderr.contains(
            "error: 1 distinct allowed signer(s) over the range (rel@corp.example), 2 needed"
        ),
        "{stderr}"
    );

    // An unsigned commit and a stranger's on top: both named, JSON says so.
    let unsigned = commit("nobody", "unsigned\n\nTicket: T-8")?;
    let strange = commit("stranger", "strange\n\nTicket: T-9")?;
    let bad = verify(&["--from", &approved, "-o", "json"])?;
    assert_eq!(bad.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&bad.stdout)?;
    assert_eq!(json["accepted"], false);
    let problems = json["problems"].to_string();
    assert!(
        problems.contains(&format!(
            "commit {} by nobody@corp.example: unsigned",
            &unsigned[..12]
        )),
        "{problems}"
    );
    assert!(
        problems.contains(&format!(
            "commit {} by stranger@corp.example signed with ssh-ed25519 key SHA256:",
            &strange[..12]
        )),
        "{problems}"
    );
    assert!(problems.contains("unknown-key"), "{problems}");
    assert_eq!(json["commits"][0]["commit"], strange);

    // A signers file airgate cannot honour is refused, naming the line.
    std::fs::write(&signers, "a@x cert-authority ssh-ed25519 AAAA\n")?;
    let refused = verify(&[])?;
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("allowed_signers line 1: cert-authority is not supported"),
        "{stderr}"
    );
    Ok(())
}

/// The reviewer's offline check: a checkpoint signed earlier catches what
/// the hash chain alone does not (a tail rewritten with recomputed hashes),
/// and an edited record is named.
#[test]
fn audit_verify_names_an_edited_record_and_a_rewritten_tail_fails_the_checkpoint() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("records.db");
    let mut store = airgate_store::Store::open(&db)?;
    for i in 0..5 {
        store.append(&airgate_store::SyncRecord {
            app: "shop/web".into(),
            revision: format!("{i:040x}"),
            ..Default::default()
        })?;
    }
    drop(store);
    let key = dir.path().join("log");
    let made = airgate(&[
        "key",
        "generate",
        "--type",
        "note",
        "--name",
        "airgate-prod",
        "--out",
        &s(&key),
    ])?;
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let vkey = std::fs::read_to_string(dir.path().join("log.vkey"))?;
    assert!(vkey.starts_with("airgate-prod+"), "{vkey}");
    let checkpoint = dir.path().join("checkpoint");
    let signed = airgate(&[
        "audit",
        "checkpoint",
        "--store",
        &s(&db),
        "--key",
        &s(&dir.path().join("log.key")),
        "--log",
        "prod",
        "--out",
        &s(&checkpoint),
    ])?;
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    let text = std::fs::read_to_string(&checkpoint)?;
    assert!(text.starts_with("airgate.dev/audit/prod\n5\n"), "{text}");
    let verify = |args: &[&str]| -> Result<Output> {
        let mut all = vec!["audit", "verify", "--store"];
        let db = s(&db);
        all.push(&db);
        all.extend(args);
        airgate(&all)
    };
    let (cp, vk) = (s(&checkpoint), s(&dir.path().join("log.vkey")));
    let ok = verify(&["--checkpoint", &cp, "--log-key", &vk])?;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stderr).contains("verified 5 records"));

    // `show` gives the leaf and its inclusion proof; `log -o jsonl` one line a record.
    let shown = airgate(&["audit", "show", "3", "--store", &s(&db)])?;
    let json: serde_json::Value = serde_json::from_slice(&shown.stdout)?;
    assert_eq!(
        (json["leafIndex"].as_i64(), json["tree"]["size"].as_i64()),
        (Some(2), Some(5))
    );
    assert_eq!(json["inclusionProof"].as_array().map(Vec::len), Some(3));
    let lines = airgate(&["audit", "log", "--store", &s(&db), "-o", "jsonl"])?;
    assert_eq!(String::from_utf8_lossy(&lines.stdout).lines().count(), 5);

    // An edited record is named.
    let conn = rusqlite::Connection::open(&db)?;
    conn.execute(
        "UPDATE sync_records SET body = replace(body, 'shop/web', 'shop/evil') WHERE seq = 4",
        [],
    )?;
    let bad = verify(&[])?;
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("record 4"), "{stderr}");

    // A rewritten tail with every hash recomputed verifies alone, not
    // against the checkpoint kept from before.
    conn.execute("DELETE FROM sync_records WHERE seq >= 4", [])?;
    conn.execute("DELETE FROM tlog_hashes", [])?;
    conn.execute("UPDATE sqlite_sequence SET seq = 3", [])?;
    drop(conn);
    let mut store = airgate_store::Store::open(&db)?;
    for i in 0..2 {
        store.append(&airgate_store::SyncRecord {
            app: "shop/web".into(),
            revision: format!("forged{i}"),
            ..Default::default()
        })?;
    }
    drop(store);
    assert!(
        verify(&[])?.status.success(),
        "the rewrite is consistent by itself"
    );
    let caught = verify(&["--checkpoint", &cp, "--log-key", &vk])?;
    assert_eq!(caught.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&caught.stderr);
    assert!(
        stderr.contains("the first 5 records do not hash to the checkpoint's root"),
        "{stderr}"
    );
    Ok(())
}

/// The completion script, as bash itself runs it: commands and
/// subcommands complete; `--version` names the commit.
#[test]
fn bash_completes_commands_from_the_generated_script_and_version_names_the_commit() -> Result<()> {
    let script = Command::new(env!("CARGO_BIN_EXE_airgate"))
        .args(["completion", "bash"])
        .output()?;
    assert!(script.status.success());
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("airgate.bash");
    std::fs::write(&file, &script.stdout)?;
    for (words, cword, want) in [
        ("airgate bun", 1, "bundle"),
        ("airgate bundle cr", 2, "create"),
        ("airgate diff --li", 2, "--live"),
    ] {
        let words_list: Vec<&str> = words.split(' ').collect();
        let (prev, cur) = (words_list[cword - 1], words_list[cword]);
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; _airgate airgate {cur} {prev}; echo \"${{COMPREPLY[@]}}\"",
                file.display()
            ))
            .output()?;
        let offered = String::from_utf8_lossy(&out.stdout);
        assert!(
            offered.split_whitespace().any(|w| w == want),
            "{words}: {offered} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let version = Command::new(env!("CARGO_BIN_EXE_airgate"))
        .arg("--version")
        .output()?;
    let text = String::from_utf8_lossy(&version.stdout);
    assert!(
        text.starts_with(&format!("airgate {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    Ok(())
}
