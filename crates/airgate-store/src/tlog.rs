//! The records as a transparency log: every record a leaf of an RFC 6962
//! Merkle tree, checkpoints signed in the C2SP `tlog-checkpoint` /
//! `signed-note` formats, inclusion and consistency proofs a stranger can
//! check offline with any RFC 6962 verifier (the test uses Go's
//! `golang.org/x/mod/sumdb/{note,tlog}`).
//!
//! Why not only the hash chain: a chain proves nothing once someone
//! rewrites its tail and recomputes the hashes. A signed checkpoint (tree
//! size and root) commits the log to its whole past; a consistency proof
//! shows a later checkpoint extends an earlier one, so a rewrite is caught
//! by anyone who kept an earlier checkpoint.
//!
//! The Merkle arithmetic and the note format are the `tlog_tiles` and
//! `signed_note` crates (Rust ports of Go's `sumdb/tlog` and `sumdb/note`,
//! which Go's checksum database runs on): airgate stores their "stored
//! hashes" (the tree's complete subtrees, one row each, appended with the
//! record in one transaction) and reads them back through
//! [`tlog_tiles::HashReader`].
//!
//! Guarantees:
//! - leaf `n` is record `seq = n + 1`, its hash `SHA-256(0x00 || body)`
//!   over the stored canonical JSON body, byte for byte;
//! - [`Store::verify_log`] recomputes every leaf and every stored hash from
//!   the bodies, so an edited, removed or reordered record is named.

use signed_note::{Note, Signer, StandardVerifier, Verifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash, HashReader, RecordProof, TreeProof};

use crate::{Store, StoreError};

/// The origin line of airgate's checkpoints, before the log's name.
pub const ORIGIN_PREFIX: &str = "airgate.dev/audit/";

/// A tree head: how many records, and the root hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeHead {
    pub size: u64,
    pub root: [u8; 32],
}

/// Stored hashes, read inside the transaction (or connection) given.
pub(crate) struct Reader<'c> {
    pub(crate) conn: &'c rusqlite::Connection,
}

impl HashReader for Reader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT hash FROM tlog_hashes WHERE idx = ?1")
            .map_err(|_| tlog_tiles::Error::InvalidProof)?;
        indexes
            .iter()
            .map(|&i| {
                let bytes: Vec<u8> = stmt
                    .query_row([i as i64], |r| r.get(0))
                    .map_err(|_| tlog_tiles::Error::InvalidProof)?;
                let hash: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| tlog_tiles::Error::InvalidProof)?;
                Ok(Hash(hash))
            })
            .collect()
    }
}

/// Stored hashes read through a cache that also holds those written in
/// the same batch: appending leaf n needs the hashes on the tree's right
/// edge, which the leaves just before wrote.
pub(crate) struct Cached<'c> {
    reader: Reader<'c>,
    cache: std::cell::RefCell<std::collections::HashMap<u64, Hash>>,
}

impl<'c> Cached<'c> {
    pub(crate) fn new(conn: &'c rusqlite::Connection) -> Cached<'c> {
        Cached {
            reader: Reader { conn },
            cache: Default::default(),
        }
    }
}

impl HashReader for Cached<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let mut cache = self.cache.borrow_mut();
        let mut out = Vec::with_capacity(indexes.len());
        for &i in indexes {
            let h = match cache.get(&i) {
                Some(h) => *h,
                None => {
                    let h = self
                        .reader
                        .read_hashes(&[i])?
                        .pop()
                        .ok_or(tlog_tiles::Error::InvalidProof)?;
                    cache.insert(i, h);
                    h
                }
            };
            out.push(h);
        }
        Ok(out)
    }
}

/// In-memory stored hashes, for recomputing a log from its bodies.
struct Memory(Vec<Hash>);

impl HashReader for Memory {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                self.0
                    .get(i as usize)
                    .copied()
                    .ok_or(tlog_tiles::Error::InvalidProof)
            })
            .collect()
    }
}

