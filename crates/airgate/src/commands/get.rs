//! `airgate get apps`: the Apps, one line each, as `kubectl get` would show
//! them, plus the reason when an App is not Ready; or the objects as YAML or
//! JSON for machines.

use std::process::ExitCode;

use airgate_kube::app::App;
use anyhow::{Context, Result};
use kube::{Api, ResourceExt};

use crate::cli::{GetAppsArgs, ObjectOutput};
use crate::kube_client;

/// `5s`, `3m`, `2h`, `4d`: how long ago `t` was.
pub fn age(t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> String {
    let Some(t) = t else {
        return "<unknown>".to_string();
    };
    let secs = (k8s_openapi::jiff::Timestamp::now().as_second() - t.0.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Columns padded to their widest cell.
pub fn table(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn apps(args: GetAppsArgs) -> Result<ExitCode> {
    crate::block_on(async move {
        let (client, namespace) = kube_client::with_namespace(
            args.kubeconfig.as_deref(),
            args.context.as_deref(),
            args.namespace.as_deref(),
        )
        .await?;
        let api: Api<App> = if args.all_namespaces {
            Api::all(client)
        } else {
            Api::namespaced(client, &namespace)
        };
        let mut list = api
            .list(&Default::default())
            .await
            .context("listing Apps (apps.airgate.dev)\nhint: is the CRD installed? `airgate install | kubectl apply -f -`")?
            .items;
        list.sort_by_key(|a| (a.namespace(), a.name_any()));
        // As kubectl: managedFields are bookkeeping, shown on request only.
        for app in &mut list {
            app.metadata.managed_fields = None;
        }
        match args.output {
            ObjectOutput::Json => {
                crate::out!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "apiVersion": "v1", "kind": "List", "items": list}))?
                )?;
            }
            ObjectOutput::Yaml => {
                crate::stdout::text(&serde_saphyr::to_string(&serde_json::json!({
                    "apiVersion": "v1", "kind": "List", "items": list}))?)?;
            }
            ObjectOutput::Table => {
                if list.is_empty() {
                    eprintln!(
                        "no Apps found{}",
                        if args.all_namespaces {
                            String::new()
                        } else {
                            format!(" in namespace {namespace}")
                        }
                    );
                    return Ok(ExitCode::SUCCESS);
                }
                let mut rows = Vec::new();
                let mut header = vec![
                    "NAME", "REVISION", "READY", "REASON", "FROZEN", "AGE", "MESSAGE",
                ];
                if args.all_namespaces {
                    header.insert(0, "NAMESPACE");
                }
                rows.push(header.iter().map(|s| s.to_string()).collect());
                for app in &list {
                    let status = app.status.clone().unwrap_or_default();
                    let ready = status.condition(airgate_kube::app::ConditionType::Ready);
                    let mut message = ready.map(|c| c.message.clone()).unwrap_or_default();
                    if message.chars().count() > 80 {
                        message = message.chars().take(77).collect::<String>() + "...";
                    }
                    let mut row = vec![
                        app.name_any(),
                        status
                            .last_applied_revision
                            .as_deref()
                            .map(|r| r[..r.len().min(12)].to_string())
                            .unwrap_or_else(|| "-".into()),
                        ready.map_or("Unknown".into(), |c| c.status.clone()),
                        ready.map_or("-".into(), |c| c.reason.clone()),
                        frozen(&status),
                        age(app.metadata.creation_timestamp.as_ref()),
                        message,
                    ];
                    if args.all_namespaces {
                        row.insert(0, app.namespace().unwrap_or_default());
                    }
                    rows.push(row);
                }
                crate::stdout::text(&table(&rows))?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `until TIME` while a change freeze holds the App's revisions back.
fn frozen(status: &airgate_kube::app::AppStatus) -> String {
    status
        .condition(airgate_kube::app::ConditionType::Frozen)
        .filter(|c| c.status == "True")
        .map(|c| {
            c.message
                .split_once(" until ")
                .and_then(|(_, rest)| rest.split(": ").next())
                .map(|t| format!("until {t}"))
                .unwrap_or_else(|| "yes".into())
        })
        .unwrap_or_else(|| "-".into())
}
