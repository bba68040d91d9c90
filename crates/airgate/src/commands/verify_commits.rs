//! `airgate verify-commits`: the controller's commit-trust check, run on a
//! clone before merge, so a pipeline inside the perimeter refuses what the
//! controller would refuse (same code: `airgate_git::trust` and
//! `airgate_core::trust::judge`).

use std::path::Path;
use std::process::ExitCode;

use airgate_core::trust::{CommitTrust, TrustPolicy, VerifyMode, judge};
use airgate_git::trust::{Signers, open_clone, resolve, verify_range};
use anyhow::Context as _;

use crate::cli::{Output, VerifyCommitsArgs};

pub fn run(args: VerifyCommitsArgs) -> anyhow::Result<ExitCode> {
    let signers = read_signers(&args.signers)?;
    let repo = open_clone(&args.repository)?;
    let head = resolve(&repo, &args.to)?;
    let from = args
        .from
        .as_deref()
        .map(|r| resolve(&repo, r))
        .transpose()?;
    let policy = TrustPolicy {
        mode: if args.head_only {
            VerifyMode::Head
        } else {
            VerifyMode::History
        },
        min_distinct_signers: args.min_distinct_signers,
        require_trailers: args.require_trailer.clone(),
    };
    let now = airgate_git::trust::now();
    let verified = verify_range(&repo, head, from, &policy, &signers, now)?;
    let verdict = judge(&policy, &verified.head, &verified.range);
    let commits: Vec<&CommitTrust> = verified.all().collect();
    match args.output {
        Output::Json => {
            let (accepted, signers, problems) = match &verdict {
                Ok(v) => (true, v.signers.iter().cloned().collect(), Vec::new()),
                Err(r) => (false, Vec::new(), r.problems.clone()),
            };
            crate::out!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "accepted": accepted,
                    "signers": signers,
                    "problems": problems,
                    "commits": commits,
                }))?
            )?;
        }
        Output::Text => {
            for c in &commits {
                crate::out!("{}", line(c))?;
            }
        }
    }
    match verdict {
        Ok(v) => {
            eprintln!(
                "verified {} commit(s): {} distinct signer(s) ({})",
                commits.len(),
                v.signers.len(),
                v.signers.iter().cloned().collect::<Vec<_>>().join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(refusal) => {
            for p in &refusal.problems {
                eprintln!("error: {p}");
            }
            eprintln!("hint: the controller would apply nothing of this revision");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn line(c: &CommitTrust) -> String {
    let what = match &c.tag {
        Some(t) => format!("{} (tag {t})", &c.commit),
        None => c.commit.clone(),
    };
    let signer = c
        .signer
        .as_ref()
        .map(|s| format!("{} {} {}", s.principal, s.key_type, s.fingerprint))
        .unwrap_or_else(|| format!("{} -", c.committer));
    let trailers: Vec<String> = c
        .trailers
        .iter()
        .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}: {v}")))
        .collect();
    format!(
        "{:<18} {what} {signer} {}",
        c.result.as_str(),
        trailers.join("; ")
    )
    .trim_end()
    .to_string()
}

/// A directory (its `allowed_signers` and `*.asc` files), or one file: an
/// `*.asc` OpenPGP key file, else an allowed-signers file.
fn read_signers(path: &Path) -> anyhow::Result<Signers> {
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    if path.is_dir() {
        for entry in
            std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?
        {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let bytes = std::fs::read(entry.path())
                .with_context(|| format!("reading {}", entry.path().display()))?;
            entries.push((name, bytes));
        }
    } else {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let name = match path.extension().and_then(|e| e.to_str()) {
            Some("asc") => "key.asc",
            _ => "allowed_signers",
        };
        entries.push((name.to_string(), bytes));
    }
    let signers = Signers::from_entries(entries.iter().map(|(n, b)| (n.as_str(), b.as_slice())))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    anyhow::ensure!(
        !signers.is_empty(),
        "{}: no signer in it\nhint: an allowed_signers file (git's gpg.ssh.allowedSignersFile format) or *.asc OpenPGP public keys",
        path.display()
    );
    Ok(signers)
}
