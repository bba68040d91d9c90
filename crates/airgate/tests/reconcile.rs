//! The controller against the perimeter: Git over HTTPS with basic auth, the
//! apiserver with controller-manager, scheduler and kwok nodes.
//!
//! The controller runs as a process of the `airgate` binary with the token
//! of the ServiceAccount `airgate install` creates, so every test also
//! proves that the install's RBAC is enough, and no more is needed. What it
//! did is checked in the cluster with the admin identity, and in the sync
//! record store it writes.

use airgate_core::status::{ConditionType, RecordKind, RecordResult};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use airgate_kube::app::App;
use airgate_store::Store;
use airgate_testkit::{Perimeter, eventually};
use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

mod tenant;
use tenant::*;

#[tokio::test]
async fn an_app_is_created_updated_and_pruned_from_git_and_every_sync_is_recorded() -> Result<()> {
    let _git = GIT.read().await;
    let t = Tenant::new("ctl-life").await?;
    t.write(
        "envs/prod/web.yaml",
        &deployment(&image("1.2.3"), None, false),
    )?;
    t.write("envs/prod/settings.yaml", &config_map("settings", "a"))?;
    let first = t.push("shop 1.2.3")?;
    let c = t.start(json!({})).await?;
    let app = t
        .until(
            "shop",
            "Ready at the first commit",
            |a| ready(a) && applied(a).as_deref() == Some(first.as_str()),
            &c,
        )
        .await?;
    let status = app.status.clone().unwrap_or_default();
    assert_eq!(status.inventory.len(), 2, "{:?}", status.inventory);
    let web = t.deployment("web").await?.context("no Deployment web")?;
    assert_eq!(image_of(&web), image("1.2.3"));
    let labels = web.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("airgate.dev/app-name").map(String::as_str),
        Some("shop")
    );

    // Update: a new image and an added env var (1.2.3 -> 1.2.4).
    let mark = t.p.audit_mark()?;
    t.write(
        "envs/prod/web.yaml",
        &deployment(&image("1.2.4"), Some(("LOG_LEVEL", "debug")), false),
    )?;
    let second = t.push("shop 1.2.4")?;
    t.until(
        "shop",
        "Ready at the second commit",
        |a| ready(a) && applied(a).as_deref() == Some(second.as_str()),
        &c,
    )
    .await?;
    // The rollout was followed by the watch airgate already holds on the
    // Deployments: its events carry the status, so none was read.
    let reads: Vec<String> =
        t.p.audit_since(&mark)?
            .iter()
            .filter(|e| {
                e["user"]["username"] == CONTROLLER_USER
                    && e["objectRef"]["namespace"] == t.ns.as_str()
                    && e["objectRef"]["resource"] == "deployments"
                    && (e["verb"] == "get" || e["verb"] == "list")
            })
            .map(|e| format!("{} {}", e["verb"], e["requestURI"]))
            .collect();
    assert!(reads.is_empty(), "the rollout was read: {reads:#?}");
    let web = t.deployment("web").await?.context("no Deployment web")?;
    assert_eq!(image_of(&web), image("1.2.4"));
    let env = web
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.first().and_then(|c| c.env.clone()))
        .unwrap_or_default();
    assert!(
        env.iter()
            .any(|e| e.name == "LOG_LEVEL" && e.value.as_deref() == Some("debug"))
    );

    // Prune: the ConfigMap leaves Git, so it leaves the cluster.
    t.remove("envs/prod/settings.yaml")?;
    let third = t.push("drop settings")?;
    t.until(
        "shop",
        "Ready at the third commit",
        |a| ready(a) && applied(a).as_deref() == Some(third.as_str()),
        &c,
    )
    .await?;
    assert!(
        t.config_map("settings").await?.is_none(),
        "settings was not pruned"
    );

    // The record of every sync: commit, author, objects and images.
    let key = format!("{}/shop", t.ns);
    let records = c.records(&key)?;
    let syncs: Vec<_> = records
        .iter()
        .filter(|r| r.kind == RecordKind::Sync)
        .collect();
    assert_eq!(syncs.len(), 3, "{records:#?}");
    assert_eq!(syncs[0].revision, third);
    assert_eq!(syncs[0].author.name, "Perimeter Test");
    assert_eq!(syncs[0].message.trim(), "drop settings");
    assert!(
        syncs[0]
            .objects
            .iter()
            .any(|o| o.object.contains("ConfigMap") && o.action == "deleted")
    );
    assert_eq!(syncs[1].images, [image("1.2.4")]);
    assert!(
        syncs[1]
            .objects
            .iter()
            .any(|o| o.object.contains("Deployment") && o.action == "configured")
    );
    assert!(syncs[2].objects.iter().all(|o| o.action == "created"));
    assert!(Store::open(&c.data.join("records.db"))?.verify_chain()? >= 3);

    // Steady state: nothing new in Git means no writes, no dry-runs.
    let before = t.apps().await?.get("shop").await?.metadata.resource_version;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = t.apps().await?.get("shop").await?.metadata.resource_version;
    assert_eq!(before, after, "the App was written in steady state");
    assert_eq!(
        c.records(&key)?.len(),
        records.len(),
        "a sync ran in steady state"
    );

    // What operators see: get, describe, metrics, JSON logs.
    let out = airgate()
        .args(["get", "apps", "-n", &t.ns, "--kubeconfig"])
        .arg(&t.p.kubeconfig)
        .output()?;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains(&third[..12]) && table.contains("True"),
        "{table}"
    );
    let out = airgate()
        .args(["get", "apps", "-A", "-o", "json", "--kubeconfig"])
        .arg(&t.p.kubeconfig)
        .output()?;
    let list: Value = serde_json::from_slice(&out.stdout)?;
    assert!(list["items"].as_array().is_some_and(|items| {
        items
            .iter()
            .any(|a| a["metadata"]["namespace"] == t.ns.as_str())
    }));
    let out = airgate()
        .args(["describe", "app", "shop", "-n", &t.ns, "--kubeconfig"])
        .arg(&t.p.kubeconfig)
        .output()?;
    let described = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "Conditions:",
        "Ready",
        "Recent syncs:",
        "Synced",
        "Deployment/",
        &third,
    ] {
        assert!(
            described.contains(expected),
            "{expected} missing from:\n{described}"
        );
    }
    let metrics =
        t.p.https_client()?
            .get(&c.metrics)
            .send()
            .await?
            .text()
            .await?;
    assert!(
        metrics.contains("airgate_syncs_total{result=\"succeeded\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("airgate_leader 1"), "{metrics}");
    for per_app in [
        format!(
            "airgate_app_ready{{name=\"shop\",namespace=\"{}\"}} 1",
            t.ns
        ),
        format!(
            "airgate_app_frozen{{name=\"shop\",namespace=\"{}\"}} 0",
            t.ns
        ),
        "airgate_sync_duration_seconds_count 3".to_string(),
        "airgate_render_duration_seconds_count".to_string(),
        "process_resident_memory_bytes".to_string(),
        "process_open_fds".to_string(),
    ] {
        assert!(metrics.contains(&per_app), "{per_app} not in {metrics}");
    }
    // Prometheus' own lint rules (client_golang's promlint) find nothing.
    assert_eq!(promlint(&t.p, &metrics)?, "", "{metrics}");
    let log = c.log();
    let synced: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["msg"] == "synced")
        .collect();
    assert_eq!(synced.len(), 3, "{log}");
    // Every line of a pass carries the pass's fields, as log tools expect.
    let last = &synced[2];
    assert_eq!(
        (
            &last["level"],
            &last["controller"],
            &last["namespace"],
            &last["name"],
            &last["revision"]
        ),
        (
            &json!("info"),
            &json!("app"),
            &json!(t.ns),
            &json!("shop"),
            &json!(third)
        ),
        "{last}"
    );
    assert!(
        last["ts"].as_str().is_some_and(|t| t.ends_with('Z'))
            && last["reconcileID"]
                .as_str()
                .is_some_and(|id| !id.is_empty())
            && last["reconcileID"] != synced[1]["reconcileID"],
        "{last}"
    );
    Ok(())
}

