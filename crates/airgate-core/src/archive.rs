//! The one tar dialect airgate writes, and the only one it reads.
//!
//! Why this exists: tar has many dialects (ustar, PAX, GNU), and readers
//! disagree on what an ambiguous archive means. A PAX header with two `size`
//! records is read one way by one reader and another way by GNU tar; a
//! bundle built that way once verified under airgate while `tar xf` unpacked
//! an attacker's files. So a bundle's headers are not *interpreted*: each is
//! decoded to a name and a size, encoded again the one way airgate writes
//! them, and refused unless the two are byte for byte the same. Anything a
//! reader could take two ways (PAX and GNU extensions, links, directories,
//! sparse files, modes, owners, times, stray bytes in padding or after the
//! end) is therefore refused before it means anything.
//!
//! Guarantees of a header that [`parse_header`] accepts:
//! - a regular file (`typeflag '0'`), mode 0644, uid and gid 0, mtime 0, no
//!   owner names, no link name, no prefix: every tar implementation reads it
//!   the same way;
//! - a name of 1 to [`MAX_NAME`] bytes of UTF-8 with no NUL (whether it is a
//!   *safe* name is the bundle's business: [`crate::bundle::classify_entry`]);
//! - a size that fits in a `u64`, and whose data and padding end at an offset
//!   that fits too.
//!
//! Everything here is pure; readers and writers do the I/O.

use std::fmt;

/// A tar block.
pub const BLOCK: usize = 512;
/// Longest entry name: the ustar name field (100 bytes) with its NUL.
pub const MAX_NAME: usize = 99;

/// What one 512-byte block is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Block {
    /// A header of a regular file with this name and size.
    Entry { name: String, size: u64 },
    /// An all-zero block: the end-of-archive marker (two of them end a tar).
    End,
}

/// Why a block is not a header airgate wrote.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    #[error(
        "header of entry {entry} is a {what}; airgate bundles hold only plain ustar regular files, so readers could disagree on what it means"
    )]
    Extension { entry: Shown, what: &'static str },
    #[error("header of entry {entry}: {field} is {found}, but airgate writes {expected}")]
    Field {
        entry: Shown,
        field: &'static str,
        found: String,
        expected: String,
    },
    #[error("header of entry {entry}: the checksum does not match; the file is damaged")]
    Checksum { entry: Shown },
    #[error("entry name {0} is not 1 to {MAX_NAME} bytes of UTF-8 without NUL")]
    Name(Shown),
    #[error("entry {entry}: size {size} is too large to be a tar entry")]
    Size { entry: Shown, size: u64 },
}

/// A name or other untrusted string made safe to print: control characters
/// escaped, at most 200 characters shown.
#[derive(Clone, PartialEq, Eq)]
pub struct Shown(pub String);

impl Shown {
    pub fn new(raw: &[u8]) -> Shown {
        Shown(crate::text::shown(&String::from_utf8_lossy(raw), 200))
    }
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'", self.0)
    }
}

impl fmt::Debug for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

// Field offsets of the ustar header.
const NAME: std::ops::Range<usize> = 0..100;
const MODE: std::ops::Range<usize> = 100..108;
const UID: std::ops::Range<usize> = 108..116;
const GID: std::ops::Range<usize> = 116..124;
const SIZE: std::ops::Range<usize> = 124..136;
const MTIME: std::ops::Range<usize> = 136..148;
const CKSUM: std::ops::Range<usize> = 148..156;
const TYPEFLAG: usize = 156;
const LINKNAME: std::ops::Range<usize> = 157..257;
const MAGIC: std::ops::Range<usize> = 257..263;
const VERSION: std::ops::Range<usize> = 263..265;
const UNAME: std::ops::Range<usize> = 265..297;
const GNAME: std::ops::Range<usize> = 297..329;
const DEVMAJOR: std::ops::Range<usize> = 329..337;
const DEVMINOR: std::ops::Range<usize> = 337..345;
const PREFIX: std::ops::Range<usize> = 345..500;

/// Sizes at or above this are written in base-256 (the GNU numeric
/// extension every current tar reads), below it in octal.
const OCTAL_LIMIT: u64 = 1 << 33;

/// The header airgate writes for a regular file `name` of `size` bytes.
pub fn header(name: &str, size: u64) -> Result<[u8; BLOCK], ArchiveError> {
    if name.is_empty() || name.len() > MAX_NAME || name.as_bytes().contains(&0) {
        return Err(ArchiveError::Name(Shown::new(name.as_bytes())));
    }
    if end_of(0, size).is_none() {
        return Err(ArchiveError::Size {
            entry: Shown::new(name.as_bytes()),
            size,
        });
    }
    let mut h = [0u8; BLOCK];
    h[NAME][..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[MODE], 0o644);
    octal(&mut h[UID], 0);
    octal(&mut h[GID], 0);
    if size >= OCTAL_LIMIT {
        h[SIZE][4..].copy_from_slice(&size.to_be_bytes());
        h[SIZE][0] = 0x80;
    } else {
        octal(&mut h[SIZE], size);
    }
    octal(&mut h[MTIME], 0);
    h[TYPEFLAG] = b'0';
    h[MAGIC].copy_from_slice(b"ustar\0");
    h[VERSION].copy_from_slice(b"00");
    let sum = checksum(&h);
    octal(&mut h[CKSUM], u64::from(sum));
    Ok(h)
}

