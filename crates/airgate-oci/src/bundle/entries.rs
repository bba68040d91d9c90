//! Walking a bundle's tar entries: the one reader behind verify, push,
//! inspect and extract.
//!
//! Why this exists: `verify` once read a stream with the `tar` crate and
//! `push` read a file with the same crate seeking past data, and the two
//! disagreed on a bundle cut inside its last padding; both also took PAX and
//! GNU extensions that other tar readers interpret differently. This walker
//! reads exactly the dialect airgate writes ([`airgate_core::archive`]) from
//! either a stream or a file, and gives one verdict:
//!
//! - every header is canonical (see `archive::parse_header`);
//! - padding after each entry's data is zeros;
//! - the archive ends with exactly two zero blocks and then the end of the
//!   input: nothing may follow the end marker;
//! - a cut anywhere (inside a header, data, padding or the end marker) is
//!   reported as truncation naming the entry it fell in.

use std::io::{self, BufRead, Read};

use airgate_core::archive::{self, ArchiveError, BLOCK, Block};

/// Where the walk reads from.
pub trait Cursor {
    /// Reads exactly `buf.len()` bytes at the cursor and moves past them.
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()>;
    /// Moves past `n` bytes that the caller will not look at.
    fn skip(&mut self, n: u64) -> io::Result<()>;
    /// Whether nothing is left.
    fn at_end(&mut self) -> io::Result<bool>;
}

/// A stream (a file read in order, a pipe, a data diode).
#[derive(Debug)]
pub struct Stream<R>(pub R);

impl<R: BufRead> Cursor for Stream<R> {
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_exact(buf)
    }
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let copied = io::copy(&mut (&mut self.0).take(n), &mut io::sink())?;
        if copied < n {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
    fn at_end(&mut self) -> io::Result<bool> {
        Ok(self.0.fill_buf()?.is_empty())
    }
}

/// A file on disk read at offsets: data is skipped, not read, so a header
/// pass over a large bundle reads a few bytes per entry.
#[derive(Debug)]
pub struct Positioned<'a> {
    pub file: &'a std::fs::File,
    pub len: u64,
    pub at: u64,
}

impl Cursor for Positioned<'_> {
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.read_exact_at(buf, self.at)?;
        self.at += buf.len() as u64;
        Ok(())
    }
    fn skip(&mut self, n: u64) -> io::Result<()> {
        match self.at.checked_add(n) {
            Some(to) if to <= self.len => {
                self.at = to;
                Ok(())
            }
            _ => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }
    fn at_end(&mut self) -> io::Result<bool> {
        Ok(self.at >= self.len)
    }
}

/// Why the walk stopped.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("it ends inside {0}")]
    Truncated(String),
    #[error(transparent)]
    Header(#[from] ArchiveError),
    #[error("entry '{0}' is followed by non-zero bytes in its padding")]
    Padding(String),
    #[error("{0}")]
    End(&'static str),
    #[error(
        "it is {0}-compressed; a bundle is a plain tar\nhint: decompress it first (for example `{0} -d`), then verify that"
    )]
    Compressed(&'static str),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// One entry: its name, size and where its data starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub name: String,
    pub size: u64,
    pub offset: u64,
}

/// The strict walk over a bundle's entries.
#[derive(Debug)]
pub struct Entries<C> {
    cursor: C,
    /// Offset of the next byte the cursor gives.
    at: u64,
    /// The current entry, and how much of its data is still unread.
    current: Option<(Head, u64)>,
    done: bool,
}

impl<C: Cursor> Entries<C> {
    pub fn new(cursor: C, at: u64) -> Entries<C> {
        Entries {
            cursor,
            at,
            current: None,
            done: false,
        }
    }