#[tokio::test]
async fn drift_is_corrected_and_recorded_with_the_field_manager_that_made_it() -> Result<()> {
    let _git = GIT.read().await;
    let t = Tenant::new("ctl-drift").await?;
    t.write("envs/prod/settings.yaml", &config_map("settings", "a"))?;
    t.push("settings")?;
    let c = t
        .ready(json!({"drift": "correct", "interval": "1h"}))
        .await?;

    kubectl(
        &t.p,
        &[
            "-n",
            &t.ns,
            "patch",
            "configmap",
            "settings",
            "--type=merge",
            "-p",
            r#"{"data":{"mode":"edited"}}"#,
        ],
    )?;
    let key = format!("{}/shop", t.ns);
    // The record is written once the correction's apply has answered, so
    // the object can be back a moment before its record is: wait for both.
    let drift: Vec<_> = eventually(
        "the edit to be put back and recorded",
        Duration::from_secs(30),
        || async {
            let cm = t.config_map("settings").await.map_err(|e| e.to_string())?;
            let mode = cm.and_then(|c| c.data).and_then(|d| d.get("mode").cloned());
            if mode.as_deref() != Some("a") {
                return Err(format!("mode {mode:?}"));
            }
            let drift: Vec<_> = c
                .records(&key)
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|r| r.kind == RecordKind::Drift)
                .collect();
            if drift.is_empty() {
                return Err("put back, no drift record yet".into());
            }
            Ok(Some(drift))
        },
    )
    .await
    .with_context(|| c.log())?;
    assert_eq!(drift.len(), 1, "{drift:#?}");
    assert_eq!(drift[0].drift[0].field_manager, "kubectl-patch");
    assert!(drift[0].drift[0].corrected);
    assert!(
        drift[0].drift[0]
            .fields
            .iter()
            .any(|f| f.contains("f:mode")),
        "{:?}",
        drift[0].drift
    );

    // A deleted object comes back too.
    kubectl(&t.p, &["-n", &t.ns, "delete", "configmap", "settings"])?;
    eventually(
        "the deleted object to be recreated",
        Duration::from_secs(30),
        || async {
            Ok(t.config_map("settings")
                .await
                .map_err(|e| e.to_string())?
                .map(|_| ()))
        },
    )
    .await
    .with_context(|| c.log())?;
    Ok(())
}

#[tokio::test]
async fn drift_is_only_reported_when_the_app_says_warn() -> Result<()> {
    let _git = GIT.read().await;
    let t = Tenant::new("ctl-warn").await?;
    t.write(
        "envs/prod/web.yaml",
        &deployment(&image("1.2.3"), None, false),
    )?;
    t.push("web")?;
    let c = t.ready(json!({"drift": "warn", "interval": "1h"})).await?;

    kubectl(
        &t.p,
        &["-n", &t.ns, "scale", "deployment", "web", "--replicas=3"],
    )?;
    t.until(
        "shop",
        "a Drifted condition",
        |a| {
            a.status
                .as_ref()
                .and_then(|s| s.condition(ConditionType::Drifted))
                .is_some_and(|c| c.status == "True" && c.message.contains("Deployment"))
        },
        &c,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let web = t.deployment("web").await?.context("no web")?;
    assert_eq!(
        web.spec.and_then(|s| s.replicas),
        Some(3),
        "warn must not correct"
    );
    let key = format!("{}/shop", t.ns);
    let drift: Vec<_> = c
        .records(&key)?
        .into_iter()
        .filter(|r| r.kind == RecordKind::Drift)
        .collect();
    assert_eq!(drift.len(), 1, "{drift:#?}");
    assert!(!drift[0].drift[0].corrected);
    assert!(
        drift[0].drift[0].field_manager.contains("kubectl"),
        "{:?}",
        drift[0].drift
    );
    Ok(())
}

#[tokio::test]
async fn an_overlay_is_rendered_with_the_base_it_refers_to_elsewhere_in_the_repository()
-> Result<()> {
    let _git = GIT.read().await;
    let t = Tenant::new("ctl-overlay").await?;
    t.write("base/kustomization.yaml", "resources: [settings.yaml]\n")?;
    t.write("base/settings.yaml", &config_map("settings", "base"))?;
    t.write(
        "envs/prod/kustomization.yaml",
        "resources: [../../base]\npatches:\n  - patch: |-\n      apiVersion: v1\n      kind: ConfigMap\n      metadata: {name: settings}\n      data: {mode: prod}\n",
    )?;
    t.push("base and prod overlay")?;
    let _c = t.ready(json!({})).await?;
    let mode = t
        .config_map("settings")
        .await?
        .and_then(|c| c.data)
        .and_then(|d| d.get("mode").cloned());
    assert_eq!(mode.as_deref(), Some("prod"));
    Ok(())
}

#[tokio::test]
async fn a_suspended_app_applies_nothing_and_says_so() -> Result<()> {
    let _git = GIT.read().await;
    let t = Tenant::new("ctl-suspend").await?;
    t.write("envs/prod/settings.yaml", &config_map("settings", "a"))?;
    t.push("a")?;
    let c = t.ready(json!({})).await?;

    t.patch_app("shop", json!({"suspend": true})).await?;
    t.until_reason("Suspended", &c).await?;
    t.write("envs/prod/settings.yaml", &config_map("settings", "b"))?;
    let second = t.push("b")?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mode = t
        .config_map("settings")
        .await?
        .and_then(|c| c.data)
        .and_then(|d| d.get("mode").cloned());
    assert_eq!(mode.as_deref(), Some("a"), "a suspended App applied");

    t.patch_app("shop", json!({"suspend": false})).await?;
    t.until(
        "shop",
        "Ready at the new commit",
        |a| ready(a) && applied(a).as_deref() == Some(second.as_str()),
        &c,
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn an_app_cannot_reach_outside_its_service_accounts_rights() -> Result<()> {
    let _git = GIT.read().await;
    let t = Tenant::new("ctl-rbac").await?;
    let other = Tenant::new("ctl-other").await?;
    t.write("envs/prod/settings.yaml", &config_map("settings", "a"))?;
    t.write(
        "envs/prod/elsewhere.yaml",
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: intruder, namespace: {}}}\ndata: {{k: v}}\n", other.ns),
    )?;
    t.push("reach out")?;
    let c = t.start(json!({})).await?;
    let app = t.until_reason("DryRunFailed", &c).await?;
    let message = ready_message(&app);
    assert!(
        message.contains("intruder") && message.contains("forbidden"),
        "{message}"
    );
    assert!(
        message.contains(&format!("system:serviceaccount:{}:deployer", t.ns)),
        "{message}"
    );
    // Nothing at all was applied: not the intruder, not the allowed ConfigMap.
    assert!(other.config_map("intruder").await?.is_none());
    assert!(t.config_map("settings").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn an_invalid_object_or_a_policy_violation_applies_nothing() -> Result<()> {
    let _git = GIT.read().await;
    let t = Tenant::new("ctl-block").await?;
    t.write("envs/prod/settings.yaml", &config_map("settings", "a"))?;
    t.write(
        "envs/prod/bad.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad}\nspec:\n  replicas: -3\n  selector: {matchLabels: {app: bad}}\n  template:\n    metadata: {labels: {app: bad}}\n    spec: {containers: [{name: c, image: \"registry.internal:5000/x@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"}]}\n",
    )?;
    t.push("invalid")?;
    let c = t.start(json!({})).await?;
    let app = t.until_reason("DryRunFailed", &c).await?;
    let status = app.status.unwrap_or_default();
    assert!(
        status
            .condition(ConditionType::Stalled)
            .is_some_and(|c| c.status == "True")
    );
    assert!(
        status
            .condition(ConditionType::Ready)
            .is_some_and(|c| c.message.contains("bad"))
    );
    assert!(
        t.config_map("settings").await?.is_none(),
        "half of a blocked sync was applied"
    );

    // A policy violation: an image from outside, by tag.
    t.remove("envs/prod/bad.yaml")?;
    t.write(
        "envs/prod/web.yaml",
        &deployment("docker.io/library/nginx:1.27", None, false),
    )?;
    t.push("outside image")?;
    let app = t.until_reason("PolicyViolation", &c).await?;
    let message = ready_message(&app);
    assert!(
        message.contains("Deployment") && message.contains("web") && message.contains("nginx"),
        "{message}"
    );
    assert!(
        message.contains("containers"),
        "the field is not named: {message}"
    );
    assert!(t.config_map("settings").await?.is_none());
    assert!(t.deployment("web").await?.is_none());
    // A revision blocked for good is not tried again every pass (interval 2 s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let records = c.records(&format!("{}/shop", t.ns))?;
    assert_eq!(
        records.len(),
        2,
        "one record per blocked revision: {records:#?}"
    );
    assert!(
        records.iter().all(|r| r.result == RecordResult::Blocked),
        "{records:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn with_git_down_the_cluster_keeps_the_last_revision_and_the_app_says_why() -> Result<()> {
    let t = Tenant::new("ctl-gitdown").await?;
    t.write("envs/prod/settings.yaml", &config_map("settings", "a"))?;
    let first = t.push("a")?;
    let c = t.ready(json!({})).await?;

    let outage = GIT.write().await;
    t.p.stop("nginx")?;
    let result = t.until_reason("SourceFailed", &c).await;
    t.p.start("nginx")?;
    drop(outage);
    let app = result?;
    let status = app.status.unwrap_or_default();
    assert_eq!(
        status.last_applied_revision.as_deref(),
        Some(first.as_str())
    );
    let message = status
        .condition(ConditionType::Ready)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("keeps revision"), "{message}");
    assert!(t.config_map("settings").await?.is_some());

    t.until("shop", "Ready again once Git is back", ready, &c)
        .await?;
    Ok(())
}

