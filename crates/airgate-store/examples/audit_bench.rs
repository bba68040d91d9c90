//! The audit log's write and read figures for `bench/audit.sh`: appends N
//! records in batches, signing a checkpoint every second as the controller
//! would under load, then verifies the whole log, measures proofs, and
//! times `blame` (as `audit blame` runs it) on random objects: each record
//! changes one of 350 Deployments, naming the field paths it set. The
//! last checkpoint and the verifier key go next to STORE (`.checkpoint`,
//! `.vkey`) for `airgate audit verify`.
//!
//!   cargo run --release -p airgate-store --example audit_bench -- N STORE BATCH

use std::time::Instant;

use airgate_store::tlog::note_keys;
use airgate_store::{ObjectChange, Store, SyncRecord};

const FIELDS: [&str; 3] = [
    ".spec.template.spec.containers[app].image",
    ".spec.template.spec.containers[app].resources.limits.memory",
    ".spec.replicas",
];

fn object(i: u64) -> String {
    format!("Deployment/team-{}/app-{}", i % 50, i % 7)
}

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
                objects: vec![ObjectChange {
                    object: object(i),
                    action: "configured".into(),
                    fields: vec![FIELDS[(i % 3) as usize].to_string()],
                }],
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
    // blame: 200 random (object, field) questions, p50 and p95.
    let mut times = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let started = Instant::now();
        let b = store.blame(&object(x % 350), Some(FIELDS[(x % 3) as usize]))?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        if b.set_by.is_none() {
            return Err(format!("no setter for {}", object(x % 350)).into());
        }
    }
    times.sort_by(f64::total_cmp);
    let (p50, p95) = (times[times.len() / 2], times[times.len() * 95 / 100]);
    println!(
        "{{\"records\": {}, \"batch\": {batch}, \"appendSeconds\": {append_s:.2}, \"recordsPerSecond\": {:.0}, \"checkpoints\": {checkpoints}, \"verifySeconds\": {verify_s:.2}, \"inclusionProofHashes\": [{inclusion}, {middle}], \"consistencyProofHashes\": {consistency}, \"blameP50Ms\": {p50:.1}, \"blameP95Ms\": {p95:.1}}}",
        head.size,
        head.size as f64 / append_s
    );
    Ok(())
}
