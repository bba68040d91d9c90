//! Reading a bundle: one streaming pass that checks everything before anything
//! is trusted.
//!
//! The inventory must come first and the signature second; once the signature
//! checks, every later entry is hashed as it streams past and compared with
//! the inventory. Paths that could escape an extraction directory, entries
//! that are not regular files, duplicates, unknown names, a flipped byte, a
//! truncated file and a missing blob are each refused with the entry named.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read};
use std::path::Path;

use airgate_core::Digest;
use airgate_core::bundle::{self, BundleError, EntryKind, Inventory};
use airgate_core::oci::{self, Parsed};
use airgate_core::signing::{self, SignatureFile, SigningError};
use ed25519_dalek::VerifyingKey;
use sha2::{Digest as _, Sha256};

use crate::progress::Progress;

/// How to treat signatures.
#[derive(Clone, Debug)]
pub enum Trust {
    /// The bundle must be signed by this key.
    Key(VerifyingKey),
    /// Accept an unsigned bundle (integrity is still checked).
    Unsigned,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is truncated: it ends inside entry '{entry}'")]
    Truncated { path: String, entry: String },
    #[error("{0} is not an airgate bundle: its first entry is not {INV}", INV = bundle::INVENTORY_PATH)]
    NotABundle(String),
    #[error("the inventory is not valid: {0}")]
    Inventory(String),
    #[error(transparent)]
    Entry(#[from] BundleError),
    #[error("the bundle is not signed, but a key was given to verify it with")]
    Unsigned,
    #[error("signature: {0}")]
    Signature(#[from] SigningError),
    #[error("entry '{0}' appears twice")]
    Duplicate(String),
    #[error("entry '{0}' is not a regular file")]
    NotAFile(String),
    #[error("entry '{0}' is not listed in the inventory")]
    Unlisted(String),
    #[error("entry '{entry}' is corrupt: its digest is {actual}, the inventory says {expected}")]
    DigestMismatch {
        entry: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("entry '{entry}' is {actual} bytes, the inventory says {expected}")]
    SizeMismatch {
        entry: String,
        expected: u64,
        actual: u64,
    },
    #[error("entry '{entry}' is in the wrong place: {reason}")]
    Order { entry: String, reason: String },
    #[error("manifest {digest}: {message}")]
    Manifest { digest: Digest, message: String },
    #[error("the bundle is incomplete: {count} listed entries are missing, first {first}")]
    Missing { count: usize, first: String },
}

/// Where an entry's content sits in the bundle file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub offset: u64,
    pub size: u64,
}

/// A bundle that passed verification, with what a push needs.
#[derive(Clone, Debug)]
pub struct Verified {
    pub inventory: Inventory,
    /// Digest of the inventory's bytes (what a later delta names in `since`).
    pub inventory_digest: Digest,
    /// Key id of the signer, when the signature was checked with a key.
    pub signed_by: Option<Digest>,
    /// Whether the bundle has a signature (checked or not).
    pub signature_present: bool,
    /// Where each carried blob is in the file.
    pub blobs: BTreeMap<Digest, Span>,
    /// Where each carried file is.
    pub files: BTreeMap<String, Span>,
    /// Every manifest and index, parsed, with its bytes and media type.
    pub manifests: BTreeMap<Digest, (bytes::Bytes, String, Parsed)>,
}

/// Reads only the inventory (and whether there is a signature), without
/// checking anything else: for `inspect` and `--since`.
pub fn read_inventory(
    path: &Path,
) -> Result<(Inventory, Digest, Option<SignatureFile>), VerifyError> {
    let shown = path.display().to_string();
    let io = |source| VerifyError::Io {
        path: shown.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut archive = tar::Archive::new(BufReader::new(file));
    let mut entries = archive.entries().map_err(io)?;
    let (inventory, bytes) = match entries.next() {
        Some(e) => {
            let mut e = e.map_err(io)?;
            let name = entry_name(&e);
            if name.trim_start_matches("./") != bundle::INVENTORY_PATH {
                return Err(VerifyError::NotABundle(shown));
            }
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).map_err(io)?;
            (parse_inventory(&bytes)?, bytes)
        }
        None => return Err(VerifyError::NotABundle(shown)),
    };
    let mut signature = None;
    if let Some(Ok(mut e)) = entries.next()
        && entry_name(&e).trim_start_matches("./") == bundle::SIGNATURE_PATH
    {
        let mut b = Vec::new();
        e.read_to_end(&mut b).map_err(io)?;
        signature =
            Some(serde_json::from_slice(&b).map_err(|e| SigningError::Malformed(e.to_string()))?);
    }
    Ok((inventory, Digest::of(&bytes), signature))
}

/// Reads an inventory from either a bundle or a bare inventory JSON file.
pub fn read_inventory_or_bundle(path: &Path) -> Result<(Inventory, Digest), VerifyError> {
    let shown = path.display().to_string();
    let mut head = [0u8; 1];
    let mut f = std::fs::File::open(path).map_err(|source| VerifyError::Io {
        path: shown.clone(),
        source,
    })?;
    let n = f.read(&mut head).map_err(|source| VerifyError::Io {
        path: shown.clone(),
        source,
    })?;
    if n == 1 && head[0] == b'{' {
        let bytes = std::fs::read(path).map_err(|source| VerifyError::Io {
            path: shown,
            source,
        })?;
        return Ok((parse_inventory(&bytes)?, Digest::of(&bytes)));
    }
    let (inv, digest, _) = read_inventory(path)?;
    Ok((inv, digest))
}

fn parse_inventory(bytes: &[u8]) -> Result<Inventory, VerifyError> {
    let inv: Inventory =
        serde_json::from_slice(bytes).map_err(|e| VerifyError::Inventory(e.to_string()))?;
    inv.validate()?;
    Ok(inv)
}

fn entry_name<R: Read>(e: &tar::Entry<'_, R>) -> String {
    String::from_utf8_lossy(&e.path_bytes()).into_owned()
}

/// An entry's name, where its content is, and whether it is a regular file.
fn entry_head<R: Read>(e: &tar::Entry<'_, R>) -> (String, Span, bool) {
    let span = Span {
        offset: e.raw_file_position(),
        size: e.size(),
    };
    (entry_name(e), span, e.header().entry_type().is_file())
}

/// What the inventory says one entry must be.
struct Expected {
    digest: Digest,
    size: u64,
    /// Set for manifests and indexes (kept and parsed) and layout files (kept).
    keep: Option<Option<String>>,
}

/// The checks both readers share: entry headers against the bundle format,
/// entries against the inventory, and completeness at the end.
struct Checker {
    seen: BTreeSet<String>,
    position: usize,
    trust: Trust,
    inventory: Option<(Inventory, Digest, Vec<u8>)>,
    /// Position of each blob in the inventory, built once.
    blob_index: BTreeMap<Digest, usize>,
    signed_by: Option<Digest>,
    signature_present: bool,
    blobs: BTreeMap<Digest, Span>,
    files: BTreeMap<String, Span>,
    manifests: BTreeMap<Digest, (bytes::Bytes, String, Parsed)>,
}

/// What to do with an entry after its header was checked.
enum Next {
    /// Read it whole and hand it to `inventory` / `signature`.
    Inventory,
    Signature,
    /// Hash it and compare.
    Check(EntryKind, Expected),
}

impl Checker {
    fn new(trust: &Trust) -> Checker {
        Checker {
            seen: BTreeSet::new(),
            position: 0,
            trust: trust.clone(),
            inventory: None,
            blob_index: BTreeMap::new(),
            signed_by: None,
            signature_present: false,
            blobs: BTreeMap::new(),
            files: BTreeMap::new(),
            manifests: BTreeMap::new(),
        }
    }

