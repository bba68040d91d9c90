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

/// Verifies the whole bundle in one streaming pass (see the module docs).
pub fn verify(path: &Path, trust: &Trust, progress: &Progress) -> Result<Verified, VerifyError> {
    let shown = path.display().to_string();
    let io = |source: std::io::Error| VerifyError::Io {
        path: shown.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut archive = tar::Archive::new(BufReader::with_capacity(4 << 20, file));
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut inventory: Option<(Inventory, Digest, Vec<u8>)> = None;
    let mut signed_by = None;
    let mut signature_present = false;
    let mut blobs = BTreeMap::new();
    let mut files = BTreeMap::new();
    let mut manifests = BTreeMap::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut position = 0usize;

    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(|e| truncated_or_io(&shown, "<header>", e))?;
        let name = entry_name(&entry);
        let kind = bundle::classify_entry(&name)?;
        if !seen.insert(name.trim_start_matches("./").to_string()) {
            return Err(VerifyError::Duplicate(name));
        }
        if !entry.header().entry_type().is_file() {
            return Err(VerifyError::NotAFile(name));
        }
        let size = entry.size();
        let offset = entry.raw_file_position();
        position += 1;

        // The first entry is the inventory; the second may be the signature.
        match (&kind, position, &inventory) {
            (EntryKind::Inventory, 1, None) => {
                let mut bytes = Vec::with_capacity(size as usize);
                entry
                    .read_to_end(&mut bytes)
                    .map_err(|e| truncated_or_io(&shown, &name, e))?;
                let inv = parse_inventory(&bytes)?;
                let digest = Digest::of(&bytes);
                progress.set_total(inv.carried_bytes());
                inventory = Some((inv, digest, bytes));
                continue;
            }
            (_, 1, _) => return Err(VerifyError::NotABundle(shown)),
            (EntryKind::Signature, 2, Some((_, _, inv_bytes))) => {
                let mut bytes = Vec::new();
                entry
                    .read_to_end(&mut bytes)
                    .map_err(|e| truncated_or_io(&shown, &name, e))?;
                let sig: SignatureFile = serde_json::from_slice(&bytes)
                    .map_err(|e| SigningError::Malformed(e.to_string()))?;
                if let Trust::Key(key) = trust {
                    signing::verify(inv_bytes, &sig, key)?;
                    signed_by = Some(sig.key_id);
                }
                signature_present = true;
                continue;
            }
            (EntryKind::Signature, _, _) | (EntryKind::Inventory, _, _) => {
                return Err(VerifyError::Order {
                    entry: name,
                    reason: "the inventory comes first and the signature second".to_string(),
                });
            }
            _ => {}
        }
        if position == 2 && signed_by.is_none() && matches!(trust, Trust::Key(_)) {
            return Err(VerifyError::Unsigned);
        }
        let Some((inv, _, _)) = &inventory else {
            return Err(VerifyError::NotABundle(shown));
        };

        let expected = match &kind {
            EntryKind::Layout(p) => inv
                .layout
                .iter()
                .find(|l| &l.path == p)
                .map(|l| (l.digest.clone(), l.size)),
            EntryKind::Blob(d) => inv
                .blobs
                .iter()
                .find(|b| &b.digest == d && b.carried)
                .map(|b| (b.digest.clone(), b.size)),
            EntryKind::File(n) => inv
                .files
                .iter()
                .find(|f| &f.name == n)
                .map(|f| (f.digest.clone(), f.size)),
            EntryKind::Inventory | EntryKind::Signature => None,
        };
        let Some((expected_digest, expected_size)) = expected else {
            return Err(VerifyError::Unlisted(name));
        };
        if size != expected_size {
            return Err(VerifyError::SizeMismatch {
                entry: name,
                expected: expected_size,
                actual: size,
            });
        }
        let media_type = match &kind {
            EntryKind::Blob(d) => inv
                .blobs
                .iter()
                .find(|b| &b.digest == d)
                .and_then(|b| b.media_type.clone()),
            _ => None,
        };
        let keep = media_type.is_some() || matches!(kind, EntryKind::Layout(_));
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
            if matches!(kind, EntryKind::Blob(_)) {
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
        if actual != expected_digest {
            return Err(VerifyError::DigestMismatch {
                entry: name,
                expected: expected_digest,
                actual,
            });
        }
        let span = Span { offset, size };
        match kind {
            EntryKind::Blob(d) => {
                if let Some(mt) = media_type {
                    let parsed =
                        oci::parse_manifest(&kept, &mt).map_err(|e| VerifyError::Manifest {
                            digest: d.clone(),
                            message: e.to_string(),
                        })?;
                    manifests.insert(d.clone(), (bytes::Bytes::from(kept), mt, parsed));
                }
                blobs.insert(d, span);
            }
            EntryKind::File(n) => {
                files.insert(n, span);
            }
            _ => {}
        }
    }

    let Some((inventory, inventory_digest, _)) = inventory else {
        return Err(VerifyError::NotABundle(shown));
    };
    if signed_by.is_none() && matches!(trust, Trust::Key(_)) {
        return Err(VerifyError::Unsigned);
    }
    let mut missing: Vec<String> = Vec::new();
    for l in &inventory.layout {
        if !seen.contains(&l.path) {
            missing.push(l.path.clone());
        }
    }
    for b in inventory.blobs.iter().filter(|b| b.carried) {
        if !blobs.contains_key(&b.digest) {
            missing.push(b.digest.layout_path());
        }
    }
    for f in &inventory.files {
        if !files.contains_key(&f.name) {
            missing.push(format!("{}{}", bundle::FILES_DIR, f.name));
        }
    }
    if let Some(first) = missing.first() {
        return Err(VerifyError::Missing {
            count: missing.len(),
            first: first.clone(),
        });
    }
    // Every manifest carried must be parsed, so its children can be checked.
    for b in &inventory.blobs {
        if b.media_type.is_some() && b.carried && !manifests.contains_key(&b.digest) {
            return Err(VerifyError::Missing {
                count: 1,
                first: b.digest.layout_path(),
            });
        }
    }
    let parsed: BTreeMap<Digest, Parsed> = manifests
        .iter()
        .map(|(d, (_, _, p))| (d.clone(), p.clone()))
        .collect();
    inventory.check_children(&parsed)?;
    Ok(Verified {
        inventory,
        inventory_digest,
        signed_by,
        signature_present,
        blobs,
        files,
        manifests,
    })
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
