//! Writing output files so that a crash never leaves half a file behind.

use std::io::Write;
use std::path::Path;

use airgate_oci::bundle::partial_path;
use anyhow::{Context, Result};

/// Writes `bytes` to `PATH.partial`, syncs, and renames it to `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let partial = partial_path(path);
    let mut f = std::fs::File::create(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path)
        .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))
}
