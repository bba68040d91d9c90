//! The bundle as a hostile party would build it: each test is named after a
//! finding of the security review and fails on the code before its fix.
//! Bundles are made the real way (images seeded into the perimeter's
//! upstream registry, `airgate bundle create`), then altered byte by byte.
//! GNU tar, Python's tarfile and skopeo stand in for the other readers.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use airgate_core::archive;
use airgate_testkit::unique_name;
use anyhow::{Context, Result, bail};
use common::*;

/// Offsets of each entry's header in a bundle airgate wrote.
fn headers(bytes: &[u8]) -> Vec<(usize, String, u64)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= bytes.len() {
        let mut block = [0u8; 512];
        block.copy_from_slice(&bytes[at..at + 512]);
        match archive::parse_header(&block) {
            Ok(archive::Block::Entry { name, size }) => {
                out.push((at, name, size));
                at += 512 + (size as usize).div_ceil(512) * 512;
            }
            _ => break,
        }
    }
    out
}

/// Sets a header field and fixes the checksum, as an attacker's tar would.
fn patch_header(bytes: &mut [u8], at: usize, offset: usize, value: &[u8]) {
    bytes[at + offset..at + offset + value.len()].copy_from_slice(value);
    bytes[at + 148..at + 156].copy_from_slice(b"        ");
    let sum: u32 = bytes[at..at + 512].iter().map(|&b| u32::from(b)).sum();
    let field = format!("{sum:06o}\0 ");
    bytes[at + 148..at + 156].copy_from_slice(field.as_bytes());
}

/// A PAX extended header ('x') whose records are `records`.
fn pax_header(records: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let Ok(mut h) = archive::header("PaxHeaders/x", records.len() as u64) else {
        return out;
    };
    patch_header(&mut h, 0, 156, b"x");
    out.extend_from_slice(&h);
    out.extend_from_slice(records.as_bytes());
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn pax_record(key: &str, value: &str) -> String {
    // The length counts itself.
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}")
}

/// A small signed bundle whose last entry (a carried file of 1001 bytes)
/// ends in padding: layers are tars, whole blocks, and have none.
fn bundle_ending_in_padding(
    env: &Env,
    base: &str,
) -> Result<(
    airgate_testkit::images::SeededImage,
    std::path::PathBuf,
    String,
)> {
    let (image, _, key, public) = small_bundle(env, base)?;
    let notes = env.path(&format!("{base}-notes.txt"));
    std::fs::write(&notes, vec![b'n'; 1001])?;
    let lock = env.lock(&format!("{base}-padded"), &[&image.reference])?;
    let file = format!("{}=notes.txt", s(&notes));
    let bundle = env.bundle(
        &format!("{base}-padded"),
        &lock,
        Some(&key),
        &["--file", &file],
    )?;
    Ok((image, bundle, public))
}

fn verify_args<'a>(path: &'a str, key: &'a str) -> Vec<&'a str> {
    vec!["bundle", "verify", path, "--key", key]
}

#[test]
fn a_pax_header_that_gnu_tar_reads_differently_is_refused_by_every_reader() -> Result<()> {
    let _guard = read_lock();
    let env = Env::new()?;
    let base = unique_name("pax");
    let (image, bundle, _key, public) = small_bundle(&env, &base)?;
    let bytes = std::fs::read(&bundle)?;
    let (at, name, _) = headers(&bytes)
        .into_iter()
        .find(|(_, n, _)| n == "index.json")
        .context("no index.json")?;
    // Two size records: the first says the entry is empty, the last (which
    // GNU tar and tarfile take) says it is what follows.
    let records = pax_record("size", "0") + &pax_record("size", "1024");
    let mut evil = bytes[..at].to_vec();
    evil.extend(pax_header(&records));
    evil.extend_from_slice(&bytes[at..]);
    let path = env.path("pax.tar");
    std::fs::write(&path, &evil)?;
    let p = s(&path);

    let err = fails(env.airgate(&verify_args(&p, &public))?)?;
    assert!(err.contains("PAX extended header"), "{name}: {err}");
    let piped = env
        .cmd(&["bundle", "verify", "-", "--key", &public])
        .stdin(std::fs::File::open(&path)?)
        .output()?;
    assert!(fails(piped)?.contains("PAX extended header"));
    let to = format!("{}/{base}", env.p.internal_registry);
    let err = fails(env.airgate(&env.push_args(&p, &to, &public))?)?;
    assert!(err.contains("PAX extended header"), "{err}");
    let out_dir = env.path("pax-out");
    let err = fails(env.airgate(&[
        "bundle",
        "extract",
        &p,
        "--key",
        &public,
        "--out",
        &s(&out_dir),
    ])?)?;
    assert!(err.contains("PAX extended header"), "{err}");
    assert!(!out_dir.exists(), "extract left {}", out_dir.display());
    assert_eq!(
        env.p
            .internal_layer_count(&env.internal_repo(&base, &image.reference)),
        0
    );
    Ok(())
}

