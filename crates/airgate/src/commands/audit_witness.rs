//! `airgate audit witness`, and the check `audit verify --witness-key`
//! makes: what a security team runs on its own machine so that a rewritten
//! audit log, even one re-signed with the controller's key, is caught.
//!
//! The witness keeps the last checkpoint it cosigned in `--state`. Each run
//! reads the published checkpoint, checks the log's signature, proves from
//! the published tiles that it extends the state's (RFC 6962 consistency),
//! cosigns it (C2SP tlog-cosignature) and publishes the cosigned checkpoint
//! next to the log as `witness/<key id>`.

use std::path::Path;
use std::process::ExitCode;

use airgate_store::Store;
use airgate_store::tiles::Dir;
use airgate_store::witness::{CosignatureVerifier, Cosigner, check_cosigned};
use anyhow::{Context as _, Result};

use super::audit_source::{Location, read_vkey};
use crate::cli::RegistryArgs;

pub fn witness(
    log: &str,
    log_key: &Path,
    key: &Path,
    state: &Path,
    registry: &RegistryArgs,
) -> Result<ExitCode> {
    let vkey = read_vkey(log_key)?;
    let skey =
        std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let cosigner = Cosigner::new(&skey, now).with_context(|| {
        format!(
            "{}: hint: airgate key generate --type witness",
            key.display()
        )
    })?;
    let verifier = CosignatureVerifier::new(cosigner.vkey())?;
    let location = Location::parse(log, registry)?;
    let scratch = tempfile::tempdir()?;
    let (checkpoint, dir) = crate::block_on(location.fetch(scratch.path()))?;
    let old = match std::fs::read(state) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", state.display())),
    };
    let cosigned =
        airgate_store::witness::witness(&Dir(dir), old.as_deref(), &checkpoint, &vkey, &cosigner)
            .with_context(|| {
            format!(
                "refusing to cosign the log at {}; the state in {} is kept",
                location.shown(),
                state.display()
            )
        })?;
    airgate_store::tiles::write_file(state, &cosigned)
        .with_context(|| format!("writing {}", state.display()))?;
    crate::block_on(location.put(&verifier.path(), &cosigned))?;
    let size = airgate_store::tiles::checkpoint_size(&cosigned)?;
    eprintln!(
        "cosigned the checkpoint of {size} records{}; published at {} as {}",
        match &old {
            Some(o) => format!(
                " (consistent with the {} cosigned before)",
                airgate_store::tiles::checkpoint_size(o)?
            ),
            None => " (the first this witness saw)".into(),
        },
        location.shown(),
        verifier.path()
    );
    crate::stdout::text(&String::from_utf8_lossy(&cosigned))?;
    Ok(ExitCode::SUCCESS)
}

/// The cosigned checkpoint of witness `key` at `location`: its
/// cosignature checks, and `store` (the log, already checked against its
/// latest checkpoint) extends it. A line saying so, or why not.
pub fn check(store: &Store, location: &Location, vkey: &str, key: &Path) -> Result<String> {
    let wvkey = read_vkey(key)?;
    let verifier = CosignatureVerifier::new(&wvkey)
        .with_context(|| format!("--witness-key {}", key.display()))?;
    let text = crate::block_on(location.get(&verifier.path()))?.with_context(|| {
        format!(
            "{} has no cosignature of the witness {} ({})\nhint: the witness runs `airgate audit witness`",
            location.shown(),
            wvkey.split('+').next().unwrap_or_default(),
            verifier.path()
        )
    })?;
    let cosigned = check_cosigned(&text, &wvkey, vkey)?;
    let size = cosigned.size();
    let have = store.tree_head()?.size;
    anyhow::ensure!(
        size <= have,
        "the witness cosigned {size} records, the log holds {have}: records were removed"
    );
    anyhow::ensure!(
        store.tree_head_at(size)?.root == cosigned.hash().0,
        "the log's first {size} records are not those the witness cosigned: the log was rewritten"
    );
    Ok(format!(
        "witness {}: cosigned {size} records; this log extends them",
        wvkey.split('+').next().unwrap_or_default()
    ))
}