pub(crate) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS tlog_hashes (
     idx INTEGER PRIMARY KEY,
     hash BLOB NOT NULL
 );";

fn corrupt(seq: i64, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        seq,
        message: format!("transparency log: {e}"),
    }
}

/// Appends leaf `n` (the record whose body is `body`) to the stored
/// hashes, in the transaction `hashes` reads from.
pub(crate) fn append_leaf(hashes: &Cached<'_>, n: u64, body: &str) -> Result<(), StoreError> {
    let seq = n as i64 + 1;
    let fresh =
        tlog_tiles::stored_hashes(n, body.as_bytes(), hashes).map_err(|e| corrupt(seq, e))?;
    let first = tlog_tiles::stored_hash_count(n);
    let mut insert = hashes
        .reader
        .conn
        .prepare_cached("INSERT INTO tlog_hashes (idx, hash) VALUES (?1, ?2)")
        .map_err(|e| corrupt(seq, e))?;
    let mut cache = hashes.cache.borrow_mut();
    for (i, h) in fresh.iter().enumerate() {
        let idx = first + i as u64;
        insert
            .execute(rusqlite::params![idx as i64, &h.0[..]])
            .map_err(|e| corrupt(seq, e))?;
        cache.insert(idx, *h);
    }
    Ok(())
}

