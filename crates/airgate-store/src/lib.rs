//! Where sync records live: an append-only table in an embedded SQLite file.
//!
//! Every record is stored as canonical JSON together with the SHA-256 of the
//! previous record's hash and its own body, so the log is a hash chain:
//! changing, removing or reordering any record breaks every hash after it,
//! and [`Store::verify_chain`] finds the first break offline. The store
//! never updates or deletes a row.

use airgate_core::Digest;
use airgate_core::provenance::VerifiedImport;
use airgate_core::status::{RecordKind, RecordResult};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

mod index;
pub mod query;
mod split;
pub mod tiles;
pub mod tlog;
pub mod witness;

pub use index::{image_key, object_key};
pub use split::{MAX_BODY, Part};

/// The hash the first record chains to.
pub const GENESIS: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// Who made a commit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub name: String,
    pub email: String,
}

/// One object a sync touched, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectChange {
    /// `Kind/namespace/name`
    pub object: String,
    /// created, configured, unchanged, deleted, skipped
    pub action: String,
    /// The field paths the change set or removed (`.spec.replicas`,
    /// `.spec.template.spec.containers[web].resources.limits.memory`):
    /// paths only, never values, so a Secret's content stays out of the
    /// log. Empty for an unchanged or deleted object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// A change made to an applied object by someone other than airgate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub object: String,
    /// The field manager that made the change.
    pub field_manager: String,
    /// The fields airgate had applied that it no longer owns (managedFields
    /// paths); empty when the object was deleted.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Whether airgate put it back.
    pub corrected: bool,
}

/// An import, as the log keeps it (see [`airgate_core::provenance`]);
/// its images are the record's `images`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportEntry {
    /// The digest of the import statement: what sync records name.
    pub id: Digest,
    /// The bundle's inventory digest.
    pub inventory: Digest,
    /// The bundle's signer, when its signature verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<Digest>,
    pub target: String,
    pub user: String,
    pub host: String,
    pub pushed_at: i64,
    pub pushed_by: String,
}

/// One deployed image and the import that brought it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageImport {
    pub image: String,
    pub import: Digest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<Digest>,
}

/// What one sync (or drift correction) did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRecord {
    /// `namespace/name` of the App.
    pub app: String,
    pub kind: RecordKind,
    pub revision: String,
    pub author: Person,
    pub committer: Person,
    pub message: String,
    /// Seconds since the epoch when the sync started.
    pub started_at: i64,
    pub duration_ms: u64,
    pub result: RecordResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub objects: Vec<ObjectChange>,
    /// Digest-pinned references of every image deployed.
    pub images: Vec<String>,
    #[serde(default)]
    pub drift: Vec<Drift>,
    /// Commit trust (`spec.source.verify`): each commit verified, the
    /// applied one first, with its signer, verdict and trailers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust: Vec<airgate_core::trust::CommitTrust>,
    /// For each digest-pinned image deployed that came through an import:
    /// that import.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imported: Vec<ImageImport>,
    /// The revision applied before this sync (what it changed from): the
    /// range applied is `fromRevision..revision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_revision: Option<String>,
    /// The controller that appended the record (`--identity`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub controller: String,
    /// For an `import` record: the import (its images are `images`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<ImportEntry>,
    /// Set when one sync's record was too large for one log entry
    /// ([`MAX_BODY`]) and was stored as several records in a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<Part>,
    /// A sync applied during a change freeze: the reason its commit's
    /// `Freeze-Override` trailer gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_override: Option<String>,
}

impl SyncRecord {
    /// The record of an import, met at `seen_at` (seconds since the epoch).
    pub fn import(v: &VerifiedImport, seen_at: i64) -> SyncRecord {
        let i = &v.import;
        SyncRecord {
            kind: RecordKind::Import,
            started_at: seen_at,
            message: format!(
                "bundle {} pushed to {} by {}@{}",
                i.inventory, i.target, i.user, i.host
            ),
            images: i.images.iter().map(|m| m.target.clone()).collect(),
            import: Some(ImportEntry {
                id: v.id.clone(),
                inventory: i.inventory.clone(),
                signed_by: v.signed_by.clone(),
                target: i.target.clone(),
                user: i.user.clone(),
                host: i.host.clone(),
                pushed_at: i.pushed_at,
                pushed_by: i.pushed_by.clone(),
            }),
            ..SyncRecord::default()
        }
    }
}

