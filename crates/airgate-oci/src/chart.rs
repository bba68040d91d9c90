//! Helm charts in a registry: the package a reference names, after its
//! manifest is checked to be Helm's (config media type, content layer).
//! The controller pulls an App's chart with it; `bundle create` reads a
//! chart's schema before carrying it.

use airgate_core::chart::{CHART_LAYER, CHART_LAYER_LEGACY};
use airgate_core::lock::HELM_CONFIG;
use airgate_core::{Digest, ImageRef};
use bytes::Bytes;

use crate::registry::{RegistryClient, RegistryError};

/// The most a chart's package may be (Helm's own limit).
pub const MAX_PACKAGE: u64 = 100 << 20;

/// Where a chart's package is: the manifest's digest and the layer's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChartLayer {
    pub manifest: Digest,
    pub layer: Digest,
}

/// The chart `reference` names (by tag or digest), checked to be a chart.
pub async fn layer(
    client: &RegistryClient,
    reference: &ImageRef,
) -> Result<ChartLayer, RegistryError> {
    let (registry, repository) = (reference.registry(), reference.repository());
    let manifest = client
        .get_manifest(registry, repository, reference.manifest_reference())
        .await?;
    let refused = |why: String| RegistryError::Protocol(format!("oci://{reference}: {why}"));
    let value: serde_json::Value =
        serde_json::from_slice(&manifest.bytes).map_err(|e| refused(e.to_string()))?;
    let config = value["config"]["mediaType"].as_str().unwrap_or_default();
    if config != HELM_CONFIG {
        return Err(refused(format!(
            "is not a Helm chart (its config's media type is '{}')",
            airgate_core::text::shown(config, 100)
        )));
    }
    let layer = value["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| {
            matches!(
                l["mediaType"].as_str(),
                Some(CHART_LAYER | CHART_LAYER_LEGACY)
            )
        })
        .ok_or_else(|| refused("has no chart content layer".into()))?;
    let digest = layer["digest"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| refused("its chart layer has no valid digest".into()))?;
    Ok(ChartLayer {
        manifest: manifest.digest,
        layer: digest,
    })
}

/// The package (`.tgz`) of the chart `reference` names, with the
/// manifest's digest.
pub async fn package(
    client: &RegistryClient,
    reference: &ImageRef,
) -> Result<(Digest, Bytes), RegistryError> {
    let found = layer(client, reference).await?;
    let bytes = client
        .get_blob_bytes(
            reference.registry(),
            reference.repository(),
            &found.layer,
            MAX_PACKAGE,
        )
        .await?;
    Ok((found.manifest, bytes))
}
