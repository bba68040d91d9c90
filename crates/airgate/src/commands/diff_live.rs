//! `airgate diff --live APP -n NS`: what syncing an App would change in
//! the cluster now, like `kubectl diff` but as the controller would sync:
//! the App's revision fetched and rendered with its own credentials, the
//! policy gate, and every object dry-run on the server as the App's
//! ServiceAccount (see `airgate_controller::preview`). Nothing is written.
//! Exits 1 when the cluster differs.

use std::process::ExitCode;

use airgate_controller::preview::{PreviewSettings, Revision, preview};
use airgate_core::object::ObjectRef;
use airgate_kube::app::App;
use airgate_kube::comparable;
use anyhow::{Context, Result};
use kube::Api;
use serde_json::{Value, json};

use super::diff::{differences, exit_code, report};
use crate::cli::DiffArgs;
use crate::kube_client;

fn revision(asked: &str) -> Revision {
    match asked {
        "applied" => Revision::Applied,
        "head" | "HEAD" => Revision::Head,
        commit => Revision::Commit(commit.to_string()),
    }
}

pub fn run(name: &str, args: &DiffArgs) -> Result<ExitCode> {
    crate::block_on(async move {
        let config =
            kube_client::config(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client =
            kube::Client::try_from(config.clone()).context("building the Kubernetes client")?;
        let app = Api::<App>::namespaced(client, &namespace)
            .get_opt(name)
            .await
            .context("reading the App")?
            .with_context(|| {
                format!("no App {name} in namespace {namespace}\nhint: `airgate get apps -A` lists them all")
            })?;
        let work = tempfile::tempdir().context("making a scratch directory")?;
        let registry =
            airgate_oci::RegistryClient::new(crate::registry_options::options(&args.registry)?)?;
        let settings = PreviewSettings {
            config,
            work_dir: work.path().to_path_buf(),
            kustomize: args.kustomize.clone(),
            helm: args.helm.clone(),
            registry: Some(registry),
        };
        let seen = preview(settings, &app, revision(&args.revision))
            .await
            .map_err(|e| anyhow::anyhow!("App {namespace}/{name}: {e}"))?;
        let mut live: Vec<(ObjectRef, Value)> = Vec::new();
        let mut planned: Vec<(ObjectRef, Value)> = Vec::new();
        for p in seen.objects {
            if let Some(v) = p.live {
                live.push((p.object.clone(), comparable(v)));
            }
            planned.push((
                p.object,
                p.dry_run.map(comparable).unwrap_or_else(|| json!({})),
            ));
        }
        live.extend(seen.pruned.iter().map(|r| (r.clone(), json!({}))));
        let diffs = differences(&live, &planned);
        report(&diffs, args.output)?;
        let short = &seen.commit.id[..seen.commit.id.len().min(12)];
        for v in &seen.violations {
            eprintln!(
                "warning: the policy gate refuses this revision, so a sync would apply nothing: {v}"
            );
        }
        for h in &seen.hooks {
            eprintln!("note: Helm hook {h} would run during the sync (not previewed)");
        }
        eprintln!(
            "App {namespace}/{name} at {short}: {} object(s) differ from the cluster ({} would be pruned)",
            diffs.len(),
            seen.pruned.len()
        );
        Ok(exit_code(&diffs))
    })
}