#[tokio::test]
async fn of_two_controllers_one_leads_and_the_other_takes_over_when_it_stops() -> Result<()> {
    let _git = GIT.read().await;
    let t = Tenant::new("ctl-lease").await?;
    t.write("envs/prod/settings.yaml", &config_map("settings", "a"))?;
    t.push("a")?;
    let lease = format!("{}-lease", t.ns);
    let first = t.controller("first", &lease).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = t.controller("second", &lease).await?;
    t.create_app("shop", json!({})).await?;
    t.until("shop", "Ready", ready, &first).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let key = format!("{}/shop", t.ns);
    assert!(!first.records(&key)?.is_empty());
    assert!(second.records(&key)?.is_empty(), "the follower synced");
    assert!(
        second.log().contains("waiting for leadership"),
        "{}",
        second.log()
    );

    drop(first);
    t.write("envs/prod/settings.yaml", &config_map("settings", "b"))?;
    let next = t.push("b")?;
    t.until(
        "shop",
        "the second controller to apply",
        |a| applied(a).as_deref() == Some(next.as_str()),
        &second,
    )
    .await?;
    assert!(second.log().contains("leader elected"));
    Ok(())
}

/// The rollback drill: a version that never becomes Ready, `airgate
/// rollback` of the App's path to the last good revision (another path
/// changed meanwhile stays as it is), a push, and the App is Ready on the
/// previous state with no cluster edit; the records show both.
#[tokio::test]
async fn the_rollback_drill_returns_to_the_last_working_revision_through_git_alone() -> Result<()> {
    let _git = GIT.read().await;
    let t = Tenant::new("ctl-rollback").await?;
    t.write(
        "envs/prod/web.yaml",
        &deployment(&image("1.2.3"), None, false),
    )?;
    t.write("docs/release.md", "1.2.3\n")?;
    let good = t.push("1.2.3")?;
    let c = t.start(json!({"timeout": "10s"})).await?;
    t.until(
        "shop",
        "Ready at 1.2.3",
        |a| ready(a) && applied(a).as_deref() == Some(good.as_str()),
        &c,
    )
    .await?;

    // 1.2.4 can never be scheduled: it never becomes Ready.
    t.write(
        "envs/prod/web.yaml",
        &deployment(&image("1.2.4"), None, true),
    )?;
    t.write("docs/release.md", "1.2.4, with notes that stay\n")?;
    let bad = t.push("1.2.4")?;
    let app = t
        .until(
            "shop",
            "Stalled on 1.2.4",
            |a| reason(a) == "HealthCheckFailed" && applied(a).as_deref() == Some(bad.as_str()),
            &c,
        )
        .await?;
    let status = app.status.unwrap_or_default();
    assert!(
        status
            .condition(ConditionType::Stalled)
            .is_some_and(|c| c.message.contains("Deployment"))
    );

    // The rollback: one commit that returns envs/prod, and only it.
    let out = airgate()
        .arg("rollback")
        .arg(t.work.path().join("envs/prod"))
        .args(["--to", &good, "--ticket", "CHG-7", "-o", "json"])
        .env("GIT_AUTHOR_NAME", "Release Manager")
        .env("GIT_AUTHOR_EMAIL", "release@shop.invalid")
        .env("GIT_COMMITTER_NAME", "Release Manager")
        .env("GIT_COMMITTER_EMAIL", "release@shop.invalid")
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rolled: Value = serde_json::from_slice(&out.stdout)?;
    let revert = rolled["commit"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        rolled["changed"],
        json!(["M\tenvs/prod/web.yaml"]),
        "{rolled}"
    );
    assert_eq!(
        std::fs::read_to_string(t.work.path().join("docs/release.md"))?,
        "1.2.4, with notes that stay\n"
    );
    t.p.git(
        t.work.path(),
        &[
            "push",
            "--quiet",
            &format!("{}/{}.git", t.p.git_url, t.repo),
            "HEAD:refs/heads/main",
        ],
    )?;
    t.until(
        "shop",
        "Ready at the rollback",
        |a| ready(a) && applied(a).as_deref() == Some(revert.as_str()),
        &c,
    )
    .await?;
    let web = t.deployment("web").await?.context("no web")?;
    assert_eq!(image_of(&web), image("1.2.3"));
    let available = web
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Available" && c.status == "True");
    assert!(available);

    // The records: 1.2.4 applied and unhealthy, then the rollback, whose
    // message names both revisions and the ticket.
    let records = c.records(&format!("{}/shop", t.ns))?;
    assert!(
        records
            .iter()
            .any(|r| r.revision == bad && r.result.as_str() == "unhealthy"),
        "{records:#?}"
    );
    let rollback = records
        .iter()
        .find(|r| r.revision == revert && r.result.as_str() == "succeeded")
        .context("no record of the rollback")?;
    for trailer in [
        format!("Rolled-back-from: {bad}"),
        format!("Rolled-back-to: {good}"),
        "Ticket: CHG-7".to_string(),
    ] {
        assert!(rollback.message.contains(&trailer), "{}", rollback.message);
    }
    assert_eq!(rollback.author.name, "Release Manager");
    Ok(())
}

