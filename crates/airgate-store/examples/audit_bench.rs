//! The audit log's write and read figures for `bench/audit.sh`: appends N
//! records in batches, signing a checkpoint every second as the controller
//! would under load, then verifies the whole log and measures proofs. The
//! last checkpoint and the verifier key go next to STORE (`.checkpoint`,
//! `.vkey`) for `airgate audit verify`.
//!
//!   cargo run --release -p airgate-store --example audit_bench -- N STORE BATCH

use std::time::Instant;

use airgate_store::tlog::note_keys;
use airgate_store::{Store, SyncRecord};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, n, path, batch] = &args[..] else {
        return Err("usage: audit_bench N STORE BATCH".into());
    };
    let (n, batch): (u64, u64) = (n.parse()?, batch.parse()?);
    let path = std::path::Path::new(path);
    let mut store = Store::open(path)?;
    let (skey, vkey) = note_keys("airgate-bench", [9; 32]);
    let signer = signed_note::StandardSigner::new(&skey).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut last_checkpoint = Instant::now();
    let (mut checkpoints, mut done) = (0u64, 0u64);
    let mut checkpoint = Vec::new();
    while done < n {
        let records: Vec<SyncRecord> = (done..(done + batch).min(n))
            .map(|i| SyncRecord {
                app: format!("team-{}/app-{}", i % 50, i % 7),
                revision: format!("{i:040x}"),
                started_at: 1_700_000_000 + i as i64,
                duration_ms: i % 5000,
                images: vec![format!("registry.internal:5000/app@sha256:{i:064x}")],
                ..SyncRecord::default()
            })
            .collect();
        done += records.len() as u64;
        store.append_all(&records)?;
        if last_checkpoint.elapsed().as_secs() >= 1 || done == n {
            checkpoint = store.checkpoint("bench", &signer)?;
            checkpoints += 1;
            last_checkpoint = Instant::now();
        }
    }
    let append_s = started.elapsed().as_secs_f64();
    std::fs::write(path.with_extension("checkpoint"), &checkpoint)?;
    std::fs::write(path.with_extension("vkey"), &vkey)?;
    let verify_started = Instant::now();
    let head = store.verify_log(Some((&checkpoint, &vkey)))?;
    let verify_s = verify_started.elapsed().as_secs_f64();
    let inclusion = store.inclusion_proof(1, head.size)?.len();
    let middle = store
        .inclusion_proof((head.size / 2) as i64, head.size)?
        .len();
    let consistency = store.consistency_proof(head.size / 3, head.size)?.len();
    println!(
        "{{\"records\": {}, \"batch\": {batch}, \"appendSeconds\": {append_s:.2}, \"recordsPerSecond\": {:.0}, \"checkpoints\": {checkpoints}, \"verifySeconds\": {verify_s:.2}, \"inclusionProofHashes\": [{inclusion}, {middle}], \"consistencyProofHashes\": {consistency}}}",
        head.size,
        head.size as f64 / append_s
    );
    Ok(())
}
