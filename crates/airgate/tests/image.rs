//! The controller's own image (`dev/image`: FROM scratch, a static
//! airgate, kustomize and helm) run under runc as a pod would run it: its
//! own non-root user, a read-only root filesystem, the ServiceAccount
//! token mounted where the in-cluster configuration looks. kwok's nodes
//! run no containers, so this is the proof that the image works: it
//! reconciles an App of the perimeter until it is Ready.
//!
//! `dev/test` builds the image first; without it this test fails, naming
//! the command.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::json;

mod tenant;
use tenant::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The token, CA and namespace a pod of `namespace/account` would have
/// mounted, in `dir`; the apiserver's URL.
async fn service_account_dir(
    p: &airgate_testkit::Perimeter,
    namespace: &str,
    account: &str,
    dir: &Path,
) -> Result<String> {
    let kubeconfig = dir.join("kubeconfig");
    p.service_account_kubeconfig(namespace, account, &kubeconfig)
        .await?;
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(&kubeconfig)?)?;
    std::fs::remove_file(&kubeconfig)?;
    let cluster = &config["clusters"][0]["cluster"];
    let ca = match cluster["certificate-authority"].as_str() {
        Some(path) => std::fs::read(path)?,
        None => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(cluster["certificate-authority-data"].as_str().unwrap_or(""))?
        }
    };
    std::fs::write(dir.join("ca.crt"), ca)?;
    std::fs::write(
        dir.join("token"),
        config["users"][0]["user"]["token"].as_str().unwrap_or(""),
    )?;
    std::fs::write(dir.join("namespace"), namespace)?;
    Ok(cluster["server"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn the_image_runs_as_the_controller_under_runc_until_an_app_is_ready() -> Result<()> {
    let _git = GIT.read().await;
    let layout = root().join("target/image/oci/index.json");
    if !layout.is_file() {
        bail!(
            "no image at {}\nhint: dev/image builds it (dev/test does)",
            layout.display()
        );
    }
    let t = Tenant::new("image").await?;
    t.write(
        "envs/prod/settings.yaml",
        &config_map("settings", "from-the-image"),
    )?;
    let commit = t.push("settings")?;
    let sa = t.dir.path().join("serviceaccount");
    std::fs::create_dir_all(&sa)?;
    let server = service_account_dir(&t.p, "airgate-system", "airgate-controller", &sa).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let name = t.ns.clone();
    let log = t.dir.path().join("controller.log");
    let child = Command::new(root().join("dev/run-image"))
        .args(["run", &name, "--server", &server, "--sa-dir"])
        .arg(&sa)
        .args([
            "--",
            "controller",
            "--namespace",
            &t.ns,
            "--lease-namespace",
            "airgate-system",
            "--lease-name",
            &format!("{}-lease", t.ns),
            "--data-dir",
            "/var/lib/airgate",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("dev/run-image")?;
    let c = Controller {
        child,
        log,
        data: t.dir.path().join("unused"),
        metrics: format!("http://127.0.0.1:{port}/metrics"),
    };
    t.create_app("shop", json!({})).await?;
    let result = t
        .until(
            "shop",
            "Ready at the commit, reconciled from the image",
            |a| ready(a) && applied(a).as_deref() == Some(commit.as_str()),
            &c,
        )
        .await;
    let mode = t
        .config_map("settings")
        .await?
        .and_then(|m| m.data)
        .and_then(|d| d.get("mode").cloned());
    drop(c);
    let _ = Command::new(root().join("dev/run-image"))
        .args(["stop", &name])
        .status();
    result?;
    assert_eq!(mode.as_deref(), Some("from-the-image"));
    Ok(())
}
