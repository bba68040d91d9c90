//! `airgate key generate`: an Ed25519 key pair for signing bundles or
//! images (PEM), or for signing the audit log's checkpoints (`--type note`: the signed-note
//! key encodings Go's `sumdb/note` and the C2SP specs use).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airgate_core::signing;
use anyhow::{Context, Result, bail};

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Writes `PREFIX.key` and `PREFIX.pub`, both or neither.
///
/// Guarantees: each file is written to a new temporary file in the same
/// directory (created with `O_EXCL`, mode 0600) and renamed into place, so a
/// process holding the old key file open never reads the new key, and no
/// half-written key is ever visible; a symbolic link at either name is
/// refused, never followed; without `--force` an existing file is never
/// replaced (checked again at the rename); if the second rename fails, the
/// first file is removed again when it was new.
pub fn generate(prefix: &Path, force: bool, kind: KeyType, name: &str) -> Result<ExitCode> {
    let text = prefix.as_os_str().to_string_lossy();
    if text.is_empty() || text.ends_with('/') || prefix.is_dir() {
        bail!(
            "--out {} names a directory; it is a path prefix for the two files\nhint: for example --out {}signer",
            prefix.display(),
            if text.ends_with('/') || text.is_empty() {
                text.to_string()
            } else {
                format!("{text}/")
            }
        );
    }
    let private = with_suffix(prefix, ".key");
    let pem = matches!(kind, KeyType::Bundle | KeyType::Cosign);
    let public = with_suffix(prefix, if pem { ".pub" } else { ".vkey" });
    if !pem && !signed_note::is_key_name_valid(name) {
        bail!("--name '{name}' is not a key name: no spaces or '+', not empty");
    }
    let mut existed = [false, false];
    for (i, p) in [&private, &public].into_iter().enumerate() {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_symlink() => {
                bail!(
                    "{} is a symbolic link; refusing to write a key through it",
                    p.display()
                )
            }
            Ok(_) if !force => bail!("{} exists\nhint: pass --force to replace it", p.display()),
            Ok(_) => existed[i] = true,
            Err(_) => {}
        }
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| anyhow::anyhow!("no randomness from the system: {e}"))?;
    let (private_bytes, public_bytes, id) = material(kind, name, seed)?;
    let private_tmp = staged(&private, &private_bytes, 0o600)?;
    let public_tmp = staged(&public, &public_bytes, 0o644)?;
    place(private_tmp, &private, force)?;
    if let Err(e) = place(public_tmp, &public, force) {
        if !existed[0] {
            let _ = std::fs::remove_file(&private);
        }
        return Err(e);
    }
    let keep = match kind {
        KeyType::Bundle => "private, keep it on the connected side",
        KeyType::Note => "private: the controller's, in a Secret",
        KeyType::Witness => "private: the witness's, on its own machine",
        KeyType::Cosign => {
            "private: signs images as `bundle push --sign-images` pushes them; `cosign verify --key` reads the .pub"
        }
    };
    eprintln!(
        "wrote {} ({keep}) and {} (key id {id})",
        private.display(),
        public.display(),
    );
    Ok(ExitCode::SUCCESS)
}

/// The two files' contents and the key id, from a seed.
fn material(kind: KeyType, name: &str, seed: [u8; 32]) -> Result<(Vec<u8>, Vec<u8>, String)> {
    Ok(match kind {
        KeyType::Bundle | KeyType::Cosign => {
            let key = signing::signing_key_from_seed(seed);
            (
                signing::private_key_pem(&key)?.into_bytes(),
                signing::public_key_pem(&key.verifying_key())?.into_bytes(),
                signing::key_id(&key.verifying_key()).to_string(),
            )
        }
        KeyType::Note | KeyType::Witness => {
            let (skey, vkey) = if kind == KeyType::Note {
                airgate_store::tlog::note_keys(name, seed)
            } else {
                airgate_store::witness::witness_keys(name, seed)
            };
            let id = vkey.split('+').nth(1).unwrap_or_default().to_string();
            (
                format!("{skey}\n").into_bytes(),
                format!("{vkey}\n").into_bytes(),
                id,
            )
        }
    })
}

/// What a key signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyType {
    /// Bundles: PREFIX.key and PREFIX.pub, PEM.
    Bundle,
    /// The audit log's checkpoints: PREFIX.key (`PRIVATE+KEY+name+id+key`) and
    /// PREFIX.vkey (`name+id+key`), as Go's sumdb/note encodes them.
    Note,
    /// A witness's cosignatures of the audit log's checkpoints (C2SP
    /// tlog-cosignature, algorithm 0x04): PREFIX.key and PREFIX.vkey.
    Witness,
    /// Images, as `bundle push --sign-images` signs them in cosign's format:
    /// PREFIX.key and PREFIX.pub (Ed25519, PEM; `cosign verify --key
    /// PREFIX.pub` and admission controllers built on cosign read it).
    Cosign,
}

/// `content` in a new file next to `target`, synced, with `mode`.
fn staged(target: &Path, content: &[u8], mode: u32) -> Result<tempfile::NamedTempFile> {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".airgate-key-")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .with_context(|| format!("creating a file next to {}", target.display()))?;
    tmp.write_all(content)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", target.display()))?;
    Ok(tmp)
}

/// Renames `tmp` to `target`; without `force`, only if `target` does not
/// exist at that moment.
fn place(tmp: tempfile::NamedTempFile, target: &Path, force: bool) -> Result<()> {
    let placed = if force {
        tmp.persist(target).map(|_| ())
    } else {
        tmp.persist_noclobber(target).map(|_| ())
    };
    placed.map_err(|e| anyhow::anyhow!("writing {}: {}", target.display(), e.error))
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
