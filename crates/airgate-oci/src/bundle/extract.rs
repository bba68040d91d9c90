//! `bundle extract`: unpack a bundle into a directory, safely.
//!
//! Why this exists: `tar xf` of a bundle trusts the archive before anyone
//! checked it, and tar readers disagree on ambiguous archives (a PAX header
//! with two sizes once let a bundle verify under airgate while `tar xf`
//! wrote an attacker's files). Extraction here is verification: one
//! streaming pass of the same strict reader `verify` uses, writing each
//! entry as it is checked.
//!
//! Guarantees:
//! - everything is written under a fresh directory next to the target,
//!   created by this process (so no link can be waiting in it), and renamed
//!   to the target only when the whole bundle has verified; on any failure
//!   the fresh directory is removed and the target is untouched;
//! - entry names are the bundle's own (`airgate-bundle.json`, `.sig`,
//!   `oci-layout`, `index.json`, `blobs/sha256/<hex>`, `files/<safe name>`):
//!   nothing absolute, no `..`, no links followed or created;
//! - files are created new (`O_EXCL`), mode 0644, directories 0755, owned by
//!   the user who extracts; nothing from the tar header (mode, owner, time)
//!   is applied.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use airgate_core::bundle::{self, EntryKind};

use super::read::{Trust, Unpack, Verified, VerifyError, verify_into};
use crate::progress::Progress;

/// Verifies `reader` and unpacks it into `out`, which must not exist or be
/// an empty directory.
pub fn extract(
    reader: impl std::io::Read,
    shown: &str,
    trust: &Trust,
    out: &Path,
    progress: &Progress,
) -> Result<Verified, VerifyError> {
    let io = |source: std::io::Error| VerifyError::Io {
        path: out.display().to_string(),
        source,
    };
    match std::fs::symlink_metadata(out) {
        Ok(m) if m.is_dir() && std::fs::read_dir(out).map_err(io)?.next().is_none() => {}
        Ok(_) => {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "already exists; extract into a new or empty directory",
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bundle".to_string());
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.partial-"))
        .tempdir_in(&parent)
        .map_err(io)?;
    let mut writer = Writer {
        root: staging.path().to_path_buf(),
        file: None,
    };
    let verified = verify_into(reader, shown, trust, progress, &mut writer)?;
    drop(writer);
    std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    // Renaming over an empty directory replaces it; anything else fails.
    let kept = staging.keep();
    if let Err(e) = std::fs::rename(&kept, out) {
        let _ = std::fs::remove_dir_all(&kept);
        return Err(io(e));
    }
    Ok(verified)
}

struct Writer {
    root: PathBuf,
    file: Option<std::io::BufWriter<File>>,
}

impl Unpack for Writer {
    fn begin(&mut self, kind: &EntryKind) -> std::io::Result<()> {
        let relative = match kind {
            EntryKind::Inventory => bundle::INVENTORY_PATH.to_string(),
            EntryKind::Signature => bundle::SIGNATURE_PATH.to_string(),
            EntryKind::Layout(p) => p.clone(),
            EntryKind::Blob(d) => d.layout_path(),
            EntryKind::File(n) => format!("{}{n}", bundle::FILES_DIR),
        };
        let path = self.root.join(&relative);
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)?;
        self.file = Some(std::io::BufWriter::with_capacity(1 << 20, file));
        Ok(())
    }
    fn data(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.write_all(chunk),
            None => Ok(()),
        }
    }
    fn end(&mut self) -> std::io::Result<()> {
        if let Some(f) = self.file.take() {
            f.into_inner().map_err(|e| e.into_error())?;
        }
        Ok(())
    }
}