#[tokio::test]
async fn the_install_manifests_pass_a_server_side_dry_run() -> Result<()> {
    let p = Perimeter::get();
    installed(&p)?;
    let dir = tempfile::tempdir()?;
    for extra in [
        &[][..],
        &[
            "--replicas",
            "3",
            "--log-key-secret",
            "log-key",
            "--log-repository",
            "registry.internal:5000/airgate/audit",
            "--allow-egress",
            "10.0.0.1/32:6443",
            "--watch-namespace",
            "shop",
        ][..],
    ] {
        let out = airgate()
            .args(["install", "--image", "r.internal/airgate:1", "--out"])
            .arg(dir.path())
            .args(extra)
            .output()?;
        assert!(out.status.success());
        let out = kubectl(
            &p,
            &[
                "apply",
                "--dry-run=server",
                "-f",
                &dir.path().display().to_string(),
            ],
        )?;
        let kinds: &[&str] = if extra.is_empty() {
            &["deployment", "persistentvolumeclaim"]
        } else {
            &["statefulset", "poddisruptionbudget"]
        };
        for kind in [
            "customresourcedefinition",
            "clusterrole",
            "service",
            "networkpolicy",
        ]
        .iter()
        .chain(kinds)
        {
            assert!(out.contains(kind), "{out}");
        }
    }
    // The apiserver warns about what it does not know in a CRD's schema
    // only when the CRD is written, so create a copy under another group.
    let crd = std::fs::read_to_string(dir.path().join("crd.yaml"))?;
    let mut create = Command::new(&p.kubectl)
        .arg("--kubeconfig")
        .arg(&p.kubeconfig)
        .args(["create", "--dry-run=server", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = create.stdin.take() {
        stdin.write_all(
            crd.replace("airgate.dev", "warncheck.airgate.dev")
                .as_bytes(),
        )?;
    }
    let out = create.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("Warning"),
        "the CRD draws warnings: {stderr}"
    );
    let stdout = airgate()
        .args(["install", "--image", "r.internal/airgate:1"])
        .output()?;
    let docs = String::from_utf8_lossy(&stdout.stdout)
        .matches("\n---\n")
        .count()
        + 1;
    assert!(docs >= 9, "{docs} documents");
    Ok(())
}

/// Two installs in one cluster, each watching its own namespace: applied
/// side by side (no cluster-scoped name in common, so neither rebinds the
/// other's account); a second install into a namespace is refused without
/// --upgrade.
#[tokio::test]
async fn two_installs_coexist_and_an_install_is_replaced_only_with_upgrade() -> Result<()> {
    let p = Perimeter::get();
    installed(&p)?;
    let suffix = airgate_testkit::unique_name("ag");
    let install = |ns: &str, watch: &str, extra: &[&str]| -> Result<std::process::Output> {
        Ok(airgate()
            .args(["install", "--apply", "--kubeconfig"])
            .arg(&p.kubeconfig)
            .args(["--namespace", ns, "--watch-namespace", watch])
            .args(if extra.contains(&"--image") {
                &[][..]
            } else {
                &["--image", "r.internal/airgate:1"][..]
            })
            .args(extra)
            .output()?)
    };
    let (a, b) = (format!("{suffix}-a"), format!("{suffix}-b"));
    for ns in [&a, &b] {
        let out = install(ns, &format!("{ns}-apps"), &[])?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for ns in [&a, &b] {
        let can = kubectl(
            &p,
            &[
                "auth",
                "can-i",
                "impersonate",
                "serviceaccounts",
                "-n",
                "default",
                &format!("--as=system:serviceaccount:{ns}:airgate-controller"),
            ],
        )?;
        assert_eq!(can.trim(), "yes", "{ns}");
        let binding = kubectl(
            &p,
            &[
                "get",
                "clusterrolebinding",
                &format!("airgate-controller-{ns}"),
                "-o",
                "jsonpath={.subjects[0].namespace}",
            ],
        )?;
        assert_eq!(&binding, ns);
    }
    let again = install(&a, &format!("{a}-apps"), &[])?;
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--upgrade"));
    let upgraded = install(
        &a,
        &format!("{a}-apps"),
        &["--upgrade", "--image", "r.internal/airgate:2"],
    )?;
    assert!(
        upgraded.status.success(),
        "{}",
        String::from_utf8_lossy(&upgraded.stderr)
    );
    let image = kubectl(
        &p,
        &[
            "-n",
            &a,
            "get",
            "deployment",
            "airgate-controller",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    )?;
    assert_eq!(image, "r.internal/airgate:2");
    for ns in [&a, &b] {
        kubectl(&p, &["delete", "namespace", ns, "--wait=false"])?;
        kubectl(
            &p,
            &[
                "delete",
                "clusterrole,clusterrolebinding",
                &format!("airgate-controller-{ns}"),
            ],
        )?;
    }
    Ok(())
}

/// Air-gap discipline for the controller: through a full sync, a drift
/// correction and a prune, it tries to reach the apiserver and the Git
/// server and nothing else (no DNS lookup, no other address).
#[tokio::test]
async fn the_controller_reaches_only_the_apiserver_and_git_through_sync_drift_and_prune()
-> Result<()> {
    let _git = GIT.read().await;
    let t = Tenant::new("ctl-airgap").await?;
    t.write("envs/prod/a.yaml", &config_map("a", "1"))?;
    t.write("envs/prod/b.yaml", &config_map("b", "1"))?;
    t.push("two settings")?;
    let trace = t.dir.path().join("controller.trace");
    let c = t
        .controller_traced("c1", &format!("{}-lease", t.ns), Some(&trace), &[])
        .await?;
    t.create_app("shop", json!({"drift": "correct"})).await?;
    t.until("shop", "Ready", ready, &c).await?;

    kubectl(
        &t.p,
        &[
            "-n",
            &t.ns,
            "patch",
            "configmap",
            "a",
            "--type=merge",
            "-p",
            r#"{"data":{"mode":"edited"}}"#,
        ],
    )?;
    eventually(
        "the drift to be corrected",
        Duration::from_secs(30),
        || async {
            let cm = t.config_map("a").await.map_err(|e| e.to_string())?;
            let mode = cm.and_then(|c| c.data).and_then(|d| d.get("mode").cloned());
            Ok((mode.as_deref() == Some("1")).then_some(()))
        },
    )
    .await
    .with_context(|| c.log())?;

    t.remove("envs/prod/b.yaml")?;
    t.push("drop b")?;
    eventually("b to be pruned", Duration::from_secs(60), || async {
        let cm = t.config_map("b").await.map_err(|e| e.to_string())?;
        Ok(cm.is_none().then_some(()))
    })
    .await
    .with_context(|| c.log())?;
    drop(c);

    let found = reached_elsewhere(&t.p, &trace, &[])?;
    assert!(found.is_empty(), "{found:#?}");
    Ok(())
}

/// A kustomize remote base made kustomize and git reach the network, and
/// `resources: [../../../../some/dir]` rendered the controller's own files
/// and applied them. Both are refused before kustomize runs, naming the
/// file, and nothing is applied.
#[tokio::test]
async fn kustomize_may_not_reach_outside_the_repository() -> Result<()> {
    let _git = GIT.read().await;
    let t = Tenant::new("ctl-confine").await?;
    // A file on the controller's machine, outside any repository.
    let outside = t.dir.path().join("outside");
    std::fs::create_dir_all(&outside)?;
    std::fs::write(
        outside.join("kustomization.yaml"),
        "resources: [stolen.yaml]\n",
    )?;
    std::fs::write(
        outside.join("stolen.yaml"),
        config_map("stolen", "from-the-controller"),
    )?;
    let escape = format!(
        "{}{}",
        "../".repeat(40),
        outside.display().to_string().trim_start_matches('/')
    );
    t.write(
        "envs/prod/kustomization.yaml",
        &format!("resources: [settings.yaml, {escape}]\n"),
    )?;
    t.write("envs/prod/settings.yaml", &config_map("settings", "a"))?;
    t.push("an overlay that reaches out of the repository")?;
    let c = t.start(json!({})).await?;
    let app = t.until_reason("RenderFailed", &c).await?;
    let message = ready_message(&app);
    assert!(
        message.contains("envs/prod/kustomization.yaml")
            && message.contains("outside the repository"),
        "{message}"
    );
    assert!(
        t.config_map("stolen").await?.is_none(),
        "the outside file was applied"
    );
    assert!(
        t.config_map("settings").await?.is_none(),
        "something was applied"
    );

    // A remote base (on this machine's loopback, so a regression reaches
    // nothing real): refused as remote, with the hint to vendor it.
    t.write(
        "envs/prod/kustomization.yaml",
        "resources: [settings.yaml, \"https://127.0.0.1:9/org/repo//base?ref=v1\"]\n",
    )?;
    t.push("a remote base")?;
    let app = t
        .until(
            "shop",
            "a remote base to be refused",
            |a| ready_message(a).contains("is remote"),
            &c,
        )
        .await?;
    assert!(
        ready_message(&app).contains("vendor"),
        "{}",
        ready_message(&app)
    );
    assert!(t.config_map("settings").await?.is_none());
    Ok(())
}

/// `secretRef` was a confused deputy: the controller read any Secret an App
/// named with its own cluster-wide `get`, and sent its username and
/// password to the App's Git server. It now reads it as the App's
/// ServiceAccount: an account that may not read the Secret gets nothing,
/// and the App says why; the controller's own account reads no Secret.
#[tokio::test]
async fn an_app_can_use_only_a_secret_its_own_account_may_read() -> Result<()> {
    let _git = GIT.read().await;
    let t = Tenant::new("ctl-deputy").await?;
    t.write("envs/prod/settings.yaml", &config_map("settings", "a"))?;
    t.push("settings")?;
    // An account that may manage ConfigMaps here, and read no Secret.
    let mut limited = vec![json!({"apiVersion": "v1", "kind": "ServiceAccount",
                                  "metadata": {"name": "limited", "namespace": t.ns}})];
    limited.extend(role(
        &t.ns,
        "limited",
        "limited",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]),
    ));
    admin_apply(&t, &limited).await?;

    let c = t.start(json!({"serviceAccountName": "limited"})).await?;
    let app = t.until_reason("SourceFailed", &c).await?;
    let message = ready_message(&app);
    assert!(
        message.contains("git-creds") && message.contains(&format!("{}/limited", t.ns)),
        "{message}"
    );
    assert!(
        !message.contains(&t.p.git_password()?),
        "the password is in the status"
    );
    assert!(t.config_map("settings").await?.is_none());

    // The controller's own account may not read the Secret either
    // (`kubectl auth can-i` says no, and exits 1 for it).
    let can = Command::new(&t.p.kubectl)
        .arg("--kubeconfig")
        .arg(&t.p.kubeconfig)
        .args(["auth", "can-i", "get", "secrets", "-n", &t.ns, "--as"])
        .arg("system:serviceaccount:airgate-system:airgate-controller")
        .output()?;
    assert_eq!(String::from_utf8_lossy(&can.stdout).trim(), "no");

    // With an account that may read it, the same App syncs.
    t.patch_app("shop", json!({"serviceAccountName": "deployer"}))
        .await?;
    t.until("shop", "Ready", ready, &c).await?;

    // `get apps -o yaml` hides managedFields, as kubectl does.
    let out = airgate()
        .args(["get", "apps", "-n", &t.ns, "-o", "yaml"])
        .env("KUBECONFIG", &t.p.kubeconfig)
        .output()?;
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && yaml.contains("serviceAccountName"),
        "{yaml}"
    );
    assert!(!yaml.contains("managedFields"), "{yaml}");
    Ok(())
}

/// Applies `objects` as the cluster's admin in the tenant's namespace.
async fn admin_apply(t: &Tenant, objects: &[Value]) -> Result<()> {
    let admin = airgate_kube::Applier::new(t.p.kube_client().await?, "perimeter-setup", &t.ns);
    let objects: Vec<_> = objects
        .iter()
        .map(|o| ("setup".to_string(), o.clone()))
        .collect();
    admin.apply(&objects).await?;
    Ok(())
}

