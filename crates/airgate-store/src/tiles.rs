//! The log published as files: the C2SP `tlog-tiles` layout.
//!
//! Why: a log that lives in one controller's SQLite file dies with its
//! disk, and a reader must be handed the file to check it. Published as
//! tiles (the tree's hashes, 256 to a file), entry bundles (the records'
//! bodies, 256 to a file, each framed by a big-endian `uint16` length) and
//! a signed `checkpoint`, the log can live in any store of immutable files
//! (an export directory, the internal OCI registry), and any tlog-tiles
//! client can prove inclusion and consistency from it.
//!
//! Paths: `tile/<L>/<N>[.p/<W>]` and `tile/entries/<N>[.p/<W>]`, `<N>` in
//! zero-padded three-digit elements, all but the last prefixed by `x`.
//!
//! Guarantees: [`read_log`] trusts nothing it reads: the checkpoint's
//! signature is checked with the verifier key given, every entry is hashed
//! into a fresh tree whose root must be the checkpoint's, and every hash
//! tile must be the one that tree makes. What it returns is an in-memory
//! [`Store`] every audit command reads like the controller's own.

use std::path::{Path, PathBuf};

use tlog_tiles::{Checkpoint, Tile, TileHashReader, TileReader};

use crate::{Store, StoreError};

/// Tile height: 2^8 = 256 hashes (or entries) a full tile.
pub const HEIGHT: u8 = 8;
const WIDTH: u64 = 1 << HEIGHT;

fn bad(message: impl Into<String>) -> StoreError {
    StoreError::Log(message.into())
}

fn index_path(mut n: u64) -> String {
    let mut path = format!("{:03}", n % 1000);
    while n >= 1000 {
        n /= 1000;
        path = format!("x{:03}/{path}", n % 1000);
    }
    path
}

fn width_suffix(w: u64) -> String {
    if w == WIDTH {
        String::new()
    } else {
        format!(".p/{w}")
    }
}

/// The path of hash tile `n` of level `level`, `width` hashes wide.
pub fn tile_path(level: u8, n: u64, width: u64) -> String {
    format!("tile/{level}/{}{}", index_path(n), width_suffix(width))
}

/// The path of entry bundle `n`, `width` entries wide.
pub fn entries_path(n: u64, width: u64) -> String {
    format!("tile/entries/{}{}", index_path(n), width_suffix(width))
}

/// Entries framed as a bundle: each a big-endian `uint16` length, then
/// its bytes.
pub fn bundle<B: AsRef<[u8]>>(entries: &[B]) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    for e in entries {
        let e = e.as_ref();
        let len = u16::try_from(e.len()).map_err(|_| {
            bad(format!(
                "an entry of {} bytes does not fit a bundle",
                e.len()
            ))
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// The entries of a bundle, which must hold exactly `count`.
pub fn unbundle(data: &[u8], count: u64, path: &str) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut out = Vec::new();
    let mut rest = data;
    while let [a, b, tail @ ..] = rest {
        let len = u16::from_be_bytes([*a, *b]) as usize;
        let entry = tail
            .get(..len)
            .ok_or_else(|| bad(format!("{path}: an entry runs past the end of the bundle")))?;
        out.push(entry.to_vec());
        rest = &tail[len..];
    }
    if !rest.is_empty() || out.len() as u64 != count {
        return Err(bad(format!(
            "{path}: holds {} entries, the checkpoint needs {count}",
            out.len()
        )));
    }
    Ok(out)
}

/// One file of the layout: a hash tile, or the entry bundle beside each
/// level-0 tile.
enum File {
    Hashes(Tile),
    Entries { n: u64, width: u64 },
}

impl File {
    fn path(&self) -> String {
        match self {
            File::Hashes(t) => tile_path(t.level(), t.level_index(), u64::from(t.width())),
            File::Entries { n, width } => entries_path(*n, *width),
        }
    }
}

/// The files a tree of `new` records has and one of `old` did not
/// (partial ones at `new`'s widths), as `tlog_tiles` numbers the tiles.
fn layout(old: u64, new: u64) -> Vec<File> {
    if new == 0 {
        return vec![];
    }
    let mut files = Vec::new();
    for tile in Tile::new_tiles(HEIGHT, old, new) {
        let entries = (tile.level() == 0).then(|| File::Entries {
            n: tile.level_index(),
            width: u64::from(tile.width()),
        });
        files.push(File::Hashes(tile));
        files.extend(entries);
    }
    files
}

/// Every path a reader of a tree of `size` records needs: each hash
/// tile and entry bundle, at that size's widths.
pub fn paths(size: u64) -> Vec<String> {
    layout(0, size).iter().map(File::path).collect()
}

impl Store {
    /// The files that publish the log grown from `old` to `new` records:
    /// every hash tile and entry bundle a tree of `new` has and one of
    /// `old` did not (partial ones at `new`'s widths), path and bytes.
    pub fn tiles(&self, old: u64, new: u64) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        layout(old, new)
            .into_iter()
            .map(|file| Ok((file.path(), self.file(&file)?)))
            .collect()
    }

    fn file(&self, file: &File) -> Result<Vec<u8>, StoreError> {
        match file {
            File::Hashes(tile) => tile
                .read_data(&crate::tlog::Reader { conn: &self.conn })
                .map_err(|e| bad(e.to_string())),
            File::Entries { n, width } => bundle(&self.bodies(n * WIDTH, n * WIDTH + width)?),
        }
    }

    /// The bodies of leaves `from..to`, byte for byte.
    fn bodies(&self, from: u64, to: u64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT body FROM sync_records WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
            )
            .map_err(self.err())?;
        let bodies = stmt
            .query_map([from as i64, to as i64], |r| r.get(0))
            .map_err(self.err())?
            .collect::<Result<Vec<String>, _>>()
            .map_err(self.err())?;
        if bodies.len() as u64 != to - from {
            return Err(bad(format!("the store lacks records {}..{to}", from + 1)));
        }
        Ok(bodies)
    }
}

