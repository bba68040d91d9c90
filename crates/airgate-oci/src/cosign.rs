//! Writing cosign signatures beside images (see `airgate_core::cosign`):
//! the payload blob, the config, and the manifest under the image's
//! `sha256-<hex>.sig` tag. A signature manifest already there (an upstream
//! signature the bundle carried, an earlier push) keeps its layers; ours
//! is added once.

use airgate_core::cosign::{self, PAYLOAD_TYPE, SIGNATURE_ANNOTATION};
use airgate_core::digest::Digest;
use airgate_core::oci::{self, OCI_MANIFEST};
use bytes::Bytes;
use ed25519_dalek::SigningKey;

use crate::registry::{Manifest, RegistryClient, RegistryError};

const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// Signs `digest` in `repository`; returns the signature manifest's digest.
pub async fn sign(
    client: &RegistryClient,
    registry: &str,
    repository: &str,
    digest: &Digest,
    key: &SigningKey,
) -> Result<Digest, RegistryError> {
    let payload = Bytes::from(cosign::payload(&format!("{registry}/{repository}"), digest));
    let signature = cosign::sign(&payload, key);
    let payload_digest = client
        .put_blob_bytes(registry, repository, &payload)
        .await?;
    let tag = format!("{}.sig", oci::referrers_tag(digest));
    let mut layers: Vec<serde_json::Value> =
        match client.get_manifest(registry, repository, &tag).await {
            Ok(m) => serde_json::from_slice::<serde_json::Value>(&m.bytes)
                .ok()
                .and_then(|v| v["layers"].as_array().cloned())
                .unwrap_or_default(),
            Err(RegistryError::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
    let ours = serde_json::json!({
        "mediaType": PAYLOAD_TYPE,
        "digest": payload_digest.as_str(),
        "size": payload.len(),
        "annotations": {SIGNATURE_ANNOTATION: signature},
    });
    if !layers.contains(&ours) {
        layers.push(ours);
    }
    let diff_ids: Vec<Digest> = layers
        .iter()
        .filter_map(|l| l["digest"].as_str().and_then(|d| d.parse().ok()))
        .collect();
    let config = Bytes::from(cosign::config(&diff_ids));
    let config_digest = client.put_blob_bytes(registry, repository, &config).await?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest.as_str(), "size": config.len()},
        "layers": layers,
    });
    let bytes = Bytes::from(
        serde_json::to_vec(&manifest)
            .map_err(|e| RegistryError::Protocol(format!("encoding a signature: {e}")))?,
    );
    let manifest = Manifest {
        digest: Digest::of(&bytes),
        bytes,
        media_type: OCI_MANIFEST.to_string(),
    };
    client
        .put_manifest(registry, repository, &tag, &manifest)
        .await?;
    Ok(manifest.digest)
}
