//! Import artifacts: what `bundle push` leaves beside every image it
//! pushes, and how a reader finds them again.
//!
//! Why referrers: an import must be found from the one thing a reader has,
//! the image's digest, and must not need a database of its own. An OCI 1.1
//! referrer (a manifest whose `subject` is the image) is exactly that, and
//! a registry without the referrers API lists it under the referrers tag,
//! as OCI 1.1 says. The artifact (artifact type
//! [`provenance::ARTIFACT_TYPE`]) has three layers: the import statement,
//! the bundle's inventory as signed, and its signature. All three blobs are
//! the same for every image of one push, so they are stored once per
//! repository.
//!
//! Guarantees: [`find`] returns the layers of every import artifact listed
//! for the image, each read within its cap and checked against its digest;
//! whether any of it is true is for [`provenance::verify`] to say.

use airgate_core::digest::Digest;
use airgate_core::oci::{self, Descriptor, OCI_MANIFEST, Parsed};
use airgate_core::provenance::{self, Evidence};
use bytes::Bytes;

use crate::bundle::{MAX_INVENTORY, MAX_SIGNATURE};
use crate::files::RepoFiles;
use crate::registry::{Manifest, RegistryClient, RegistryError};

const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";
const MAX_STATEMENT: u64 = 4 << 20;
/// Import artifacts read per image, at most (each push adds one).
const MAX_IMPORTS: usize = 64;

/// What one push leaves with every image.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// The import statement's bytes ([`provenance::Import`], JSON).
    pub statement: Bytes,
    /// The inventory, byte for byte as signed.
    pub inventory: Bytes,
    /// The signature file, for a signed bundle.
    pub signature: Option<Bytes>,
}

impl Artifact {
    fn layers(&self) -> Vec<(&'static str, &Bytes)> {
        let mut out = vec![
            (provenance::IMPORT_TYPE, &self.statement),
            (provenance::INVENTORY_TYPE, &self.inventory),
        ];
        if let Some(s) = &self.signature {
            out.push((provenance::SIGNATURE_TYPE, s));
        }
        out
    }
}

/// An image manifest of `artifact_type`: the empty config and `layers`
/// (media type, digest, size), with `subject` when it refers to one.
pub fn artifact_manifest(
    artifact_type: &str,
    layers: &[serde_json::Value],
    subject: Option<&Descriptor>,
) -> Result<Manifest, RegistryError> {
    let mut manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_TYPE, "digest": Digest::of(b"{}").as_str(), "size": 2},
        "layers": layers,
    });
    if let Some(s) = subject {
        manifest["subject"] = serde_json::json!({
            "mediaType": s.media_type, "digest": s.digest.as_str(), "size": s.size,
        });
    }
    let bytes = Bytes::from(
        serde_json::to_vec(&manifest)
            .map_err(|e| RegistryError::Protocol(format!("encoding an {artifact_type}: {e}")))?,
    );
    Ok(Manifest {
        digest: Digest::of(&bytes),
        bytes,
        media_type: OCI_MANIFEST.to_string(),
    })
}

/// Attaches `artifact` to `subject` in `repository`: its blobs, then the
/// referrer, then (for a registry without the referrers API) the referrers
/// tag. Returns the referrer's digest.
pub async fn attach(
    client: &RegistryClient,
    registry: &str,
    repository: &str,
    subject: &Descriptor,
    artifact: &Artifact,
) -> Result<Digest, RegistryError> {
    client
        .put_blob_bytes(registry, repository, &Bytes::from_static(b"{}"))
        .await?;
    let mut layers = Vec::new();
    for (media_type, data) in artifact.layers() {
        let digest = client.put_blob_bytes(registry, repository, data).await?;
        layers.push(serde_json::json!({
            "mediaType": media_type, "digest": digest.as_str(), "size": data.len(),
        }));
    }
    let manifest = artifact_manifest(provenance::ARTIFACT_TYPE, &layers, Some(subject))?;
    let indexed = client
        .put_manifest(registry, repository, manifest.digest.as_str(), &manifest)
        .await?;
    if !indexed {
        let listed = oci::referrer_descriptor(&manifest.bytes, OCI_MANIFEST, &manifest.digest);
        crate::push::update_referrers_tag(client, registry, repository, &subject.digest, &[listed])
            .await
            .map_err(|e| RegistryError::Protocol(e.to_string()))?;
    }
    Ok(manifest.digest)
}

