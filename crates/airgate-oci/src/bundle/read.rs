//! Reading a bundle: one streaming pass that checks everything before anything
//! is trusted.
//!
//! The inventory must come first and the signature second; the inventory is
//! parsed only after the signature over its bytes checks, and once it has,
//! every later entry is hashed as it streams past and compared with the
//! inventory. The tar itself is walked strictly (`entries`): only the dialect
//! airgate writes. Paths that could escape an extraction directory, entries
//! that are not regular files, duplicates, unknown names, a flipped byte, a
//! truncated file and a missing blob are each refused with the entry named.
//!
//! Limits on what is read into memory, each refused naming the entry: the
//! inventory [`MAX_INVENTORY`], the signature [`MAX_SIGNATURE`], each
//! manifest or index [`MAX_MANIFEST`]; headers are one block each and
//! extensions (PAX, GNU long names) are refused, not read.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read};
use std::path::Path;

use airgate_core::Digest;
use airgate_core::bundle::{self, BundleError, BundleInventory, EntryKind};
use airgate_core::oci::{self, Parsed};
use airgate_core::signing::{self, SignatureFile, SigningError};
use ed25519_dalek::VerifyingKey;
use sha2::{Digest as _, Sha256};

use airgate_core::text;

use super::entries::{Entries, Positioned, Stream, WalkError};
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
    #[error("{path} is truncated: it ends inside {entry}")]
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
    #[error("{0}")]
    Archive(String),
    #[error(
        "entry '{entry}' is {size} bytes, more than the {max} bytes airgate reads of such an entry; refusing it"
    )]
    TooLarge { entry: String, size: u64, max: u64 },
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

impl VerifyError {
    fn walk(path: &str, e: WalkError) -> VerifyError {
        match e {
            WalkError::Truncated(inside) => VerifyError::Truncated {
                path: path.to_string(),
                entry: inside,
            },
            WalkError::Io(source) => VerifyError::Io {
                path: path.to_string(),
                source,
            },
            other => VerifyError::Archive(other.to_string()),
        }
    }
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
    pub inventory: BundleInventory,
    /// Digest of the inventory's bytes (what a later delta names in `since`).
    pub inventory_digest: Digest,
    /// The inventory's exact bytes (what a signature covers).
    pub inventory_bytes: bytes::Bytes,
    /// Key id of the signer, when the signature was checked with a key.
    pub signed_by: Option<Digest>,
    /// The signature file, when it was checked with a key.
    pub signature: Option<SignatureFile>,
    /// Whether the bundle has a signature (checked or not).
    pub signature_present: bool,
    /// Where each carried blob is in the file.
    pub blobs: BTreeMap<Digest, Span>,
    /// Where each carried file is.
    pub files: BTreeMap<String, Span>,
    /// Every manifest and index, parsed, with its bytes and media type.
    pub manifests: BTreeMap<Digest, (bytes::Bytes, String, Parsed)>,
}

/// Reads only the inventory (and its signature, unchecked), without checking
/// anything else: for `inspect` and `--since`. The walk is the strict one
/// every reader shares, and the inventory is refused above its limit before
/// a byte of it is read.
pub fn read_inventory(path: &Path) -> Result<InventoryEntry, VerifyError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| VerifyError::Io {
        path: shown.clone(),
        source,
    })?;
    let mut entries = Entries::new(Stream(BufReader::new(file)), 0);
    let walk = |e| VerifyError::walk(&shown, e);
    let Some(head) = entries.next_entry().map_err(walk)? else {
        return Err(VerifyError::NotABundle(shown));
    };
    if bundle::classify_entry(&head.name)? != EntryKind::Inventory {
        return Err(VerifyError::NotABundle(shown));
    }
    limit(&head.name, head.size, MAX_INVENTORY)?;
    let bytes = entries.read_all().map_err(walk)?;
    let inventory = parse_inventory(&bytes)?;
    let mut signature = None;
    if let Some(head) = entries.next_entry().map_err(walk)?
        && bundle::classify_entry(&head.name)? == EntryKind::Signature
    {
        limit(&head.name, head.size, MAX_SIGNATURE)?;
        let b = entries.read_all().map_err(walk)?;
        signature =
            Some(serde_json::from_slice(&b).map_err(|e| SigningError::Malformed(e.to_string()))?);
    }
    Ok(InventoryEntry {
        inventory,
        digest: Digest::of(&bytes),
        bytes,
        signature,
    })
}