    /// The next entry's header, or `None` after a well-formed end.
    pub fn next_entry(&mut self) -> Result<Option<Head>, WalkError> {
        if self.done {
            return Ok(None);
        }
        self.finish_current()?;
        let mut block = [0u8; BLOCK];
        self.read(&mut block, "a header")?;
        if self.at == BLOCK as u64
            && let Some(format) = compressed(&block)
        {
            return Err(WalkError::Compressed(format));
        }
        match archive::parse_header(&block)? {
            Block::Entry { name, size } => {
                if archive::end_of(self.at, size).is_none() {
                    return Err(ArchiveError::Size {
                        entry: archive::Shown::new(name.as_bytes()),
                        size,
                    }
                    .into());
                }
                let head = Head {
                    name,
                    size,
                    offset: self.at,
                };
                self.current = Some((head.clone(), size));
                Ok(Some(head))
            }
            Block::End => {
                self.read(&mut block, "the end-of-archive marker")?;
                if block.iter().any(|&b| b != 0) {
                    return Err(WalkError::End(
                        "a single zero block is followed by more data; a bundle ends with two zero blocks and nothing after them",
                    ));
                }
                if !self.cursor.at_end()? {
                    return Err(WalkError::End(
                        "data follows the end-of-archive marker; a bundle ends with two zero blocks and nothing after them",
                    ));
                }
                self.done = true;
                Ok(None)
            }
        }
    }

