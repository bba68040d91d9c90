//! The audit log: every record a leaf of a transparency log the controller
//! checks before it appends, signs after every record and publishes.
//!
//! - With a note signing key (`--log-key`), a checkpoint of the store is
//!   signed after every record and written to `DATA_DIR/checkpoint`, so a
//!   new record is covered at once.
//! - With a repository (`--log-repository`), the tiles, entry bundles and
//!   checkpoint are published there (see `airgate_oci::files`) within a
//!   second of a record. That copy is the log: it outlives this pod and its
//!   disk, and a new leader continues it.
//! - On becoming leader, the controller proves its store extends the last
//!   published checkpoint (restoring from the published entries what its
//!   disk lacks) and that every leaf recomputes. Until it can, it refuses
//!   to append: nothing is applied, every App says `AuditLogRefused`, an
//!   Event and the `airgate_audit_log_consistent` metric say why.
//!
//! Guarantees: before publishing a checkpoint the publisher reads the
//! published one and publishes only over a prefix of its own tree, so two
//! controllers that both think they lead cannot fork the published log;
//! the one that finds a checkpoint it does not extend stops appending.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use airgate_core::Digest;
use airgate_core::provenance::VerifiedImport;
use airgate_oci::files::RepoFiles;
use airgate_store::tiles::{entries_path, unbundle, write_file};
use airgate_store::tlog::{TreeHead, open_checkpoint};
use airgate_store::{Store, StoreError, SyncRecord};
use anyhow::{Context as _, Result, anyhow};
use serde_json::json;

use super::{Settings, log, metrics::Metrics};

/// Records a full entry bundle holds.
const BUNDLE: u64 = 256;

