//! Building a Kubernetes client the way kubectl would: an explicit kubeconfig,
//! else `$KUBECONFIG`, else `~/.kube/config`, else the in-cluster account.

use std::path::Path;

use anyhow::{Context, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// A client and a label for it (`cluster <server>`) to use in messages.
pub async fn from_kubeconfig(
    path: Option<&Path>,
    context: Option<&str>,
) -> Result<(kube::Client, String)> {
    let config = config(path, context).await?;
    let label = format!("cluster {}", config.cluster_url);
    let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
    Ok((client, label))
}

/// A client and the namespace to use: `namespace` when given, else the
/// kubeconfig context's, else `default`.
pub async fn with_namespace(
    path: Option<&Path>,
    context: Option<&str>,
    namespace: Option<&str>,
) -> Result<(kube::Client, String)> {
    let config = config(path, context).await?;
    let namespace = namespace
        .map(String::from)
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
    Ok((client, namespace))
}

/// The configuration [`from_kubeconfig`] builds its client from: the
/// kubeconfig's `context` (default: its current one).
pub async fn config(path: Option<&Path>, context: Option<&str>) -> Result<kube::Config> {
    let options = KubeConfigOptions {
        context: context.map(String::from),
        ..KubeConfigOptions::default()
    };
    Ok(match path {
        Some(p) => {
            let kc = Kubeconfig::read_from(p)
                .with_context(|| format!("reading kubeconfig {}", p.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .with_context(|| format!("loading kubeconfig {}", p.display()))?
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .context("loading the kubeconfig ($KUBECONFIG, else ~/.kube/config) for --context")?,
        None => kube::Config::infer()
            .await
            .context("no Kubernetes configuration found (set KUBECONFIG or pass --kubeconfig)")?,
    })
}