/// The layers of every import artifact attached to `digest` in
/// `repository` (see the module's guarantees).
pub async fn find(
    client: &RegistryClient,
    registry: &str,
    repository: &str,
    digest: &Digest,
) -> Result<Vec<Evidence>, RegistryError> {
    let listed = client.list_referrers(registry, repository, digest).await?;
    let mut out = Vec::new();
    for d in listed
        .iter()
        .filter(|d| d.artifact_type.as_deref() == Some(provenance::ARTIFACT_TYPE))
        .take(MAX_IMPORTS)
    {
        let manifest = client
            .get_manifest(registry, repository, d.digest.as_str())
            .await?;
        let layers = match oci::parse_manifest(&manifest.bytes, &manifest.media_type) {
            Ok(Parsed::Image { layers, .. }) => layers,
            _ => continue,
        };
        let mut evidence = Evidence::default();
        for layer in layers {
            let max = match layer.media_type.as_str() {
                provenance::IMPORT_TYPE => MAX_STATEMENT,
                provenance::INVENTORY_TYPE => MAX_INVENTORY,
                provenance::SIGNATURE_TYPE => MAX_SIGNATURE,
                _ => continue,
            };
            if layer.size > max {
                continue;
            }
            let data = client
                .get_blob_bytes(registry, repository, &layer.digest, max)
                .await?
                .to_vec();
            match layer.media_type.as_str() {
                provenance::IMPORT_TYPE => evidence.import = data,
                provenance::INVENTORY_TYPE => evidence.inventory = data,
                _ => evidence.signature = Some(data),
            }
        }
        out.push(evidence);
    }
    Ok(out)
}

/// Where, beside the audit log's repository, `bundle push --log-repository`
/// leaves each import for the controller to record (`REPO/imports`): the
/// statement, inventory and signature as files named by the import's id.
pub const INBOX: &str = "imports";

fn inbox_path(id: &Digest, part: &str) -> String {
    format!("{}/{part}", id.hex())
}

/// Leaves `artifact` in the inbox; returns the import's id.
pub async fn leave(inbox: &RepoFiles, artifact: &Artifact) -> Result<Digest, RegistryError> {
    let id = Digest::of(&artifact.statement);
    inbox
        .put(&inbox_path(&id, "inventory"), &artifact.inventory)
        .await?;
    if let Some(s) = &artifact.signature {
        inbox.put(&inbox_path(&id, "signature"), s).await?;
    }
    // The statement last: an id is listed only once its files are there.
    inbox
        .put(&inbox_path(&id, "statement"), &artifact.statement)
        .await?;
    Ok(id)
}

/// The ids of the imports in the inbox.
pub async fn waiting(inbox: &RepoFiles) -> Result<Vec<Digest>, RegistryError> {
    Ok(inbox
        .tags()
        .await?
        .iter()
        .filter_map(|t| t.strip_suffix("-statement"))
        .filter_map(|hex| format!("sha256:{hex}").parse().ok())
        .collect())
}

/// The files of import `id`, as left; `None` when its statement is gone.
pub async fn take(inbox: &RepoFiles, id: &Digest) -> Result<Option<Evidence>, RegistryError> {
    let Some(import) = inbox.get(&inbox_path(id, "statement")).await? else {
        return Ok(None);
    };
    let inventory = inbox
        .get(&inbox_path(id, "inventory"))
        .await?
        .unwrap_or_default();
    let signature = inbox.get(&inbox_path(id, "signature")).await?;
    Ok(Some(Evidence {
        import,
        inventory,
        signature,
    }))
}