/// The log's key, where it is published, and whether it may be appended to.
pub struct AuditLog {
    signer: Option<(signed_note::StandardSigner, String)>,
    name: String,
    path: PathBuf,
    repository: Option<RepoFiles>,
    /// Why the controller refuses to append, while it does.
    refused: Mutex<Option<String>>,
    wake: tokio::sync::Notify,
    /// Who appends (`--identity`), named in every record.
    identity: String,
    /// The ids of the imports the log records: read from the store when
    /// first needed, forgotten when the log is opened again.
    imports: Mutex<Option<HashSet<Digest>>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("name", &self.name)
            .field("path", &self.path)
            .field(
                "repository",
                &self.repository.as_ref().map(RepoFiles::location),
            )
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl AuditLog {
    /// Reads the key; checks nothing yet (that waits for leadership).
    pub fn new(settings: &Settings) -> Result<AuditLog> {
        let signer = match &settings.log_key {
            None => None,
            Some(key) => {
                let skey = std::fs::read_to_string(key)
                    .with_context(|| format!("reading --log-key {}", key.display()))?;
                let signer = signed_note::StandardSigner::new(skey.trim()).map_err(|e| {
                    anyhow!(
                        "--log-key {}: not a note signing key ({e})\nhint: airgate key generate --type note",
                        key.display()
                    )
                })?;
                let vkey = airgate_store::tlog::verifier_key(&skey)
                    .context("--log-key: not an Ed25519 note key")?;
                Some((signer, vkey))
            }
        };
        anyhow::ensure!(
            signer.is_some() || settings.log_repository.is_none(),
            "--log-repository needs --log-key: a published log is worth only its signed checkpoints"
        );
        Ok(AuditLog {
            signer,
            name: settings.log_name.clone(),
            path: settings.data_dir.join("checkpoint"),
            repository: settings.log_repository.clone(),
            refused: Mutex::new(Some("the audit log has not been checked yet".into())),
            wake: tokio::sync::Notify::new(),
            imports: Mutex::new(None),
            identity: settings.identity.clone(),
        })
    }

    /// The latest signed checkpoint this controller wrote, and whether it
    /// verifies: its signature by the log's key, and its root against the
    /// store's tree of that size (from the stored hashes: a few reads, so
    /// the store is not held while a whole log is recomputed; `open`
    /// recomputed every leaf when this controller took the log over, and
    /// `airgate audit verify` does so offline). `None` without `--log-key`
    /// or before the first checkpoint.
    pub fn checkpoint(&self, store: &Mutex<Store>) -> Option<(Vec<u8>, Result<TreeHead, String>)> {
        let (_, vkey) = self.signer.as_ref()?;
        let text = std::fs::read(&self.path).ok()?;
        let verdict = open_checkpoint(&text, vkey)
            .and_then(|checkpoint| {
                let head = lock(store).tree_head_at(checkpoint.size())?;
                if head.root == checkpoint.hash().0 {
                    Ok(head)
                } else {
                    Err(StoreError::Log(format!(
                        "the checkpoint's root for {} records is not the store's",
                        head.size
                    )))
                }
            })
            .map_err(|e| e.to_string());
        Some((text, verdict))
    }

    /// The log's name (the checkpoints' origin line).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Why appending is refused, if it is.
    pub fn refused(&self) -> Option<String> {
        lock(&self.refused).clone()
    }

    fn refuse(&self, metrics: &Metrics, why: String) {
        log::error("audit log refused", json!({"error": why}));
        metrics.log_consistent.set(0);
        *lock(&self.refused) = Some(why);
    }

    /// Appends `record` (unless refused), signs a checkpoint, and wakes
    /// the publisher.
    pub fn append(&self, store: &Mutex<Store>, record: &SyncRecord) -> Result<(), String> {
        self.append_with_imports(store, &[], Some(record), record.started_at)
            .map(|_| ())
    }

    /// [`AuditLog::append`] (of `record`, if any), preceded by the record
    /// of each import in `imports` the log does not have yet, met at
    /// `seen_at` (in one transaction), so the imports a sync record names
    /// are in the log before it. Returns how many import records it added.
    pub fn append_with_imports(
        &self,
        store: &Mutex<Store>,
        imports: &[VerifiedImport],
        record: Option<&SyncRecord>,
        seen_at: i64,
    ) -> Result<usize, String> {
        if let Some(why) = self.refused() {
            return Err(format!("not appended: {why}"));
        }
        let mut store = lock(store);
        let mut known = lock(&self.imports);
        if known.is_none() && !imports.is_empty() {
            let ids = store
                .all(Some(""), None)
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter_map(|s| s.record.import.map(|i| i.id))
                .collect();
            *known = Some(ids);
        }
        let mut records: Vec<SyncRecord> = Vec::new();
        for i in imports {
            if known.as_mut().is_some_and(|k| k.insert(i.id.clone())) {
                records.push(SyncRecord::import(i, seen_at));
            }
        }
        let added = records.len();
        records.extend(record.cloned());
        if records.is_empty() {
            return Ok(0);
        }
        for r in &mut records {
            r.controller.clone_from(&self.identity);
        }
        if let Err(e) = store.append_all(&records) {
            *known = None;
            return Err(e.to_string());
        }
        self.write_checkpoint(&store).map_err(|e| e.to_string())?;
        self.wake.notify_one();
        Ok(added)
    }

    /// Where the log is published, if it is.
    pub fn repository(&self) -> Option<&RepoFiles> {
        self.repository.as_ref()
    }

    /// A checkpoint of `store` now, signed; `None` without a key.
    fn sign(&self, store: &Store) -> Result<Option<Vec<u8>>, StoreError> {
        self.signer
            .as_ref()
            .map(|(signer, _)| store.checkpoint(&self.name, signer))
            .transpose()
    }

    /// A fresh checkpoint of `store`, written in place atomically.
    fn write_checkpoint(&self, store: &Store) -> Result<(), StoreError> {
        let Some(text) = self.sign(store)? else {
            return Ok(());
        };
        write_file(&self.path, &text)
            .map_err(|e| StoreError::Log(format!("writing {}: {e}", self.path.display())))
    }

    /// On becoming leader: proves the store is a log that extends its
    /// last checkpoint (the published one, else the local one), restoring
    /// published records the store lacks; then allows appending. On
    /// failure it refuses, and says why.
    pub async fn open(&self, store: &Mutex<Store>, metrics: &Metrics) {
        match self.check(store).await {
            Ok(records) => {
                log::info(
                    "audit log verified",
                    json!({"records": records,
                           "repository": self.repository.as_ref().map(RepoFiles::location),
                           "key": self.signer.as_ref().map(|(_, v)| v)}),
                );
                metrics.log_consistent.set(1);
                *lock(&self.imports) = None;
                *lock(&self.refused) = None;
                self.wake.notify_one();
            }
            Err(e) => self.refuse(
                metrics,
                format!(
                    "{e:#}; hint: run `airgate audit verify` on the store and the published log, keep both for investigation; the controller checks again at its next start"
                ),
            ),
        }
    }

    async fn check(&self, store: &Mutex<Store>) -> Result<u64> {
        let published = match (&self.repository, &self.signer) {
            (Some(repo), Some((_, vkey))) => self.published(repo, vkey).await?,
            _ => None,
        };
        if let (Some((size, root)), Some(repo)) = (published, &self.repository) {
            let have = lock(store).tree_head()?.size;
            if have < size {
                restore(repo, store, have, size).await?;
            }
            let at = lock(store).tree_head_at(size)?;
            anyhow::ensure!(
                at.root == root,
                "the store's first {size} records are not the log published at {}: this store forked from it (another controller appended, or the store was edited)",
                repo.location()
            );
        }
        let store = lock(store);
        let local = match (&self.signer, std::fs::read(&self.path)) {
            (Some((_, vkey)), Ok(text)) if published.is_none() => Some((text, vkey.clone())),
            _ => None,
        };
        let head = store
            .verify_log(local.as_ref().map(|(t, k)| (t.as_slice(), k.as_str())))
            .map_err(|e| anyhow!("the audit log in the store does not verify: {e}"))?;
        self.write_checkpoint(&store)?;
        Ok(head.size)
    }

    /// Size and root of the published checkpoint, its signature checked.
    async fn published(&self, repo: &RepoFiles, vkey: &str) -> Result<Option<(u64, [u8; 32])>> {
        let Some(text) = repo.get("checkpoint").await? else {
            return Ok(None);
        };
        let checkpoint = open_checkpoint(&text, vkey)
            .with_context(|| format!("the checkpoint published at {}", repo.location()))?;
        Ok(Some((checkpoint.size(), checkpoint.hash().0)))
    }

    /// Publishes what the store holds beyond what was published, every
    /// second something was appended, until the controller stops.
    pub async fn publish_forever(&self, store: &Mutex<Store>, metrics: &Metrics) {
        let (Some(repo), Some((_, vkey))) = (&self.repository, &self.signer) else {
            return;
        };
        let mut published: Option<u64> = None;
        loop {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.wake.notified()).await;
            if self.refused().is_some() {
                continue;
            }
            match self.publish(repo, vkey, store, published).await {
                Ok(size) => {
                    published = Some(size);
                    metrics
                        .log_published
                        .set(i64::try_from(size).unwrap_or(i64::MAX));
                }
                Err(Fork(why)) => self.refuse(metrics, why),
                Err(Failed(why)) => {
                    metrics.log_publish_failures.inc();
                    log::warn("audit log not published", json!({"error": why}));
                }
            }
        }
    }

