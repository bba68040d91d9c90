//! `airgate install`: the manifests that install the controller, printed,
//! written to a directory, or applied.
//!
//! Least privilege is the point. The controller's own account may read
//! Apps, write App status, Events and its Lease, and impersonate
//! ServiceAccounts: those of every namespace (the default), or, with
//! `--tenant-namespace`, only those of the namespaces named. It reads no
//! Secret: everything an App applies, reads or watches, its Git Secret
//! included, is done as the App's ServiceAccount, so what an App may touch
//! is exactly what its namespace's RBAC grants.
//!
//! It fits the cluster's conventions: cluster-scoped objects are named
//! after the install's namespace (two installs coexist), a readiness
//! probe, a metrics Service, requests and limits, a NetworkPolicy, and
//! with `--replicas` more than one a StatefulSet and a
//! PodDisruptionBudget.

mod image;
mod manifests;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cli::InstallArgs;
use manifests::{NAME, Plan, manifests};

fn yaml(objects: &[Value]) -> Result<String> {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(o).context("writing YAML")?);
    }
    Ok(out)
}

pub fn run(args: InstallArgs) -> Result<ExitCode> {
    let plan = Plan::from_args(&args)?;
    let groups = manifests(&plan)?;
    if !plan.image.contains("@sha256:") {
        eprintln!(
            "note: --image {} is not pinned by digest: a tag can move\nhint: use REPOSITORY@sha256:... as `bundle push` pushed it",
            plan.image
        );
    }
    if plan.egress.is_empty() {
        eprintln!(
            "note: the controller's egress is not restricted\nhint: --allow-egress CIDR:PORT for the apiserver, the Git server and the registry adds a NetworkPolicy that allows only those"
        );
    }
    if args.apply {
        return apply(&args, &plan, groups);
    }
    match &args.out {
        None => {
            let all: Vec<Value> = groups.into_iter().flat_map(|(_, o)| o).collect();
            crate::stdout::text(&yaml(&all)?)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for (file, objects) in &groups {
                let path = Path::new(dir).join(file);
                std::fs::write(&path, yaml(objects)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            eprintln!(
                "wrote {} files to {}\nhint: apply them with `kubectl apply --server-side -f {}`",
                groups.len(),
                dir.display(),
                dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--apply`: refuses to replace an install without `--upgrade`, then a
/// staged server-side apply (the CRD first, until Established).
fn apply(args: &InstallArgs, plan: &Plan, groups: Vec<(&str, Vec<Value>)>) -> Result<ExitCode> {
    use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    crate::block_on(async move {
        let (client, label) = crate::kube_client::from_kubeconfig(
            args.kubeconfig.as_deref(),
            args.context.as_deref(),
        )
        .await?;
        let ns = plan.namespace;
        let deployment = kube::Api::<Deployment>::namespaced(client.clone(), ns)
            .get_opt(NAME)
            .await
            .with_context(|| format!("reading Deployment {ns}/{NAME} in {label}"))?;
        let stateful = kube::Api::<StatefulSet>::namespaced(client.clone(), ns)
            .get_opt(NAME)
            .await
            .with_context(|| format!("reading StatefulSet {ns}/{NAME} in {label}"))?;
        let installed = deployment
            .and_then(|d| d.spec?.template.spec?.containers.first()?.image.clone())
            .or_else(|| {
                stateful.and_then(|s| s.spec?.template.spec?.containers.first()?.image.clone())
            });
        if let Some(image) = &installed
            && !args.upgrade
        {
            bail!(
                "airgate is already installed in namespace {ns} (image {image})\nhint: pass --upgrade to replace it (the README says what an upgrade changes)"
            );
        }
        let objects: Vec<(String, Value)> = groups
            .into_iter()
            .flat_map(|(file, objects)| objects.into_iter().map(move |o| (file.to_string(), o)))
            .collect();
        let applier = airgate_kube::Applier::new(client, "airgate-install", ns);
        let changes = applier
            .apply(&objects)
            .await
            .with_context(|| format!("applying the install to {label}"))?;
        for c in &changes.changes {
            eprintln!("{} {:?}", c.object, c.action);
        }
        eprintln!(
            "{} airgate in namespace {ns} ({} objects) in {label}",
            if installed.is_some() {
                "upgraded"
            } else {
                "installed"
            },
            changes.changes.len()
        );
        Ok(ExitCode::SUCCESS)
    })
}
