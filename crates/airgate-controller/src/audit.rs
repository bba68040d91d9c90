//! The audit log's checkpoints: with a note signing key, the controller
//! signs a checkpoint of its record store after every record (so a new
//! record is covered at once) and writes it to `DATA_DIR/checkpoint`; at
//! start it recomputes the log and refuses to run on one that does not
//! extend the last checkpoint it signed: fail closed, before appending
//! anything to a log it cannot prove consistent.

use std::path::PathBuf;

use airgate_store::{Store, StoreError};
use anyhow::{Context as _, Result, bail};
use serde_json::json;

use super::{Settings, log};

/// Signs and writes checkpoints.
pub struct Checkpoints {
    signer: signed_note::StandardSigner,
    log: String,
    path: PathBuf,
}

impl std::fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoints")
            .field("log", &self.log)
            .field("path", &self.path)
            .finish()
    }
}

impl Checkpoints {
    /// A fresh checkpoint of `store`, written in place atomically.
    pub fn write(&self, store: &Store) -> Result<(), StoreError> {
        let text = store.checkpoint(&self.log, &self.signer)?;
        let fail = |e: std::io::Error| StoreError::Corrupt {
            seq: 0,
            message: format!("writing {}: {e}", self.path.display()),
        };
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, &text).map_err(fail)?;
        std::fs::rename(&tmp, &self.path).map_err(fail)
    }
}

/// Checks the store (every leaf, the tree, the chain; and, with a key,
/// that it extends the last checkpoint) before the controller appends.
pub fn open(settings: &Settings, store: &Store) -> Result<Option<Checkpoints>> {
    let refuse = |e: StoreError| {
        anyhow::anyhow!(
            "the audit log in {} does not verify: {e}; refusing to append to it\nhint: run `airgate audit verify --store {}` and keep the store for investigation; start with a new --store to go on",
            settings.store.display(),
            settings.store.display()
        )
    };
    let Some(key) = &settings.log_key else {
        store.verify_log(None).map_err(refuse)?;
        return Ok(None);
    };
    let skey = std::fs::read_to_string(key)
        .with_context(|| format!("reading --log-key {}", key.display()))?;
    let signer = signed_note::StandardSigner::new(skey.trim()).map_err(|e| {
        anyhow::anyhow!(
            "--log-key {}: not a note signing key ({e})\nhint: airgate key generate --type note",
            key.display()
        )
    })?;
    let vkey =
        airgate_store::tlog::verifier_key(&skey).context("--log-key: not an Ed25519 note key")?;
    let path = settings.data_dir.join("checkpoint");
    let head = match std::fs::read(&path) {
        Ok(last) => store.verify_log(Some((&last, &vkey))).map_err(refuse)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            store.verify_log(None).map_err(refuse)?
        }
        Err(e) => bail!("reading {}: {e}", path.display()),
    };
    log::info(
        "audit log verified",
        json!({"records": head.size, "checkpoint": path.display().to_string(), "key": vkey}),
    );
    let checkpoints = Checkpoints {
        signer,
        log: settings.log_name.clone(),
        path,
    };
    checkpoints.write(store)?;
    Ok(Some(checkpoints))
}