/// A Role `name` with `rules` in `ns`, bound to ServiceAccount `account`.
fn role(ns: &str, account: &str, name: &str, rules: Value) -> [Value; 2] {
    [
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": name, "namespace": ns}, "rules": rules}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": name, "namespace": ns},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
               "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}]}),
    ]
}

/// A 403 fixed a minute later by a RoleBinding left the App Stalled until
/// the next commit, and `airgate.dev/requested-at` did not retry. A failure
/// that may pass is now retried with backoff (here well before the
/// one-hour interval); one that cannot (a kind the cluster does not serve)
/// waits, until requested-at asks again.
#[tokio::test]
async fn failures_that_pass_heal_without_a_new_commit() -> Result<()> {
    let _git = GIT.read().await;
    let t = Tenant::new("ctl-heal").await?;
    t.write("envs/prod/settings.yaml", &config_map("settings", "a"))?;
    t.push("settings")?;
    // An account that may read its Git Secret, and nothing else yet.
    let mut setup = vec![json!({"apiVersion": "v1", "kind": "ServiceAccount",
                                "metadata": {"name": "late", "namespace": t.ns}})];
    setup.extend(role(
        &t.ns,
        "late",
        "late-git",
        json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                "resourceNames": ["git-creds"]}]),
    ));
    admin_apply(&t, &setup).await?;
    let c = t
        .start(json!({"serviceAccountName": "late", "interval": "1h"}))
        .await?;
    let app = t.until_reason("DryRunFailed", &c).await?;
    let stalled = app
        .status
        .as_ref()
        .and_then(|s| s.condition(ConditionType::Stalled))
        .is_some_and(|s| s.status == "True");
    assert!(!stalled, "a 403 is not a reason to stop trying");
    admin_apply(
        &t,
        &role(
            &t.ns,
            "late",
            "late-configmaps",
            json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]),
        ),
    )
    .await?;
    t.until("shop", "Ready after the RoleBinding", ready, &c)
        .await?;

    // A kind the cluster does not serve yet: blocked for good, and not
    // tried again by itself even once the kind exists...
    let group = format!("{}.airgate.test", t.ns);
    t.write(
        "envs/prod/widget.yaml",
        &format!("apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: w}}\n"),
    )?;
    t.push("a widget")?;
    // Look at Git every 2 s from now on: the blocked revision is seen again
    // and again, and still not retried.
    t.patch_app("shop", json!({"interval": "2s"})).await?;
    t.until(
        "shop",
        "Stalled on the unknown kind",
        |a| {
            a.status
                .as_ref()
                .and_then(|s| s.condition(ConditionType::Stalled))
                .is_some_and(|s| s.status == "True")
        },
        &c,
    )
    .await?;
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object",
                                          "x-kubernetes-preserve-unknown-fields": true}}}]}});
    admin_apply(&t, &[crd]).await?;
    kubectl(
        &t.p,
        &[
            "wait",
            "--for=condition=Established",
            &format!("crd/widgets.{group}"),
        ],
    )?;
    admin_apply(
        &t,
        &role(
            &t.ns,
            "late",
            "late-widgets",
            json!([{"apiGroups": [group], "resources": ["widgets"], "verbs": ["*"]}]),
        ),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let apps = t.apps().await?;
    assert!(
        !ready(&apps.get("shop").await?),
        "a blocked revision was retried by itself"
    );
    // ...until someone asks.
    kubectl(
        &t.p,
        &[
            "-n",
            &t.ns,
            "annotate",
            "apps.airgate.dev",
            "shop",
            "--overwrite",
            "airgate.dev/requested-at=now",
        ],
    )?;
    t.until("shop", "Ready after requested-at", ready, &c)
        .await?;
    Ok(())
}

/// Prune trusted its inventory: a hand-edited `status.inventory` made the
/// controller delete an unrelated ConfigMap after a restart, and an App
/// pruned an object someone else had taken over. Now it deletes only what
/// carries the App's ownership mark and labels at the moment of deletion.
#[tokio::test]
async fn prune_deletes_only_what_still_carries_the_apps_mark_and_labels() -> Result<()> {
    let _git = GIT.read().await;
    let t = Tenant::new("ctl-owner").await?;
    t.write("envs/prod/a.yaml", &config_map("a", "1"))?;
    t.write("envs/prod/b.yaml", &config_map("b", "1"))?;
    t.push("a and b")?;
    let lease = format!("{}-lease", t.ns);
    let c = t.controller("c1", &lease).await?;
    t.create_app("shop", json!({"drift": "warn"})).await?;
    t.until("shop", "Ready", ready, &c).await?;
    drop(c);

    // Someone takes b over; a bystander nobody applied is slipped into the
    // inventory by hand.
    kubectl(
        &t.p,
        &[
            "-n",
            &t.ns,
            "label",
            "configmap",
            "b",
            "--overwrite",
            "airgate.dev/app-name=someone-else",
        ],
    )?;
    kubectl(&t.p, &["-n", &t.ns, "create", "configmap", "bystander"])?;
    let apps = t.apps().await?;
    let mut inventory = apps
        .get("shop")
        .await?
        .status
        .map(|s| s.inventory)
        .unwrap_or_default();
    inventory.push(format!("v1|ConfigMap|{}|bystander", t.ns));
    apps.patch_status(
        "shop",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"inventory": inventory}})),
    )
    .await?;

    // b leaves Git; a new controller starts from the edited inventory.
    t.remove("envs/prod/b.yaml")?;
    let second = t.push("drop b")?;
    let c = t.controller("c2", &lease).await?;
    t.until(
        "shop",
        "the commit without b applied",
        |a| ready(a) && applied(a).as_deref() == Some(second.as_str()),
        &c,
    )
    .await?;
    assert!(
        t.config_map("b").await?.is_some(),
        "b was taken over, and deleted"
    );
    assert!(
        t.config_map("bystander").await?.is_some(),
        "the bystander was deleted"
    );
    assert!(t.config_map("a").await?.is_some());
    Ok(())
}

