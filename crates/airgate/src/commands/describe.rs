//! `airgate describe app NAME`: everything about one App an operator asks
//! first: what it syncs and as whom, its conditions, the revisions applied
//! and attempted, what it owns, its recent syncs and the Events on it.

use std::fmt::Write as _;
use std::process::ExitCode;

use airgate_kube::app::{App, AppStatus};
use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use super::get::{age, table};
use crate::cli::DescribeAppArgs;
use crate::kube_client;

pub fn app(args: DescribeAppArgs) -> Result<ExitCode> {
    crate::block_on(async move {
        let (client, namespace) = kube_client::with_namespace(
            args.kubeconfig.as_deref(),
            args.context.as_deref(),
            args.namespace.as_deref(),
        )
        .await?;
        let api: Api<App> = Api::namespaced(client.clone(), &namespace);
        let app = api
            .get_opt(&args.name)
            .await
            .context("reading the App")?
            .with_context(|| {
                format!(
                    "no App {} in namespace {namespace}\nhint: `airgate get apps -A` lists them all",
                    args.name
                )
            })?;
        let events: Api<Event> = Api::namespaced(client, &namespace);
        let selector = format!("involvedObject.kind=App,involvedObject.name={}", args.name);
        let mut events = events
            .list(&ListParams::default().fields(&selector))
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        events.sort_by_key(|e| {
            e.event_time
                .as_ref()
                .map(|t| t.0.as_second())
                .or_else(|| e.last_timestamp.as_ref().map(|t| t.0.as_second()))
                .unwrap_or_default()
        });
        crate::stdout::text(&render(&app, &events))?;
        Ok(ExitCode::SUCCESS)
    })
}

fn render(app: &App, events: &[Event]) -> String {
    let status = app.status.clone().unwrap_or_default();
    let mut out = header(app, &status);
    out.push_str(&commit_trust(app));
    out.push_str(&conditions_and_inventory(&status));
    out.push_str(&history(&status));
    out.push_str(&recent_events(events));
    out
}

/// What the App is and asks for, and where it stands.
fn header(app: &App, status: &AppStatus) -> String {
    let spec = &app.spec;
    let r = &spec.source.git_ref;
    let git_ref = r
        .branch
        .as_ref()
        .map(|b| format!("branch {b}"))
        .or_else(|| r.tag.as_ref().map(|t| format!("tag {t}")))
        .or_else(|| r.commit.as_ref().map(|c| format!("commit {c}")))
        .unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "Name:             {}", app.name_any());
    let _ = writeln!(
        out,
        "Namespace:        {}",
        app.namespace().unwrap_or_default()
    );
    let _ = writeln!(out, "Source:           {} ({git_ref})", spec.source.url);
    let _ = writeln!(
        out,
        "Path:             {}",
        if spec.source.path.is_empty() {
            "/"
        } else {
            &spec.source.path
        }
    );
    let _ = writeln!(out, "Service account:  {}", spec.service_account_name);
    let _ = writeln!(
        out,
        "Interval:         {} (health timeout {})",
        spec.interval, spec.timeout
    );
    let _ = writeln!(
        out,
        "Prune:            {}   Drift: {:?}   Suspended: {}",
        spec.prune, spec.drift, spec.suspend
    );
    let _ = writeln!(
        out,
        "Policy:           registries {}; digests {}",
        if spec.policy.allowed_registries.is_empty() {
            "any".to_string()
        } else {
            spec.policy.allowed_registries.join(", ")
        },
        if spec.policy.require_digests {
            "required"
        } else {
            "optional"
        }
    );
    let _ = writeln!(
        out,
        "Last applied:     {}",
        status.last_applied_revision.as_deref().unwrap_or("-")
    );
    let _ = writeln!(
        out,
        "Last attempted:   {}",
        status.last_attempted_revision.as_deref().unwrap_or("-")
    );
    out
}

fn conditions_and_inventory(status: &AppStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nConditions:");
    if status.conditions.is_empty() {
        let _ = writeln!(out, "  (none yet: is the controller running?)");
    }
    for c in &status.conditions {
        let _ = writeln!(
            out,
            "  {:<12} {:<7} {:<20} {}",
            c.type_, c.status, c.reason, c.message
        );
    }
    match status.objects() {
        Ok(inventory) => {
            let _ = writeln!(out, "\nInventory ({} objects):", inventory.entries.len());
            for object in &inventory.entries {
                let _ = writeln!(out, "  {object}");
            }
        }
        Err(e) => {
            let _ = writeln!(out, "\nInventory: unreadable: {e}");
        }
    }
    out
}

fn history(status: &AppStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nRecent syncs:");
    if status.history.is_empty() {
        let _ = writeln!(out, "  (none)");
    } else {
        let mut rows = vec![
            ["TIME", "KIND", "REVISION", "RESULT", "DURATION", "DETAIL"]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        ];
        for h in &status.history {
            let mut detail = h.message.clone();
            if detail.chars().count() > 100 {
                detail = detail.chars().take(97).collect::<String>() + "...";
            }
            rows.push(vec![
                h.time.clone(),
                h.kind.clone(),
                h.revision[..h.revision.len().min(12)].to_string(),
                h.result.clone(),
                format!("{}ms", h.duration_ms),
                detail,
            ]);
        }
        for line in table(&rows).lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

fn recent_events(events: &[Event]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nEvents:");
    if events.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for e in events.iter().rev().take(15).rev() {
        let when = e
            .event_time
            .as_ref()
            .map(|t| {
                age(Some(&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    t.0,
                )))
            })
            .or_else(|| e.last_timestamp.as_ref().map(|t| age(Some(t))))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<8} {:<18} {:>5} ago  {}",
            e.type_.as_deref().unwrap_or(""),
            e.reason.as_deref().unwrap_or(""),
            when,
            e.message.as_deref().unwrap_or("")
        );
    }
    out
}

/// Commit trust: what the App asks for, and who signed the last applied
/// revision (with its ticket and other trailers).
fn commit_trust(app: &App) -> String {
    let Some(v) = &app.spec.source.verify else {
        return String::new();
    };
    let mut out = String::new();
    let mut asks = format!(
        "mode {}, signers from ConfigMap {}",
        match v.mode {
            airgate_core::trust::VerifyMode::History => "history",
            airgate_core::trust::VerifyMode::Head => "head",
        },
        v.signers.config_map_ref.name
    );
    if let Some(n) = v.min_distinct_signers {
        asks.push_str(&format!(", at least {n} distinct signers"));
    }
    if !v.require_trailers.is_empty() {
        asks.push_str(&format!(", trailers {}", v.require_trailers.join(", ")));
    }
    let _ = writeln!(out, "Verify:           {asks}");
    match app.status.as_ref().and_then(|s| s.verified.as_ref()) {
        Some(found) => {
            let _ = writeln!(
                out,
                "Signed by:        {} ({} commit(s) verified at {})",
                found.signers.join(", "),
                found.commits,
                found.revision.get(..12).unwrap_or(&found.revision)
            );
            for t in &found.trailers {
                let _ = writeln!(out, "                  {t}");
            }
        }
        None => {
            let _ = writeln!(out, "Signed by:        - (no revision verified yet)");
        }
    }
    out
}
