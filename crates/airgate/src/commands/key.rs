//! `airgate key generate`: an Ed25519 key pair for signing bundles.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airgate_core::signing;
use anyhow::{Context, Result, bail};

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

pub fn generate(prefix: &Path, force: bool) -> Result<ExitCode> {
    let private = with_suffix(prefix, ".key");
    let public = with_suffix(prefix, ".pub");
    for p in [&private, &public] {
        if p.exists() && !force {
            bail!("{} exists\nhint: pass --force to replace it", p.display());
        }
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| anyhow::anyhow!("no randomness from the system: {e}"))?;
    let key = signing::signing_key_from_seed(seed);
    let private_pem = signing::private_key_pem(&key)?;
    let public_pem = signing::public_key_pem(&key.verifying_key())?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&private)
        .with_context(|| format!("creating {}", private.display()))?;
    // A file that existed keeps its old mode through open(): set it again.
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .with_context(|| format!("restricting {}", private.display()))?;
    f.write_all(private_pem.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", private.display()))?;
    std::fs::write(&public, public_pem).with_context(|| format!("writing {}", public.display()))?;
    eprintln!(
        "wrote {} (private, keep it on the connected side) and {} (key id {})",
        private.display(),
        public.display(),
        signing::key_id(&key.verifying_key())
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads a private key file.
pub fn read_private(path: &Path) -> Result<ed25519_dalek::SigningKey> {
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    signing::parse_private_key(&pem).with_context(|| format!("{}", path.display()))
}

/// Reads a public key file.
pub fn read_public(path: &Path) -> Result<ed25519_dalek::VerifyingKey> {
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    signing::parse_public_key(&pem).with_context(|| format!("{}", path.display()))
}