/// Two Apps naming the same object once both applied it with force, each
/// taking it from the other (2,074 drift records in 80 s, both Ready). Now
/// the second is refused before it writes anything, and says whose the
/// object is; the first keeps it and sees no drift.
#[tokio::test]
async fn a_second_app_naming_an_object_is_refused_and_names_the_owner() -> Result<()> {
    let _git = GIT.read().await;
    let t = Tenant::new("ctl-two-apps").await?;
    t.write("envs/prod/shared.yaml", &config_map("shared", "1"))?;
    t.push("one object")?;
    let c = t.ready(json!({"drift": "correct"})).await?;
    t.create_app("copycat", json!({"drift": "correct"})).await?;
    let refused = t
        .until(
            "copycat",
            "copycat refused",
            |a| reason(a) == "OwnershipConflict",
            &c,
        )
        .await?;
    let message = ready_message(&refused);
    assert!(
        message.contains(&format!("belongs to App {}/shop", t.ns)),
        "{message}"
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    let live = t.config_map("shared").await?.context("shared is gone")?;
    let owner = live.metadata.annotations.unwrap_or_default();
    assert_eq!(
        owner.get("airgate.dev/owner"),
        Some(&format!("{}/shop:/ConfigMap:{}/shared", t.ns, t.ns))
    );
    let records = c.records(&format!("{}/shop", t.ns))?;
    assert!(
        records.iter().all(|r| r.kind != RecordKind::Drift),
        "the owner saw drift: {records:?}"
    );
    let shop = t.apps().await?.get("shop").await?;
    assert!(ready(&shop), "{}", ready_message(&shop));
    Ok(())
}

/// Two Apps with the same object and `drift: correct` once wrote 2,074
/// drift records in 80 s while both said Ready. Here another writer takes
/// the object back every 300 ms for 12 s, as a second App would: a
/// correction undone three times within a minute is not tried again until
/// the next sync, and the App says why.
#[tokio::test]
async fn a_correction_that_keeps_being_undone_stops_and_says_so() -> Result<()> {
    let _git = GIT.read().await;
    let t = Tenant::new("ctl-fight").await?;
    t.write("envs/prod/shared.yaml", &config_map("shared", "1"))?;
    t.push("one object")?;
    let c = t.ready(json!({"drift": "correct"})).await?;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(12) {
        kubectl(
            &t.p,
            &[
                "-n",
                &t.ns,
                "label",
                "configmap",
                "shared",
                "--overwrite",
                "airgate.dev/app-name=the-other-app",
            ],
        )?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let app = t.apps().await?.get("shop").await?;
    let drifted = app
        .status
        .as_ref()
        .and_then(|s| s.condition(ConditionType::Drifted))
        .cloned()
        .context("no Drifted condition")?;
    assert_eq!(drifted.reason, "CorrectionUndone", "{}", c.log());
    assert!(drifted.message.contains("ConfigMap"), "{}", drifted.message);
    // Relabelled, not deleted, and by whom (it once said "deleted by unknown").
    assert!(
        drifted.message.contains("kubectl") && drifted.message.contains("relabelled"),
        "{}",
        drifted.message
    );
    let corrections = c
        .records(&format!("{}/shop", t.ns))?
        .into_iter()
        .filter(|r| r.kind == RecordKind::Drift)
        .count();
    // Three corrections, then it stopped: about 40 takeovers happened.
    assert!(corrections <= 4, "{corrections} drift records\n{}", c.log());
    Ok(())
}

/// Stage 1 failed open: a new Namespace was applied, then the deferred
/// dry-run of an object inside it failed, and the status said nothing was
/// applied while the Namespace stayed, outside any inventory, never pruned.
/// Now the status names what stage 1 applied, it joins the inventory, and
/// it is pruned once it leaves Git.
#[tokio::test]
async fn what_stage_one_applied_before_a_failure_is_owned_and_pruned() -> Result<()> {
    let _git = GIT.read().await;
    let t = Tenant::new("ctl-stage1").await?;
    let extra = format!("{}-extra", t.ns);
    // This test's account may also manage Namespaces and ConfigMaps anywhere.
    let grant = format!("{}-namespaces", t.ns);
    admin_apply(
        &t,
        &[
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                   "metadata": {"name": grant},
                   "rules": [{"apiGroups": [""], "resources": ["namespaces", "configmaps"], "verbs": ["*"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                   "metadata": {"name": grant},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": grant},
                   "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": t.ns}]}),
        ],
    )
    .await?;
    t.write(
        "envs/prod/namespace.yaml",
        &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {extra}}}\n"),
    )?;
    // A ConfigMap value that is a number: its dry-run fails, and it can only
    // be dry-run once its Namespace exists.
    t.write(
        "envs/prod/bad.yaml",
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: bad, namespace: {extra}}}\ndata: {{k: 1}}\n"),
    )?;
    t.push("a namespace and a bad object in it")?;
    let c = t.start(json!({})).await?;
    let app = t.until_reason("DryRunFailed", &c).await?;
    let message = ready_message(&app);
    assert!(
        message.contains("applied before that") && message.contains(&format!("Namespace/{extra}")),
        "{message}"
    );
    let inventory = app.status.map(|s| s.inventory).unwrap_or_default();
    assert!(
        inventory
            .iter()
            .any(|e| e == &format!("v1|Namespace||{extra}")),
        "{inventory:?}"
    );

    t.remove("envs/prod/namespace.yaml")?;
    t.remove("envs/prod/bad.yaml")?;
    t.write("envs/prod/settings.yaml", &config_map("settings", "a"))?;
    let fixed = t.push("fixed")?;
    t.until(
        "shop",
        "the fixed commit applied",
        |a| ready(a) && applied(a).as_deref() == Some(fixed.as_str()),
        &c,
    )
    .await?;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(t.p.kube_client().await?);
    let gone = namespaces
        .get_opt(&extra)
        .await?
        .is_none_or(|n| n.metadata.deletion_timestamp.is_some());
    assert!(gone, "the Namespace stage 1 applied was not pruned");
    Ok(())
}

/// kill -9 during a 300-object sync, then a new commit: 217 objects with
/// the App's labels were never pruned. What a sync is about to apply is now
/// written to the App's inventory before the first write, so a restarted
/// controller prunes whatever the killed one left.
#[tokio::test]
async fn a_sync_killed_midway_leaves_no_orphan_after_a_restart() -> Result<()> {
    let _git = GIT.read().await;
    let t = Tenant::new("ctl-crash").await?;
    const N: usize = 600;
    let many: String = (0..N)
        .map(|i| format!("---\n{}", config_map(&format!("cm-{i}"), "x")))
        .collect();
    t.write("envs/prod/many.yaml", &many)?;
    t.push("many objects")?;
    let lease = format!("{}-lease", t.ns);
    let c = t.controller("c1", &lease).await?;
    t.create_app("shop", json!({})).await?;
    let cms: Api<ConfigMap> = Api::namespaced(t.p.kube_client().await?, &t.ns);
    let selector = kube::api::ListParams::default().labels("airgate.dev/app-name=shop");
    let at_kill = t.until_applying(0).await?;
    drop(c); // SIGKILL, mid-apply
    assert!(
        at_kill > 0 && at_kill < N,
        "the kill did not land mid-apply ({at_kill} of {N})"
    );

    t.remove("envs/prod/many.yaml")?;
    t.write("envs/prod/settings.yaml", &config_map("settings", "a"))?;
    let next = t.push("only settings")?;
    let c = t.controller("c2", &lease).await?;
    t.until(
        "shop",
        "the new commit applied",
        |a| ready(a) && applied(a).as_deref() == Some(next.as_str()),
        &c,
    )
    .await?;
    let left: Vec<String> = cms
        .list_metadata(&selector)
        .await?
        .items
        .into_iter()
        .filter_map(|m| m.metadata.name)
        .filter(|n| n != "settings")
        .collect();
    assert!(
        left.is_empty(),
        "{} orphans left, e.g. {:?}",
        left.len(),
        left.first()
    );
    Ok(())
}

/// kustomize quotes a `secretGenerator` literal it cannot parse; the
/// message that reaches the status (and Events, logs, records) does not.
#[tokio::test]
async fn a_secret_literal_kustomize_quotes_never_reaches_the_status() -> Result<()> {
    let _git = GIT.read().await;
    let t = Tenant::new("ctl-literal").await?;
    t.write(
        "envs/prod/kustomization.yaml",
        "secretGenerator:\n- name: db\n  literals: [hunter2-no-equals-sign]\n",
    )?;
    t.push("a literal without =")?;
    let c = t.start(json!({})).await?;
    let app = t.until_reason("RenderFailed", &c).await?;
    let message = ready_message(&app);
    assert!(message.contains("literal"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    assert!(!c.log().contains("hunter2"), "the log has it");
    Ok(())
}

/// A condition of `app`: (status, reason, message).
fn condition(app: &App, type_: ConditionType) -> Option<(String, String, String)> {
    app.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == type_.as_str())
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    })
}

/// One person of the commit-trust drill: an SSH key and an email.
struct Signer {
    email: &'static str,
    key: PathBuf,
}

impl Signer {
    fn new(dir: &std::path::Path, name: &str, email: &'static str) -> Result<Signer> {
        let key = dir.join(name);
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", email, "-f"])
            .arg(&key)
            .status()?;
        anyhow::ensure!(status.success(), "ssh-keygen failed");
        Ok(Signer { email, key })
    }

    fn allowed(&self) -> Result<String> {
        let public = std::fs::read_to_string(self.key.with_extension("pub"))?;
        let key: Vec<&str> = public.split_whitespace().take(2).collect();
        Ok(format!("{} {}\n", self.email, key.join(" ")))
    }

    /// `git ARGS` in the tenant's worktree as this person, signing with the key.
    fn git(&self, t: &Tenant, args: &[&str]) -> Result<String> {
        let key = self.key.display().to_string();
        let mut all = vec![
            "-c".to_string(),
            format!("user.email={}", self.email),
            "-c".into(),
            format!("user.name={}", self.email),
            "-c".into(),
            "gpg.format=ssh".into(),
            "-c".into(),
            format!("user.signingkey={key}"),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        t.p.git(t.work.path(), &all)
    }

    /// A signed commit of everything in the worktree.
    fn commit(&self, t: &Tenant, message: &str) -> Result<String> {
        self.git(t, &["add", "--all"])?;
        self.git(t, &["commit", "-q", "-S", "--allow-empty", "-m", message])?;
        Ok(self.git(t, &["rev-parse", "HEAD"])?.trim().to_string())
    }
}

/// The drill's release step: the developer commits `version` on a new
/// `branch`, the release engineer merges it into main with `ticket`.
/// Returns (the developer's commit, the merge).
fn merged_release(
    t: &Tenant,
    dev: &Signer,
    rel: &Signer,
    branch: &str,
    version: &str,
    ticket: &str,
) -> Result<(String, String)> {
    rel.git(t, &["checkout", "-q", "-b", branch])?;
    t.write("envs/prod/release.yaml", &config_map("release", version))?;
    let change = dev.commit(t, &format!("release {version}"))?;
    rel.git(t, &["checkout", "-q", "main"])?;
    let message = format!("Merge {version}\n\nTicket: {ticket}");
    rel.git(t, &["merge", "-q", "--no-ff", "-S", "-m", &message, branch])?;
    let merge = rel.git(t, &["rev-parse", "HEAD"])?.trim().to_string();
    Ok((change, merge))
}

impl Tenant {
    fn push_main(&self, force: bool) -> Result<()> {
        let url = format!("{}/{}.git", self.p.git_url, self.repo);
        let mut args = vec!["push", "-q"];
        if force {
            args.push("--force");
        }
        args.extend([url.as_str(), "HEAD:refs/heads/main"]);
        self.p.git(self.work.path(), &args)?;
        Ok(())
    }

