use super::*;
use crate::SyncRecord;
use crate::tlog::note_keys;
use crate::witness::{Cosigner, check_cosigned, witness, witness_keys};

fn record(i: u64, who: &str) -> SyncRecord {
    SyncRecord {
        app: "shop/web".into(),
        revision: format!("{i:040x}"),
        message: format!("change {i} by {who}"),
        started_at: 1_700_000_000 + i as i64,
        ..SyncRecord::default()
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// A store of `n` records (record 5 written by `who5`), and the log's keys.
fn log(n: u64, who5: &str) -> Res<Store> {
    let mut store = Store::open(Path::new(":memory:"))?;
    let records: Vec<_> = (0..n)
        .map(|i| record(i, if i == 5 { who5 } else { "ada" }))
        .collect();
    store.append_all(&records)?;
    Ok(store)
}

fn signer() -> Res<(signed_note::StandardSigner, String)> {
    let (skey, vkey) = note_keys("airgate-test", [7; 32]);
    Ok((signed_note::StandardSigner::new(&skey)?, vkey))
}

/// Publishes `store` into `dir` (growing it from `old` records), with a
/// signed checkpoint; returns the checkpoint.
fn publish(store: &Store, dir: &Path, old: u64) -> Res<Vec<u8>> {
    let (signer, _) = signer()?;
    let size = store.tree_head()?.size;
    write_dir(dir, &store.tiles(old, size)?)?;
    let checkpoint = store.checkpoint("shop", &signer)?;
    std::fs::write(dir.join("checkpoint"), &checkpoint)?;
    Ok(checkpoint)
}

#[test]
fn paths_are_the_c2sp_tile_paths() {
    assert_eq!(tile_path(0, 1_234_067, 256), "tile/0/x001/x234/067");
    assert_eq!(tile_path(2, 5, 17), "tile/2/005.p/17");
    assert_eq!(entries_path(1000, 256), "tile/entries/x001/000");
    assert_eq!(entries_path(0, 3), "tile/entries/000.p/3");
}

#[test]
fn a_bundle_frames_each_entry_with_its_length() -> Res<()> {
    let data = bundle(&[b"ab".as_slice(), b"".as_slice(), b"xyz".as_slice()])?;
    assert_eq!(data, b"\0\x02ab\0\0\0\x03xyz");
    assert_eq!(
        unbundle(&data, 3, "b")?,
        vec![b"ab".to_vec(), vec![], b"xyz".to_vec()]
    );
    assert!(unbundle(&data, 2, "b").is_err());
    assert!(unbundle(&data[..data.len() - 1], 3, "b").is_err());
    assert!(bundle(&[vec![0u8; 70_000]]).is_err());
    Ok(())
}

#[test]
fn a_published_log_reads_back_as_the_same_tree_in_any_number_of_steps() -> Res<()> {
    let dir = tempfile::tempdir()?;
    let store = log(700, "ada")?;
    let (_, vkey) = signer()?;
    // Published once whole, and again in steps into another directory:
    // the same files either way (partial tiles aside).
    let whole = publish(&store, dir.path(), 0)?;
    let (read, checkpoint) = read_log(&Dir(dir.path().into()), &whole, &vkey)?;
    assert_eq!(read.tree_head()?, store.tree_head()?);
    assert_eq!(checkpoint.size(), 700);
    assert_eq!(read.verify_log(Some((&whole, &vkey)))?.size, 700);

    let steps = tempfile::tempdir()?;
    let mut published = 0;
    for size in [1, 255, 256, 300, 513, 700] {
        let part = log(size, "ada")?;
        let text = publish(&part, steps.path(), published)?;
        published = size;
        let (read, _) = read_log(&Dir(steps.path().into()), &text, &vkey)?;
        assert_eq!(read.tree_head()?.size, size);
    }
    for full in [
        "tile/0/000",
        "tile/0/001",
        "tile/entries/000",
        "tile/entries/001",
    ] {
        assert_eq!(
            std::fs::read(dir.path().join(full))?,
            std::fs::read(steps.path().join(full))?,
            "{full}"
        );
    }
    Ok(())
}

#[test]
fn an_edited_entry_bundle_or_tile_is_named() -> Res<()> {
    let (_, vkey) = signer()?;
    for file in ["tile/entries/001", "tile/0/001", "tile/1/000.p/2"] {
        let dir = tempfile::tempdir()?;
        let text = publish(&log(700, "ada")?, dir.path(), 0)?;
        let path = dir.path().join(file);
        let mut data = std::fs::read(&path)?;
        let i = data.len() / 2;
        data[i] ^= 1;
        std::fs::write(&path, data)?;
        let err = read_log(&Dir(dir.path().into()), &text, &vkey)
            .err()
            .ok_or("an edited file was read")?
            .to_string();
        if file.contains("entries") {
            assert!(
                err.contains("entry bundle was changed") || err.contains(file),
                "{err}"
            );
        } else {
            assert!(err.contains(file), "{err}");
        }
    }
    Ok(())
}

#[test]
fn the_witness_cosigns_a_log_that_grew_and_refuses_one_rewritten_and_resigned() -> Res<()> {
    let (_, vkey) = signer()?;
    let (wskey, wvkey) = witness_keys("witness.example/security", [9; 32]);
    let cosigner = Cosigner::new(&wskey, 1_800_000_000)?;
    assert_eq!(cosigner.vkey(), wvkey);
    let dir = tempfile::tempdir()?;
    let source = Dir(dir.path().into());

    let first = publish(&log(300, "ada")?, dir.path(), 0)?;
    let state = witness(&source, None, &first, &vkey, &cosigner)?;
    assert_eq!(check_cosigned(&state, &wvkey, &vkey)?.size(), 300);
    let text = String::from_utf8(state.clone())?;
    assert!(text.contains("— witness.example/security "), "{text}");

    let grown = publish(&log(700, "ada")?, dir.path(), 300)?;
    let state = witness(&source, Some(&state), &grown, &vkey, &cosigner)?;
    assert_eq!(check_cosigned(&state, &wvkey, &vkey)?.size(), 700);

    // Record 6 rewritten, the whole log re-published and its checkpoint
    // re-signed with the controller's own key.
    let forged = tempfile::tempdir()?;
    let rewritten = publish(&log(900, "eve")?, forged.path(), 0)?;
    let err = witness(
        &Dir(forged.path().into()),
        Some(&state),
        &rewritten,
        &vkey,
        &cosigner,
    )
    .err()
    .ok_or("the witness cosigned a rewritten log")?
    .to_string();
    assert!(
        err.contains("rewritten") || err.contains("do not prove"),
        "{err}"
    );
    // A cosignature by another witness key does not pass for this one.
    let (_, other) = witness_keys("witness.example/security", [8; 32]);
    assert!(check_cosigned(&state, &other, &vkey).is_err());
    Ok(())
}
