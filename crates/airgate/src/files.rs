//! Files as the commands write and walk them: output written so that a
//! crash never leaves half a file behind, and the YAML files of a tree.

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

/// The YAML files (`*.yaml`, `*.yml`) under `path`, or `path` itself when
/// it is a file; hidden entries skipped; sorted.
pub fn yaml_files(path: &Path) -> Result<Vec<std::path::PathBuf>> {
    use anyhow::Context;
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
            let e = e?;
            let kind = e.file_type()?;
            let name = e.file_name().to_string_lossy().to_string();
            if kind.is_dir() && !name.starts_with('.') {
                dirs.push(e.path());
            } else if kind.is_file() && (name.ends_with(".yaml") || name.ends_with(".yml")) {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}
