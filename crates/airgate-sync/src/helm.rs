//! Helm Apps: the chart pulled from the internal registry as the App, the
//! cluster's capabilities for `helm template`, and the render cache keyed
//! by what a render depends on.
//!
//! Guarantees:
//! - A chart is read with the App's own credentials and CA (its Secret,
//!   read as its ServiceAccount), never the controller's. Cached chart
//!   bytes and renders are served to an App only after its own manifest
//!   request succeeded: a tenant gets no chart through another's access.
//! - The chart's registry passes the App's policy (allowed registries,
//!   digest pinning) before any request is made to it.
//! - Helm runs offline ([`airgate_render::helm`]): the chart is handed to
//!   it as a file; it reaches no registry or repository.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airgate_core::chart::ChartSource;
use airgate_core::{Digest, ImageRef};
use airgate_git::Access;
use airgate_oci::{RegistryClient, RegistryOptions};
use bytes::Bytes;

use crate::SyncError;

/// The App's chart, checked (`spec.source.helm`).
#[derive(Clone, Debug)]
pub struct HelmSpec {
    pub chart: ChartSource,
    /// Relative to the App's path.
    pub values_files: Vec<String>,
    /// Inline values (a JSON object), applied last.
    pub values: Option<serde_json::Value>,
    pub release_name: String,
    /// Credentials and CA for the chart's registry.
    pub access: Access,
}

impl HelmSpec {
    /// What, besides the Git revision, a render depends on: part of the
    /// revision cache's key, so a changed chart version or values in the
    /// App re-renders the same revision. The credentials are part of it:
    /// an App with other credentials (or none) never gets a render made
    /// with someone else's.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
            self.chart.shown(),
            self.values_files.join("\u{1}"),
            self.values
                .as_ref()
                .map(|v| v.to_string())
                .unwrap_or_default(),
            self.release_name,
            self.access.fingerprint()
        )
    }
}

/// How long the cluster's version and API versions are kept.
const CAPABILITIES_KEPT: Duration = Duration::from_secs(60);
/// The most a chart's package may be for the controller: real charts are
/// well under a megabyte compressed, and the controller's memory is
/// shared by every App.
const MAX_PACKAGE: u64 = 16 << 20;
/// How many bytes of chart packages, and how many renders, are kept.
const LAYERS_KEPT: u64 = 32 << 20;
const RENDERS_KEPT: usize = 64;

/// `.Capabilities` for `helm template`, from the live cluster's discovery.
#[derive(Clone, Debug, Default)]
pub struct Capabilities {
    pub kube_version: String,
    /// `group/version` and `group/version/Kind`, sorted.
    pub api_versions: Vec<String>,
}

/// A pulled chart: its manifest digest and its content (a `.tgz`).
#[derive(Clone, Debug)]
pub struct PulledChart {
    pub digest: Digest,
    pub tgz: Bytes,
}

/// What [`Helm`] keeps between renders.
#[derive(Default)]
pub struct Helm {
    capabilities: tokio::sync::Mutex<Option<(Instant, Arc<Capabilities>)>>,
    /// Registry clients by (registry, access fingerprint).
    clients: Mutex<HashMap<(String, String), RegistryClient>>,
    /// Chart layers by digest, newest last.
    layers: Mutex<VecDeque<(Digest, Bytes)>>,
    /// Renders by key, newest last: the objects as compact JSON, and the
    /// nondeterministic templates found.
    renders: Mutex<VecDeque<(Digest, Arc<crate::Rendering>)>>,
    /// The controller's registry settings: plain-HTTP registries and CAs
    /// (never its credentials).
    base: RegistryOptions,
}

impl std::fmt::Debug for Helm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Helm").finish_non_exhaustive()
    }
}

fn internal(e: impl std::fmt::Display) -> SyncError {
    SyncError::Internal(e.to_string())
}

impl Helm {
    /// Charts are read trusting `base`'s CAs and plain-HTTP registries, with
    /// each App's own credentials.
    pub fn new(base: &RegistryOptions) -> Helm {
        Helm {
            base: RegistryOptions {
                insecure: base.insecure.clone(),
                ca_files: base.ca_files.clone(),
                attempts: 3,
                ..RegistryOptions::default()
            },
            ..Helm::default()
        }
    }

    /// The cluster's version and API versions, read at most every minute
    /// (discovery is open to every authenticated account).
    pub async fn capabilities(
        &self,
        config: &kube::Config,
    ) -> Result<Arc<Capabilities>, SyncError> {
        let mut kept = self.capabilities.lock().await;
        if let Some((at, caps)) = kept.as_ref()
            && at.elapsed() < CAPABILITIES_KEPT
        {
            return Ok(caps.clone());
        }
        let client = kube::Client::try_from(config.clone()).map_err(internal)?;
        let version = client
            .apiserver_version()
            .await
            .map_err(|e| internal(format!("reading the cluster's version: {e}")))?;
        let discovery = kube::Discovery::new(client.clone());
        let discovery = match discovery.run_aggregated().await {
            Ok(d) => d,
            Err(_) => kube::Discovery::new(client)
                .run()
                .await
                .map_err(|e| internal(format!("discovery: {e}")))?,
        };
        let mut api_versions = Vec::new();
        for group in discovery.groups() {
            for version in group.versions() {
                let gv = if group.name().is_empty() {
                    version.to_string()
                } else {
                    format!("{}/{version}", group.name())
                };
                for (resource, _) in group.versioned_resources(version) {
                    api_versions.push(format!("{gv}/{}", resource.kind));
                }
                api_versions.push(gv);
            }
        }
        api_versions.sort();
        api_versions.dedup();
        let caps = Arc::new(Capabilities {
            kube_version: version.git_version,
            api_versions,
        });
        *kept = Some((Instant::now(), caps.clone()));
        Ok(caps)
    }

