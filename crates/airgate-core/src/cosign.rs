//! Signatures of images in cosign's format, so that what enters the
//! perimeter can be required at admission (Kyverno, Sigstore's
//! policy-controller, `cosign verify --key`) without airgate.
//!
//! The format is cosign's "simple signing" (no transparency log, no
//! certificate): the payload names the repository and the manifest digest;
//! the signature over the payload's bytes is an annotation of the layer
//! holding the payload, in a manifest tagged `sha256-<hex>.sig` beside the
//! image. airgate signs with Ed25519, whose public key (SPKI PEM, as
//! `airgate key generate` writes it) cosign verifies.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer, SigningKey};

use crate::digest::Digest;

/// The media type of a payload layer.
pub const PAYLOAD_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// The payload cosign signs for `repository` (`registry/path`, no tag) at
/// `digest`.
pub fn payload(repository: &str, digest: &Digest) -> Vec<u8> {
    serde_json::json!({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest.as_str()},
            "type": "cosign container image signature",
        },
        "optional": null,
    })
    .to_string()
    .into_bytes()
}

/// The base64 signature of `payload`.
pub fn sign(payload: &[u8], key: &SigningKey) -> String {
    STANDARD.encode(key.sign(payload).to_bytes())
}

/// The config of a signature manifest: a layer per signature, as cosign
/// writes it (the diff ids are the payloads' digests).
pub fn config(payloads: &[Digest]) -> Vec<u8> {
    serde_json::json!({
        "architecture": "", "os": "", "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "rootfs": {"type": "layers", "diff_ids": payloads},
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Verifier;

    #[test]
    fn the_payload_names_the_repository_and_digest_and_the_signature_verifies()
    -> Result<(), Box<dyn std::error::Error>> {
        let d = Digest::of(b"manifest");
        let p = payload("registry.internal:5000/shop/web", &d);
        let v: serde_json::Value = serde_json::from_slice(&p)?;
        assert_eq!(
            v["critical"]["identity"]["docker-reference"],
            "registry.internal:5000/shop/web"
        );
        assert_eq!(v["critical"]["image"]["docker-manifest-digest"], d.as_str());
        let key = crate::signing::signing_key_from_seed([3; 32]);
        let sig = STANDARD.decode(sign(&p, &key))?;
        let sig = ed25519_dalek::Signature::from_slice(&sig)?;
        key.verifying_key().verify(&p, &sig)?;
        Ok(())
    }
}
