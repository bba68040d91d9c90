//! Pushing into the internal registry as the security review attacked it:
//! two sources that would land on one path, and credentials that live in a
//! credential helper instead of the config file.

mod common;

use std::os::unix::fs::PermissionsExt;

use airgate_testkit::images::{ImageSpec, seed_image};
use airgate_testkit::unique_name;
use anyhow::Result;
use common::*;

/// `127.0.0.1:A/team/app:2.1` and `127.0.0.1:B/team/app:2.1` once both landed
/// on `PREFIX/team/app:2.1` with exit 0. The upstream registry answers as
/// `127.0.0.1:PORT` and as `localhost:PORT`: two source registries here.
#[test]
fn two_sources_never_land_on_one_path() -> Result<()> {
    let _guard = read_lock();
    let env = Env::new()?;
    let base = unique_name("collide");
    let path = format!("{base}/team/app");
    let a = seed_image(
        &env.p.upstream_registry,
        &path,
        "2.1",
        &ImageSpec::single(&[layer(700, 10_000)]),
    )?;
    let b = seed_image(
        &env.p.upstream_registry,
        &path,
        "2.2",
        &ImageSpec::single(&[layer(701, 10_000)]),
    )?;
    let port = env
        .p
        .upstream_registry
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .unwrap_or_default();
    let b_other = b.reference.replacen("127.0.0.1", "localhost", 1);
    assert!(
        b_other.starts_with(&format!("localhost:{port}/")),
        "{b_other}"
    );
    let lock = env.lock("collide", &[&a.reference, &b_other])?;
    let (key, public) = env.key("collide-key")?;
    let bundle = env.bundle("collide", &lock, Some(&key), &[])?;
    let to = format!("{}/{base}", env.p.internal_registry);

    // The flat layout would merge them: refused, naming both, nothing written.
    let bundle_path = s(&bundle);
    let mut flat = env.push_args(&bundle_path, &to, &public);
    flat.extend(["--layout", "flat"]);
    let err = fails(env.airgate(&flat)?)?;
    assert!(
        err.contains(&format!("127.0.0.1:{port}/{path}"))
            && err.contains(&format!("localhost:{port}/{path}")),
        "{err}"
    );
    assert_eq!(env.p.internal_layer_count(&format!("{base}/{path}")), 0);

    // The default layout keeps them apart.
    ok(env.airgate(&env.push_args(&s(&bundle), &to, &public))?)?;
    let repo_a = format!("{base}/127.0.0.1_{port}/{path}");
    let repo_b = format!("{base}/localhost_{port}/{path}");
    assert_eq!(
        env.internal_digest(&repo_a, "2.1")?.as_deref(),
        Some(a.digest.as_str())
    );
    assert_eq!(
        env.internal_digest(&repo_b, "2.2")?.as_deref(),
        Some(b.digest.as_str())
    );
    Ok(())
}

/// `credHelpers` in the Docker config were ignored, so a push answered 401.
/// The helper is a real program on PATH, run as Docker runs it.
#[test]
fn a_credential_helper_named_in_the_docker_config_is_run() -> Result<()> {
    let _guard = read_lock();
    let env = Env::new()?;
    let base = unique_name("helper");
    let (image, bundle, _key, public) = small_bundle(&env, &base)?;
    let bin = env.path("helper-bin");
    std::fs::create_dir_all(&bin)?;
    let helper = bin.join("docker-credential-airgatetest");
    let password_file = env.p.internal_registry_password_file.clone();
    let calls = env.path("helper-calls");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\necho \"$server\" >> {calls}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"%s\",\"Secret\":\"%s\"}}' \"$server\" {user} \"$(cat {password})\"\n",
            calls = s(&calls),
            user = env.p.internal_registry_user,
            password = s(&password_file),
        ),
    )?;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755))?;
    let config = env.path("helper-config");
    std::fs::create_dir_all(&config)?;
    std::fs::write(
        config.join("config.json"),
        serde_json::to_vec(&serde_json::json!({
            "credHelpers": {env.p.internal_registry.clone(): "airgatetest"}
        }))?,
    )?;
    let to = format!("{}/{base}", env.p.internal_registry);
    let path = format!("{}:{}", s(&bin), std::env::var("PATH").unwrap_or_default());
    let out = env
        .cmd(&env.push_args(&s(&bundle), &to, &public))
        .env("DOCKER_CONFIG", &config)
        .env("PATH", path)
        .output()?;
    ok(out)?;
    assert_eq!(
        std::fs::read_to_string(&calls)?.trim(),
        env.p.internal_registry,
        "the helper was asked once, for the internal registry"
    );
    let repo = env.internal_repo(&base, &image.reference);
    assert_eq!(
        env.internal_digest(&repo, "v1")?.as_deref(),
        Some(image.digest.as_str())
    );
    Ok(())
}

