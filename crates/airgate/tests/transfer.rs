//! The transfer flow against the perimeter's real registries: images, lock,
//! bundle create / verify / inspect / push, mirror-config.

use std::path::Path;
use std::process::{Command, Output};

use airgate_testkit::images::{ImageSpec, LayerSpec, seed_image};
use airgate_testkit::{Perimeter, unique_name};
use anyhow::{Context, Result, bail};

/// Runs the airgate binary with the perimeter's Docker config.
fn airgate(docker_config: &Path, args: &[&str]) -> Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_airgate"))
        .args(args)
        .env("DOCKER_CONFIG", docker_config)
        .output()
        .context("running airgate")
}

fn ok(out: Output) -> Result<String> {
    if !out.status.success() {
        bail!(
            "airgate failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn fails(out: Output) -> Result<String> {
    if out.status.success() {
        bail!(
            "airgate succeeded but should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

fn layer(seed: u64, size: usize) -> LayerSpec {
    LayerSpec { seed, size }
}

#[test]
fn lock_pins_single_and_multi_platform_images_to_their_registry_digests() -> Result<()> {
    let p = Perimeter::get();
    let cfg = p.docker_config()?;
    let repo = unique_name("lock");
    let single = seed_image(
        &p.upstream_registry,
        &format!("{repo}/app"),
        "v1",
        &ImageSpec::single(&[layer(1, 4096)]),
    )?;
    let multi = seed_image(
        &p.upstream_registry,
        &format!("{repo}/multi"),
        "v2",
        &ImageSpec::multi(&["linux/amd64", "linux/arm64"], &[layer(2, 4096)]),
    )?;
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("app.yaml"),
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app}}\nspec:\n  template:\n    spec:\n      containers:\n      - {{name: a, image: \"{}\"}}\n      - {{name: b, image: \"{}\"}}\n",
            single.reference, multi.reference
        ),
    )?;
    let lock = dir.path().join("airgate.lock");
    ok(airgate(
        cfg.path(),
        &[
            "lock",
            &dir.path().display().to_string(),
            "-o",
            &lock.display().to_string(),
        ],
    )?)?;
    let text = std::fs::read_to_string(&lock)?;
    assert!(text.contains(&single.digest), "{text}");
    assert!(text.contains(&multi.digest), "{text}");
    assert!(text.contains("linux/arm64"), "{text}");
    assert!(
        text.contains("application/vnd.oci.image.index.v1+json"),
        "{text}"
    );

    // A tag that does not exist is named in the error, and no lock is written.
    std::fs::write(
        dir.path().join("app.yaml"),
        format!(
            "kind: Pod\nmetadata: {{name: p}}\nspec: {{containers: [{{name: a, image: \"{}/{repo}/app:nope\"}}]}}\n",
            p.upstream_registry
        ),
    )?;
    let missing = dir.path().join("missing.lock");
    let err = fails(airgate(
        cfg.path(),
        &[
            "lock",
            &dir.path().display().to_string(),
            "-o",
            &missing.display().to_string(),
        ],
    )?)?;
    assert!(err.contains(&format!("{repo}/app:nope")), "{err}");
    assert!(!missing.exists());
    Ok(())
}
