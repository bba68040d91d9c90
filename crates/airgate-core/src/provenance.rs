//! Provenance: which import brought an image into the perimeter, and
//! whether that import may be believed.
//!
//! Why it exists: "only approved versions end up in the cluster" is a rule
//! people agree on and nothing enforces. `bundle push` leaves, beside every
//! image it pushes, an import artifact (an OCI referrer of the image) that
//! holds the bundle's signed inventory, its signature, and a statement of
//! the import (who pushed, from where, when, which images). The registry
//! and whoever can push to it are hostile: the artifact is only a carrier.
//! What makes an import believable is checked here, offline:
//!
//! - the inventory is the one the import names (its digest),
//! - the signature over it verifies with the public key the import gives,
//!   and that key's id (SHA-256 of the raw key) is the signer named,
//! - the signed inventory lists the image's digest (as an image, or as one
//!   of the manifests of an index it carries).
//!
//! An import attached to an image its inventory does not list, or signed
//! by a key whose id is not the one claimed, verifies as nothing. The user,
//! host and time are the pusher's own claims, recorded as such.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::bundle::BundleInventory;
use crate::digest::Digest;
use crate::signing::{self, SignatureFile};

/// The artifact type of an import referrer.
pub const ARTIFACT_TYPE: &str = "application/vnd.airgate.import.v1";
/// The layer holding the import statement ([`Import`], JSON).
pub const IMPORT_TYPE: &str = "application/vnd.airgate.import.v1+json";
/// The layer holding the bundle's inventory, byte for byte as signed.
pub const INVENTORY_TYPE: &str = "application/vnd.airgate.bundle.inventory.v1+json";
/// The layer holding the bundle's signature file.
pub const SIGNATURE_TYPE: &str = "application/vnd.airgate.bundle.signature.v1+json";

/// One image an import pushed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportedImage {
    /// Where the bundle took it from.
    pub source: String,
    /// `registry/repository[:tag]@digest`, where it was pushed.
    pub target: String,
    pub digest: Digest,
}

/// What one `bundle push` did: the import statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Import {
    /// The digest of the bundle's inventory (what its signature covers).
    pub inventory: Digest,
    /// The key id (SHA-256 of the raw Ed25519 key) of the bundle's signer,
    /// when the bundle was signed and verified with that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<Digest>,
    /// Base64 of the signer's raw 32-byte public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// `registry[/prefix]` it was pushed to.
    pub target: String,
    pub images: Vec<ImportedImage>,
    /// Who ran the push, and where (the pusher's claim).
    pub user: String,
    pub host: String,
    /// Seconds since the epoch.
    pub pushed_at: i64,
    /// `airgate <version>`.
    pub pushed_by: String,
}

/// An import artifact's layers, as read from the registry.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    pub import: Vec<u8>,
    pub inventory: Vec<u8>,
    pub signature: Option<Vec<u8>>,
}