    /// Reads data of the current entry; 0 at its end.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, WalkError> {
        let Some((head, left)) = &mut self.current else {
            return Ok(0);
        };
        let n = (*left).min(buf.len() as u64) as usize;
        if n == 0 {
            return Ok(0);
        }
        let shown = format!("entry '{}'", airgate_core::text::shown(&head.name, 200));
        match self.cursor.read_exact(&mut buf[..n]) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(WalkError::Truncated(shown));
            }
            Err(e) => return Err(e.into()),
        }
        *left -= n as u64;
        self.at += n as u64;
        Ok(n)
    }

    /// Reads the current entry's data whole; the caller has checked its
    /// size against a limit.
    pub fn read_all(&mut self) -> Result<Vec<u8>, WalkError> {
        let size = self.current.as_ref().map_or(0, |(_, left)| *left);
        let mut out = vec![0u8; size as usize];
        let mut at = 0;
        while at < out.len() {
            let n = self.read_data(&mut out[at..])?;
            if n == 0 {
                break;
            }
            at += n;
        }
        Ok(out)
    }

    /// Skips what is left of the current entry's data and checks its padding.
    fn finish_current(&mut self) -> Result<(), WalkError> {
        let Some((head, left)) = self.current.take() else {
            return Ok(());
        };
        let shown = airgate_core::text::shown(&head.name, 200);
        let truncated = |e: io::Error| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                WalkError::Truncated(format!("entry '{shown}'"))
            } else {
                WalkError::Io(e)
            }
        };
        self.cursor.skip(left).map_err(&truncated)?;
        self.at += left;
        let pad = archive::padding(head.size) as usize;
        let mut zeros = [0u8; BLOCK];
        self.cursor
            .read_exact(&mut zeros[..pad])
            .map_err(truncated)?;
        self.at += pad as u64;
        if zeros[..pad].iter().any(|&b| b != 0) {
            return Err(WalkError::Padding(shown));
        }
        Ok(())
    }

    fn read(&mut self, block: &mut [u8; BLOCK], what: &str) -> Result<(), WalkError> {
        match self.cursor.read_exact(block) {
            Ok(()) => {
                self.at += BLOCK as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(WalkError::Truncated(what.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The compression a file starting with `block` uses, if any.
fn compressed(block: &[u8]) -> Option<&'static str> {
    match block {
        [0x1f, 0x8b, ..] => Some("gzip"),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Some("zstd"),
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => Some("xz"),
        [b'B', b'Z', b'h', ..] => Some("bzip2"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data) in entries {
            if let Ok(h) = archive::header(name, data.len() as u64) {
                out.extend_from_slice(&h);
            }
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
        }
        out.resize(out.len() + 2 * BLOCK, 0);
        out
    }

    /// Walks `bytes` both ways; both must agree.
    fn walk(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
        let mut stream = Entries::new(Stream(io::BufReader::new(bytes)), 0);
        let mut out = Vec::new();
        let streamed = loop {
            match stream.next_entry() {
                Ok(Some(h)) => match stream.read_all() {
                    Ok(data) => out.push((h.name, data)),
                    Err(e) => break Err(e.to_string()),
                },
                Ok(None) => break Ok(out),
                Err(e) => break Err(e.to_string()),
            }
        };
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("b");
        std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
        let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
        let positioned = Positioned {
            file: &file,
            len: bytes.len() as u64,
            at: 0,
        };
        let mut seek = Entries::new(positioned, 0);
        let seeked = loop {
            match seek.next_entry() {
                Ok(Some(_)) => {}
                Ok(None) => break Ok(()),
                Err(e) => break Err(e.to_string()),
            }
        };
        assert_eq!(
            streamed.is_ok(),
            seeked.is_ok(),
            "stream and file disagree: {streamed:?} / {seeked:?}"
        );
        streamed
    }

    #[test]
    fn a_bundle_airgate_writes_walks_the_same_from_a_stream_and_a_file() {
        let bytes = tar(&[("a", b"hello"), ("b", &[7u8; 512]), ("c", b"")]);
        let walked = walk(&bytes);
        assert_eq!(
            walked,
            Ok(vec![
                ("a".to_string(), b"hello".to_vec()),
                ("b".to_string(), vec![7u8; 512]),
                ("c".to_string(), vec![]),
            ])
        );
    }

    #[test]
    fn a_bundle_cut_inside_its_last_padding_is_truncated_for_verify_and_push_alike() {
        let bytes = tar(&[("a", b"hello")]);
        for cut in [
            bytes.len() - 1,
            bytes.len() - 512,
            512 + 5,
            512 + 100,
            512 + 511,
            1,
        ] {
            let walked = walk(&bytes[..cut]);
            assert!(walked.is_err(), "cut at {cut} accepted");
        }
    }

    #[test]
    fn data_after_the_end_marker_or_in_padding_is_refused() {
        let mut bytes = tar(&[("a", b"hello")]);
        bytes.extend_from_slice(&[0u8; 512]);
        assert!(walk(&bytes).is_err(), "an extra zero block was accepted");
        let mut bytes = tar(&[("a", b"hello")]);
        bytes.push(b'x');
        assert!(walk(&bytes).is_err(), "a trailing byte was accepted");
        let mut bytes = tar(&[("a", b"hello")]);
        bytes[512 + 6] = 1;
        assert!(
            walk(&bytes).is_err_and(|e| e.contains("padding")),
            "a byte in padding was accepted"
        );
        let mut bytes = tar(&[("a", b"hello")]);
        let len = bytes.len();
        bytes[len - 10] = 1;
        assert!(
            walk(&bytes).is_err(),
            "a byte in the end marker was accepted"
        );
    }

    #[test]
    fn a_header_claiming_a_terabyte_reads_nothing_into_memory() {
        // A header claiming 1 TiB followed by zeros: walked to the end of
        // the input and refused as truncated, with constant memory.
        let mut bytes = archive::header("a", 1 << 40)
            .map(|h| h.to_vec())
            .unwrap_or_default();
        bytes.resize(1 << 20, 0);
        assert!(walk_headers(&bytes).is_err_and(|e| e.contains("ends inside entry 'a'")));
    }

    #[test]
    fn a_compressed_bundle_is_named_as_such() {
        let mut gz = vec![0x1f, 0x8b, 8, 0];
        gz.resize(4096, 7);
        assert!(walk(&gz).is_err_and(|e| e.contains("gzip-compressed")));
    }

    /// Bundles written before airgate had its own encoder came from the
    /// `tar` crate's ustar headers: they must still verify.
    #[test]
    fn the_header_airgate_writes_is_byte_for_byte_the_one_it_always_wrote() {
        for (name, size) in [
            ("airgate-bundle.json", 1234u64),
            ("files/a", 0),
            ("b", 9 << 30),
        ] {
            let mut h = tar::Header::new_ustar();
            let set = h.set_path(name);
            assert!(set.is_ok());
            h.set_size(size);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            let ours = archive::header(name, size).map(|b| b.to_vec());
            assert_eq!(ours.ok(), Some(h.as_bytes().to_vec()), "{name} {size}");
        }
    }

    fn walk_headers(bytes: &[u8]) -> Result<(), String> {
        let mut e = Entries::new(Stream(io::BufReader::new(bytes)), 0);
        while e.next_entry().map_err(|e| e.to_string())?.is_some() {}
        Ok(())
    }
}
