//! The transfer flow against the perimeter's real registries: images, lock,
//! bundle create / verify / inspect / push, mirror-config.
//!
//! Test images are made from nothing and put into the upstream registry with
//! skopeo; what arrives in the internal registry (TLS, basic auth) is checked
//! with plain HTTP requests, so airgate never grades its own work.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use airgate_testkit::images::{ImageSpec, LayerSpec, SeededImage, seed_image};
use airgate_testkit::unique_name;
use anyhow::{Context, Result, bail};
use common::*;
use sha2::{Digest as _, Sha256};

#[test]
fn round_trip_keeps_every_digest_and_stores_shared_layers_once() -> Result<()> {
    let _guard = read_lock();
    let env = Env::new()?;
    let base = unique_name("rt");
    let shared = layer(100, 300_000);
    let single = seed_image(
        &env.p.upstream_registry,
        &format!("{base}/single"),
        "v1",
        &ImageSpec::single(&[shared, layer(101, 50_000)]),
    )?;
    let multi = seed_image(
        &env.p.upstream_registry,
        &format!("{base}/multi"),
        "v1",
        &ImageSpec::multi(
            &["linux/amd64", "linux/arm64"],
            &[shared, layer(102, 70_000)],
        ),
    )?;
    let lock = env.lock("rt", &[&single.reference, &multi.reference])?;
    let (key, public) = env.key("signer")?;
    let notes = env.path("vulndb.json");
    std::fs::write(&notes, "{\"rules\": []}\n")?;
    let file_arg = format!("{}=db/vulndb.json", s(&notes));
    let bundle = env.bundle("rt", &lock, Some(&key), &["--file", &file_arg])?;

    // Shared layers are stored once; every blob of both images is there.
    let entries = tar_entries(&bundle)?;
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], "airgate-bundle.json");
    assert_eq!(names[1], "airgate-bundle.sig");
    let shared_digest = format!(
        "sha256:{:x}",
        Sha256::digest(airgate_testkit::images::layer_tar(shared)?)
    );
    let shared_path = format!("blobs/sha256/{}", &shared_digest[7..]);
    assert_eq!(
        names.iter().filter(|n| **n == shared_path).count(),
        1,
        "{names:?}"
    );
    for blob in single.blobs.iter().chain(&multi.blobs) {
        assert!(
            names.contains(&format!("blobs/sha256/{}", &blob[7..]).as_str()),
            "{blob} missing"
        );
    }
    assert!(names.contains(&"files/db/vulndb.json"));

    let verified = ok(env.airgate(&["bundle", "verify", &s(&bundle), "--key", &public])?)?;
    assert!(
        verified.contains("verified (signed by sha256:"),
        "{verified}"
    );
    // From a stream too, as from a data diode.
    let piped = env
        .cmd(&["bundle", "verify", "-", "--key", &public])
        .stdin(std::fs::File::open(&bundle)?)
        .output()?;
    assert!(ok(piped)?.contains("standard input: verified"));
    let inspected = ok(env.airgate(&["bundle", "inspect", &s(&bundle), "-o", "json"])?)?;
    assert!(
        inspected.contains(&multi.digest) && inspected.contains("db/vulndb.json"),
        "{inspected}"
    );

    // The layout inside is standard: skopeo reads the multi-platform index from it.
    let skopeo = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}:{}", s(&bundle), multi.reference))
        .output()?;
    assert!(
        skopeo.status.success(),
        "{}",
        String::from_utf8_lossy(&skopeo.stderr)
    );
    assert_eq!(
        format!("sha256:{:x}", Sha256::digest(&skopeo.stdout)),
        multi.digest
    );

    // Pushed over TLS with basic auth, every digest is what upstream had.
    let to = format!("{}/{base}", env.p.internal_registry);
    let out = ok(env.airgate(&env.push_args(&s(&bundle), &to, &public))?)?;
    assert!(out.contains(&multi.digest), "{out}");
    for image in [&single, &multi] {
        let repo = env.internal_repo(&base, &image.reference);
        assert_eq!(
            env.internal_digest(&repo, "v1")?.as_deref(),
            Some(image.digest.as_str())
        );
    }
    // The platform manifests of the index are there by digest too.
    let repo = env.internal_repo(&base, &multi.reference);
    let index = env
        .p
        .internal_manifest(&repo, &multi.digest)?
        .context("index missing")?;
    let index: serde_json::Value = serde_json::from_slice(&index)?;
    for m in index["manifests"].as_array().context("no manifests")? {
        let d = m["digest"].as_str().unwrap_or_default();
        assert_eq!(env.internal_digest(&repo, d)?.as_deref(), Some(d));
    }
    Ok(())
}