/// Runs oras (the OCI 1.1 referrers client) with `args`; its stdout.
fn oras(env: &Env, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(&env.p.oras)
        .args(args)
        .current_dir(env.dir.path())
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "oras {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Signatures and attestations were left behind, so signature checks inside
/// the perimeter failed. An SBOM attached with OCI 1.1's `subject` (oras
/// attach; this registry has no referrers API, so it is listed under the
/// referrers tag) and a cosign-style `.sig` tag are locked, carried and
/// pushed with their digests, and oras finds the SBOM in the internal
/// registry.
#[test]
fn signatures_and_attestations_cross_with_the_image() -> Result<()> {
    let _guard = read_lock();
    let env = Env::new()?;
    let base = unique_name("refs");
    let image = seed_image(
        &env.p.upstream_registry,
        &format!("{base}/app"),
        "v1",
        &ImageSpec::single(&[layer(800, 10_000)]),
    )?;
    std::fs::write(env.path("sbom.json"), r#"{"spdxVersion":"SPDX-2.3"}"#)?;
    oras(
        &env,
        &[
            "attach",
            "--plain-http",
            "--artifact-type",
            "application/spdx+json",
            &image.reference,
            "sbom.json:application/spdx+json",
        ],
    )?;
    let sig_tag = format!("{}.sig", image.digest.replacen(':', "-", 1));
    let upstream_repo = image
        .reference
        .rsplit_once(':')
        .map(|(r, _)| r)
        .unwrap_or_default();
    // A real cosign signature (key pair, offline: no transparency log),
    // stored as cosign stores it without the referrers API: the .sig tag.
    cosign(&env, &["generate-key-pair"])?;
    cosign(
        &env,
        &[
            "sign",
            "--key",
            "cosign.key",
            "--tlog-upload=false",
            "--allow-http-registry",
            "--yes",
            &format!("{upstream_repo}@{}", image.digest),
        ],
    )?;
    let discovered: serde_json::Value = serde_json::from_str(&oras(
        &env,
        &["discover", "--plain-http", "-o", "json", &image.reference],
    )?)?;
    let sbom_digest = discovered["manifests"][0]["digest"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(sbom_digest.starts_with("sha256:"), "{discovered}");

    let lock = env.lock("refs", &[&image.reference])?;
    let locked = std::fs::read_to_string(&lock)?;
    assert!(locked.contains(&sbom_digest), "{locked}");
    assert!(locked.contains(&sig_tag), "{locked}");
    let (key, public) = env.key("refs-key")?;
    let bundle = env.bundle("refs", &lock, Some(&key), &[])?;
    let to = format!("{}/{base}", env.p.internal_registry);
    ok(env.airgate(&env.push_args(&s(&bundle), &to, &public))?)?;

    let repo = env.internal_repo(&base, &image.reference);
    let config = env.docker_config.path().join("config.json");
    let config = s(&config);
    let ca = s(&env.p.internal_registry_ca);
    let internal_ref = format!("{}/{repo}@{}", env.p.internal_registry, image.digest);
    let found: serde_json::Value = serde_json::from_str(&oras(
        &env,
        &[
            "discover",
            "--ca-file",
            &ca,
            "--registry-config",
            &config,
            "-o",
            "json",
            &internal_ref,
        ],
    )?)?;
    // The carried SBOM, and the import push left (oras sees both).
    let listed: Vec<(&str, &str)> = found["manifests"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| Some((m["artifactType"].as_str()?, m["digest"].as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(listed.len(), 2, "{found}");
    assert!(
        listed.contains(&("application/spdx+json", sbom_digest.as_str())),
        "{found}"
    );
    assert!(
        listed
            .iter()
            .any(|(t, _)| *t == airgate_core::provenance::ARTIFACT_TYPE),
        "{found}"
    );
    let sig_ref = format!("{}/{repo}:{sig_tag}", env.p.internal_registry);
    let sig = oras(
        &env,
        &[
            "manifest",
            "fetch",
            "--ca-file",
            &ca,
            "--registry-config",
            &config,
            "--descriptor",
            &sig_ref,
        ],
    )?;
    let upstream_sig = oras(
        &env,
        &[
            "manifest",
            "fetch",
            "--plain-http",
            "--descriptor",
            &format!("{upstream_repo}:{sig_tag}"),
        ],
    )?;
    let digest_of = |d: &str| -> String {
        serde_json::from_str::<serde_json::Value>(d)
            .map(|v| v["digest"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    assert_eq!(digest_of(&sig), digest_of(&upstream_sig));
    assert!(!digest_of(&sig).is_empty());
    // cosign, the real consumer, verifies the carried signature inside.
    let verified = std::process::Command::new(&env.p.cosign)
        .args([
            "verify",
            "--key",
            "cosign.pub",
            "--insecure-ignore-tlog=true",
            &internal_ref,
        ])
        .current_dir(env.dir.path())
        .env("DOCKER_CONFIG", env.docker_config.path())
        .env("SSL_CERT_FILE", &env.p.internal_registry_ca)
        .output()?;
    assert!(
        verified.status.success(),
        "cosign verify: {}",
        String::from_utf8_lossy(&verified.stderr)
    );
    Ok(())
}

/// Runs cosign with `args` in the test's directory (no password on keys).
fn cosign(env: &Env, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(&env.p.cosign)
        .args(args)
        .current_dir(env.dir.path())
        .env("COSIGN_PASSWORD", "")
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "cosign {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
