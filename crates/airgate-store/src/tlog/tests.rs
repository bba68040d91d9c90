use super::*;
use crate::SyncRecord;

/// Record `i` of a test log.
fn record(i: i64) -> SyncRecord {
    SyncRecord {
        app: "shop/web".into(),
        revision: format!("{i:040x}"),
        started_at: 1_700_000_000 + i,
        ..SyncRecord::default()
    }
}

fn store_with(n: usize) -> Result<(tempfile::TempDir, Store), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut store = Store::open(&dir.path().join("records.db"))?;
    for i in 0..n {
        store.append(&record(i as i64))?;
    }
    Ok((dir, store))
}

fn keys() -> Result<(signed_note::StandardSigner, String), Box<dyn std::error::Error>> {
    let (skey, vkey) = note_keys("airgate-test", [7; 32]);
    Ok((signed_note::StandardSigner::new(&skey)?, vkey))
}

#[test]
fn proofs_check_with_the_rfc_6962_arithmetic_for_every_size()
-> Result<(), Box<dyn std::error::Error>> {
    let (_dir, store) = store_with(13)?;
    let head = store.tree_head()?;
    assert_eq!(head.size, 13);
    for size in 1..=13u64 {
        let root = tlog_tiles::tree_hash(size, &Reader { conn: &store.conn })?;
        for seq in 1..=size as i64 {
            let proof = store.inclusion_proof(seq, size)?;
            let body: String = store.conn.query_row(
                "SELECT body FROM sync_records WHERE seq = ?1",
                [seq],
                |r| r.get(0),
            )?;
            let leaf = tlog_tiles::record_hash(body.as_bytes());
            tlog_tiles::check_record(&proof, size, root, (seq - 1) as u64, leaf)?;
        }
        let proof = store.consistency_proof(size, 13)?;
        tlog_tiles::check_tree(&proof, 13, Hash(head.root), size, root)?;
    }
    Ok(())
}

#[test]
fn a_log_verifies_against_its_signed_checkpoint() -> Result<(), Box<dyn std::error::Error>> {
    let (_dir, store) = store_with(5)?;
    let (signer, vkey) = keys()?;
    let checkpoint = store.checkpoint("shop", &signer)?;
    let text = String::from_utf8(checkpoint.clone())?;
    assert!(text.starts_with("airgate.dev/audit/shop\n5\n"), "{text}");
    assert!(text.contains("\n\n— airgate-test "), "{text}");
    assert_eq!(store.verify_log(Some((&checkpoint, &vkey)))?.size, 5);
    let (_, other) = note_keys("airgate-test", [8; 32]);
    let err = store
        .verify_log(Some((&checkpoint, &other)))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("no valid signature of airgate-test"), "{err}");
    Ok(())
}

#[test]
fn an_edited_a_removed_and_a_rewritten_record_are_each_named()
-> Result<(), Box<dyn std::error::Error>> {
    let (signer, vkey) = keys()?;

    // Edited: record 3's body changed in place.
    let (_dir, store) = store_with(6)?;
    store.conn.execute(
        "UPDATE sync_records SET body = replace(body, 'shop/web', 'shop/evil') WHERE seq = 3",
        [],
    )?;
    let err = store
        .verify_log(None)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("record 3") && err.contains("was changed"),
        "{err}"
    );

    // Removed: the last two records deleted after a checkpoint.
    let (_dir, store) = store_with(6)?;
    let checkpoint = store.checkpoint("shop", &signer)?;
    store
        .conn
        .execute("DELETE FROM sync_records WHERE seq > 4", [])?;
    let err = store
        .verify_log(Some((&checkpoint, &vkey)))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("the checkpoint covers 6 records, the log holds 4"),
        "{err}"
    );

    // Removed in the middle.
    let (_dir, store) = store_with(6)?;
    store
        .conn
        .execute("DELETE FROM sync_records WHERE seq = 2", [])?;
    let err = store
        .verify_log(None)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("record 3") && err.contains("removed"), "{err}");

    // Rewritten: the tail replaced, its tree hashes recomputed, the chain
    // re-hashed: only the checkpoint kept from before tells.
    let (dir, store) = store_with(6)?;
    let checkpoint = store.checkpoint("shop", &signer)?;
    drop(store);
    let conn = rusqlite::Connection::open(dir.path().join("records.db"))?;
    conn.execute("DELETE FROM sync_records WHERE seq > 3", [])?;
    conn.execute("DELETE FROM tlog_hashes", [])?;
    conn.execute("DELETE FROM sqlite_sequence", [])?;
    drop(conn);
    let mut store = Store::open(&dir.path().join("records.db"))?;
    for i in 0..3 {
        store.append(&SyncRecord {
            app: "shop/web".into(),
            revision: format!("forged{i}"),
            ..SyncRecord::default()
        })?;
    }
    assert_eq!(
        store.verify_log(None)?.size,
        6,
        "the rewrite is consistent by itself"
    );
    let err = store
        .verify_log(Some((&checkpoint, &vkey)))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("the first 6 records do not hash to the checkpoint's root"),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_store_from_before_the_log_gets_its_leaves_at_open() -> Result<(), Box<dyn std::error::Error>> {
    let (dir, store) = store_with(4)?;
    let head = store.tree_head()?;
    drop(store);
    let conn = rusqlite::Connection::open(dir.path().join("records.db"))?;
    conn.execute("DROP TABLE tlog_hashes", [])?;
    drop(conn);
    let store = Store::open(&dir.path().join("records.db"))?;
    assert_eq!(store.tree_head()?, head);
    Ok(())
}

#[test]
fn a_batch_is_the_same_log_as_its_records_one_by_one() -> Result<(), Box<dyn std::error::Error>> {
    let (_one, one_by_one) = store_with(9)?;
    let dir = tempfile::tempdir()?;
    let mut batched = Store::open(&dir.path().join("records.db"))?;
    let records: Vec<SyncRecord> = (0..9).map(record).collect();
    batched.append_all(&records[..4])?;
    batched.append_all(&records[4..])?;
    assert_eq!(batched.tree_head()?, one_by_one.tree_head()?);
    assert_eq!(batched.verify_chain()?, 9);
    assert_eq!(
        batched.get(9)?.map(|s| s.hash),
        one_by_one.get(9)?.map(|s| s.hash)
    );
    Ok(())
}
