//! The audit log published and witnessed, offline (export directories):
//! each way of tampering the issue names (edit a record, delete the last
//! N, reorder two, rewrite the tail and re-sign it with the controller's
//! own key) fails `audit verify` with the witness's key, and the witness
//! refuses to cosign it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use airgate_store::{Store, SyncRecord};
use anyhow::Result;

fn airgate(args: &[&str]) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_airgate"))
        .args(args)
        .output()?)
}

fn ok(out: Output) -> Result<String> {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    anyhow::ensure!(out.status.success(), "{stderr}");
    Ok(stderr)
}

fn failed(out: Output) -> Result<String> {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    anyhow::ensure!(out.status.code() == Some(1), "expected a failure: {stderr}");
    Ok(stderr)
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn record(i: usize, who: &str) -> SyncRecord {
    SyncRecord {
        app: "prod/web".into(),
        revision: format!("{i:040x}"),
        message: format!("change {i} by {who}"),
        ..Default::default()
    }
}

/// A store of the records `revisions` names (`(index, author)`), exported
/// with the log's key to `dir/name`.
fn export(dir: &Path, name: &str, records: &[(usize, &str)]) -> Result<PathBuf> {
    let db = dir.join(format!("{name}.db"));
    let mut store = Store::open(&db)?;
    let records: Vec<_> = records.iter().map(|(i, who)| record(*i, who)).collect();
    store.append_all(&records)?;
    drop(store);
    let out = dir.join(name);
    ok(airgate(&[
        "audit",
        "export",
        &s(&out),
        "--store",
        &s(&db),
        "--key",
        &s(&dir.join("log.key")),
        "--log",
        "prod",
    ])?)?;
    Ok(out)
}

fn honest(n: usize) -> Vec<(usize, &'static str)> {
    (0..n).map(|i| (i, "ada")).collect()
}

#[test]
fn a_witnessed_log_catches_every_rewrite_even_one_resigned_with_the_log_key() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    for (kind, name) in [("note", "airgate-prod"), ("witness", "security.example/w1")] {
        let prefix = dir.join(if kind == "note" { "log" } else { "witness" });
        ok(airgate(&[
            "key",
            "generate",
            "--type",
            kind,
            "--name",
            name,
            "--out",
            &s(&prefix),
        ])?)?;
    }
    let (vkey, wkey, wvkey, state) = (
        s(&dir.join("log.vkey")),
        s(&dir.join("witness.key")),
        s(&dir.join("witness.vkey")),
        s(&dir.join("witness.state")),
    );
    let witness = |log: &Path| {
        airgate(&[
            "audit",
            "witness",
            "--log",
            &s(log),
            "--log-key",
            &vkey,
            "--key",
            &wkey,
            "--state",
            &state,
        ])
    };
    let verify = |log: &Path| {
        airgate(&[
            "audit",
            "verify",
            "--log",
            &s(log),
            "--log-key",
            &vkey,
            "--witness-key",
            &wvkey,
        ])
    };

    // The witness sees 300 records, then 700: both cosigned.
    let first = export(dir, "first", &honest(300))?;
    ok(witness(&first)?)?;
    let grown = export(dir, "grown", &honest(700))?;
    let said = ok(witness(&grown)?)?;
    assert!(
        said.contains("consistent with the 300 cosigned before"),
        "{said}"
    );
    let said = ok(verify(&grown)?)?;
    assert!(said.contains("verified 700 records"), "{said}");
    assert!(
        said.contains("cosigned 700 records; this log extends them"),
        "{said}"
    );

    // Reading from the export: the records and an inclusion proof.
    let log = airgate(&[
        "audit",
        "log",
        "--log",
        &s(&grown),
        "--log-key",
        &vkey,
        "-o",
        "jsonl",
    ])?;
    assert_eq!(String::from_utf8_lossy(&log.stdout).lines().count(), 700);
    let shown = airgate(&[
        "audit",
        "show",
        "3",
        "--log",
        &s(&grown),
        "--log-key",
        &vkey,
    ])?;
    let json: serde_json::Value = serde_json::from_slice(&shown.stdout)?;
    assert_eq!(json["tree"]["size"].as_i64(), Some(700));

    // Each forgery is re-exported whole and re-signed with the log's key,
    // and carries the witness's last cosignature from the honest log.
    let cosigned = std::fs::read_dir(grown.join("witness"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("no cosignature published"))??
        .path();
    let mut edited = honest(700);
    edited[41].1 = "eve";
    let mut reordered = honest(700);
    reordered.swap(10, 11);
    let mut tail = honest(650);
    tail.extend((650..750).map(|i| (i, "eve")));
    let forgeries = [
        ("edited", edited, "rewritten"),
        ("truncated", honest(600), "removed"),
        ("reordered", reordered, "rewritten"),
        ("tail", tail, "rewritten"),
    ];
    for (name, records, why) in forgeries {
        let forged = export(dir, name, &records)?;
        let into = forged.join("witness");
        std::fs::create_dir_all(&into)?;
        std::fs::copy(
            &cosigned,
            into.join(cosigned.file_name().unwrap_or_default()),
        )?;
        let said = failed(verify(&forged)?)?;
        assert!(said.contains(why), "{name}: {said}");
        let said = failed(witness(&forged)?)?;
        assert!(said.contains("refusing to cosign"), "{name}: {said}");
    }

    // An entry bundle edited in place is named before anything is shown.
    let bundle = grown.join("tile/entries/001");
    let mut data = std::fs::read(&bundle)?;
    let at = data.len() / 2;
    data[at] ^= 1;
    std::fs::write(&bundle, data)?;
    let said = failed(verify(&grown)?)?;
    assert!(said.contains("does not verify"), "{said}");
    Ok(())
}