/// A bundle's first entries, read but not verified.
#[derive(Clone, Debug)]
pub struct InventoryEntry {
    pub inventory: BundleInventory,
    pub digest: Digest,
    /// The inventory's exact bytes, which a signature covers.
    pub bytes: Vec<u8>,
    /// The signature file, if the bundle has one; not checked.
    pub signature: Option<SignatureFile>,
}

/// Reads an inventory from either a bundle or a bare inventory JSON file.
pub fn read_inventory_or_bundle(path: &Path) -> Result<(BundleInventory, Digest), VerifyError> {
    let shown = path.display().to_string();
    let io = |source| VerifyError::Io {
        path: shown.clone(),
        source,
    };
    let mut head = [0u8; 1];
    let mut f = std::fs::File::open(path).map_err(io)?;
    let n = f.read(&mut head).map_err(io)?;
    if n == 1 && head[0] == b'{' {
        let len = f.metadata().map_err(io)?.len();
        limit(&shown, len, MAX_INVENTORY)?;
        let bytes = std::fs::read(path).map_err(io)?;
        return Ok((parse_inventory(&bytes)?, Digest::of(&bytes)));
    }
    let entry = read_inventory(path)?;
    Ok((entry.inventory, entry.digest))
}

fn parse_inventory(bytes: &[u8]) -> Result<BundleInventory, VerifyError> {
    let inv: BundleInventory =
        serde_json::from_slice(bytes).map_err(|e| VerifyError::Inventory(e.to_string()))?;
    inv.validate()?;
    Ok(inv)
}

/// The most an inventory may be (about 140,000 blobs); read whole into memory.
pub const MAX_INVENTORY: u64 = 16 << 20;
/// The most a signature file may be.
pub const MAX_SIGNATURE: u64 = 64 << 10;
/// The most a manifest or index may be: what registries accept.
pub const MAX_MANIFEST: u64 = crate::registry::MAX_MANIFEST;

fn limit(entry: &str, size: u64, max: u64) -> Result<(), VerifyError> {
    if size > max {
        return Err(VerifyError::TooLarge {
            entry: text::shown(entry, 200),
            size,
            max,
        });
    }
    Ok(())
}

/// What the inventory says one entry must be.
struct Expected {
    digest: Digest,
    size: u64,
    /// Set for manifests and indexes (kept and parsed) and layout files (kept).
    keep: Option<Option<String>>,
}

/// The checks every reader shares: entry headers against the bundle format,
/// entries against the inventory, and completeness at the end.
struct Checker<'a> {
    seen: BTreeSet<String>,
    position: usize,
    trust: Trust,
    progress: &'a Progress,
    /// The inventory's bytes, kept until the signature over them is checked.
    pending: Option<Vec<u8>>,
    inventory: Option<(BundleInventory, Digest, bytes::Bytes)>,
    /// Position of each blob in the inventory, built once.
    blob_index: BTreeMap<Digest, usize>,
    signed_by: Option<Digest>,
    signature: Option<SignatureFile>,
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

