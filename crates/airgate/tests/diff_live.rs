//! `airgate diff --live`: what a sync would change, read from the
//! perimeter's apiserver by server-side dry-run as the App's
//! ServiceAccount, with nothing written.

use std::process::Output;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

mod tenant;
use tenant::*;

fn secret(password: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: {password}\n"
    )
}

fn diff_live(t: &Tenant, extra: &[&str]) -> Result<Output> {
    Ok(airgate()
        .args(["diff", "--live", "shop", "-n", &t.ns, "--kubeconfig"])
        .arg(&t.p.kubeconfig)
        .args(extra)
        .output()?)
}

#[tokio::test]
async fn diff_live_shows_what_the_next_sync_changes_masks_secrets_and_writes_nothing() -> Result<()>
{
    let _git = GIT.read().await;
    let t = Tenant::new("diff-live").await?;
    t.write("envs/prod/settings.yaml", &config_map("settings", "a"))?;
    t.write("envs/prod/extra.yaml", &config_map("extra", "x"))?;
    t.write("envs/prod/db.yaml", &secret("old-pass-1"))?;
    t.push("a")?;
    let c = t.ready(json!({})).await?;

    // Synced: the cluster is what the applied revision says.
    let same = diff_live(&t, &[])?;
    let stderr = String::from_utf8_lossy(&same.stderr);
    assert_eq!(
        same.status.code(),
        Some(0),
        "stdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&same.stdout)
    );
    assert!(stderr.contains("0 object(s) differ"), "{stderr}");

    // A new revision the suspended App has not applied.
    t.patch_app("shop", json!({"suspend": true})).await?;
    t.until_reason("Suspended", &c).await?;
    t.write("envs/prod/settings.yaml", &config_map("settings", "b"))?;
    t.write("envs/prod/db.yaml", &secret("new-pass-2"))?;
    t.write("envs/prod/added.yaml", &config_map("added", "y"))?;
    t.remove("envs/prod/extra.yaml")?;
    let head = t.push("b")?;

    let next = diff_live(&t, &["--revision", "head", "-o", "json"])?;
    let stdout = String::from_utf8_lossy(&next.stdout);
    let stderr = String::from_utf8_lossy(&next.stderr);
    assert_eq!(next.status.code(), Some(1), "{stdout}\n{stderr}");
    let diffs: serde_json::Value = serde_json::from_slice(&next.stdout)?;
    let ns = &t.ns;
    let summary: Vec<(String, String)> = diffs
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d["object"].as_str().unwrap_or_default().to_string(),
                d["change"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (format!("ConfigMap/{ns}/added"), "added".to_string()),
            (format!("ConfigMap/{ns}/extra"), "removed".to_string()),
            (format!("ConfigMap/{ns}/settings"), "changed".to_string()),
            (format!("Secret/{ns}/db"), "changed".to_string()),
        ],
        "{stdout}"
    );
    assert_eq!(
        diffs[2]["fields"],
        json!([["data.mode", "a", "b"]]),
        "only the value changes: {stdout}"
    );
    for secret in ["old-pass-1", "new-pass-2"] {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(secret);
        assert!(
            !stdout.contains(secret) && !stdout.contains(&encoded) && !stderr.contains(&encoded),
            "a Secret value was shown: {stdout}"
        );
    }
    assert!(stderr.contains(&head[..12]), "{stderr}");
    assert!(stderr.contains("1 would be pruned"), "{stderr}");

    // Nothing was written: the cluster still has the applied revision.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mode = t
        .config_map("settings")
        .await?
        .and_then(|c| c.data)
        .and_then(|d| d.get("mode").cloned());
    assert_eq!(mode.as_deref(), Some("a"), "diff --live wrote");
    assert!(
        t.config_map("added").await?.is_none(),
        "diff --live created"
    );
    assert!(t.config_map("extra").await?.is_some(), "diff --live pruned");
    let applied_rev = diff_live(&t, &["--revision", "applied"])?;
    assert_eq!(applied_rev.status.code(), Some(0));

    // A revision that is not a full commit id is refused, naming it.
    let short = diff_live(&t, &["--revision", &head[..7]])?;
    assert_eq!(short.status.code(), Some(2), "an error is not a difference");
    assert!(String::from_utf8_lossy(&short.stderr).contains("not a full commit id"));
    Ok(())
}