    /// Checks an entry's header, in bundle order.
    fn header(
        &mut self,
        name: &str,
        is_file: bool,
        size: u64,
        bundle: &str,
    ) -> Result<Next, VerifyError> {
        let kind = bundle::classify_entry(name)?;
        if matches!(kind, EntryKind::Inventory | EntryKind::Signature) && size > MAX_METADATA {
            return Err(VerifyError::Inventory(format!(
                "entry '{name}' is {size} bytes; too large"
            )));
        }
        if !self.seen.insert(name.trim_start_matches("./").to_string()) {
            return Err(VerifyError::Duplicate(name.to_string()));
        }
        if !is_file {
            return Err(VerifyError::NotAFile(name.to_string()));
        }
        self.position += 1;
        match (&kind, self.position) {
            (EntryKind::Inventory, 1) => return Ok(Next::Inventory),
            (_, 1) => return Err(VerifyError::NotABundle(bundle.to_string())),
            (EntryKind::Signature, 2) => return Ok(Next::Signature),
            (EntryKind::Signature | EntryKind::Inventory, _) => {
                return Err(VerifyError::Order {
                    entry: name.to_string(),
                    reason: "the inventory comes first and the signature second".to_string(),
                });
            }
            _ => {}
        }
        if self.signed_by.is_none() && matches!(self.trust, Trust::Key(_)) {
            return Err(VerifyError::Unsigned);
        }
        let Some((inv, _, _)) = &self.inventory else {
            return Err(VerifyError::NotABundle(bundle.to_string()));
        };
        let expected = match &kind {
            EntryKind::Layout(p) => inv.layout.iter().find(|l| &l.path == p).map(|l| Expected {
                digest: l.digest.clone(),
                size: l.size,
                keep: Some(None),
            }),
            EntryKind::Blob(d) => self
                .blob_index
                .get(d)
                .map(|&i| &inv.blobs[i])
                .filter(|b| b.carried)
                .map(|b| Expected {
                    digest: b.digest.clone(),
                    size: b.size,
                    keep: b.media_type.clone().map(Some),
                }),
            EntryKind::File(n) => inv.files.iter().find(|f| &f.name == n).map(|f| Expected {
                digest: f.digest.clone(),
                size: f.size,
                keep: None,
            }),
            EntryKind::Inventory | EntryKind::Signature => None,
        };
        let Some(expected) = expected else {
            return Err(VerifyError::Unlisted(name.to_string()));
        };
        if size != expected.size {
            return Err(VerifyError::SizeMismatch {
                entry: name.to_string(),
                expected: expected.size,
                actual: size,
            });
        }
        Ok(Next::Check(kind, expected))
    }

