//! Bundle signatures: Ed25519 over the exact bytes of the inventory.
//!
//! Keys are stored as PEM (PKCS#8 private key, SPKI public key), readable by
//! openssl. The signature file names the SHA-256 of the public key it was made
//! with, so a verifier holding the wrong key is told so plainly.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub const ALGORITHM: &str = "ed25519";

/// The content of `airgate-bundle.sig`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatureFile {
    pub algorithm: String,
    /// SHA-256 of the raw 32-byte public key.
    pub key_id: Digest,
    /// Base64 of the 64-byte signature.
    pub signature: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigningError {
    #[error("not an Ed25519 private key in PKCS#8 PEM: {0}")]
    PrivateKey(String),
    #[error("not an Ed25519 public key in SPKI PEM: {0}")]
    PublicKey(String),
    #[error("unsupported signature algorithm '{0}'")]
    Algorithm(String),
    #[error("the bundle was signed with key {signed_with}, not with this key ({given})")]
    WrongKey { signed_with: Digest, given: Digest },
    #[error(
        "the signature does not match the inventory: the bundle was changed after it was signed"
    )]
    Mismatch,
    #[error("malformed signature: {0}")]
    Malformed(String),
}

/// A private key from 32 random bytes.
pub fn signing_key_from_seed(seed: [u8; 32]) -> SigningKey {
    SigningKey::from_bytes(&seed)
}

/// PKCS#8 v1 (the seed alone): OpenSSL 3.0 cannot read the v2 form that
/// also embeds the public key.
pub fn private_key_pem(key: &SigningKey) -> Result<String, SigningError> {
    let pair = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    };
    pair.to_pkcs8_pem(Default::default())
        .map(|p| p.to_string())
        .map_err(|e| SigningError::PrivateKey(e.to_string()))
}

pub fn public_key_pem(key: &VerifyingKey) -> Result<String, SigningError> {
    key.to_public_key_pem(Default::default())
        .map_err(|e| SigningError::PublicKey(e.to_string()))
}

pub fn parse_private_key(pem: &str) -> Result<SigningKey, SigningError> {
    SigningKey::from_pkcs8_pem(pem).map_err(|e| SigningError::PrivateKey(e.to_string()))
}

pub fn parse_public_key(pem: &str) -> Result<VerifyingKey, SigningError> {
    VerifyingKey::from_public_key_pem(pem).map_err(|e| SigningError::PublicKey(e.to_string()))
}

pub fn key_id(key: &VerifyingKey) -> Digest {
    Digest::of(key.as_bytes())
}

pub fn sign(message: &[u8], key: &SigningKey) -> SignatureFile {
    SignatureFile {
        algorithm: ALGORITHM.to_string(),
        key_id: key_id(&key.verifying_key()),
        signature: STANDARD.encode(key.sign(message).to_bytes()),
    }
}

pub fn verify(message: &[u8], sig: &SignatureFile, key: &VerifyingKey) -> Result<(), SigningError> {
    if sig.algorithm != ALGORITHM {
        return Err(SigningError::Algorithm(sig.algorithm.clone()));
    }
    let given = key_id(key);
    if sig.key_id != given {
        return Err(SigningError::WrongKey {
            signed_with: sig.key_id.clone(),
            given,
        });
    }
    let bytes = STANDARD
        .decode(&sig.signature)
        .map_err(|e| SigningError::Malformed(e.to_string()))?;
    let bytes: [u8; 64] = bytes
        .try_into()
        .map_err(|_| SigningError::Malformed("a signature is 64 bytes".to_string()))?;
    let signature = ed25519_dalek::Signature::from_bytes(&bytes);
    key.verify_strict(message, &signature)
        .map_err(|_| SigningError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_verifies_and_refuses_tampering_and_the_wrong_key() -> Result<(), SigningError> {
        let key = signing_key_from_seed([7; 32]);
        let other = signing_key_from_seed([8; 32]);
        let pem = private_key_pem(&key)?;
        let pub_pem = public_key_pem(&key.verifying_key())?;
        let key = parse_private_key(&pem)?;
        let public = parse_public_key(&pub_pem)?;
        let sig = sign(b"inventory", &key);
        verify(b"inventory", &sig, &public)?;
        assert_eq!(
            verify(b"inventorY", &sig, &public),
            Err(SigningError::Mismatch)
        );
        assert!(matches!(
            verify(b"inventory", &sig, &other.verifying_key()),
            Err(SigningError::WrongKey { .. })
        ));
        assert!(parse_public_key(&pem).is_err());
        Ok(())
    }
}