/// A record as stored: its place in the chain and its hashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stored {
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
    pub record: SyncRecord,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("record {seq}: {message}")]
    Corrupt { seq: i64, message: String },
    #[error("the chain breaks at record {seq}: {message}")]
    Broken { seq: i64, message: String },
    /// The log as a whole (a checkpoint, a published file, a key) does not hold.
    #[error("{0}")]
    Log(String),
}

/// `sha256:` of `prev_hash` and `body`, each followed by a newline.
pub fn chain_hash(prev_hash: &str, body: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(body.as_bytes());
    h.update(b"\n");
    format!("sha256:{:x}", h.finalize())
}

pub struct Store {
    conn: rusqlite::Connection,
    path: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let shown = path.display().to_string();
        let err = |source| StoreError::Sqlite {
            path: shown.clone(),
            source,
        };
        let conn = rusqlite::Connection::open(path).map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA cache_size = -65536;
             CREATE TABLE IF NOT EXISTS sync_records (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 app TEXT NOT NULL,
                 started_at INTEGER NOT NULL,
                 body TEXT NOT NULL,
                 prev_hash TEXT NOT NULL,
                 hash TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS sync_records_app ON sync_records (app, seq);",
        )
        .map_err(err)?;
        conn.execute_batch(tlog::SCHEMA).map_err(err)?;
        conn.execute_batch(index::SCHEMA).map_err(err)?;
        let store = Store { conn, path: shown };
        store.backfill_log()?;
        store.backfill_index()?;
        Ok(store)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends `record`, chained to the last one.
    pub fn append(&mut self, record: &SyncRecord) -> Result<Stored, StoreError> {
        let mut stored = self.append_all(std::slice::from_ref(record))?;
        stored.pop().ok_or_else(|| StoreError::Corrupt {
            seq: 0,
            message: "nothing was appended".into(),
        })
    }

    /// Appends `records` in order, in one transaction (one sync to disk):
    /// all of them or none. A record whose body would exceed [`MAX_BODY`]
    /// is stored as several parts in a row ([`SyncRecord::parts`]).
    pub fn append_all(&mut self, records: &[SyncRecord]) -> Result<Vec<Stored>, StoreError> {
        let encode = |r: &SyncRecord| {
            serde_json::to_string(r).map_err(|e| StoreError::Corrupt {
                seq: 0,
                message: e.to_string(),
            })
        };
        let mut bodies = Vec::with_capacity(records.len());
        for record in records {
            // Encoded once; split (as `parts` would) only when it does not fit.
            let body = encode(record)?;
            if body.len() < MAX_BODY {
                bodies.push((record.clone(), body));
                continue;
            }
            for part in record.parts() {
                let body = encode(&part)?;
                bodies.push((part, body));
            }
        }
        self.append_bodies(bodies)
    }