    fn inventory(&mut self, bytes: Vec<u8>) -> Result<u64, VerifyError> {
        let inv = parse_inventory(&bytes)?;
        let total = inv.carried_bytes();
        self.blob_index = inv
            .blobs
            .iter()
            .enumerate()
            .map(|(i, b)| (b.digest.clone(), i))
            .collect();
        self.inventory = Some((inv, Digest::of(&bytes), bytes));
        Ok(total)
    }

    fn signature(&mut self, bytes: &[u8]) -> Result<(), VerifyError> {
        let sig: SignatureFile =
            serde_json::from_slice(bytes).map_err(|e| SigningError::Malformed(e.to_string()))?;
        if let (Trust::Key(key), Some((_, _, inv_bytes))) = (&self.trust, &self.inventory) {
            signing::verify(inv_bytes, &sig, key)?;
            self.signed_by = Some(sig.key_id);
        }
        self.signature_present = true;
        Ok(())
    }

    /// Records a hashed entry: it must match what the inventory says.
    fn checked(
        &mut self,
        name: &str,
        kind: EntryKind,
        expected: Expected,
        actual: Digest,
        span: Span,
        kept: Vec<u8>,
    ) -> Result<(), VerifyError> {
        if actual != expected.digest {
            return Err(VerifyError::DigestMismatch {
                entry: name.to_string(),
                expected: expected.digest,
                actual,
            });
        }
        match kind {
            EntryKind::Blob(d) => {
                if let Some(Some(mt)) = expected.keep {
                    let parsed =
                        oci::parse_manifest(&kept, &mt).map_err(|e| VerifyError::Manifest {
                            digest: d.clone(),
                            message: e.to_string(),
                        })?;
                    self.manifests
                        .insert(d.clone(), (bytes::Bytes::from(kept), mt, parsed));
                }
                self.blobs.insert(d, span);
            }
            EntryKind::File(n) => {
                self.files.insert(n, span);
            }
            _ => {}
        }
        Ok(())
    }

