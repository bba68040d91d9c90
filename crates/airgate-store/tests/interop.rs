//! airgate's transparency log, checked by a verifier that is not ours: Go's
//! `golang.org/x/mod/sumdb/note` and `sumdb/tlog`, built here from the Go
//! module proxy (`tests/interop/main.go`). A checkpoint signature, an
//! inclusion proof and a consistency proof are only right in the RFC 6962
//! and C2SP formats when they agree.

use std::path::Path;
use std::process::Command;

use airgate_store::tlog::note_keys;
use airgate_store::{Store, SyncRecord};
use anyhow::{Context as _, Result, ensure};
use base64::Engine as _;

#[test]
fn go_sumdb_verifies_the_checkpoint_an_inclusion_and_a_consistency_proof() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut store = Store::open(&dir.path().join("records.db"))?;
    for i in 0..23 {
        store.append(&SyncRecord {
            app: format!("shop/app-{}", i % 3),
            revision: format!("{i:040x}"),
            started_at: 1_700_000_000 + i,
            ..SyncRecord::default()
        })?;
    }
    let (skey, vkey) = note_keys("airgate-interop", [42; 32]);
    let signer = signed_note::StandardSigner::new(&skey).map_err(|e| anyhow::anyhow!("{e}"))?;
    let checkpoint = store.checkpoint("shop", &signer)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let leaf = 9;
    let old = store.tree_head_at(14)?;
    let body = store.get(leaf + 1)?.context("record 10")?;
    let body = serde_json::to_string(&body.record)?;
    let proofs = serde_json::json!({
        "leaf": leaf,
        "body": b64.encode(&body),
        "inclusion": store.inclusion_proof(leaf + 1, 23)?.iter().map(|h| b64.encode(h.0)).collect::<Vec<_>>(),
        "oldSize": old.size,
        "oldRoot": b64.encode(old.root),
        "consistency": store.consistency_proof(14, 23)?.iter().map(|h| b64.encode(h.0)).collect::<Vec<_>>(),
    });
    std::fs::write(dir.path().join("log.vkey"), &vkey)?;
    std::fs::write(dir.path().join("checkpoint"), &checkpoint)?;
    std::fs::write(dir.path().join("proofs.json"), proofs.to_string())?;

    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    let binary = dir.path().join("interop");
    let built = Command::new("go")
        .current_dir(&source)
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .output()
        .context("running go (Go is needed to build the independent verifier)")?;
    ensure!(
        built.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let run = Command::new(&binary)
        .arg(dir.path().join("log.vkey"))
        .arg(dir.path().join("checkpoint"))
        .arg(dir.path().join("proofs.json"))
        .output()?;
    let said = String::from_utf8_lossy(&run.stdout);
    ensure!(
        run.status.success(),
        "Go's verifier refused: {}{said}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(said.contains("ok: airgate.dev/audit/shop, 23 records, signed by airgate-interop; leaf 9 included; consistent with 14"), "{said}");

    // And it is not a verifier that says yes to anything: a proof for the
    // wrong leaf is refused.
    let mut wrong = proofs.clone();
    wrong["leaf"] = serde_json::json!(10);
    std::fs::write(dir.path().join("wrong.json"), wrong.to_string())?;
    let run = Command::new(&binary)
        .arg(dir.path().join("log.vkey"))
        .arg(dir.path().join("checkpoint"))
        .arg(dir.path().join("wrong.json"))
        .output()?;
    ensure!(
        !run.status.success(),
        "Go's verifier took a proof for the wrong leaf"
    );
    Ok(())
}
