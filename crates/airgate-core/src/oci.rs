//! The OCI (and Docker v2) manifest formats, as far as airgate needs them: what
//! a manifest or index points at. airgate never re-serialises a manifest; it
//! keeps the bytes it was given, so every digest stays what it was.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_LAYOUT_VERSION: &str = "1.0.0";

/// Every manifest media type airgate accepts, for `Accept` headers.
pub const MANIFEST_TYPES: [&str; 4] = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

pub fn is_manifest_type(media_type: &str) -> bool {
    MANIFEST_TYPES.contains(&media_type)
}

/// A content descriptor: what a manifest says about something it points at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// `os/arch[/variant]`
    pub fn label(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// What a manifest or index points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// An index (or Docker manifest list): the manifests it lists.
    Index { manifests: Vec<Descriptor> },
    /// An image manifest: its config and layers (and any other blobs it names).
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
}

impl Parsed {
    /// Every descriptor the manifest names, in order.
    pub fn children(&self) -> Vec<&Descriptor> {
        match self {
            Parsed::Index { manifests } => manifests.iter().collect(),
            Parsed::Image { config, layers } => {
                std::iter::once(config).chain(layers.iter()).collect()
            }
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error(
        "unsupported manifest media type '{0}' (airgate carries OCI and Docker v2 manifests and indexes)"
    )]
    MediaType(String),
    #[error("manifest says its media type is '{body}', but it was served as '{declared}'")]
    MediaTypeMismatch { declared: String, body: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

/// The media type a manifest declares in its body, if any.
pub fn declared_media_type(bytes: &[u8]) -> Option<String> {
    serde_json::from_slice::<RawManifest>(bytes)
        .ok()
        .and_then(|m| m.media_type)
}

/// Parses `bytes`, served (or recorded) as `media_type`.
pub fn parse_manifest(bytes: &[u8], media_type: &str) -> Result<Parsed, ManifestError> {
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
    if let Some(body) = &raw.media_type
        && body != media_type
    {
        return Err(ManifestError::MediaTypeMismatch {
            declared: media_type.to_string(),
            body: body.clone(),
        });
    }
    if is_index(media_type) {
        return Ok(Parsed::Index {
            manifests: raw.manifests.unwrap_or_default(),
        });
    }
    if media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST {
        let Some(config) = raw.config else {
            return Err(ManifestError::Json(
                "image manifest has no config".to_string(),
            ));
        };
        return Ok(Parsed::Image {
            config,
            layers: raw.layers.unwrap_or_default(),
        });
    }
    Err(ManifestError::MediaType(media_type.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn parses_an_index_with_platforms() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
                {{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":10,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#
        );
        let p = parse_manifest(body.as_bytes(), OCI_INDEX).unwrap_or_else(|e| panic!("{e}"));
        let Parsed::Index { manifests } = p else {
            panic!("not an index")
        };
        assert_eq!(
            manifests[0]
                .platform
                .as_ref()
                .map(Platform::label)
                .as_deref(),
            Some("linux/arm64/v8")
        );
    }

    #[test]
    fn parses_an_image_manifest_and_lists_children_in_order() {
        let body = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"c","digest":"{D1}","size":1}},
                "layers":[{{"mediaType":"l","digest":"{D2}","size":2}}]}}"#
        );
        let p = parse_manifest(body.as_bytes(), DOCKER_MANIFEST).unwrap_or_else(|e| panic!("{e}"));
        let children: Vec<_> = p.children().iter().map(|d| d.digest.to_string()).collect();
        assert_eq!(children, [D1, D2]);
    }

    #[test]
    fn refuses_what_it_cannot_carry_faithfully() {
        assert!(matches!(
            parse_manifest(
                b"{}",
                "application/vnd.docker.distribution.manifest.v1+prettyjws"
            ),
            Err(ManifestError::MediaType(_))
        ));
        let body = format!(r#"{{"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        assert!(matches!(
            parse_manifest(body.as_bytes(), OCI_MANIFEST),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        assert!(matches!(
            parse_manifest(b"not json", OCI_MANIFEST),
            Err(ManifestError::Json(_))
        ));
    }
}