#[test]
fn tampered_bundles_are_refused_naming_the_problem_and_nothing_is_pushed() -> Result<()> {
    let _guard = read_lock();
    let env = Env::new()?;
    let base = unique_name("tamper");
    let (image, bundle, _key, public) = small_bundle(&env, &base)?;
    let entries = tar_entries(&bundle)?;
    let layer_digest = &image.blobs[0];
    let layer_path = format!("blobs/sha256/{}", &layer_digest[7..]);

    let mut cases: Vec<(&str, Entries, &str)> = Vec::new();
    let mut flipped = entries.clone();
    if let Some((_, data)) = flipped.iter_mut().find(|(n, _)| *n == layer_path) {
        data[5000] ^= 0x01;
    }
    cases.push(("flipped", flipped, "is corrupt"));
    let mut missing = entries.clone();
    missing.retain(|(n, _)| *n != layer_path);
    cases.push(("missing", missing, "missing"));
    let mut absolute = entries.clone();
    absolute.push(("/etc/airgate-evil".to_string(), b"x".to_vec()));
    cases.push(("absolute", absolute, "absolute path"));
    let mut traversal = entries.clone();
    traversal.push(("files/../../evil".to_string(), b"x".to_vec()));
    cases.push(("traversal", traversal, "'..'"));
    let mut duplicate = entries.clone();
    let dup = duplicate
        .iter()
        .find(|(n, _)| *n == layer_path)
        .cloned()
        .context("no layer")?;
    duplicate.push(dup);
    cases.push(("duplicate", duplicate, "appears twice"));
    let mut edited = entries.clone();
    if let Some((_, data)) = edited.first_mut() {
        let text = String::from_utf8_lossy(data).replace("airgate 0.", "airgate 9.");
        *data = text.into_bytes();
    }
    cases.push(("edited-inventory", edited, "changed after it was signed"));
    let mut unsigned = entries.clone();
    unsigned.retain(|(n, _)| n != "airgate-bundle.sig");
    cases.push(("unsigned", unsigned, "not signed"));

    let to = format!("{}/{base}", env.p.internal_registry);
    let repo = env.internal_repo(&base, &image.reference);
    for (name, entries, expected) in &cases {
        let path = env.path(&format!("{name}.tar"));
        write_raw_tar(&path, entries)?;
        let err = fails(env.airgate(&["bundle", "verify", &s(&path), "--key", &public])?)?;
        assert!(err.contains(expected), "{name}: {err}");
        let piped = env
            .cmd(&["bundle", "verify", "-", "--key", &public])
            .stdin(std::fs::File::open(&path)?)
            .output()?;
        assert!(fails(piped)?.contains(expected), "{name} (stdin)");
        let err = fails(env.airgate(&env.push_args(&s(&path), &to, &public))?)?;
        assert!(err.contains(expected), "{name} (push): {err}");
        assert_eq!(
            env.p.internal_layer_count(&repo),
            0,
            "{name}: a blob was pushed"
        );
    }

    // Truncated in the middle of a blob.
    let truncated = env.path("truncated.tar");
    let bytes = std::fs::read(&bundle)?;
    std::fs::write(&truncated, &bytes[..bytes.len() / 2])?;
    let err = fails(env.airgate(&["bundle", "verify", &s(&truncated), "--key", &public])?)?;
    assert!(
        err.contains("truncated") || err.contains("missing"),
        "{err}"
    );

    // The wrong key.
    let (_, other_public) = env.key("other")?;
    let err = fails(env.airgate(&["bundle", "verify", &s(&bundle), "--key", &other_public])?)?;
    assert!(err.contains("signed with key"), "{err}");
    let err = fails(env.airgate(&env.push_args(&s(&bundle), &to, &other_public))?)?;
    assert!(err.contains("signed with key"), "{err}");

    assert_eq!(
        env.internal_digest(&repo, "v1")?,
        None,
        "a refused push left a tag"
    );
    Ok(())
}

/// An image big enough for a push to be caught in the middle: many layers.
fn big_bundle(env: &Env, base: &str, seed: u64) -> Result<(SeededImage, PathBuf, String)> {
    let layers: Vec<LayerSpec> = (0..32).map(|i| layer(seed + i, 3 << 20)).collect();
    let image = seed_image(
        &env.p.upstream_registry,
        &format!("{base}/big"),
        "v1",
        &ImageSpec::single(&layers),
    )?;
    let lock = env.lock(base, &[&image.reference])?;
    let (key, public) = env.key(&format!("{base}-key"))?;
    let bundle = env.bundle(base, &lock, Some(&key), &[])?;
    Ok((image, bundle, public))
}

