//! The bundle file as `bundle create` writes it: positioned writes from many
//! downloads at once.
//!
//! Two things about writing gigabytes into the page cache, measured with
//! `perf` on the project's machine (2.1 GiB bundle, 8 downloads at once):
//! - The kernel sizes the page-cache folios it allocates by the length of
//!   the write. With memory mostly page cache, 2 MiB writes asked for 2 MiB
//!   folios and paid direct compaction on every one (1.3 to 3.4 s in the
//!   kernel); 64 KiB writes did not (1.3 s).
//! - A buffered write holds the inode's lock throughout, so writers in
//!   parallel gain nothing, and the waiting ones spun on that lock (15 % of
//!   the CPU). Writes here take turns, and a writer waiting for its turn
//!   sleeps.
//!
//! Direct I/O (`O_DIRECT`) was tried and measured slower: this disk wants
//! 512-byte-aligned memory, so every byte had to be copied into an aligned
//! buffer first (0.5 s more user CPU than the kernel's copy it saved), and
//! synchronous writes taking turns kept the disk under 1 GB/s.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

/// Bytes per `pwrite` (see the module docs).
const PIECE: usize = 64 << 10;

/// The bundle file being written.
#[derive(Debug)]
pub struct Output {
    file: File,
    turn: Mutex<()>,
}

impl Output {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> io::Result<Output> {
        Ok(Output {
            file: File::create(path)?,
            turn: Mutex::new(()),
        })
    }

    /// Writes `parts`, one after another, at `at`.
    pub fn write<P: AsRef<[u8]>>(&self, parts: &[P], mut at: u64) -> io::Result<()> {
        let _turn = self.turn.lock().unwrap_or_else(|p| p.into_inner());
        for part in parts {
            for piece in part.as_ref().chunks(PIECE) {
                self.file.write_all_at(piece, at)?;
                at += piece.len() as u64;
            }
        }
        Ok(())
    }

    /// Sets the file's length (the end-of-archive blocks are zeros).
    pub fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parts of odd sizes, longer than one `pwrite`, written out of order:
    /// what is read back is what was written, with zeros in the gaps.
    #[test]
    fn parts_land_where_asked() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("out.tar");
        let out = Output::create(&path)?;
        let long: Vec<u8> = (0..PIECE * 2 + 777).map(|i| (i % 251) as u8).collect();
        let second_at = 1024 + long.len() as u64 + 100;
        out.write(&[b"second"], second_at)?;
        out.write(&[&b"head"[..], &long[..1000], &long[1000..]], 1024)?;
        out.set_len(second_at + 512)?;
        let back = std::fs::read(&path)?;
        assert_eq!(back.len() as u64, second_at + 512);
        assert!(back[..1024].iter().all(|b| *b == 0));
        assert_eq!(&back[1024..1028], b"head");
        assert_eq!(&back[1028..1028 + long.len()], &long[..]);
        let second_at = second_at as usize;
        assert!(back[1028 + long.len()..second_at].iter().all(|b| *b == 0));
        assert_eq!(&back[second_at..second_at + 6], b"second");
        assert!(back[second_at + 6..].iter().all(|b| *b == 0));
        Ok(())
    }
}