#[test]
fn every_header_a_tar_reader_could_take_two_ways_is_refused() -> Result<()> {
    let _guard = read_lock();
    let env = Env::new()?;
    let base = unique_name("hdr");
    let (_image, bundle, public) = bundle_ending_in_padding(&env, &base)?;
    let bytes = std::fs::read(&bundle)?;
    let heads = headers(&bytes);
    let (index_at, _, _) = heads
        .iter()
        .find(|(_, n, _)| n == "index.json")
        .cloned()
        .context("no index.json")?;
    let cases: Vec<(&str, usize, &[u8], &str)> = vec![
        ("setuid", 100, b"0004755\0", "mode"),
        ("owner", 108, b"0001750\0", "uid"),
        ("mtime", 136, b"14700000000\0", "mtime"),
        ("symlink", 156, b"2", "symbolic link"),
        ("gnu-long-name", 156, b"L", "GNU long name"),
        ("sparse", 156, b"S", "GNU sparse"),
        ("directory", 156, b"5", "directory"),
        ("linkname", 157, b"/etc/shadow", "linkname"),
        ("prefix", 345, b"evil", "prefix"),
    ];
    for (name, offset, value, expected) in cases {
        let mut evil = bytes.clone();
        patch_header(&mut evil, index_at, offset, value);
        let path = env.path(&format!("{name}.tar"));
        std::fs::write(&path, &evil)?;
        let err = fails(env.airgate(&verify_args(&s(&path), &public))?)?;
        assert!(err.contains(expected), "{name}: {err}");
    }

    // A non-zero byte in padding, and data after the end-of-archive marker.
    let (last_at, _, last_size) = heads.last().cloned().context("no entries")?;
    let mut padded = bytes.clone();
    assert_eq!(last_size, 1001);
    padded[last_at + 512 + 1001] = b'x';
    let path = env.path("padding.tar");
    std::fs::write(&path, &padded)?;
    let err = fails(env.airgate(&verify_args(&s(&path), &public))?)?;
    assert!(err.contains("padding"), "{err}");
    let mut trailing = bytes.clone();
    trailing.extend_from_slice(b"index.json");
    let path = env.path("trailing.tar");
    std::fs::write(&path, &trailing)?;
    let err = fails(env.airgate(&verify_args(&s(&path), &public))?)?;
    assert!(err.contains("follows the end-of-archive marker"), "{err}");
    Ok(())
}

#[test]
fn verify_and_push_agree_on_a_bundle_cut_inside_its_last_padding() -> Result<()> {
    let _guard = read_lock();
    let env = Env::new()?;
    let base = unique_name("cut");
    let (image, bundle, public) = bundle_ending_in_padding(&env, &base)?;
    let bytes = std::fs::read(&bundle)?;
    let (last_at, _, last_size) = headers(&bytes).last().cloned().context("no entries")?;
    let end_of_data = last_at + 512 + last_size as usize;
    assert_eq!(
        last_size, 1001,
        "the last entry needs padding for this case"
    );
    let path = env.path("cut.tar");
    std::fs::write(&path, &bytes[..end_of_data + 1])?;
    let err = fails(env.airgate(&verify_args(&s(&path), &public))?)?;
    assert!(err.contains("truncated"), "verify: {err}");
    let to = format!("{}/{base}", env.p.internal_registry);
    let err = fails(env.airgate(&env.push_args(&s(&path), &to, &public))?)?;
    assert!(err.contains("truncated"), "push: {err}");
    assert_eq!(
        env.internal_digest(&env.internal_repo(&base, &image.reference), "v1")?,
        None
    );
    Ok(())
}