/// Starts a push with one job and waits until `min` layers have landed.
fn start_push_and_wait(
    env: &Env,
    bundle: &Path,
    to: &str,
    public: &str,
    repo: &str,
    min: usize,
) -> Result<std::process::Child> {
    let bundle = s(bundle);
    let mut args = env.push_args(&bundle, to, public);
    args.extend(["--jobs", "1"]);
    let mut child = env
        .cmd(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.p.internal_layer_count(repo) < min {
        if let Some(status) = child.try_wait()? {
            bail!("the push ended ({status}) before {min} layers landed");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("no {min} layers landed within 60s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(child)
}

#[test]
fn a_push_killed_midway_completes_on_rerun_without_uploading_again() -> Result<()> {
    let _guard = read_lock();
    let env = Env::new()?;
    let base = unique_name("kill");
    let (image, bundle, public) = big_bundle(&env, &base, 300)?;
    let to = format!("{}/{base}", env.p.internal_registry);
    let repo = env.internal_repo(&base, &image.reference);

    let mut child = start_push_and_wait(&env, &bundle, &to, &public, &repo, 4)?;
    child.kill()?;
    let status = child.wait()?;
    assert!(!status.success(), "the push finished before it was killed");
    let landed = env.p.internal_layer_count(&repo);
    assert!(
        landed < image.blobs.len(),
        "everything landed before the kill"
    );
    // Tags come last: a killed push leaves no tag behind.
    assert_eq!(env.internal_digest(&repo, "v1")?, None);

    // The rest goes up in 1 MiB chunks (three PATCHes per 3 MiB layer), so
    // the chunked upload is checked against the real registry too: it
    // checks each blob's digest when the upload is closed.
    let bundle_s = s(&bundle);
    let mut args = env.push_args(&bundle_s, &to, &public);
    args.extend(["-o", "json", "--chunk-size", "1"]);
    let summary: serde_json::Value = serde_json::from_str(&ok(env.airgate(&args)?)?)?;
    let present = summary["blobsPresent"].as_u64().unwrap_or_default();
    let uploaded = summary["blobsUploaded"].as_u64().unwrap_or_default();
    assert!(present >= 4, "{summary}");
    assert_eq!(present + uploaded, 33, "{summary}"); // 32 layers and a config
    assert_eq!(
        env.internal_digest(&repo, "v1")?.as_deref(),
        Some(image.digest.as_str())
    );
    Ok(())
}

#[test]
fn a_push_survives_the_internal_registry_restarting() -> Result<()> {
    let _guard = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    let env = Env::new()?;
    let base = unique_name("restart");
    let (image, bundle, public) = big_bundle(&env, &base, 400)?;
    let to = format!("{}/{base}", env.p.internal_registry);
    let repo = env.internal_repo(&base, &image.reference);

    let child = start_push_and_wait(&env, &bundle, &to, &public, &repo, 3)?;
    env.p.restart("registry-internal")?;
    let out = child.wait_with_output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        env.internal_digest(&repo, "v1")?.as_deref(),
        Some(image.digest.as_str())
    );
    // 32 layers and a config; the import's statement, inventory,
    // signature and empty config.
    assert_eq!(env.p.internal_layer_count(&repo), 33 + 4);
    Ok(())
}

#[test]
fn a_delta_bundle_pushes_onto_the_earlier_content_and_is_refused_without_it() -> Result<()> {
    let _guard = read_lock();
    let env = Env::new()?;
    let base = unique_name("delta");
    let repo_path = format!("{base}/app");
    let v1 = seed_image(
        &env.p.upstream_registry,
        &repo_path,
        "v1",
        &ImageSpec::single(&[layer(500, 200_000), layer(501, 100_000)]),
    )?;
    let v2 = seed_image(
        &env.p.upstream_registry,
        &repo_path,
        "v2",
        &ImageSpec::single(&[layer(500, 200_000), layer(501, 100_000), layer(502, 50_000)]),
    )?;
    let (key, public) = env.key("delta-key")?;
    let first = env.bundle(
        "first",
        &env.lock("first", &[&v1.reference])?,
        Some(&key),
        &[],
    )?;
    let first_s = s(&first);
    let delta = env.bundle(
        "second",
        &env.lock("second", &[&v2.reference])?,
        Some(&key),
        &["--since", &first_s],
    )?;
    let inspected: serde_json::Value = serde_json::from_str(&ok(env.airgate(&[
        "bundle",
        "inspect",
        &s(&delta),
        "-o",
        "json",
    ])?)?)?;
    let left_out = inspected["inventory"]["blobs"]
        .as_array()
        .context("no blobs")?
        .iter()
        .filter(|b| b["carried"] == false)
        .count();
    assert_eq!(left_out, 2, "{inspected}");
    ok(env.airgate(&["bundle", "verify", &s(&delta), "--key", &public])?)?;

    // Onto a registry path without the earlier content: refused, nothing written.
    let bare = format!("{}/{base}-bare", env.p.internal_registry);
    let err = fails(env.airgate(&env.push_args(&s(&delta), &bare, &public))?)?;
    assert!(err.contains("2 blobs it leaves out are not in"), "{err}");
    let bare_repo = env.internal_repo(&format!("{base}-bare"), &v1.reference);
    assert_eq!(env.p.internal_layer_count(&bare_repo), 0);

    // Onto the earlier push: completes with the same digests.
    let to = format!("{}/{base}", env.p.internal_registry);
    ok(env.airgate(&env.push_args(&first_s, &to, &public))?)?;
    ok(env.airgate(&env.push_args(&s(&delta), &to, &public))?)?;
    let repo = env.internal_repo(&base, &v1.reference);
    assert_eq!(
        env.internal_digest(&repo, "v1")?.as_deref(),
        Some(v1.digest.as_str())
    );
    assert_eq!(
        env.internal_digest(&repo, "v2")?.as_deref(),
        Some(v2.digest.as_str())
    );
    Ok(())
}

#[test]
fn bad_registries_and_credentials_are_named_and_nothing_is_written() -> Result<()> {
    let _guard = read_lock();
    let env = Env::new()?;
    let base = unique_name("creds");
    let (image, bundle, _key, public) = small_bundle(&env, &base)?;

    // An unknown registry is named.
    let manifests = env.path("unknown");
    std::fs::create_dir_all(&manifests)?;
    std::fs::write(
        manifests.join("p.yaml"),
        "kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: \"127.0.0.1:1/nothing/here:v1\"}]}\n",
    )?;
    let err = fails(env.airgate(&["lock", &s(&manifests), "--out", &s(&env.path("u.lock"))])?)?;
    assert!(err.contains("127.0.0.1:1"), "{err}");

    // Without the CA, TLS fails and says what to do.
    let to = format!("{}/{base}", env.p.internal_registry);
    let bundle_s = s(&bundle);
    let err = fails(env.airgate(&["bundle", "push", &bundle_s, "--to", &to, "--key", &public])?)?;
    assert!(err.contains("--ca-file"), "{err}");

    // A refused login is named, and leaves nothing behind.
    let wrong = tempfile::tempdir()?;
    std::fs::write(
        wrong.path().join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"username": "airgate", "password": "wrong"}}}}}}"#,
            env.p.internal_registry
        ),
    )?;
    let out = env
        .cmd(&env.push_args(&bundle_s, &to, &public))
        .env("DOCKER_CONFIG", wrong.path())
        .output()?;
    let err = fails(out)?;
    assert!(
        err.contains("refused access") && err.contains("401"),
        "{err}"
    );
    assert!(
        !err.contains("wrong"),
        "the password leaked into the message: {err}"
    );
    let repo = env.internal_repo(&base, &image.reference);
    assert_eq!(env.internal_digest(&repo, "v1")?, None);

    // No credentials at all: the hint names the Docker config file.
    let empty = tempfile::tempdir()?;
    let out = env
        .cmd(&env.push_args(&bundle_s, &to, &public))
        .env("DOCKER_CONFIG", empty.path())
        .output()?;
    let err = fails(out)?;
    assert!(err.contains("add credentials"), "{err}");
    Ok(())
}