impl<'a> Checker<'a> {
    fn new(trust: &Trust, progress: &'a Progress) -> Checker<'a> {
        Checker {
            seen: BTreeSet::new(),
            position: 0,
            trust: trust.clone(),
            progress,
            pending: None,
            inventory: None,
            blob_index: BTreeMap::new(),
            signed_by: None,
            signature: None,
            signature_present: false,
            blobs: BTreeMap::new(),
            files: BTreeMap::new(),
            manifests: BTreeMap::new(),
        }
    }

    /// Checks an entry's header, in bundle order.
    fn header(&mut self, name: &str, size: u64, bundle: &str) -> Result<Next, VerifyError> {
        let kind = bundle::classify_entry(name)?;
        if !self.seen.insert(name.trim_start_matches("./").to_string()) {
            return Err(VerifyError::Duplicate(text::shown(name, 200)));
        }
        self.position += 1;
        match (&kind, self.position) {
            (EntryKind::Inventory, 1) => {
                limit(name, size, MAX_INVENTORY)?;
                return Ok(Next::Inventory);
            }
            (_, 1) => return Err(VerifyError::NotABundle(bundle.to_string())),
            (EntryKind::Signature, 2) => {
                limit(name, size, MAX_SIGNATURE)?;
                return Ok(Next::Signature);
            }
            (EntryKind::Signature | EntryKind::Inventory, _) => {
                return Err(VerifyError::Order {
                    entry: name.to_string(),
                    reason: "the inventory comes first and the signature second".to_string(),
                });
            }
            _ => {}
        }
        self.accept_unsigned()?;
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
        match &expected.keep {
            Some(Some(_)) => limit(name, size, MAX_MANIFEST)?,
            Some(None) => limit(name, size, MAX_INVENTORY)?,
            None => {}
        }
        Ok(Next::Check(kind, expected))
    }

    /// The inventory's bytes: parsed only once the signature over them
    /// checks (or, for an unsigned bundle, once no signature follows).
    fn inventory(&mut self, bytes: Vec<u8>) {
        self.pending = Some(bytes);
    }

    fn parse_pending(&mut self) -> Result<(), VerifyError> {
        let Some(bytes) = self.pending.take() else {
            return Ok(());
        };
        let inv = parse_inventory(&bytes)?;
        self.progress.set_total(inv.carried_bytes());
        self.blob_index = inv
            .blobs
            .iter()
            .enumerate()
            .map(|(i, b)| (b.digest.clone(), i))
            .collect();
        let digest = Digest::of(&bytes);
        self.inventory = Some((inv, digest, bytes.into()));
        Ok(())
    }

    /// No signature came after the inventory: refused when a key was given.
    fn accept_unsigned(&mut self) -> Result<(), VerifyError> {
        if self.signed_by.is_none() && matches!(self.trust, Trust::Key(_)) {
            return Err(VerifyError::Unsigned);
        }
        self.parse_pending()
    }

    fn signature(&mut self, bytes: &[u8]) -> Result<(), VerifyError> {
        let sig: SignatureFile =
            serde_json::from_slice(bytes).map_err(|e| SigningError::Malformed(e.to_string()))?;
        if let (Trust::Key(key), Some(inv_bytes)) = (&self.trust, &self.pending) {
            signing::verify(inv_bytes, &sig, key)?;
            self.signed_by = Some(sig.key_id.clone());
            self.signature = Some(sig);
        }
        self.signature_present = true;
        self.parse_pending()
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
    fn finish(mut self, bundle: &str) -> Result<Verified, VerifyError> {
        self.accept_unsigned()?;
        let Some((inventory, inventory_digest, inventory_bytes)) = self.inventory else {
            return Err(VerifyError::NotABundle(bundle.to_string()));
        };
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
            inventory_bytes,
            signed_by: self.signed_by,
            signature: self.signature,
            signature_present: self.signature_present,
            blobs: self.blobs,
            files: self.files,
            manifests: self.manifests,
        })
    }
}

/// Verifies the whole bundle in one streaming pass (see the module docs),
/// read from `reader` (a file, a pipe, a data diode),
/// named `shown` in messages. Spans in the result are stream offsets.
pub fn verify_stream(
    reader: impl Read,
    shown: &str,
    trust: &Trust,
    progress: &Progress,
) -> Result<Verified, VerifyError> {
    verify_into(reader, shown, trust, progress, &mut Discard)
}

