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
    /// For an artifact (a signature, an SBOM): what kind it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
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
    #[serde(default)]
    subject: Option<Descriptor>,
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// The manifest a referrer (a signature, an attestation, an SBOM attached
/// with OCI 1.1's `subject`) refers to, if it is one.
pub fn subject_of(bytes: &[u8]) -> Option<Descriptor> {
    serde_json::from_slice::<RawManifest>(bytes)
        .ok()
        .and_then(|m| m.subject)
}

/// How a referrer is listed in its subject's referrers index: its
/// descriptor, with its artifact type (the manifest's `artifactType`, else
/// its config's media type) and annotations, as the OCI 1.1 spec says.
pub fn referrer_descriptor(bytes: &[u8], media_type: &str, digest: &Digest) -> Descriptor {
    let raw = serde_json::from_slice::<RawManifest>(bytes).ok();
    let artifact_type = raw.as_ref().and_then(|m| {
        m.artifact_type
            .clone()
            .or_else(|| m.config.as_ref().map(|c| c.media_type.clone()))
    });
    Descriptor {
        media_type: media_type.to_string(),
        digest: digest.clone(),
        size: bytes.len() as u64,
        platform: None,
        annotations: raw.and_then(|m| m.annotations),
        artifact_type,
    }
}

/// The manifest's `artifactType`, if it has one.
pub fn artifact_type_of(bytes: &[u8]) -> Option<String> {
    serde_json::from_slice::<RawManifest>(bytes)
        .ok()
        .and_then(|m| m.artifact_type)
}

/// The tag under which a registry without the referrers API keeps the
/// referrers index of `subject` (OCI 1.1's referrers tag schema).
pub fn referrers_tag(subject: &Digest) -> String {
    subject.as_str().replacen(':', "-", 1)
}

/// The tags cosign keeps a signature, an attestation and an SBOM of
/// `subject` under, in registries without the referrers API.
pub fn cosign_tags(subject: &Digest) -> [String; 3] {
    let base = referrers_tag(subject);
    [
        format!("{base}.sig"),
        format!("{base}.att"),
        format!("{base}.sbom"),
    ]
}

/// A referrers index: `existing` (the index now at the referrers tag, if
/// any) with `add` listed too, each digest once. Errors if `existing` is
/// not an index.
pub fn referrers_index(
    existing: Option<&[u8]>,
    add: &[Descriptor],
) -> Result<Vec<u8>, ManifestError> {
    let mut manifests = match existing {
        Some(bytes) => match parse_manifest(bytes, OCI_INDEX)? {
            Parsed::Index { manifests } => manifests,
            Parsed::Image { .. } => Vec::new(),
        },
        None => Vec::new(),
    };
    for d in add {
        if !manifests.iter().any(|m| m.digest == d.digest) {
            manifests.push(d.clone());
        }
    }
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    }))
    .map_err(|e| ManifestError::Json(e.to_string()))
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
    fn referrers_are_found_by_subject_and_listed_once_in_the_referrers_index() {
        let sbom = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/spdx+json",
                "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{D1}","size":2}},
                "layers":[],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":9}},
                "annotations":{{"a":"b"}}}}"#
        );
        let subject = subject_of(sbom.as_bytes()).map(|d| d.digest.to_string());
        assert_eq!(subject.as_deref(), Some(D2));
        let own = Digest::of(sbom.as_bytes());
        let d = referrer_descriptor(sbom.as_bytes(), OCI_MANIFEST, &own);
        assert_eq!(d.artifact_type.as_deref(), Some("application/spdx+json"));
        let index = referrers_index(None, std::slice::from_ref(&d)).unwrap_or_default();
        let again = referrers_index(Some(&index), &[d]).unwrap_or_default();
        assert_eq!(index, again, "a referrer is listed once");
        assert!(String::from_utf8_lossy(&again).contains("application/spdx+json"));
        let sub: Digest = D2.parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(referrers_tag(&sub), format!("sha256-{}", &D2[7..]));
        assert_eq!(cosign_tags(&sub)[0], format!("sha256-{}.sig", &D2[7..]));
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