#[test]
fn images_come_from_kustomize_overlays_and_running_pods() -> Result<()> {
    let _guard = read_lock();
    let env = Env::new()?;
    let dir = env.path("overlay");
    std::fs::create_dir_all(dir.join("base"))?;
    std::fs::write(
        dir.join("base/deploy.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx:1.27}]}\n",
    )?;
    std::fs::write(
        dir.join("base/kustomization.yaml"),
        "resources: [deploy.yaml]\n",
    )?;
    std::fs::write(
        dir.join("kustomization.yaml"),
        "resources: [base]\nimages: [{name: nginx, newName: registry.internal:5000/library/nginx, newTag: '1.28'}]\n",
    )?;
    let kustomize = s(&env.p.kustomize);
    let out = ok(env.airgate(&["images", &s(&dir), "--kustomize", &kustomize])?)?;
    assert_eq!(out, "registry.internal:5000/library/nginx:1.28\n");

    // Malformed YAML names the file and the line.
    let bad = env.path("bad.yaml");
    std::fs::write(&bad, "kind: Pod\nmetadata:\n  name: p\n  labels: {a: [1}\n")?;
    let err = fails(env.airgate(&["images", &s(&bad)])?)?;
    assert!(err.contains("bad.yaml") && err.contains("line 4"), "{err}");

    // The images of the running pods, from the cluster.
    let ns = unique_name("images");
    let kubectl = |args: &[&str]| -> Result<()> {
        let out = Command::new(&env.p.kubectl)
            .args(args)
            .env("KUBECONFIG", &env.p.kubeconfig)
            .output()?;
        if !out.status.success() {
            bail!("kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    kubectl(&["create", "namespace", &ns])?;
    kubectl(&[
        "-n",
        &ns,
        "create",
        "deployment",
        "probe",
        "--image=quay.io/airgate/probe:v7",
    ])?;
    kubectl(&[
        "-n",
        &ns,
        "rollout",
        "status",
        "deployment/probe",
        "--timeout=60s",
    ])?;
    let kubeconfig = s(&env.p.kubeconfig);
    let out = ok(env.airgate(&["images", "--cluster", "--kubeconfig", &kubeconfig])?)?;
    kubectl(&["delete", "namespace", &ns, "--wait=false"])?;
    assert!(
        out.lines().any(|l| l == "quay.io/airgate/probe:v7"),
        "{out}"
    );
    Ok(())
}

#[test]
fn mirror_config_sends_pulls_of_the_original_names_to_the_internal_registry() -> Result<()> {
    let _guard = read_lock();
    let env = Env::new()?;
    let base = unique_name("mirror");
    let (image, bundle, _key, public) = small_bundle(&env, &base)?;
    let to = format!("{}/{base}", env.p.internal_registry);
    let bundle_path = s(&bundle);
    let mut push = env.push_args(&bundle_path, &to, &public);
    push.extend(["--layout", "flat"]);
    ok(env.airgate(&push)?)?;

    // CRI-O's format is the one skopeo reads too: pull the image by a name
    // only the mirror can serve (the flat layout maps any registry's paths
    // onto the prefix), and get the pushed digest back.
    let crio = env.path("crio");
    let ca = s(&env.p.internal_registry_ca);
    ok(env.airgate(&[
        "mirror-config",
        "--layout",
        "flat",
        "--registry",
        &to,
        "--format",
        "crio",
        "--ca-file",
        &ca,
        "--mirror-of",
        "registry.invalid:5000",
        "--out",
        &s(&crio),
    ])?)?;
    let certs = crio.join("certs.d").join(&env.p.internal_registry);
    assert!(certs.join("ca.crt").is_file());
    let path_in_registry = image
        .reference
        .split_once('/')
        .map(|(_, r)| r)
        .unwrap_or_default();
    let out = Command::new("skopeo")
        .arg("--registries-conf")
        .arg(crio.join("registries.conf"))
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(&certs)
        .arg("--authfile")
        .arg(env.docker_config.path().join("config.json"))
        .arg(format!("docker://registry.invalid:5000/{path_in_registry}"))
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        format!("sha256:{:x}", Sha256::digest(&out.stdout)),
        image.digest
    );

    // containerd and k3s files are well-formed TOML and YAML.
    let containerd = env.path("containerd");
    ok(env.airgate(&[
        "mirror-config",
        "--registry",
        &to,
        "--format",
        "containerd",
        "--ca-file",
        &ca,
        "--out",
        &s(&containerd),
    ])?)?;
    for upstream in ["docker.io", "quay.io", "ghcr.io", "registry.k8s.io"] {
        let file = containerd.join(upstream).join("hosts.toml");
        let parsed = Command::new("python3")
            .args(["-c", "import sys, tomllib; d = tomllib.load(open(sys.argv[1], 'rb')); print(list(d['host'])[0])"])
            .arg(&file)
            .output()?;
        assert!(
            parsed.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&parsed.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&parsed.stdout).trim(),
            format!("https://{}/v2/{base}/{upstream}", env.p.internal_registry)
        );
    }
    let k3s = ok(env.airgate(&["mirror-config", "--registry", &to, "--format", "k3s"])?)?;
    let yaml: serde_json::Value = serde_saphyr::from_str(&k3s)?;
    assert_eq!(
        yaml["mirrors"]["docker.io"]["rewrite"]["^(.*)$"],
        format!("{base}/docker.io/$1")
    );
    Ok(())
}