    async fn signers(&self, people: &[&Signer]) -> Result<()> {
        let mut allowed = String::new();
        for p in people {
            allowed.push_str(&p.allowed()?);
        }
        let map = json!({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "signers", "namespace": self.ns},
                         "data": {"allowed_signers": allowed}});
        admin_apply(self, &[map]).await
    }
}

/// The two-person rule, against the perimeter: prod needs two distinct
/// allowed signers over the range and a Ticket trailer. A developer's
/// signed commit alone is refused; the release engineer's signed merge on
/// top is applied; a stranger's key is refused; a signer taken out of the
/// ConfigMap is refused from the next commit on. Nothing refused is ever
/// applied, and the records name both signers and the ticket.
#[tokio::test]
async fn the_two_person_rule_refuses_a_lone_developer_and_applies_the_release_merge() -> Result<()>
{
    let _git = GIT.read().await;
    let t = Tenant::new("ctl-trust").await?;
    let keys = tempfile::tempdir()?;
    let dev = Signer::new(keys.path(), "dev", "dev@corp.example")?;
    let rel = Signer::new(keys.path(), "rel", "rel@corp.example")?;
    let stranger = Signer::new(keys.path(), "stranger", "stranger@corp.example")?;
    t.signers(&[&dev, &rel]).await?;

    // main: the release engineer's root; feature: the developer's change;
    // the release engineer merges it with a ticket.
    t.p.git(t.work.path(), &["init", "-q", "--initial-branch", "main"])?;
    rel.commit(&t, "start\n\nTicket: T-0")?;
    let (_, m1) = merged_release(&t, &dev, &rel, "feature", "v1", "T-1")?;
    t.push_main(false)?;
    let verify = json!({"source": {
        "url": format!("{}/{}.git", t.p.git_url, t.repo), "ref": {"branch": "main"},
        "path": "envs/prod", "secretRef": {"name": "git-creds"},
        "verify": {"signers": {"configMapRef": {"name": "signers"}},
                   "minDistinctSigners": 2, "requireTrailers": ["Ticket"]}}});
    let c = t.ready(verify).await?;
    let value =
        |cm: Option<ConfigMap>| cm.and_then(|c| c.data).and_then(|d| d.get("mode").cloned());
    assert_eq!(value(t.config_map("release").await?).as_deref(), Some("v1"));
    let shop = t.apps().await?.get("shop").await?;
    let (status, _, message) =
        condition(&shop, ConditionType::SourceVerified).context("no SourceVerified")?;
    assert_eq!(status, "True", "{message}");
    assert!(
        message.contains("dev@corp.example")
            && message.contains("rel@corp.example")
            && message.contains("Ticket: T-1"),
        "{message}"
    );

    // A developer's signed commit alone: refused, nothing applied.
    t.write("envs/prod/release.yaml", &config_map("release", "v2"))?;
    let d2 = dev.commit(&t, "release v2, no review")?;
    t.push_main(false)?;
    let refused = t.until_reason("VerificationFailed", &c).await?;
    let message = ready_message(&refused);
    assert!(
        message
            .contains("1 distinct allowed signer(s) over the range (dev@corp.example), 2 needed"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "commit {} lacks the required trailer(s) Ticket",
            &d2[..12]
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!("the cluster keeps revision {}", &m1[..12])),
        "{message}"
    );
    let (status, reason, _) =
        condition(&refused, ConditionType::SourceVerified).context("no SourceVerified")?;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "VerificationFailed")
    );
    assert_eq!(value(t.config_map("release").await?).as_deref(), Some("v1"));

    // The release engineer's signed merge on top: applied.
    let (_, m3) = merged_release(&t, &dev, &rel, "feature2", "v3", "T-3")?;
    t.push_main(false)?;
    t.until(
        "shop",
        "the merge applied",
        |a| applied(a).as_deref() == Some(m3.as_str()) && ready(a),
        &c,
    )
    .await?;
    assert_eq!(value(t.config_map("release").await?).as_deref(), Some("v3"));

    // A key in no allowed_signers line: refused; then taken back out of Git.
    t.write("envs/prod/release.yaml", &config_map("release", "evil"))?;
    let s4 = stranger.commit(&t, "release evil\n\nTicket: T-4")?;
    t.push_main(false)?;
    let refused = t.until_reason("VerificationFailed", &c).await?;
    let message = ready_message(&refused);
    assert!(
        message.contains(&format!(
            "commit {} by stranger@corp.example signed with ssh-ed25519 key SHA256:",
            &s4[..12]
        )),
        "{message}"
    );
    assert!(message.contains("unknown-key"), "{message}");
    assert_eq!(value(t.config_map("release").await?).as_deref(), Some("v3"));
    rel.git(&t, &["reset", "-q", "--hard", &m3])?;
    t.push_main(true)?;
    t.until("shop", "back at the merge", ready, &c).await?;

    // The developer leaves the signers: the next commit they sign is refused.
    t.signers(&[&rel]).await?;
    let (d5, m5) = merged_release(&t, &dev, &rel, "feature5", "v5", "T-5")?;
    t.push_main(false)?;
    let records = c.records(&format!("{}/shop", t.ns))?;
    let refusal = eventually("the refusal of v5", Duration::from_secs(60), || {
        let found = c
            .records(&format!("{}/shop", t.ns))
            .map_err(|e| e.to_string())
            .map(|rs| rs.into_iter().find(|r| r.revision == m5));
        async move { found.map(|f| f.ok_or_else(|| "not yet".to_string()).map(Some))? }
    })
    .await?;
    assert_eq!(refusal.result, RecordResult::Blocked);
    let error = refusal.error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!("commit {} by dev@corp.example", &d5[..12]))
            && error.contains("unknown-key"),
        "{error}"
    );
    assert_eq!(value(t.config_map("release").await?).as_deref(), Some("v3"));

    // The records: who signed the applied merge, and its ticket.
    let merge = records
        .iter()
        .find(|r| r.revision == m3 && r.result == RecordResult::Succeeded)
        .context("no record of the merge")?;
    let principals: std::collections::BTreeSet<&str> = merge
        .trust
        .iter()
        .filter_map(|c| c.signer.as_ref().map(|s| s.principal.as_str()))
        .collect();
    assert_eq!(principals, ["dev@corp.example", "rel@corp.example"].into());
    assert_eq!(merge.trust[0].commit, m3);
    assert_eq!(
        merge.trust[0].trailers.get("Ticket"),
        Some(&vec!["T-3".to_string()])
    );
    assert!(
        merge
            .trust
            .iter()
            .all(|c| c.result == airgate_core::trust::TrustResult::Good)
    );

    // describe shows the signers and the ticket of the applied revision.
    let out = airgate()
        .args(["describe", "app", "shop", "-n", &t.ns, "--kubeconfig"])
        .arg(&t.p.kubeconfig)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Signed by:")
            && text.contains("rel@corp.example")
            && text.contains("Ticket: T-3"),
        "{text}"
    );
    Ok(())
}