/// Decodes one block, refusing anything but a header [`header`] would write
/// (or the all-zero end marker).
pub fn parse_header(block: &[u8; BLOCK]) -> Result<Block, ArchiveError> {
    if block.iter().all(|&b| b == 0) {
        return Ok(Block::End);
    }
    let raw_name = until_nul(&block[NAME]);
    let entry = Shown::new(raw_name);
    if let Some(what) = extension(block[TYPEFLAG]) {
        return Err(ArchiveError::Extension { entry, what });
    }
    let stored = parse_octal(&block[CKSUM]);
    if stored != Some(u64::from(checksum(block))) {
        return Err(ArchiveError::Checksum { entry });
    }
    let name = std::str::from_utf8(raw_name)
        .ok()
        .filter(|n| !n.is_empty() && n.len() <= MAX_NAME)
        .ok_or_else(|| ArchiveError::Name(entry.clone()))?;
    let size = parse_size(&block[SIZE]).ok_or_else(|| ArchiveError::Field {
        entry: entry.clone(),
        field: "size",
        found: printable(&block[SIZE]),
        expected: "an octal or base-256 number".to_string(),
    })?;
    let canonical = header(name, size)?;
    if let Some((field, range)) = first_difference(block, &canonical) {
        return Err(ArchiveError::Field {
            entry,
            field,
            found: printable(&block[range.clone()]),
            expected: printable(&canonical[range]),
        });
    }
    Ok(Block::Entry {
        name: name.to_string(),
        size,
    })
}

/// Zero bytes after `size` bytes of data, up to the next block.
pub fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// Where the entry whose header starts at `offset` ends (header, data,
/// padding), or `None` when that does not fit in a `u64`.
pub fn end_of(offset: u64, size: u64) -> Option<u64> {
    offset
        .checked_add(BLOCK as u64)?
        .checked_add(size)?
        .checked_add(padding(size))
}

/// The two zero blocks that end an archive.
pub const END_MARKER: u64 = 2 * BLOCK as u64;

fn extension(typeflag: u8) -> Option<&'static str> {
    Some(match typeflag {
        b'0' => return None,
        0 => "pre-POSIX regular file (typeflag NUL)",
        b'x' => "PAX extended header",
        b'g' => "PAX global header",
        b'L' => "GNU long name",
        b'K' => "GNU long link name",
        b'S' => "GNU sparse file",
        b'1' => "hard link",
        b'2' => "symbolic link",
        b'3' | b'4' => "device",
        b'5' => "directory",
        b'6' => "FIFO",
        b'7' => "contiguous file",
        _ => "entry of an unknown type",
    })
}

fn first_difference(
    found: &[u8; BLOCK],
    canonical: &[u8; BLOCK],
) -> Option<(&'static str, std::ops::Range<usize>)> {
    let fields: [(&'static str, std::ops::Range<usize>); 15] = [
        ("the name field", NAME),
        ("mode", MODE),
        ("uid", UID),
        ("gid", GID),
        ("size", SIZE),
        ("mtime", MTIME),
        ("the checksum field", CKSUM),
        ("linkname", LINKNAME),
        ("magic", MAGIC),
        ("version", VERSION),
        ("uname", UNAME),
        ("gname", GNAME),
        ("devmajor", DEVMAJOR),
        ("devminor", DEVMINOR),
        ("prefix", PREFIX),
    ];
    fields
        .into_iter()
        .find(|(_, r)| found[r.clone()] != canonical[r.clone()])
        .or_else(|| {
            (found[500..] != canonical[500..]).then_some(("the header's padding", 500..512))
        })
}

/// `value` in octal, zero-filled, NUL-terminated, filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let last = field.len() - 1;
    let digits = format!("{value:0last$o}");
    field[..last].copy_from_slice(digits.as_bytes());
    field[last] = 0;
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let digits = until_nul(field);
    let digits = std::str::from_utf8(digits).ok()?.trim_matches(' ');
    if digits.is_empty() {
        return None;
    }
    u64::from_str_radix(digits, 8).ok()
}

fn parse_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        if field[0] != 0x80 || field[1..4].iter().any(|&b| b != 0) {
            return None;
        }
        let mut be = [0u8; 8];
        be.copy_from_slice(&field[4..]);
        return Some(u64::from_be_bytes(be));
    }
    parse_octal(field)
}