    /// The end: everything listed was there, every manifest's blobs are listed.
    fn finish(self, bundle: &str) -> Result<Verified, VerifyError> {
        let Some((inventory, inventory_digest, _)) = self.inventory else {
            return Err(VerifyError::NotABundle(bundle.to_string()));
        };
        if self.signed_by.is_none() && matches!(self.trust, Trust::Key(_)) {
            return Err(VerifyError::Unsigned);
        }
        let mut missing: Vec<String> = Vec::new();
        for l in &inventory.layout {
            if !self.seen.contains(&l.path) {
                missing.push(l.path.clone());
            }
        }
        for b in inventory.blobs.iter().filter(|b| b.carried) {
            if !self.blobs.contains_key(&b.digest) {
                missing.push(b.digest.layout_path());
            }
        }
        for f in &inventory.files {
            if !self.files.contains_key(&f.name) {
                missing.push(format!("{}{}", bundle::FILES_DIR, f.name));
            }
        }
        if let Some(first) = missing.first() {
            return Err(VerifyError::Missing {
                count: missing.len(),
                first: first.clone(),
            });
        }
        let parsed: BTreeMap<Digest, Parsed> = self
            .manifests
            .iter()
            .map(|(d, (_, _, p))| (d.clone(), p.clone()))
            .collect();
        inventory.check_children(&parsed)?;
        Ok(Verified {
            inventory,
            inventory_digest,
            signed_by: self.signed_by,
            signature_present: self.signature_present,
            blobs: self.blobs,
            files: self.files,
            manifests: self.manifests,
        })
    }
}

/// Verifies the whole bundle in one streaming pass (see the module docs).
pub fn verify(path: &Path, trust: &Trust, progress: &Progress) -> Result<Verified, VerifyError> {
    let file = std::fs::File::open(path).map_err(|source| VerifyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    verify_stream(file, &path.display().to_string(), trust, progress)
}

/// Verifies a bundle read from `reader` (a file, a pipe, a data diode),
/// named `shown` in messages. Spans in the result are stream offsets.
pub fn verify_stream(
    reader: impl Read,
    shown: &str,
    trust: &Trust,
    progress: &Progress,
) -> Result<Verified, VerifyError> {
    let shown = shown.to_string();
    let io = |source: std::io::Error| VerifyError::Io {
        path: shown.clone(),
        source,
    };
    let mut archive = tar::Archive::new(BufReader::with_capacity(4 << 20, reader));
    let mut checker = Checker::new(trust);
    let mut buf = vec![0u8; 1 << 20];
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(|e| truncated_or_io(&shown, "<header>", e))?;
        let (name, span, is_file) = entry_head(&entry);
        let size = span.size;
        match checker.header(&name, is_file, size, &shown)? {
            Next::Inventory => {
                let mut bytes = Vec::with_capacity(size as usize);
                entry
                    .read_to_end(&mut bytes)
                    .map_err(|e| truncated_or_io(&shown, &name, e))?;
                progress.set_total(checker.inventory(bytes)?);
            }
            Next::Signature => {
                let mut bytes = Vec::new();
                entry
                    .read_to_end(&mut bytes)
                    .map_err(|e| truncated_or_io(&shown, &name, e))?;
                checker.signature(&bytes)?;
            }
            Next::Check(kind, expected) => {
                let keep = expected.keep.is_some();
                let count = matches!(kind, EntryKind::Blob(_));
                let mut kept = Vec::new();
                let mut hasher = Sha256::new();
                let mut read = 0u64;
                loop {
                    let n = entry
                        .read(&mut buf)
                        .map_err(|e| truncated_or_io(&shown, &name, e))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    if keep {
                        kept.extend_from_slice(&buf[..n]);
                    }
                    read += n as u64;
                    if count {
                        progress.advance(n as u64);
                    }
                }
                if read != size {
                    return Err(VerifyError::Truncated {
                        path: shown,
                        entry: name,
                    });
                }
                let actual = Digest::from_sha256(hasher.finalize().as_slice());
                checker.checked(&name, kind, expected, actual, span, kept)?;
            }
        }
    }
    checker.finish(&shown)
}

/// One entry hashed by `verify_parallel`: its index in the work list, its
/// digest, and its bytes when they are kept.
type Hashed = (usize, Digest, Vec<u8>);

/// The inventory and signature are small; anything larger is not a bundle.
const MAX_METADATA: u64 = 256 << 20;

/// Verifies the whole bundle reading each byte once, hashing entries on
/// `threads` threads at once: the headers are read first (seeking past the
/// data), then the inventory and signature, then every entry in parallel.
/// For files on disk; `verify` also works on a stream.
pub fn verify_parallel(
    path: &Path,
    trust: &Trust,
    threads: usize,
    progress: &Progress,
) -> Result<Verified, VerifyError> {
    use std::os::unix::fs::FileExt;
    let shown = path.display().to_string();
    let io = |source: std::io::Error| VerifyError::Io {
        path: shown.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let read_span = |span: Span, name: &str| -> Result<Vec<u8>, VerifyError> {
        if span.offset + span.size > file_len {
            return Err(VerifyError::Truncated {
                path: shown.clone(),
                entry: name.to_string(),
            });
        }
        let mut bytes = vec![0u8; span.size as usize];
        file.read_exact_at(&mut bytes, span.offset)
            .map_err(|e| truncated_or_io(&shown, name, e))?;
        Ok(bytes)
    };

    // 1. Headers only, in order.
    let mut checker = Checker::new(trust);
    let mut work = Vec::new();
    let mut archive = tar::Archive::new(std::fs::File::open(path).map_err(io)?);
    for entry in archive.entries_with_seek().map_err(io)? {
        let entry = entry.map_err(|e| truncated_or_io(&shown, "<header>", e))?;
        let (name, span, is_file) = entry_head(&entry);
        let size = span.size;
        match checker.header(&name, is_file, size, &shown)? {
            Next::Inventory => progress.set_total(checker.inventory(read_span(span, &name)?)?),
            Next::Signature => checker.signature(&read_span(span, &name)?)?,
            Next::Check(kind, expected) => {
                if span.offset + size > file_len {
                    return Err(VerifyError::Truncated {
                        path: shown,
                        entry: name,
                    });
                }
                work.push((name, kind, expected, span));
            }
        }
    }

    // 2. Hash every entry, biggest first, on `threads` threads.
    work.sort_by_key(|(_, _, _, span)| std::cmp::Reverse(span.size));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<Vec<Hashed>, VerifyError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    let mut buf = vec![0u8; 4 << 20];
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((name, kind, expected, span)) = work.get(i) else {
                            return Ok(done);
                        };
                        let mut hasher = Sha256::new();
                        let mut kept = Vec::new();
                        let mut at = 0u64;
                        while at < span.size {
                            let n = (span.size - at).min(buf.len() as u64) as usize;
                            file.read_exact_at(&mut buf[..n], span.offset + at)
                                .map_err(|e| truncated_or_io(&shown, name, e))?;
                            hasher.update(&buf[..n]);
                            if expected.keep.is_some() {
                                kept.extend_from_slice(&buf[..n]);
                            }
                            if matches!(kind, EntryKind::Blob(_)) {
                                progress.advance(n as u64);
                            }
                            at += n as u64;
                        }
                        done.push((i, Digest::from_sha256(hasher.finalize().as_slice()), kept));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(VerifyError::Inventory(
                        "a hashing thread panicked".to_string(),
                    ))
                })
            })
            .collect()
    });
    let mut hashed = Vec::new();
    for r in results {
        hashed.extend(r?);
    }
    hashed.sort_by_key(|(i, _, _)| *i);
    let mut work: Vec<Option<(String, EntryKind, Expected, Span)>> =
        work.into_iter().map(Some).collect();
    for (i, actual, kept) in hashed {
        if let Some((name, kind, expected, span)) = work.get_mut(i).and_then(Option::take) {
            checker.checked(&name, kind, expected, actual, span, kept)?;
        }
    }
    checker.finish(&shown)
}

fn truncated_or_io(path: &str, entry: &str, e: std::io::Error) -> VerifyError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        VerifyError::Truncated {
            path: path.to_string(),
            entry: entry.to_string(),
        }
    } else {
        VerifyError::Io {
            path: path.to_string(),
            source: e,
        }
    }
}