/// Where `verify_into` hands each entry's bytes as they stream past, before
/// they are checked: whoever writes them must not trust them until the
/// whole verification has succeeded (see `extract`).
pub trait Unpack {
    fn begin(&mut self, kind: &EntryKind) -> std::io::Result<()>;
    fn data(&mut self, chunk: &[u8]) -> std::io::Result<()>;
    fn end(&mut self) -> std::io::Result<()>;
}

struct Discard;

impl Unpack for Discard {
    fn begin(&mut self, _: &EntryKind) -> std::io::Result<()> {
        Ok(())
    }
    fn data(&mut self, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn end(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// [`verify_stream`], handing every entry to `unpack` as it passes.
pub fn verify_into(
    reader: impl Read,
    shown: &str,
    trust: &Trust,
    progress: &Progress,
    unpack: &mut dyn Unpack,
) -> Result<Verified, VerifyError> {
    let shown = shown.to_string();
    let out = |source: std::io::Error| VerifyError::Io {
        path: "the output".to_string(),
        source,
    };
    let walk = |e| VerifyError::walk(&shown, e);
    let mut entries = Entries::new(Stream(BufReader::with_capacity(4 << 20, reader)), 0);
    let mut checker = Checker::new(trust, progress);
    let mut buf = vec![0u8; 1 << 20];
    while let Some(head) = entries.next_entry().map_err(walk)? {
        let name = head.name;
        let span = Span {
            offset: head.offset,
            size: head.size,
        };
        match checker.header(&name, head.size, &shown)? {
            next @ (Next::Inventory | Next::Signature) => {
                let bytes = entries.read_all().map_err(walk)?;
                let kind = bundle::classify_entry(&name)?;
                unpack.begin(&kind).map_err(out)?;
                unpack.data(&bytes).map_err(out)?;
                unpack.end().map_err(out)?;
                match next {
                    Next::Inventory => checker.inventory(bytes),
                    _ => checker.signature(&bytes)?,
                }
            }
            Next::Check(kind, expected) => {
                unpack.begin(&kind).map_err(out)?;
                let keep = expected.keep.is_some();
                let count = matches!(kind, EntryKind::Blob(_));
                let mut kept = Vec::new();
                let mut hasher = Sha256::new();
                loop {
                    let n = entries.read_data(&mut buf).map_err(walk)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    unpack.data(&buf[..n]).map_err(out)?;
                    if keep {
                        kept.extend_from_slice(&buf[..n]);
                    }
                    if count {
                        progress.advance(n as u64);
                    }
                }
                unpack.end().map_err(out)?;
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

/// Verifies the whole bundle reading each byte once, hashing entries on
/// `threads` threads at once: the headers are walked first (skipping the
/// data, with the same strict walk as [`verify_stream`], so both give one
/// verdict), then every entry is hashed in parallel. For files on disk.
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
    let walk = |e| VerifyError::walk(&shown, e);
    let file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();

    // 1. Headers only, in order.
    let mut checker = Checker::new(trust, progress);
    let mut work = Vec::new();
    let cursor = Positioned {
        file: &file,
        len: file_len,
        at: 0,
    };
    let mut entries = Entries::new(cursor, 0);
    while let Some(head) = entries.next_entry().map_err(walk)? {
        let span = Span {
            offset: head.offset,
            size: head.size,
        };
        match checker.header(&head.name, head.size, &shown)? {
            Next::Inventory => checker.inventory(entries.read_all().map_err(walk)?),
            Next::Signature => checker.signature(&entries.read_all().map_err(walk)?)?,
            Next::Check(kind, expected) => work.push((head.name, kind, expected, span)),
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
            entry: format!("entry '{}'", text::shown(entry, 200)),
        }
    } else {
        VerifyError::Io {
            path: path.to_string(),
            source: e,
        }
    }
}