/// Streams `header` and then `zeros` bytes of zeros into `verify -`.
fn verify_stream_of(env: &Env, header: &[u8], zeros: usize) -> Result<(String, Duration)> {
    let started = Instant::now();
    let mut child = env
        .cmd(&["bundle", "verify", "-", "--allow-unsigned"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(header);
        let chunk = vec![0u8; 1 << 20];
        let mut left = zeros;
        while left > 0 {
            let n = left.min(chunk.len());
            if stdin.write_all(&chunk[..n]).is_err() {
                break;
            }
            left -= n;
        }
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        bail!("verify accepted a hostile stream");
    }
    Ok((
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    ))
}

#[test]
fn a_header_claiming_a_terabyte_is_refused_before_reading_it() -> Result<()> {
    let env = Env::new()?;
    // An inventory claiming 1 TiB, and one claiming 249 MiB: refused from
    // the header, before a byte of it is read.
    for size in [1u64 << 40, 249 << 20] {
        let header = archive::header("airgate-bundle.json", size)?;
        let (err, took) = verify_stream_of(&env, &header, 64 << 20)?;
        assert!(err.contains("more than the 16777216 bytes"), "{err}");
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
    // A GNU long-name header claiming 1 TiB: refused by its type.
    let mut header = archive::header("././@LongLink", 1 << 40)?;
    patch_header(&mut header, 0, 156, b"L");
    let (err, _) = verify_stream_of(&env, &header, 64 << 20)?;
    assert!(err.contains("GNU long name"), "{err}");
    Ok(())
}

#[test]
fn inspect_says_claims_to_be_signed_unless_a_key_checked_it() -> Result<()> {
    let _guard = read_lock();
    let env = Env::new()?;
    let base = unique_name("claims");
    let (_image, bundle, _key, public) = small_bundle(&env, &base)?;
    // Re-sign nothing: edit the inventory, so the signature no longer holds.
    let mut entries = tar_entries(&bundle)?;
    if let Some((_, data)) = entries.first_mut() {
        *data = String::from_utf8_lossy(data)
            .replace("airgate 0.", "airgate 9.")
            .into_bytes();
    }
    let forged = env.path("forged.tar");
    write_raw_tar(&forged, &entries)?;
    let f = s(&forged);
    let shown = ok(env.airgate(&["bundle", "inspect", &f])?)?;
    assert!(shown.contains("claims to be signed by"), "{shown}");
    assert!(!shown.contains("signed by  sha256"), "{shown}");
    let err = fails(env.airgate(&["bundle", "inspect", &f, "--key", &public])?)?;
    assert!(err.contains("changed after it was signed"), "{err}");
    let good = ok(env.airgate(&["bundle", "inspect", &s(&bundle), "--key", &public])?)?;
    assert!(good.contains("(checked with --key)"), "{good}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(env.airgate(&["bundle", "inspect", &f, "-o", "json"])?)?)?;
    assert!(
        json["signedBy"].is_null() && json["claimsSignedBy"].is_string(),
        "{json}"
    );
    Ok(())
}

#[test]
fn extract_verifies_while_writing_and_leaves_nothing_behind_on_failure() -> Result<()> {
    let _guard = read_lock();
    let env = Env::new()?;
    let base = unique_name("extract");
    let (image, bundle, _key, public) = small_bundle(&env, &base)?;
    let out_dir = env.path("layout");
    ok(env.airgate(&[
        "bundle",
        "extract",
        &s(&bundle),
        "--key",
        &public,
        "--out",
        &s(&out_dir),
    ])?)?;
    // An OCI image layout a real consumer reads: skopeo finds the image.
    let inspected = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}", s(&out_dir)))
        .output()?;
    let digest = format!(
        "sha256:{:x}",
        <sha2::Sha256 as sha2::Digest>::digest(&inspected.stdout)
    );
    assert!(
        inspected.status.success() && digest == image.digest,
        "{}",
        String::from_utf8_lossy(&inspected.stderr)
    );
    for entry in std::fs::read_dir(out_dir.join("blobs/sha256"))? {
        let mode = std::os::unix::fs::PermissionsExt::mode(&entry?.metadata()?.permissions());
        assert_eq!(mode & 0o7777 & !0o022, 0o644 & !0o022, "mode {mode:o}");
    }
    // Extracting again over a directory with content is refused.
    let err = fails(env.airgate(&[
        "bundle",
        "extract",
        &s(&bundle),
        "--key",
        &public,
        "--out",
        &s(&out_dir),
    ])?)?;
    assert!(err.contains("already exists"), "{err}");

    // A flipped byte in the last blob: written before its digest is known,
    // then all of it removed.
    let mut bytes = std::fs::read(&bundle)?;
    let (last_at, _, _) = headers(&bytes).last().cloned().context("no entries")?;
    bytes[last_at + 512 + 10] ^= 1;
    let bad = env.path("bad.tar");
    std::fs::write(&bad, &bytes)?;
    let target = env.path("bad-layout");
    let err = fails(env.airgate(&[
        "bundle",
        "extract",
        &s(&bad),
        "--key",
        &public,
        "--out",
        &s(&target),
    ])?)?;
    assert!(
        err.contains("corrupt") && err.contains("nothing was extracted"),
        "{err}"
    );
    assert!(!target.exists());
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    Ok(())
}

/// GNU tar and Python's tarfile, the readers users reach for, list a bundle
/// exactly as airgate does: the dialect it writes means one thing to all.
#[test]
fn gnu_tar_and_python_read_a_bundle_as_airgate_does() -> Result<()> {
    let _guard = read_lock();
    let env = Env::new()?;
    let base = unique_name("gnutar");
    let (_image, bundle, _key, _public) = small_bundle(&env, &base)?;
    let ours: Vec<String> = tar_entries(&bundle)?.into_iter().map(|(n, _)| n).collect();
    let gnu = Command::new("tar").arg("-tf").arg(&bundle).output()?;
    let gnu: Vec<String> = String::from_utf8_lossy(&gnu.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(gnu, ours);
    let py = Command::new("python3")
        .args([
            "-c",
            "import sys, tarfile; [print(m.name, m.size, oct(m.mode), m.uid, m.mtime, m.type) for m in tarfile.open(sys.argv[1])]",
        ])
        .arg(&bundle)
        .output()?;
    let py = String::from_utf8_lossy(&py.stdout);
    assert_eq!(py.lines().count(), ours.len(), "{py}");
    assert!(py.lines().all(|l| l.ends_with(" 0o644 0 0 b'0'")), "{py}");
    Ok(())
}