/// How many leaves the stored hashes cover: found from the last stored
/// index (the integer primary key, so no scan), as `stored_hash_count`
/// grows with the leaf count.
pub(crate) fn leaves(conn: &rusqlite::Connection) -> Result<u64, rusqlite::Error> {
    let stored: i64 = conn.query_row(
        "SELECT COALESCE(MAX(idx) + 1, 0) FROM tlog_hashes",
        [],
        |r| r.get(0),
    )?;
    let stored = stored as u64;
    let (mut lo, mut hi) = (0u64, stored + 1);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if tlog_tiles::stored_hash_count(mid) <= stored {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(lo)
}

impl Store {
    /// The tree head over every record.
    pub fn tree_head(&self) -> Result<TreeHead, StoreError> {
        let size = leaves(&self.conn).map_err(self.err())?;
        let root =
            tlog_tiles::tree_hash(size, &Reader { conn: &self.conn }).map_err(|e| corrupt(0, e))?;
        Ok(TreeHead { size, root: root.0 })
    }

    /// The tree head of the first `size` records.
    pub fn tree_head_at(&self, size: u64) -> Result<TreeHead, StoreError> {
        let have = leaves(&self.conn).map_err(self.err())?;
        if size > have {
            return Err(corrupt(
                0,
                format!("the log holds {have} records, not {size}"),
            ));
        }
        let root =
            tlog_tiles::tree_hash(size, &Reader { conn: &self.conn }).map_err(|e| corrupt(0, e))?;
        Ok(TreeHead { size, root: root.0 })
    }

    /// A checkpoint of the tree now, signed by `signer` (a signed note:
    /// origin `airgate.dev/audit/<log name>`, size, base64 root).
    pub fn checkpoint(&self, log: &str, signer: &dyn Signer) -> Result<Vec<u8>, StoreError> {
        let head = self.tree_head()?;
        let checkpoint = Checkpoint::new(
            &format!("{ORIGIN_PREFIX}{log}"),
            head.size,
            Hash(head.root),
            "",
        )
        .map_err(|e| corrupt(0, e))?;
        let mut note = Note::new(&checkpoint.to_bytes(), &[]).map_err(|e| corrupt(0, e))?;
        note.add_sigs(&[signer]).map_err(|e| corrupt(0, e))?;
        Ok(note.to_bytes())
    }

    /// The hashes proving record `seq` is in the tree of `size` records.
    pub fn inclusion_proof(&self, seq: i64, size: u64) -> Result<RecordProof, StoreError> {
        let n = u64::try_from(seq - 1).map_err(|_| corrupt(seq, "no such record"))?;
        tlog_tiles::prove_record(size, n, &Reader { conn: &self.conn }).map_err(|e| corrupt(seq, e))
    }

    /// The hashes proving the tree of `old` records is a prefix of the tree of `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<TreeProof, StoreError> {
        tlog_tiles::prove_tree(new, old, &Reader { conn: &self.conn }).map_err(|e| corrupt(0, e))
    }

    /// Recomputes the log from the records' bodies: every leaf, every
    /// stored hash, the root; names the first record that does not match.
    /// With `checkpoint`, also checks its signature (by the verifier key
    /// `vkey`, `<name>+<hex key id>+<base64 key>`) and that the log
    /// extends it.
    pub fn verify_log(&self, checkpoint: Option<(&[u8], &str)>) -> Result<TreeHead, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, body, prev_hash, hash FROM sync_records ORDER BY seq")
            .map_err(self.err())?;
        let mut rows = stmt.query([]).map_err(self.err())?;
        // The stored hashes were appended in index order: read them in one
        // pass alongside the records.
        let mut kept_stmt = self
            .conn
            .prepare("SELECT idx, hash FROM tlog_hashes ORDER BY idx")
            .map_err(self.err())?;
        let mut kept = kept_stmt.query([]).map_err(self.err())?;
        let mut memory = Memory(Vec::new());
        let mut prev = crate::GENESIS.to_string();
        let mut n = 0u64;
        while let Some(row) = rows.next().map_err(self.err())? {
            let broken = |seq: i64, message: &str| StoreError::Broken {
                seq,
                message: message.to_string(),
            };
            let seq: i64 = row.get(0).map_err(self.err())?;
            let body: String = row.get(1).map_err(self.err())?;
            if seq != n as i64 + 1 {
                return Err(broken(
                    seq,
                    &format!(
                        "it should be record {} of the log: a record before it was removed",
                        n + 1
                    ),
                ));
            }
            let (prev_hash, hash): (String, String) = (
                row.get(2).map_err(self.err())?,
                row.get(3).map_err(self.err())?,
            );
            if prev_hash != prev || hash != crate::chain_hash(&prev, &body) {
                return Err(broken(
                    seq,
                    "its hash chain does not hold: the record was changed, or one before it",
                ));
            }
            prev = hash;
            let fresh = tlog_tiles::stored_hashes(n, body.as_bytes(), &memory)
                .map_err(|e| corrupt(seq, e))?;
            let first = tlog_tiles::stored_hash_count(n);
            for (i, want) in fresh.iter().enumerate() {
                let row = kept
                    .next()
                    .map_err(self.err())?
                    .ok_or_else(|| broken(seq, "its tree hashes are missing"))?;
                let (idx, bytes): (i64, Vec<u8>) = (
                    row.get(0).map_err(self.err())?,
                    row.get(1).map_err(self.err())?,
                );
                if idx as u64 != first + i as u64 || bytes != want.0 {
                    return Err(broken(
                        seq,
                        "its body does not hash to the leaf the log holds: the record was changed",
                    ));
                }
            }
            memory.0.extend(fresh);
            n += 1;
        }
        let root = tlog_tiles::tree_hash(n, &memory).map_err(|e| corrupt(0, e))?;
        let head = TreeHead {
            size: n,
            root: root.0,
        };
        if let Some((text, vkey)) = checkpoint {
            check_checkpoint(text, vkey, &memory, head)?;
        }
        Ok(head)
    }
}

/// A signed checkpoint: its signature by `verifier`, and that the log
/// (`head`, its stored hashes in `memory`) extends it.
fn check_checkpoint(
    text: &[u8],
    vkey: &str,
    memory: &Memory,
    head: TreeHead,
) -> Result<(), StoreError> {
    let bad = StoreError::Log;
    let checkpoint = open_checkpoint(text, vkey)?;
    let size = checkpoint.size();
    if size > head.size {
        return Err(bad(format!(
            "the checkpoint covers {size} records, the log holds {}: records were removed",
            head.size
        )));
    }
    let then = tlog_tiles::tree_hash(size, memory).map_err(|e| bad(e.to_string()))?;
    if then != *checkpoint.hash() {
        return Err(bad(format!(
            "the first {size} records do not hash to the checkpoint's root: the log was rewritten"
        )));
    }
    Ok(())
}

