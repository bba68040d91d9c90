//! `airgate controller`: run the reconciler (see `airgate_controller`):
//! flags mapped to its settings.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::cli::ControllerArgs;
use airgate_controller::{self as controller, Settings, log};

use crate::cli::LogFormat;
use crate::kube_client;

/// `hostname-pid`: unique among controllers sharing a Lease.
fn default_identity() -> String {
    let host = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "airgate".to_string());
    format!("{host}-{}", std::process::id())
}

pub fn run(args: ControllerArgs) -> Result<ExitCode> {
    let format = match args.log_format {
        LogFormat::Json => log::LogFormat::Json,
        LogFormat::Text => log::LogFormat::Text,
    };
    log::init(format, &args.log_level).map_err(anyhow::Error::msg)?;
    if args.lease_duration < 3 {
        bail!("--lease-duration must be at least 3 seconds");
    }
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    crate::block_on(async move {
        let config =
            kube_client::config(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
        let registry =
            airgate_oci::RegistryClient::new(crate::registry_options::options(&args.registry)?)?;
        let log_repository = match &args.log_repository {
            None => None,
            Some(location) => Some(airgate_oci::files::RepoFiles::new(
                registry.clone(),
                location,
            )?),
        };
        let store = args
            .store
            .clone()
            .unwrap_or_else(|| args.data_dir.join("records.db"));
        controller::run(Settings {
            config,
            namespace: args.namespace,
            lease_namespace: args.lease_namespace,
            lease_name: args.lease_name,
            lease_duration: Duration::from_secs(args.lease_duration),
            identity: args.identity.unwrap_or_else(default_identity),
            data_dir: args.data_dir,
            store,
            log_key: args.log_key,
            log_name: args.log_name,
            log_repository,
            registry,
            kustomize: args.kustomize,
            helm: args.helm,
            listen: args.listen,
            ui_listen: args.ui_listen,
            concurrency: args.concurrency,
        })
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}