    fn client(&self, registry: &str, access: &Access) -> Result<RegistryClient, SyncError> {
        let key = (registry.to_string(), access.fingerprint());
        let mut clients = self.clients.lock().map_err(|_| internal("poisoned"))?;
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let mut options = self.base.clone();
        if let Some(username) = &access.username {
            options.credentials.insert(
                registry,
                airgate_oci::auth::Credential {
                    username: username.clone(),
                    password: access.password.clone().unwrap_or_default(),
                },
            );
        }
        options.ca_pems.extend(access.ca_pem.clone());
        let client = RegistryClient::new(options).map_err(|e| SyncError::Render {
            path: "spec.source.helm".into(),
            revision: String::new(),
            message: e.to_string(),
        })?;
        if clients.len() >= 256 {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// The chart `reference` names, read as the App (see the module docs).
    pub async fn pull(
        &self,
        reference: &ImageRef,
        access: &Access,
    ) -> Result<PulledChart, SyncError> {
        let failed = |message: String| SyncError::Render {
            path: "spec.source.helm.chart".into(),
            revision: String::new(),
            message: format!("oci://{reference}: {message}"),
        };
        let client = self.client(reference.registry(), access)?;
        // Every time, as the App: what is cached is served only to an App
        // that may read the manifest.
        let found = airgate_oci::chart::layer(&client, reference)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let cached = self
            .layers
            .lock()
            .map_err(|_| internal("poisoned"))?
            .iter()
            .find(|(d, _)| *d == found.layer)
            .map(|(_, b)| b.clone());
        let tgz = match cached {
            Some(b) => b,
            None => {
                let b = client
                    .get_blob_bytes(
                        reference.registry(),
                        reference.repository(),
                        &found.layer,
                        MAX_PACKAGE,
                    )
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                let mut layers = self.layers.lock().map_err(|_| internal("poisoned"))?;
                layers.push_back((found.layer, b.clone()));
                while layers.iter().map(|(_, b)| b.len() as u64).sum::<u64>() > LAYERS_KEPT {
                    layers.pop_front();
                }
                b
            }
        };
        Ok(PulledChart {
            digest: found.manifest,
            tgz,
        })
    }

    /// A render kept under `key`, if any.
    pub(crate) fn cached(&self, key: &Digest) -> Option<Arc<crate::Rendering>> {
        let renders = self.renders.lock().ok()?;
        renders
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, r)| r.clone())
    }

    /// Keeps a render under `key`.
    pub(crate) fn keep(&self, key: Digest, rendering: Arc<crate::Rendering>) {
        if let Ok(mut renders) = self.renders.lock() {
            renders.retain(|(k, _)| *k != key);
            renders.push_back((key, rendering));
            if renders.len() > RENDERS_KEPT {
                renders.pop_front();
            }
        }
    }
}

/// The digest of a Git chart directory: each file's name and bytes, in
/// name order (`files` as `read_paths` returns them).
pub fn directory_digest(files: &std::collections::BTreeMap<String, Vec<u8>>, dir: &str) -> Digest {
    let prefix = format!("{}/", dir.trim_end_matches('/'));
    let mut bytes = Vec::new();
    for (name, content) in files.range(prefix.clone()..) {
        if !name.starts_with(&prefix) {
            break;
        }
        bytes.extend_from_slice(&(name.len() as u64).to_be_bytes());
        bytes.extend_from_slice(name.as_bytes());
        bytes.extend_from_slice(&(content.len() as u64).to_be_bytes());
        bytes.extend_from_slice(content);
    }
    Digest::of(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_directory_digest_covers_its_files_only() {
        let mut files = std::collections::BTreeMap::new();
        files.insert("charts/shop/Chart.yaml".to_string(), b"name: shop".to_vec());
        files.insert("charts/shop/templates/a.yaml".to_string(), b"a".to_vec());
        files.insert("charts/shopping/x".to_string(), b"x".to_vec());
        files.insert("envs/prod/values.yaml".to_string(), b"v".to_vec());
        let before = directory_digest(&files, "charts/shop");
        files.insert("charts/shopping/y".to_string(), b"y".to_vec());
        files.insert("envs/prod/values.yaml".to_string(), b"w".to_vec());
        assert_eq!(directory_digest(&files, "charts/shop/"), before);
        files.insert("charts/shop/templates/a.yaml".to_string(), b"b".to_vec());
        assert_ne!(directory_digest(&files, "charts/shop"), before);
    }
}