/// A checkpoint whose signature by the verifier key `vkey`
/// (`<name>+<hex key id>+<base64 key>`) checks, parsed; its origin must be
/// an airgate audit log's.
pub fn open_checkpoint(text: &[u8], vkey: &str) -> Result<Checkpoint, StoreError> {
    let bad = StoreError::Log;
    let verifier =
        StandardVerifier::new(vkey).map_err(|e| bad(format!("the log's verifier key: {e}")))?;
    let name = verifier.name().to_string();
    let note = Note::from_bytes(text).map_err(|e| bad(format!("checkpoint: {e}")))?;
    note.verify(&VerifierList::new(vec![Box::new(verifier)]))
        .map_err(|e| bad(format!("checkpoint: no valid signature of {name}: {e}")))?;
    let checkpoint =
        Checkpoint::from_bytes(note.text()).map_err(|e| bad(format!("checkpoint: {e}")))?;
    if !checkpoint.origin().starts_with(ORIGIN_PREFIX) {
        return Err(bad(format!(
            "checkpoint: origin {:?} is not an airgate audit log",
            checkpoint.origin()
        )));
    }
    Ok(checkpoint)
}

/// The algorithm byte of checkpoint signing keys (C2SP signed-note Ed25519).
pub(crate) const ALG_NOTE: u8 = 1;

/// A signing key and its verifier key from a 32-byte Ed25519 seed, for
/// algorithm byte `alg`: `PRIVATE+KEY+<name>+<hex id>+<base64(alg ||
/// seed)>` and `<name>+<hex id>+<base64(alg || public key)>`, the
/// encodings of Go's `sumdb/note` (and C2SP `signed-note`).
pub(crate) fn encode_keys(name: &str, seed: [u8; 32], alg: u8) -> (String, String) {
    use base64::Engine as _;
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
    let public = [&[alg][..], signing.verifying_key().as_bytes()].concat();
    let private = [&[alg][..], &seed[..]].concat();
    let id = signed_note::key_id(name, &public);
    let b64 = base64::engine::general_purpose::STANDARD;
    (
        format!("PRIVATE+KEY+{name}+{id:08x}+{}", b64.encode(private)),
        format!("{name}+{id:08x}+{}", b64.encode(public)),
    )
}

/// A key as [`encode_keys`] writes it (`private` or verifier), decoded:
/// name, hex key id, algorithm byte and the 32 key bytes.
pub(crate) fn decode_key(key: &str, private: bool) -> Option<(String, u32, u8, [u8; 32])> {
    use base64::Engine as _;
    let parts: Vec<&str> = key
        .trim()
        .splitn(if private { 5 } else { 3 }, '+')
        .collect();
    let (name, id, key) = match (private, parts.as_slice()) {
        (true, ["PRIVATE", "KEY", name, id, key]) | (false, [name, id, key]) => (name, id, key),
        _ => return None,
    };
    let raw = base64::engine::general_purpose::STANDARD.decode(key).ok()?;
    let (alg, bytes) = raw.split_first()?;
    Some((
        name.to_string(),
        u32::from_str_radix(id, 16).ok()?,
        *alg,
        bytes.try_into().ok()?,
    ))
}

/// A note signing key and its verifier key, from a 32-byte Ed25519 seed.
pub fn note_keys(name: &str, seed: [u8; 32]) -> (String, String) {
    encode_keys(name, seed, ALG_NOTE)
}

/// The verifier key (`name+id+key`) of a note signing key
/// (`PRIVATE+KEY+name+id+key`), or `None` when it is not an Ed25519 one.
pub fn verifier_key(skey: &str) -> Option<String> {
    let (name, _, alg, seed) = decode_key(skey, true)?;
    (alg == ALG_NOTE).then(|| note_keys(&name, seed).1)
}

#[cfg(test)]
mod tests;
