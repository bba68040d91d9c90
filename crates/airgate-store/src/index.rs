//! What `audit blame` and `audit trace` look records up by: each record's
//! objects and image digests, kept beside the log.
//!
//! Why: answering "who set this field" from a million records must not
//! parse a million records. The index is derived: it is filled in the
//! transaction that appends a record (and, once, for records a store held
//! before it existed), and nothing proves it; the records do. A reviewer
//! who does not trust the store reads the published log (`--log`), which
//! is rebuilt, index and all, from records checked against the signed
//! checkpoint.

use rusqlite::{Connection, OptionalExtension};

use crate::{Store, StoreError, Stored, SyncRecord};

/// Keys are kept as the first 8 bytes of their SHA-256: a small, evenly
/// spread B-tree key. Two keys that share them only cost a look at a
/// record the query then leaves out (`query` matches the text).
pub(crate) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS record_keys (
        key INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (key, seq)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS record_keys_done (seq INTEGER NOT NULL);";

fn hashed(key: &str) -> i64 {
    use sha2::{Digest as _, Sha256};
    let h = Sha256::digest(key.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    i64::from_be_bytes(b)
}

/// The key of an object (`Kind/namespace/name`).
pub fn object_key(object: &str) -> String {
    format!("object {object}")
}

/// The key of an image digest (`sha256:...`).
pub fn image_key(digest: &str) -> String {
    format!("image {digest}")
}

fn keys(record: &SyncRecord) -> Vec<String> {
    let mut out: Vec<String> = record
        .objects
        .iter()
        .map(|o| object_key(&o.object))
        .chain(record.drift.iter().map(|d| object_key(&d.object)))
        .chain(
            record
                .images
                .iter()
                .filter_map(|i| i.rsplit_once('@'))
                .map(|(_, d)| image_key(d)),
        )
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Indexes `record`, stored at `seq`, inside the caller's transaction,
/// which then calls [`indexed_to`] once.
pub(crate) fn insert(conn: &Connection, seq: i64, record: &SyncRecord) -> rusqlite::Result<()> {
    let mut stmt =
        conn.prepare_cached("INSERT OR IGNORE INTO record_keys (key, seq) VALUES (?1, ?2)")?;
    for key in keys(record) {
        stmt.execute(rusqlite::params![hashed(&key), seq])?;
    }
    Ok(())
}

/// Every record up to `seq` is indexed.
pub(crate) fn indexed_to(conn: &Connection, seq: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE record_keys_done SET seq = ?1")?
        .execute([seq])?;
    Ok(())
}

impl Store {
    /// Indexes the records a store from before the index holds (once).
    pub(crate) fn backfill_index(&self) -> Result<(), StoreError> {
        let done: Option<i64> = self
            .conn
            .query_row("SELECT seq FROM record_keys_done", [], |r| r.get(0))
            .optional()
            .map_err(self.err())?;
        let from = match done {
            Some(seq) => seq,
            None => {
                self.conn
                    .execute("INSERT INTO record_keys_done (seq) VALUES (0)", [])
                    .map_err(self.err())?;
                0
            }
        };
        let missing = self.rows(
            "SELECT seq, body, prev_hash, hash FROM sync_records WHERE seq > ?1 ORDER BY seq",
            [from],
        )?;
        if missing.is_empty() {
            return Ok(());
        }
        let tx = self.conn.unchecked_transaction().map_err(self.err())?;
        for s in &missing {
            insert(&tx, s.seq, &s.record).map_err(self.err())?;
        }
        if let Some(last) = missing.last() {
            indexed_to(&tx, last.seq).map_err(self.err())?;
        }
        tx.commit().map_err(self.err())
    }

    /// The records indexed under `key`, oldest first, each with the other
    /// parts of its record (see [`crate::Part`]).
    pub fn indexed(&self, key: &str) -> Result<Vec<Stored>, StoreError> {
        self.load(&self.indexed_seqs(key)?)
    }

    /// The seqs indexed under `key`, oldest first.
    pub fn indexed_seqs(&self, key: &str) -> Result<Vec<i64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq FROM record_keys WHERE key = ?1 ORDER BY seq")
            .map_err(self.err())?;
        let seqs = stmt
            .query_map([hashed(key)], |r| r.get(0))
            .map_err(self.err())?
            .collect::<Result<Vec<i64>, _>>()
            .map_err(self.err())?;
        Ok(seqs)
    }

    /// The records at `seqs` (ascending), each with the other parts of its
    /// record, oldest first.
    pub fn load(&self, seqs: &[i64]) -> Result<Vec<Stored>, StoreError> {
        let mut out: Vec<Stored> = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            if out.last().is_some_and(|s| s.seq >= seq) {
                continue;
            }
            let Some(hit) = self.get(seq)? else {
                continue;
            };
            let Some(part) = hit.record.part else {
                out.push(hit);
                continue;
            };
            let first = hit.seq - i64::from(part.index) + 1;
            let last = first + i64::from(part.of) - 1;
            let from = out.last().map_or(first, |s| (s.seq + 1).max(first));
            out.extend(self.rows(
                "SELECT seq, body, prev_hash, hash FROM sync_records WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
                [from, last],
            )?);
        }
        Ok(out)
    }

    /// `app`'s records from `seq` on, oldest first.
    pub fn app_from(&self, app: &str, seq: i64) -> Result<Vec<Stored>, StoreError> {
        self.rows(
            "SELECT seq, body, prev_hash, hash FROM sync_records WHERE app = ?1 AND seq >= ?2 ORDER BY seq",
            rusqlite::params![app, seq],
        )
    }
}