/// Where a published log's files are read from.
pub trait Source {
    /// The file at `path` (`checkpoint`, `tile/...`).
    fn read(&self, path: &str) -> Result<Vec<u8>, StoreError>;
}

/// A log in a directory (`audit export`, or a copy of the registry's).
#[derive(Clone, Debug)]
pub struct Dir(pub PathBuf);

impl Source for Dir {
    fn read(&self, path: &str) -> Result<Vec<u8>, StoreError> {
        let full = self.0.join(path);
        std::fs::read(&full).map_err(|e| bad(format!("reading {}: {e}", full.display())))
    }
}

/// Writes `files` under `dir`. A file that exists must hold the same
/// bytes: tiles are immutable, so a different one is a fork.
pub fn write_dir(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
    for (path, data) in files {
        let full = dir.join(path);
        let fail = |e: std::io::Error| bad(format!("writing {}: {e}", full.display()));
        match std::fs::read(&full) {
            Ok(have) if have == *data => continue,
            Ok(_) => return Err(bad(format!("{} exists with other bytes", full.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e)),
        }
        write_file(&full, data).map_err(fail)?;
    }
    Ok(())
}

/// Replaces the file at `path` with `data` at once (a temporary file
/// beside it, renamed over it), creating its directory if need be: a
/// reader sees the old bytes or the new, never part of them.
pub fn write_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

/// The size a checkpoint claims, before any check: to know which files
/// to fetch, which [`read_log`] then checks.
pub fn checkpoint_size(text: &[u8]) -> Result<u64, StoreError> {
    let note = signed_note::Note::from_bytes(text).map_err(|e| bad(format!("checkpoint: {e}")))?;
    Checkpoint::from_bytes(note.text())
        .map(|c| c.size())
        .map_err(|e| bad(format!("checkpoint: {e}")))
}

/// Reads the log published at `source` up to the signed `checkpoint` (its
/// text, signed by `vkey`): every entry into a fresh in-memory store whose
/// tree must be the checkpoint's, every hash tile compared with that
/// tree's. Names the first file that does not hold.
pub fn read_log(
    source: &dyn Source,
    text: &[u8],
    vkey: &str,
) -> Result<(Store, Checkpoint), StoreError> {
    let checkpoint = crate::tlog::open_checkpoint(text, vkey)?;
    let size = checkpoint.size();
    let mut store = Store::open(Path::new(":memory:"))?;
    let mut n = 0;
    while n * WIDTH < size {
        let w = (size - n * WIDTH).min(WIDTH);
        let path = entries_path(n, w);
        let entries = unbundle(&source.read(&path)?, w, &path)?;
        store
            .append_raw(&entries)
            .map_err(|e| bad(format!("{path}: {e}")))?;
        n += 1;
    }
    let head = store.tree_head()?;
    if head.root != checkpoint.hash().0 {
        return Err(bad(format!(
            "the {size} published entries do not hash to the checkpoint's root: an entry bundle was changed"
        )));
    }
    for file in layout(0, size) {
        if let File::Hashes(_) = file {
            let path = file.path();
            if source.read(&path)? != store.file(&file)? {
                return Err(bad(format!("{path} is not the tile the entries make")));
            }
        }
    }
    Ok((store, checkpoint))
}

/// Reads hash tiles from a [`Source`] for `tlog_tiles`' proofs.
struct Tiles<'s>(&'s dyn Source);

impl TileReader for Tiles<'_> {
    fn height(&self) -> u8 {
        HEIGHT
    }

    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        tiles
            .iter()
            .map(|t| {
                let w = u64::from(t.width());
                let data = self
                    .0
                    .read(&tile_path(t.level(), t.level_index(), w))
                    .map_err(|_| tlog_tiles::Error::InvalidTile)?;
                if data.len() as u64 != w * 32 {
                    return Err(tlog_tiles::Error::InvalidTile);
                }
                Ok(data)
            })
            .collect()
    }

    fn save_tiles(&self, _tiles: &[Tile], _data: &[Vec<u8>]) {}
}

/// Proves from the published tiles that `new` extends `old` (RFC 6962
/// consistency): what a witness checks before it cosigns.
pub fn check_consistency(
    source: &dyn Source,
    old: &Checkpoint,
    new: &Checkpoint,
) -> Result<(), StoreError> {
    let (m, n) = (old.size(), new.size());
    if m > n {
        return Err(bad(format!(
            "the log shrank from {m} to {n} records: it was rewritten"
        )));
    }
    if m == n {
        return if old.hash() == new.hash() {
            Ok(())
        } else {
            Err(bad(format!(
                "two different roots for {n} records: the log forked"
            )))
        };
    }
    if m == 0 {
        return Ok(());
    }
    let tiles = Tiles(source);
    let reader = TileHashReader::new(n, *new.hash(), &tiles);
    let proof = tlog_tiles::prove_tree(n, m, &reader)
        .map_err(|e| bad(format!("the tiles do not prove {n} extends {m}: {e}")))?;
    tlog_tiles::check_tree(&proof, n, *new.hash(), m, *old.hash()).map_err(|_| {
        bad(format!(
            "the log of {n} records does not extend the one of {m} the witness saw: it was rewritten"
        ))
    })
}

#[cfg(test)]
mod tests;