    async fn publish(
        &self,
        repo: &RepoFiles,
        vkey: &str,
        store: &Mutex<Store>,
        known: Option<u64>,
    ) -> Result<u64, Publish> {
        let size = lock(store).tree_head().map_err(failed)?.size;
        if known == Some(size) {
            return Ok(size);
        }
        // Only over a prefix of this store's tree: never fork the log.
        let from = match self.published(repo, vkey).await.map_err(failed)? {
            None => 0,
            Some((at, root)) => {
                let mine = lock(store).tree_head_at(at).ok();
                if at > size || mine.map(|h| h.root) != Some(root) {
                    return Err(Fork(format!(
                        "the checkpoint published at {} ({at} records) is not a prefix of this controller's log ({size}): another controller appended to it; stopping to append",
                        repo.location()
                    )));
                }
                at
            }
        };
        // The tiles and the checkpoint of one tree: the store may have
        // grown since `size` was read.
        let (size, files, text) = {
            let store = lock(store);
            let size = store.tree_head().map_err(failed)?.size;
            let files = store.tiles(from, size).map_err(failed)?;
            (size, files, self.sign(&store).map_err(failed)?)
        };
        let puts = files.iter().map(|(path, data)| repo.put(path, data));
        futures_util::future::try_join_all(puts)
            .await
            .map_err(failed)?;
        if let Some(text) = text {
            repo.put("checkpoint", &text).await.map_err(failed)?;
        }
        Ok(size)
    }
}

/// Why a publication did not happen.
enum Publish {
    /// Tried again in a second.
    Failed(String),
    /// Someone else's log is published: appending stops.
    Fork(String),
}
use Publish::{Failed, Fork};

fn failed(e: impl std::fmt::Display) -> Publish {
    Failed(e.to_string())
}

/// Appends the published records `from..to` the store lacks, from the
/// entry bundles, byte for byte.
async fn restore(repo: &RepoFiles, store: &Mutex<Store>, from: u64, to: u64) -> Result<()> {
    log::info(
        "restoring the audit log from its published copy",
        json!({"repository": repo.location(), "from": from, "to": to}),
    );
    let mut n = from / BUNDLE;
    while n * BUNDLE < to {
        let width = (to - n * BUNDLE).min(BUNDLE);
        let path = entries_path(n, width);
        let data = repo
            .get(&path)
            .await?
            .with_context(|| format!("{} has no {path}", repo.location()))?;
        let entries = unbundle(&data, width, &path)?;
        let skip = from.saturating_sub(n * BUNDLE) as usize;
        lock(store)
            .append_raw(entries.get(skip..).unwrap_or_default())
            .with_context(|| format!("restoring {path}"))?;
        n += 1;
    }
    Ok(())
}