    /// Appends records given with their canonical bodies, byte for byte
    /// (a new leader restoring the published log appends the published
    /// bodies, so the leaves hash the same).
    pub fn append_raw(&mut self, bodies: &[Vec<u8>]) -> Result<Vec<Stored>, StoreError> {
        let mut parsed = Vec::with_capacity(bodies.len());
        for body in bodies {
            let text = String::from_utf8(body.clone()).map_err(|_| StoreError::Corrupt {
                seq: 0,
                message: "a record is not UTF-8".into(),
            })?;
            let record: SyncRecord =
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                    seq: 0,
                    message: format!("a record is not a sync record: {e}"),
                })?;
            parsed.push((record, text));
        }
        self.append_bodies(parsed)
    }

    fn append_bodies(
        &mut self,
        bodies: Vec<(SyncRecord, String)>,
    ) -> Result<Vec<Stored>, StoreError> {
        let path = self.path.clone();
        let err = move |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&err)?;
        let mut prev: String = tx
            .query_row(
                "SELECT hash FROM sync_records ORDER BY seq DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(GENESIS.to_string()),
                other => Err(other),
            })
            .map_err(&err)?;
        let mut stored = Vec::with_capacity(bodies.len());
        let hashes = tlog::Cached::new(&tx);
        for (record, body) in bodies {
            let hash = chain_hash(&prev, &body);
            tx.prepare_cached(
                "INSERT INTO sync_records (app, started_at, body, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut insert| {
                insert.execute(rusqlite::params![record.app, record.started_at, body, prev, hash])
            })
            .map_err(&err)?;
            let seq = tx.last_insert_rowid();
            tlog::append_leaf(&hashes, (seq - 1) as u64, &body)?;
            index::insert(&tx, seq, &record).map_err(&err)?;
            stored.push(Stored {
                seq,
                prev_hash: std::mem::replace(&mut prev, hash.clone()),
                hash,
                record,
            });
        }
        drop(hashes);
        if let Some(last) = stored.last() {
            index::indexed_to(&tx, last.seq).map_err(&err)?;
        }
        tx.commit().map_err(&err)?;
        Ok(stored)
    }

    fn rows(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Stored>, StoreError> {
        let mut stmt = self.conn.prepare(sql).map_err(self.err())?;
        let rows = stmt
            .query_map(params, |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(self.err())?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, body, prev_hash, hash) = row.map_err(self.err())?;
            let record = serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
                seq,
                message: e.to_string(),
            })?;
            out.push(Stored {
                seq,
                prev_hash,
                hash,
                record,
            });
        }
        Ok(out)
    }

    /// Makes leaves of records a store from before the transparency log
    /// holds without (once, at open).
    fn backfill_log(&self) -> Result<(), StoreError> {
        let have = tlog::leaves(&self.conn).map_err(self.err())?;
        let mut stmt = self
            .conn
            .prepare("SELECT seq, body FROM sync_records WHERE seq > ?1 ORDER BY seq")
            .map_err(self.err())?;
        let missing: Vec<(i64, String)> = stmt
            .query_map([have as i64], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.err())?
            .collect::<Result<_, _>>()
            .map_err(self.err())?;
        // One transaction: one sync to disk, and all leaves or none.
        let tx = self.conn.unchecked_transaction().map_err(self.err())?;
        let hashes = tlog::Cached::new(&tx);
        for (n, (seq, body)) in (have..).zip(missing) {
            if seq as u64 != n + 1 {
                return Err(StoreError::Broken {
                    seq,
                    message: "a record before it is missing; the log cannot be made".into(),
                });
            }
            tlog::append_leaf(&hashes, n, &body)?;
        }
        drop(hashes);
        tx.commit().map_err(self.err())
    }

    /// The record `seq`.
    pub fn get(&self, seq: i64) -> Result<Option<Stored>, StoreError> {
        Ok(self
            .rows(
                "SELECT seq, body, prev_hash, hash FROM sync_records WHERE seq = ?1",
                [seq],
            )?
            .pop())
    }

    /// Every record, oldest first; only `app`'s with `app`, only those
    /// started at or after `since` (seconds since the epoch) with `since`.
    pub fn all(&self, app: Option<&str>, since: Option<i64>) -> Result<Vec<Stored>, StoreError> {
        self.rows(
            "SELECT seq, body, prev_hash, hash FROM sync_records
             WHERE (?1 IS NULL OR app = ?1) AND (?2 IS NULL OR started_at >= ?2) ORDER BY seq",
            rusqlite::params![app, since],
        )
    }

    /// The last `limit` records of `app`, newest first.
    pub fn recent(&self, app: &str, limit: usize) -> Result<Vec<Stored>, StoreError> {
        self.rows(
            "SELECT seq, body, prev_hash, hash FROM sync_records WHERE app = ?1 ORDER BY seq DESC LIMIT ?2",
            rusqlite::params![app, limit as i64],
        )
    }

    /// The last `limit` records of every App (and the imports), newest
    /// first.
    pub fn latest(&self, limit: usize) -> Result<Vec<Stored>, StoreError> {
        self.rows(
            "SELECT seq, body, prev_hash, hash FROM sync_records ORDER BY seq DESC LIMIT ?1",
            [limit as i64],
        )
    }

    /// Recomputes the whole chain; returns how many records it holds, or
    /// where it first breaks.
    pub fn verify_chain(&self) -> Result<usize, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, body, prev_hash, hash FROM sync_records ORDER BY seq")
            .map_err(self.err())?;
        let mut rows = stmt.query([]).map_err(self.err())?;
        let mut prev = GENESIS.to_string();
        let mut count = 0;
        while let Some(row) = rows.next().map_err(self.err())? {
            let (seq, body, prev_hash, hash): (i64, String, String, String) = (
                row.get(0).map_err(self.err())?,
                row.get(1).map_err(self.err())?,
                row.get(2).map_err(self.err())?,
                row.get(3).map_err(self.err())?,
            );
            if prev_hash != prev {
                return Err(StoreError::Broken {
                    seq,
                    message: format!("it chains to {prev_hash}, the record before is {prev}"),
                });
            }
            let expected = chain_hash(&prev, &body);
            if hash != expected {
                return Err(StoreError::Broken {
                    seq,
                    message: format!("its body hashes to {expected}, the record says {hash}"),
                });
            }
            prev = hash;
            count += 1;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(app: &str, revision: &str) -> SyncRecord {
        SyncRecord {
            app: app.to_string(),
            kind: RecordKind::Sync,
            revision: revision.to_string(),
            author: Person {
                name: "Ada".into(),
                email: "ada@example.invalid".into(),
            },
            committer: Person::default(),
            message: "bump web to 1.2.4".into(),
            started_at: 1_700_000_000,
            duration_ms: 1200,
            result: RecordResult::Succeeded,
            error: None,
            objects: vec![ObjectChange {
                object: "Deployment/shop/web".into(),
                action: "configured".into(),
                fields: vec![],
            }],
            images: vec!["registry.internal/web:1.2.4@sha256:abc".into()],
            drift: vec![],
            trust: vec![],
            imported: vec![],
            import: None,
            from_revision: None,
            controller: String::new(),
            part: None,
            freeze_override: None,
        }
    }

    /// Kinds and results became enums: a record's body must stay byte for
    /// byte what the strings made, or chains written before stop verifying.
    #[test]
    fn a_records_body_is_byte_for_byte_what_it_was() -> Result<(), serde_json::Error> {
        let mut drift = record("shop/web", "abc");
        drift.kind = RecordKind::Drift;
        drift.result = RecordResult::Blocked;
        drift.error = Some("x".into());
        assert_eq!(
            serde_json::to_string(&drift)?,
            r#"{"app":"shop/web","kind":"drift","revision":"abc","author":{"name":"Ada","email":"ada@example.invalid"},"committer":{"name":"","email":""},"message":"bump web to 1.2.4","startedAt":1700000000,"durationMs":1200,"result":"blocked","error":"x","objects":[{"object":"Deployment/shop/web","action":"configured"}],"images":["registry.internal/web:1.2.4@sha256:abc"],"drift":[]}"#
        );
        Ok(())
    }

    #[test]
    fn records_append_chain_and_read_back_newest_first() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("airgate.db");
        let mut store = Store::open(&path)?;
        let a = store.append(&record("shop/web", "r1"))?;
        let b = store.append(&record("shop/api", "r2"))?;
        let c = store.append(&record("shop/web", "r3"))?;
        assert_eq!(a.prev_hash, GENESIS);
        assert_eq!(b.prev_hash, a.hash);
        assert_eq!(c.prev_hash, b.hash);
        let recent = store.recent("shop/web", 10)?;
        let revisions: Vec<_> = recent.iter().map(|s| s.record.revision.as_str()).collect();
        assert_eq!(revisions, ["r3", "r1"]);
        drop(store);
        // Reopened, the chain still verifies and keeps growing.
        let mut store = Store::open(&path)?;
        assert_eq!(store.verify_chain()?, 3);
        let d = store.append(&record("shop/web", "r4"))?;
        assert_eq!(d.prev_hash, c.hash);
        Ok(())
    }

    #[test]
    fn a_changed_record_breaks_the_chain_where_it_was_changed()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("airgate.db");
        let mut store = Store::open(&path)?;
        for r in ["r1", "r2", "r3"] {
            store.append(&record("shop/web", r))?;
        }
        // Someone rewrites history with plain SQL.
        store.conn.execute(
            "UPDATE sync_records SET body = replace(body, 'Ada', 'Eve') WHERE seq = 2",
            [],
        )?;
        match store.verify_chain() {
            Err(StoreError::Broken { seq, .. }) => assert_eq!(seq, 2),
            other => panic!("expected a break at record 2, got {other:?}"),
        }
        Ok(())
    }
}
