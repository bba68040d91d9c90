//! `airgate audit`: the controller's records as a transparency log a
//! reviewer checks, from the record store (`DATA_DIR/records.db`) or from
//! where the log is published (an export directory, the registry
//! repository): `verify` recomputes every leaf and the tree and checks the
//! signed checkpoint and witnesses' cosignatures; `checkpoint` signs the
//! tree now; `log` and `show` read records (`show` with the inclusion
//! proof of one); `export` writes the C2SP tiles layout, the entries as
//! JSON Lines (what a SIEM ingests), a checkpoint and the log's verifier
//! key; `witness` cosigns (in `audit_witness`).

use std::path::Path;
use std::process::ExitCode;

use airgate_store::tlog::TreeHead;
use airgate_store::{Store, Stored};
use anyhow::{Context as _, Result};
use base64::Engine as _;

use super::audit_source::{self, Opened};
use crate::cli::{AuditCommand, AuditFormat};

pub fn run(command: AuditCommand) -> Result<ExitCode> {
    match command {
        AuditCommand::Verify {
            source,
            checkpoint,
            witness_key,
        } => verify(
            &audit_source::open(&source)?,
            checkpoint.as_deref(),
            source.log_key.as_deref(),
            &witness_key,
        ),
        AuditCommand::Checkpoint {
            store,
            key,
            log,
            out,
        } => {
            let text = checkpoint(&audit_source::open_store(&store)?, &key, &log)?;
            match out {
                Some(path) => write_new(&path, &text)?,
                None => crate::stdout::text(&String::from_utf8_lossy(&text))?,
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Log {
            source,
            app,
            since,
            output,
        } => log(
            &audit_source::open(&source)?.store,
            app.as_deref(),
            since,
            output,
        ),
        AuditCommand::Show { seq, source } => show(&audit_source::open(&source)?.store, seq),
        AuditCommand::Trace {
            image,
            source,
            output,
        } => super::audit_query::trace(&image, &source, output),
        AuditCommand::Blame {
            object,
            field,
            source,
            output,
        } => super::audit_query::blame(&object, field.as_deref(), &source, output),
        AuditCommand::Export {
            dir,
            store,
            key,
            log,
        } => export(
            &audit_source::open_store(&store)?,
            &dir,
            key.as_deref(),
            &log,
        ),
        AuditCommand::Witness {
            log,
            log_key,
            key,
            state,
            registry,
        } => super::audit_witness::witness(&log, &log_key, &key, &state, &registry),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn verify(
    opened: &Opened,
    checkpoint: Option<&Path>,
    log_key: Option<&Path>,
    witnesses: &[std::path::PathBuf],
) -> Result<ExitCode> {
    let store = &opened.store;
    let signed = match (checkpoint, log_key, &opened.published) {
        (Some(c), Some(k), _) => Some((
            std::fs::read(c).with_context(|| format!("reading {}", c.display()))?,
            audit_source::read_vkey(k)?,
        )),
        (None, _, Some((_, text, vkey))) => Some((text.clone(), vkey.clone())),
        _ => None,
    };
    let head = store.verify_log(signed.as_ref().map(|(c, k)| (c.as_slice(), k.as_str())))?;
    let mut cosigned = Vec::new();
    if let Some((location, _, vkey)) = &opened.published {
        for w in witnesses {
            cosigned.push(super::audit_witness::check(store, location, vkey, w)?);
        }
    }
    eprintln!(
        "verified {} records: every leaf, the tree (root {}), the hash chain ({} links){}",
        head.size,
        b64(&head.root),
        head.size,
        if signed.is_some() {
            ", and the signed checkpoint, which this log extends"
        } else {
            ""
        }
    );
    for line in &cosigned {
        eprintln!("{line}");
    }
    if signed.is_none() {
        eprintln!(
            "hint: without a checkpoint a rewritten tail verifies too; keep checkpoints where the controller cannot rewrite them, and have a witness cosign them"
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn checkpoint(store: &Store, key: &Path, log: &str) -> Result<Vec<u8>> {
    let skey =
        std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?;
    let signer = signed_note::StandardSigner::new(skey.trim()).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a note signing key ({e})\nhint: airgate key generate --type note",
            key.display()
        )
    })?;
    Ok(store.checkpoint(log, &signer)?)
}

fn entry(s: &Stored) -> serde_json::Value {
    serde_json::json!({"seq": s.seq, "hash": s.hash, "record": s.record})
}

fn log(
    store: &Store,
    app: Option<&str>,
    since: Option<i64>,
    output: AuditFormat,
) -> Result<ExitCode> {
    let records = store.all(app, since)?;
    match output {
        AuditFormat::Json => crate::out!(
            "{}",
            serde_json::to_string_pretty(&records.iter().map(entry).collect::<Vec<_>>())?
        )?,
        AuditFormat::Jsonl => {
            for r in &records {
                crate::out!("{}", entry(r))?;
            }
        }
        AuditFormat::Text => {
            for r in &records {
                let rec = &r.record;
                crate::out!(
                    "{:>6}  {}  {:<24} {:<6} {:<10} {:.12}  {}",
                    r.seq,
                    rec.started_at,
                    rec.app,
                    rec.kind.as_str(),
                    rec.result.as_str(),
                    rec.revision,
                    match (&rec.error, &rec.import) {
                        (Some(e), _) => e.as_str(),
                        (None, Some(_)) => rec.message.as_str(),
                        (None, None) => rec.committer.email.as_str(),
                    }
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show(store: &Store, seq: i64) -> Result<ExitCode> {
    let stored = store
        .get(seq)?
        .with_context(|| format!("no record {seq}"))?;
    let TreeHead { size, root } = store.tree_head()?;
    let proof = store.inclusion_proof(seq, size)?;
    let shown = serde_json::json!({
        "seq": seq,
        "leafIndex": seq - 1,
        "record": stored.record,
        "tree": {"size": size, "root": b64(&root)},
        "inclusionProof": proof.iter().map(|h| b64(&h.0)).collect::<Vec<_>>(),
        "chainHash": stored.hash,
    });
    crate::out!("{}", serde_json::to_string_pretty(&shown)?)?;
    Ok(ExitCode::SUCCESS)
}

fn export(store: &Store, dir: &Path, key: Option<&Path>, log_name: &str) -> Result<ExitCode> {
    let head = store
        .verify_log(None)
        .context("the log does not verify; nothing exported")?;
    std::fs::create_dir(dir)
        .with_context(|| format!("creating {} (it must not exist yet)", dir.display()))?;
    let mut lines = String::new();
    let records = store.all(None, None)?;
    for r in &records {
        lines.push_str(&entry(r).to_string());
        lines.push('\n');
    }
    write_new(&dir.join("entries.jsonl"), lines.as_bytes())?;
    airgate_store::tiles::write_dir(dir, &store.tiles(0, head.size)?)?;
    if let Some(key) = key {
        let text = checkpoint(store, key, log_name)?;
        write_new(&dir.join("checkpoint"), &text)?;
        let skey = std::fs::read_to_string(key)?;
        let vkey =
            airgate_store::tlog::verifier_key(&skey).context("--key: not an Ed25519 note key")?;
        write_new(&dir.join("log.vkey"), format!("{vkey}\n").as_bytes())?;
    }
    eprintln!(
        "exported {} records to {} (root {}; tiles, entries.jsonl, {})",
        records.len(),
        dir.display(),
        hex(&head.root),
        if key.is_some() {
            "a signed checkpoint and log.vkey"
        } else {
            "no checkpoint: pass --key"
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