/// An import that verified for one image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedImport {
    /// The digest of the import statement's bytes: the import's id.
    pub id: Digest,
    /// The key whose signature over the inventory verified; `None` for an
    /// unsigned bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<Digest>,
    pub import: Import,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProvenanceError {
    #[error("the import statement is not valid: {0}")]
    Statement(String),
    #[error("the inventory is not the one the import names ({expected}); it is {actual}")]
    Inventory { expected: Digest, actual: Digest },
    #[error("the import claims signer {claimed}, but its key is {actual}")]
    KeyId { claimed: Digest, actual: Digest },
    #[error("the import names a signer and carries no signature")]
    NoSignature,
    #[error("signature: {0}")]
    Signature(#[from] signing::SigningError),
    #[error("the signed inventory does not list {0}")]
    Unlisted(Digest),
}

/// Checks `evidence` for the image `digest` (see the module docs).
pub fn verify(evidence: &Evidence, digest: &Digest) -> Result<VerifiedImport, ProvenanceError> {
    let verified = verify_statement(evidence)?;
    if !verified.import.images.iter().any(|i| &i.digest == digest) {
        return Err(ProvenanceError::Unlisted(digest.clone()));
    }
    Ok(verified)
}

/// Checks `evidence` as a whole: the inventory is the one named, the
/// signature verifies with the key given, whose id is the signer named,
/// and the signed inventory lists every image the statement names.
pub fn verify_statement(evidence: &Evidence) -> Result<VerifiedImport, ProvenanceError> {
    let bad = |e: String| ProvenanceError::Statement(e);
    let import: Import =
        serde_json::from_slice(&evidence.import).map_err(|e| bad(e.to_string()))?;
    let actual = Digest::of(&evidence.inventory);
    if actual != import.inventory {
        return Err(ProvenanceError::Inventory {
            expected: import.inventory,
            actual,
        });
    }
    let signed_by = match (&import.signed_by, &import.public_key) {
        (None, _) => None,
        (Some(_), None) => return Err(bad("a signer is named without its public key".into())),
        (Some(claimed), Some(key)) => Some(check_signature(evidence, claimed, key)?),
    };
    let inventory: BundleInventory =
        serde_json::from_slice(&evidence.inventory).map_err(|e| bad(format!("inventory: {e}")))?;
    let listed = |digest: &Digest| {
        inventory.images.iter().any(|i| &i.digest == digest)
            || inventory
                .blobs
                .iter()
                .any(|b| b.media_type.is_some() && &b.digest == digest)
    };
    if let Some(unlisted) = import.images.iter().find(|i| !listed(&i.digest)) {
        return Err(ProvenanceError::Unlisted(unlisted.digest.clone()));
    }
    Ok(VerifiedImport {
        id: Digest::of(&evidence.import),
        signed_by,
        import,
    })
}

/// The signer's key id, when the signature over the inventory verifies
/// with `key` (base64 of the raw key) and that key's id is `claimed`.
fn check_signature(
    evidence: &Evidence,
    claimed: &Digest,
    key: &str,
) -> Result<Digest, ProvenanceError> {
    let bad = |e: String| ProvenanceError::Statement(e);
    let raw = STANDARD
        .decode(key)
        .map_err(|e| bad(format!("publicKey: {e}")))?;
    let raw: [u8; 32] = raw
        .try_into()
        .map_err(|_| bad("publicKey: an Ed25519 key is 32 bytes".into()))?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&raw)
        .map_err(|e| bad(format!("publicKey: {e}")))?;
    let actual = signing::key_id(&key);
    if &actual != claimed {
        return Err(ProvenanceError::KeyId {
            claimed: claimed.clone(),
            actual,
        });
    }
    let signature = evidence
        .signature
        .as_deref()
        .ok_or(ProvenanceError::NoSignature)?;
    let signature: SignatureFile = serde_json::from_slice(signature)
        .map_err(|e| signing::SigningError::Malformed(e.to_string()))?;
    signing::verify(&evidence.inventory, &signature, &key)?;
    Ok(actual)
}

/// The import to name for an image among those that verified: the
/// earliest signed by a required key, else the earliest signed, else the
/// earliest. `Err` (the refusal, for the App's condition) when `required`
/// is not empty and no import is signed by one of its keys.
pub fn choose<'a>(
    required: &[Digest],
    image: &str,
    imports: &'a [VerifiedImport],
) -> Result<Option<&'a VerifiedImport>, String> {
    let earliest = |f: &dyn Fn(&VerifiedImport) -> bool| {
        imports
            .iter()
            .filter(|i| f(i))
            .min_by_key(|i| (i.import.pushed_at, i.id.clone()))
    };
    let by_required = earliest(&|i| i.signed_by.as_ref().is_some_and(|k| required.contains(k)));
    if !required.is_empty() && by_required.is_none() {
        let why = if imports.is_empty() {
            "has no import (it did not come through `airgate bundle push`)".to_string()
        } else {
            let signers: Vec<String> = imports
                .iter()
                .map(|i| {
                    i.signed_by
                        .as_ref()
                        .map_or("unsigned".into(), |k| k.to_string())
                })
                .collect();
            format!(
                "was imported only by bundles signed by other keys ({})",
                signers.join(", ")
            )
        };
        return Err(format!(
            "image {image} {why}; requireImportedBy allows {}",
            required
                .iter()
                .map(Digest::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(by_required
        .or_else(|| earliest(&|i| i.signed_by.is_some()))
        .or_else(|| earliest(&|_| true)))
}

#[cfg(test)]
mod tests;
