//! airgate's verdict on signed commits and tags against git's own.
//!
//! `signatures/make-cases.sh` makes commits and tags with the real git, gpg
//! and ssh-keygen (every key type, signed and unsigned, tampered, expired,
//! revoked, subkeys, wrong namespace, validity windows, merges) and asks
//! `git verify-commit` / `git verify-tag` about each under six signer
//! configurations. airgate must agree on every case, except where it is
//! deliberately stricter: it requires the signer's principal (SSH) or user
//! ID (OpenPGP) to be the committer's email, which git does not check.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use airgate_core::trust::TrustResult;
use airgate_git::trust::{Signers, read_commit, read_tag, verify_object};
use anyhow::{Context as _, Result, bail, ensure};

struct Case {
    object: String,
    kind: String,
    config: String,
    git_good: bool,
    label: String,
}

fn make_cases(dir: &Path) -> Result<Vec<Case>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/signatures/make-cases.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(dir)
        .output()
        .context("running make-cases.sh (needs git, gpg and ssh-keygen)")?;
    ensure!(
        out.status.success(),
        "make-cases.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tsv = std::fs::read_to_string(dir.join("cases.tsv"))?;
    tsv.lines()
        .map(|line| match line.split('\t').collect::<Vec<_>>()[..] {
            [object, kind, config, verdict, label] => Ok(Case {
                object: object.into(),
                kind: kind.into(),
                config: config.into(),
                git_good: verdict == "good",
                label: label.into(),
            }),
            _ => bail!("cases.tsv: {line}"),
        })
        .collect()
}

fn signers(dir: &Path) -> Result<Signers> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        entries.push((name, std::fs::read(&path)?));
    }
    Signers::from_entries(entries.iter().map(|(n, b)| (n.as_str(), b.as_slice())))
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))
}

/// Where airgate refuses what git accepts, on purpose.
fn deliberately_stricter(case: &Case) -> bool {
    case.label.contains("committer-not-")
}

#[test]
fn airgate_agrees_with_git_verify_commit_and_verify_tag() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cases = make_cases(dir.path())?;
    assert!(cases.len() >= 200, "only {} cases", cases.len());
    let repo = gix::open_opts(dir.path().join("repo"), gix::open::Options::isolated())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut configs: BTreeMap<String, Signers> = BTreeMap::new();
    let (mut agree, mut stricter, mut disagree) = (0, Vec::new(), Vec::new());
    let mut results: BTreeMap<(String, String), TrustResult> = BTreeMap::new();
    for case in &cases {
        if !configs.contains_key(&case.config) {
            let loaded = signers(&dir.path().join("config").join(&case.config))?;
            configs.insert(case.config.clone(), loaded);
        }
        let signers = &configs[&case.config];
        let id = gix::ObjectId::from_hex(case.object.as_bytes())?;
        let object = match case.kind.as_str() {
            "tag" => read_tag(&repo, id),
            _ => read_commit(&repo, id),
        }?;
        let verdict = verify_object(signers, &object, &[], now);
        results.insert((case.config.clone(), case.label.clone()), verdict.result);
        let ours = verdict.result == TrustResult::Good;
        if ours == case.git_good {
            agree += 1;
        } else if !ours && case.git_good && deliberately_stricter(case) {
            stricter.push(format!(
                "{} under {}: {}",
                case.label, case.config, verdict.result
            ));
        } else {
            disagree.push(format!(
                "{} ({}) under {}: git says {}, airgate {} ({})",
                case.label,
                case.object,
                case.config,
                if case.git_good { "good" } else { "bad" },
                verdict.result,
                verdict.detail
            ));
        }
    }
    eprintln!(
        "{} cases: {agree} agree with git, {} deliberately stricter, {} disagree",
        cases.len(),
        stricter.len(),
        disagree.len()
    );
    for s in &stricter {
        eprintln!("  stricter: {s}");
    }
    assert!(
        disagree.is_empty(),
        "airgate and git disagree:\n{}",
        disagree.join("\n")
    );

    // Not only the verdict: the reason a stranger reads in the status.
    let want = [
        ("all", "ssh-ed-good", TrustResult::Good),
        ("all", "pgp-sub-good", TrustResult::Good),
        ("all", "ssh-rsa-tampered", TrustResult::BadSignature),
        ("all", "pgp-rsa-tampered", TrustResult::BadSignature),
        ("all", "ssh-key-listed-nowhere", TrustResult::UnknownKey),
        ("all", "pgp-key-given-nowhere", TrustResult::UnknownKey),
        (
            "all",
            "ssh-signed-for-namespace-file",
            TrustResult::WrongNamespace,
        ),
        ("all", "pgp-revoked-key", TrustResult::RevokedKey),
        ("all", "pgp-expired-key", TrustResult::ExpiredKey),
        ("all", "pgp-expired-subkey", TrustResult::ExpiredKey),
        ("all", "unsigned", TrustResult::Unsigned),
        ("all", "unsigned-tag", TrustResult::Unsigned),
        (
            "all",
            "ssh-ec384-committer-not-principal",
            TrustResult::PrincipalMismatch,
        ),
        (
            "all",
            "pgp-ec-committer-not-user-id",
            TrustResult::PrincipalMismatch,
        ),
        ("namespace-file", "ssh-ed-good", TrustResult::WrongNamespace),
        (
            "valid-before-2022",
            "ssh-ed-good",
            TrustResult::OutsideValidity,
        ),
        (
            "valid-before-2022",
            "ssh-ed-made-in-2021",
            TrustResult::Good,
        ),
        (
            "valid-after-2030",
            "ssh-ec256-good",
            TrustResult::OutsideValidity,
        ),
        (
            "wildcard",
            "ssh-rsa-committer-not-principal",
            TrustResult::PrincipalMismatch,
        ),
    ];
    for (config, label, result) in want {
        assert_eq!(
            results.get(&(config.to_string(), label.to_string())),
            Some(&result),
            "{label} under {config} (git: {:?})",
            cases
                .iter()
                .find(|c| c.config == config && c.label == label)
                .map(|c| c.git_good)
        );
    }
    Ok(())
}
