//! Small files kept in a registry repository, one tag each: where the
//! audit log is published (its tiles, entry bundles, checkpoint and
//! witness cosignatures).
//!
//! Why a registry: it is the one store inside the perimeter that is
//! already durable, backed up and readable by every reader of the log,
//! and its blobs are content-addressed, so a tile cannot change under its
//! digest. Each file is an OCI artifact (artifact type
//! [`ARTIFACT_TYPE`]): an image manifest with the empty config and one
//! layer holding the file, titled with its path, under the tag the path
//! maps to (`/` becomes `-`: `tile/entries/x001/234.p/17` is tagged
//! `tile-entries-x001-234.p-17`). Tagged manifests keep their blobs from
//! the registry's garbage collection.
//!
//! Guarantees: [`RepoFiles::get`] returns a file only when its manifest
//! names it by path and its blob matches the digest, within 16 MiB.

use airgate_core::digest::Digest;
use bytes::Bytes;

use crate::registry::{RegistryClient, RegistryError};

/// The artifact type of every file airgate keeps in a repository.
pub const ARTIFACT_TYPE: &str = "application/vnd.airgate.audit.v1";
/// The media type of the file's layer.
pub const FILE_TYPE: &str = "application/vnd.airgate.audit.file.v1";
const TITLE: &str = "org.opencontainers.image.title";
const MAX_FILE: u64 = 16 << 20;

/// A repository holding files by path.
#[derive(Clone, Debug)]
pub struct RepoFiles {
    client: RegistryClient,
    registry: String,
    repository: String,
}

/// The tag a path is kept under.
pub fn tag(path: &str) -> Result<String, RegistryError> {
    let tag = path.replace('/', "-");
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphanumeric() || c == '_' || (i > 0 && (c == '.' || c == '-'))
        });
    if ok {
        Ok(tag)
    } else {
        Err(RegistryError::Protocol(format!(
            "{path:?} cannot be kept as a tag"
        )))
    }
}

impl RepoFiles {
    /// The repository at `location`, `HOST[:PORT]/PATH`.
    pub fn new(client: RegistryClient, location: &str) -> Result<RepoFiles, RegistryError> {
        let location = location.trim_start_matches("oci://").trim_end_matches('/');
        match location.split_once('/') {
            Some((registry, repository)) if !registry.is_empty() && !repository.is_empty() => {
                Ok(RepoFiles {
                    client,
                    registry: registry.to_string(),
                    repository: repository.to_string(),
                })
            }
            _ => Err(RegistryError::Config(format!(
                "{location:?} is not a repository: give HOST[:PORT]/PATH, for example registry.internal:5000/airgate/audit"
            ))),
        }
    }

    /// The repository `PATH/name` beside this one, with the same client.
    pub fn beside(&self, name: &str) -> RepoFiles {
        RepoFiles {
            client: self.client.clone(),
            registry: self.registry.clone(),
            repository: format!("{}/{name}", self.repository),
        }
    }

    /// Every tag in the repository (see [`tag`] for how paths map to them).
    pub async fn tags(&self) -> Result<Vec<String>, RegistryError> {
        self.client
            .list_tags(&self.registry, &self.repository)
            .await
    }

    /// `HOST/PATH`, for messages.
    pub fn location(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Keeps `data` at `path` (replacing what the path's tag named).
    pub async fn put(&self, path: &str, data: &[u8]) -> Result<(), RegistryError> {
        let (registry, repository) = (&self.registry, &self.repository);
        let data = Bytes::copy_from_slice(data);
        let digest = self
            .client
            .put_blob_bytes(registry, repository, &data)
            .await?;
        self.client
            .put_blob_bytes(registry, repository, &Bytes::from_static(b"{}"))
            .await?;
        let layer = serde_json::json!({
            "mediaType": FILE_TYPE,
            "digest": digest.as_str(),
            "size": data.len(),
            "annotations": {TITLE: path},
        });
        let manifest = crate::imports::artifact_manifest(ARTIFACT_TYPE, &[layer], None)?;
        self.client
            .put_manifest(registry, repository, &tag(path)?, &manifest)
            .await?;
        Ok(())
    }

    /// The file at `path`, or `None` when the repository has none.
    pub async fn get(&self, path: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        let (registry, repository) = (&self.registry, &self.repository);
        let manifest = match self
            .client
            .get_manifest(registry, repository, &tag(path)?)
            .await
        {
            Ok(m) => m,
            Err(RegistryError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let bad = |why: &str| {
            RegistryError::Protocol(format!(
                "{}:{} is not airgate's file {path}: {why}",
                self.location(),
                tag(path).unwrap_or_default()
            ))
        };
        let parsed: serde_json::Value =
            serde_json::from_slice(&manifest.bytes).map_err(|_| bad("not JSON"))?;
        let layer = match parsed["layers"].as_array().map(Vec::as_slice) {
            Some([layer]) => layer,
            _ => return Err(bad("not one layer")),
        };
        if layer["annotations"][TITLE].as_str() != Some(path)
            || layer["mediaType"].as_str() != Some(FILE_TYPE)
        {
            return Err(bad("its layer names another file"));
        }
        let digest: Digest = layer["digest"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| bad("no digest"))?;
        let data = self
            .client
            .get_blob_bytes(registry, repository, &digest, MAX_FILE)
            .await?;
        Ok(Some(data.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tile_path_maps_to_a_tag_and_anything_else_is_refused() {
        let cases = [
            (
                "tile/entries/x001/234.p/17",
                Some("tile-entries-x001-234.p-17"),
            ),
            ("tile/0/000", Some("tile-0-000")),
            ("checkpoint", Some("checkpoint")),
            ("witness/0a1b2c3d", Some("witness-0a1b2c3d")),
            ("../x", None),
            ("-x", None),
            ("a b", None),
        ];
        for (path, want) in cases {
            assert_eq!(tag(path).ok().as_deref(), want, "{path}");
        }
    }
}