/// With a log key and a repository the controller publishes the audit log
/// to the internal registry; when the leader dies with its disk, a new one
/// restores the published log and continues it with no fork (`audit
/// verify` and the witness agree); a store edited while its controller was
/// down is refused: nothing appended, `AuditLogRefused` on the App, the
/// metric at 0.
#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_is_published_continued_by_a_new_leader_after_a_kill_mid_sync_and_refused_when_edited()
-> Result<()> {
    let _git = GIT.read().await;
    let t = Tenant::new("ctl-audit").await?;
    t.write("envs/prod/settings.yaml", &config_map("settings", "1"))?;
    t.push("one object")?;
    let keys = t.dir.path();
    for (kind, name, out) in [
        ("note", "airgate-test", "log"),
        ("witness", "security.test/w1", "witness"),
    ] {
        let made = airgate()
            .args(["key", "generate", "--type", kind, "--name", name, "--out"])
            .arg(keys.join(out))
            .output()?;
        anyhow::ensure!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    let docker = t.dir.path().join("docker");
    std::fs::create_dir_all(&docker)?;
    std::fs::copy(
        t.p.docker_config()?.path().join("config.json"),
        docker.join("config.json"),
    )?;
    let repo = format!("{}/audit/{}", t.p.internal_registry, t.ns);
    let (key, vkey, ca) = (
        keys.join("log.key").display().to_string(),
        keys.join("log.vkey").display().to_string(),
        t.p.internal_registry_ca.display().to_string(),
    );
    let flags = [
        "--log-key",
        &key,
        "--log-name",
        "test",
        "--log-repository",
        &repo,
        "--ca-file",
        &ca,
    ];
    let audit = |args: &[&str]| -> Result<std::process::Output> {
        Ok(airgate()
            .env("DOCKER_CONFIG", &docker)
            .arg("audit")
            .args(args)
            .args(["--ca-file", &ca])
            .output()?)
    };
    let (repo_ref, vkey_ref, audit_ref) = (repo.as_str(), vkey.as_str(), &audit);
    let published = move |at_least: usize| {
        eventually(
            "the log published",
            Duration::from_secs(30),
            move || async move {
                let out = audit_ref(&[
                    "log",
                    "--log",
                    repo_ref,
                    "--log-key",
                    vkey_ref,
                    "-o",
                    "jsonl",
                ])
                .map_err(|e| e.to_string())?;
                let n = String::from_utf8_lossy(&out.stdout).lines().count();
                if out.status.success() && n >= at_least {
                    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
                } else {
                    Err(format!(
                        "{n} records: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ))
                }
            },
        )
    };
    let witness = || {
        let state = keys.join("witness.state").display().to_string();
        let wkey = keys.join("witness.key").display().to_string();
        audit(&[
            "witness",
            "--log",
            &repo,
            "--log-key",
            &vkey,
            "--key",
            &wkey,
            "--state",
            &state,
        ])
    };

    let lease = format!("{}-lease", t.ns);
    let c1 = t.controller_traced("c1", &lease, None, &flags).await?;
    t.create_app("shop", json!({})).await?;
    let first = t.until("shop", "Ready", ready, &c1).await?;
    let before = published(1).await?.lines().count();
    let w = witness()?;
    anyhow::ensure!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));

    // The leader dies with its disk in the middle of a sync; a controller
    // with an empty disk takes over, restores the published log and
    // continues it.
    const N: usize = 600;
    let many: String = (0..N)
        .map(|i| format!("---\n{}", config_map(&format!("cm-{i}"), "x")))
        .collect();
    t.write("envs/prod/many.yaml", &many)?;
    t.write("envs/prod/settings.yaml", &config_map("settings", "2"))?;
    let second = t.push("second: many objects")?;
    let at_kill = t.until_applying(1).await?;
    drop(c1); // SIGKILL, mid-apply
    assert!(
        at_kill > 1 && at_kill <= N,
        "the kill did not land mid-sync ({at_kill} of {})",
        N + 1
    );
    let c2 = t.controller_traced("c2", &lease, None, &flags).await?;
    t.until(
        "shop",
        "the second commit",
        |a| applied(a).as_deref() == Some(second.as_str()),
        &c2,
    )
    .await?;
    let log = published(before + 1).await?;
    assert!(c2.log().contains("restoring the audit log"), "{}", c2.log());
    for revision in [applied(&first).unwrap_or_default(), second.clone()] {
        assert!(log.contains(&revision), "{revision} not in\n{log}");
    }
    let w = witness()?;
    let said = String::from_utf8_lossy(&w.stderr);
    assert!(
        w.status.success() && said.contains("consistent with the"),
        "{said}"
    );
    let wvkey = keys.join("witness.vkey").display().to_string();
    let verified = audit(&[
        "verify",
        "--log",
        &repo,
        "--log-key",
        &vkey,
        "--witness-key",
        &wvkey,
    ])?;
    let said = String::from_utf8_lossy(&verified.stderr);
    assert!(
        verified.status.success() && said.contains("this log extends them"),
        "{said}"
    );
    drop(c2);

    // The first controller's disk, edited while it was down: it does not
    // append to it. Every App says why, and the metric says 0.
    let conn = rusqlite::Connection::open(keys.join("c1").join("records.db"))?;
    conn.execute(
        "UPDATE sync_records SET body = replace(body, 'succeeded', 'failed') WHERE seq = 1",
        [],
    )?;
    drop(conn);
    let again = t.controller_traced("c1", &lease, None, &flags).await?;
    let refused = t.until_reason("AuditLogRefused", &again).await?;
    let said = ready_message(&refused);
    assert!(
        said.contains("record 1") && said.contains("does not verify"),
        "{said}"
    );
    let metrics =
        t.p.https_client()?
            .get(&again.metrics)
            .send()
            .await?
            .text()
            .await?;
    assert!(
        metrics.contains("airgate_audit_log_consistent 0"),
        "{metrics}"
    );
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(t.p.kube_client().await?, &t.ns);
    let said = eventually("an AuditLogRefused Event", Duration::from_secs(30), || {
        let events = events.clone();
        async move {
            let list = events
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            list.items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("AuditLogRefused"))
                .map(|e| Some(e.message.unwrap_or_default()))
                .ok_or_else(|| "no such Event yet".to_string())
        }
    })
    .await?;
    assert!(said.contains("record 1"), "{said}");
    Ok(())
}

/// A change freeze of a few seconds, for real: a revision pushed during
/// the window waits (the App says Frozen, naming the window and the
/// revision), and is applied once the window has ended; during another
/// window a commit with `Freeze-Override` is applied at once and its
/// record says why.
#[tokio::test]
async fn a_freeze_holds_a_revision_until_its_window_ends_and_an_override_goes_through() -> Result<()>
{
    let _git = GIT.read().await;
    let t = Tenant::new("ctl-freeze").await?;
    t.write("envs/prod/settings.yaml", &config_map("settings", "1"))?;
    let first = t.push("1")?;
    let c = t.ready(json!({})).await?;
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default()
    };
    let rfc3339 = |epoch: i64| -> Result<String> {
        Ok(String::from_utf8(
            Command::new("date")
                .args(["-u", "-d", &format!("@{epoch}"), "+%Y-%m-%dT%H:%M:%SZ"])
                .output()?
                .stdout,
        )?
        .trim()
        .to_string())
    };
    let freeze = |from: i64, to: i64| -> Result<Value> {
        Ok(json!({"freeze": [{"from": rfc3339(from)?, "to": rfc3339(to)?}]}))
    };
    let end = now() + 15;
    t.patch_app("shop", freeze(now() - 60, end)?).await?;
    t.write("envs/prod/settings.yaml", &config_map("settings", "2"))?;
    let second = t.push("2, during the freeze")?;
    let frozen = t
        .until(
            "shop",
            "Frozen, naming the revision",
            |a| {
                a.status
                    .as_ref()
                    .and_then(|s| s.condition(ConditionType::Frozen))
                    .is_some_and(|c| c.status == "True" && c.message.contains(&second[..12]))
            },
            &c,
        )
        .await?;
    let message = frozen
        .status
        .as_ref()
        .and_then(|s| s.condition(ConditionType::Frozen))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("window 1") && message.contains(&rfc3339(end)?),
        "{message}"
    );
    assert_eq!(applied(&frozen).as_deref(), Some(first.as_str()));
    let mode = |cm: Option<ConfigMap>| cm.and_then(|c| c.data).and_then(|d| d.get("mode").cloned());
    assert_eq!(mode(t.config_map("settings").await?).as_deref(), Some("1"));
    let out = airgate()
        .args(["get", "apps", "-n", &t.ns])
        .env("KUBECONFIG", &t.p.kubeconfig)
        .output()?;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("FROZEN") && table.contains(&format!("until {}", rfc3339(end)?)),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The window ends: the pending revision is applied, not before.
    let app = t
        .until(
            "shop",
            "the pending revision applied after the window",
            |a| ready(a) && applied(a).as_deref() == Some(second.as_str()),
            &c,
        )
        .await?;
    assert!(now() >= end, "applied before the window ended");
    assert!(
        app.status
            .as_ref()
            .and_then(|s| s.condition(ConditionType::Frozen))
            .is_none(),
        "the Frozen condition is gone"
    );
    let records = c.records(&format!("{}/shop", t.ns))?;
    let applied_at = records
        .iter()
        .find(|r| r.revision == second && r.result.as_str() == "succeeded")
        .map(|r| r.started_at)
        .context("no record of the pending revision")?;
    assert!(applied_at >= end, "{applied_at} < {end}");

    // Another window; an override is applied at once, and says so.
    t.patch_app("shop", freeze(now() - 60, now() + 600)?)
        .await?;
    t.write("envs/prod/settings.yaml", &config_map("settings", "3"))?;
    let urgent = t.push("3: the fix\n\nFreeze-Override: INC-1 payments are down")?;
    t.until(
        "shop",
        "the override applied",
        |a| applied(a).as_deref() == Some(urgent.as_str()),
        &c,
    )
    .await?;
    assert_eq!(mode(t.config_map("settings").await?).as_deref(), Some("3"));
    let records = c.records(&format!("{}/shop", t.ns))?;
    let record = records
        .iter()
        .find(|r| r.revision == urgent && r.result.as_str() == "succeeded")
        .context("no record of the override")?;
    assert_eq!(
        record.freeze_override.as_deref(),
        Some("INC-1 payments are down")
    );
    Ok(())
}
