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
