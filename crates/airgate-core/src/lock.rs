//! The image lock: each image reference a set of manifests uses, pinned to the
//! digest its registry served when `airgate lock` ran. Bundles are made from a
//! lock, never from tags, so what crosses the gap is exactly what was reviewed.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::reference::ImageRef;

pub const API_VERSION: &str = "airgate.dev/v1alpha1";
pub const KIND: &str = "ImageLock";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageLock {
    pub api_version: String,
    pub kind: String,
    pub images: Vec<LockedImage>,
}

/// What a locked reference names: an image, a Helm chart stored as an OCI
/// artifact, or any other OCI artifact (a vulnerability database, a rule
/// pack). All three are carried and pushed the same way, digests kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    Image,
    Chart,
    Artifact,
}

/// Helm's config media type: a manifest with it is a chart.
pub const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
const IMAGE_CONFIGS: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

impl Kind {
    /// What a manifest is, from its config's media type and its
    /// `artifactType` (`None` for an index: an image, for every platform).
    pub fn of(config: Option<&str>, artifact_type: Option<&str>) -> Kind {
        match (config, artifact_type) {
            (None, _) => Kind::Image,
            (Some(HELM_CONFIG), _) => Kind::Chart,
            (Some(c), None) if IMAGE_CONFIGS.contains(&c) => Kind::Image,
            _ => Kind::Artifact,
        }
    }
}

/// One image pinned to a digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockedImage {
    /// The normalised reference as the manifests use it.
    pub reference: ImageRef,
    /// The digest of the manifest or index the reference resolved to.
    pub digest: Digest,
    /// Media type of what the digest names (a manifest or an index).
    pub media_type: String,
    /// For an index, the platforms it holds (`os/arch[/variant]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// Set for a signature, attestation or other referrer: the digest it
    /// refers to (by OCI 1.1 `subject`, or by cosign's tag convention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
    /// A chart from a classic chart repository: the URL of its package,
    /// from which it is carried as Helm's OCI artifact
    /// ([`crate::chart::oci_manifest`]; `digest` is that manifest's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// An image, a chart or another artifact (older locks: an image). Last,
    /// so that a lock reads as before: reference, then digest.
    #[serde(default)]
    pub kind: Kind,
}

impl LockedImage {
    /// The reference pinned to its digest, tag kept.
    pub fn pinned(&self) -> ImageRef {
        self.reference.with_digest(self.digest.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_is_an_image_a_chart_or_an_artifact() {
        let cases = [
            (None, None, Kind::Image),
            (
                Some("application/vnd.oci.image.config.v1+json"),
                None,
                Kind::Image,
            ),
            (
                Some("application/vnd.docker.container.image.v1+json"),
                None,
                Kind::Image,
            ),
            (Some(HELM_CONFIG), None, Kind::Chart),
            (
                Some("application/vnd.aquasec.trivy.config.v1+json"),
                None,
                Kind::Artifact,
            ),
            (
                Some("application/vnd.oci.empty.v1+json"),
                Some("application/vnd.falcosecurity.rulesfile.v1"),
                Kind::Artifact,
            ),
            (
                Some("application/vnd.oci.image.config.v1+json"),
                Some("application/spdx+json"),
                Kind::Artifact,
            ),
        ];
        for (config, artifact, want) in cases {
            assert_eq!(Kind::of(config, artifact), want, "{config:?} {artifact:?}");
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LockError {
    #[error("not an image lock: apiVersion is '{0}', expected '{API_VERSION}'")]
    ApiVersion(String),
    #[error("not an image lock: kind is '{0}', expected '{KIND}'")]
    Kind(String),
    #[error("image {reference} is pinned to {digest}, but the lock says {locked}")]
    DigestConflict {
        reference: String,
        digest: String,
        locked: String,
    },
}

impl ImageLock {
    pub fn new(mut images: Vec<LockedImage>) -> ImageLock {
        images.sort_by(|a, b| a.reference.cmp(&b.reference));
        images.dedup();
        ImageLock {
            api_version: API_VERSION.to_string(),
            kind: KIND.to_string(),
            images,
        }
    }

    /// Checks what serde cannot: the header, and that an image already
    /// pinned in its reference is locked to that same digest.
    pub fn validate(&self) -> Result<(), LockError> {
        if self.api_version != API_VERSION {
            return Err(LockError::ApiVersion(self.api_version.clone()));
        }
        if self.kind != KIND {
            return Err(LockError::Kind(self.kind.clone()));
        }
        for image in &self.images {
            if let Some(d) = image.reference.digest()
                && d != &image.digest
            {
                return Err(LockError::DigestConflict {
                    reference: image.reference.to_string(),
                    digest: d.to_string(),
                    locked: image.digest.to_string(),
                });
            }
        }
        Ok(())
    }
}
