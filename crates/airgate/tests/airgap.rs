//! Air-gap discipline: every command that runs inside the perimeter, traced
//! for connection attempts (see `airgate_testkit::airgap`), reaches nothing
//! but the endpoints configured for the run: the internal registry and the
//! apiserver. No DNS lookup, no other address. The controller's half (a
//! full sync, drift correction and prune) is in `reconcile.rs`.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use airgate_testkit::airgap;
use airgate_testkit::unique_name;
use anyhow::{Context, Result};
use common::*;

/// Runs airgate with `args` under the tracer; returns the violations.
fn traced(env: &Env, name: &str, args: &[&str], allowed: &[SocketAddr]) -> Result<Vec<String>> {
    let trace = env.path(&format!("{name}.trace"));
    let out = airgap::traced(Path::new(env!("CARGO_BIN_EXE_airgate")), &trace)
        .args(args)
        .env("DOCKER_CONFIG", env.docker_config.path())
        .env("KUBECONFIG", &env.p.kubeconfig)
        .output()
        .context("running strace (apt-get install strace)")?;
    if !trace.exists() {
        anyhow::bail!(
            "strace wrote no trace: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let attempts = airgap::attempts(&trace)?;
    Ok(airgap::violations(&attempts, allowed)
        .into_iter()
        .map(|v| format!("airgate {name}: {v}"))
        .collect())
}

#[test]
fn perimeter_commands_reach_only_the_configured_endpoints() -> Result<()> {
    let _guard = read_lock();
    let env = Env::new()?;
    let base = unique_name("airgap");
    let (_image, bundle, _key, public) = small_bundle(&env, &base)?;
    let bundle = s(&bundle);
    let registry = airgap::endpoint(&env.p.internal_registry)?;
    let kubeconfig = std::fs::read_to_string(&env.p.kubeconfig)?;
    let server = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .context("no server in the kubeconfig")?;
    let apiserver = airgap::endpoint(server.trim())?;
    let allowed = [registry, apiserver];

    let manifests = env.path("manifests");
    std::fs::create_dir_all(manifests.join("overlay"))?;
    std::fs::write(
        manifests.join("pod.yaml"),
        "kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: registry.internal:5000/a:1}]}\n",
    )?;
    std::fs::write(
        manifests.join("overlay/kustomization.yaml"),
        "resources: [../pod.yaml]\nnamePrefix: x-\n",
    )?;
    let extracted = s(&env.path("extracted"));
    let to = format!("{}/{base}", env.p.internal_registry);
    let kustomize = s(&env.p.kustomize);
    let runs: Vec<(&str, Vec<&str>)> = vec![
        (
            "bundle verify",
            vec!["bundle", "verify", &bundle, "--key", &public],
        ),
        (
            "bundle extract",
            vec![
                "bundle", "extract", &bundle, "--key", &public, "--out", &extracted,
            ],
        ),
        ("bundle push", env.push_args(&bundle, &to, &public)),
        (
            "mirror-config",
            vec!["mirror-config", "--registry", &to, "--format", "containerd"],
        ),
        (
            "images",
            vec![
                "images",
                manifests.to_str().unwrap_or_default(),
                "--kustomize",
                &kustomize,
            ],
        ),
        ("get apps", vec!["get", "apps", "-A"]),
        (
            "describe app",
            vec!["describe", "app", "nothing-here", "-n", "default"],
        ),
    ];
    let mut found = Vec::new();
    for (name, args) in &runs {
        found.extend(traced(&env, name, args, &allowed)?);
    }
    assert!(found.is_empty(), "{found:#?}");

    // The check can fail: a command sent to an address nobody configured
    // (127.0.0.2 is this machine; the port answers nothing) is named.
    let lock_dir = env.path("elsewhere");
    std::fs::create_dir_all(&lock_dir)?;
    std::fs::write(
        lock_dir.join("pod.yaml"),
        "kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: 127.0.0.2:9/x/y:1}]}\n",
    )?;
    let out = s(&env.path("elsewhere.lock"));
    let control = traced(
        &env,
        "lock (control)",
        &["lock", lock_dir.to_str().unwrap_or_default(), "--out", &out],
        &allowed,
    )?;
    assert!(
        control.iter().any(|v| v.contains("127.0.0.2:9")),
        "the tracer missed a connection: {control:?}"
    );
    Ok(())
}