/// The header checksum: every byte, with the checksum field taken as spaces.
fn checksum(block: &[u8; BLOCK]) -> u32 {
    block
        .iter()
        .enumerate()
        .map(|(i, &b)| u32::from(if CKSUM.contains(&i) { b' ' } else { b }))
        .sum()
}

fn until_nul(field: &[u8]) -> &[u8] {
    field
        .iter()
        .position(|&b| b == 0)
        .map_or(field, |end| &field[..end])
}

fn printable(field: &[u8]) -> String {
    if field.iter().all(|&b| b == 0) {
        return "empty".to_string();
    }
    let text = String::from_utf8_lossy(field);
    format!("'{}'", crate::text::shown(&text, 120))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, size: u64) -> Block {
        Block::Entry {
            name: name.to_string(),
            size,
        }
    }

    fn with(mut h: [u8; BLOCK], f: impl FnOnce(&mut [u8; BLOCK])) -> [u8; BLOCK] {
        f(&mut h);
        h[CKSUM].fill(0);
        let sum = checksum(&h);
        octal(&mut h[CKSUM], u64::from(sum));
        h
    }

    #[test]
    fn what_airgate_writes_it_reads_back() -> Result<(), ArchiveError> {
        for (name, size) in [
            ("airgate-bundle.json", 0),
            ("blobs/sha256/ab", 511),
            ("files/x", 512),
            ("index.json", OCTAL_LIMIT - 1),
            ("big", OCTAL_LIMIT),
            ("huge", u64::MAX - 1024),
        ] {
            assert_eq!(parse_header(&header(name, size)?)?, entry(name, size));
        }
        assert_eq!(parse_header(&[0u8; BLOCK])?, Block::End);
        Ok(())
    }

    #[test]
    fn sizes_that_overflow_with_their_padding_are_refused() {
        assert!(matches!(
            header("x", u64::MAX),
            Err(ArchiveError::Size { .. })
        ));
        assert_eq!(end_of(u64::MAX - 600, 1), None);
        assert_eq!(end_of(0, 1), Some(1024));
    }

    #[test]
    fn every_ambiguous_or_extended_header_is_refused() -> Result<(), ArchiveError> {
        let base = header("index.json", 10)?;
        let cases: Vec<(&str, [u8; BLOCK])> = vec![
            ("pax", with(base, |h| h[TYPEFLAG] = b'x')),
            ("pax global", with(base, |h| h[TYPEFLAG] = b'g')),
            ("gnu long name", with(base, |h| h[TYPEFLAG] = b'L')),
            ("sparse", with(base, |h| h[TYPEFLAG] = b'S')),
            ("symlink", with(base, |h| h[TYPEFLAG] = b'2')),
            ("hard link", with(base, |h| h[TYPEFLAG] = b'1')),
            ("directory", with(base, |h| h[TYPEFLAG] = b'5')),
            ("old regular", with(base, |h| h[TYPEFLAG] = 0)),
            ("setuid", with(base, |h| octal(&mut h[MODE], 0o4755))),
            ("uid", with(base, |h| octal(&mut h[UID], 1000))),
            ("mtime", with(base, |h| octal(&mut h[MTIME], 1))),
            ("uname", with(base, |h| h[UNAME][0] = b'r')),
            ("linkname", with(base, |h| h[LINKNAME][0] = b'/')),
            ("prefix", with(base, |h| h[PREFIX][0] = b'a')),
            (
                "gnu magic",
                with(base, |h| h[MAGIC].copy_from_slice(b"ustar ")),
            ),
            ("junk after name NUL", with(base, |h| h[NAME][50] = b'z')),
            ("size with spaces", with(base, |h| h[SIZE][0] = b' ')),
            ("tail", with(base, |h| h[505] = 1)),
            (
                "base-256 small",
                with(base, |h| {
                    h[SIZE].fill(0);
                    h[SIZE][0] = 0x80;
                    h[SIZE][11] = 10;
                }),
            ),
            ("checksum", {
                let mut h = base;
                h[0] = b'j';
                h
            }),
        ];
        for (what, block) in cases {
            assert!(parse_header(&block).is_err(), "{what} was accepted");
        }
        Ok(())
    }

    #[test]
    fn errors_escape_control_characters_in_names() -> Result<(), ArchiveError> {
        let h = with(header("x", 1)?, |h| {
            h[..6].copy_from_slice(b"\x1b]0;pw");
            h[TYPEFLAG] = b'2';
        });
        let message = match parse_header(&h) {
            Err(e) => e.to_string(),
            Ok(b) => format!("accepted: {b:?}"),
        };
        assert!(!message.contains('\x1b'), "{message}");
        assert!(message.contains("\\u{1b}]0;pw"), "{message}");
        Ok(())
    }
}
