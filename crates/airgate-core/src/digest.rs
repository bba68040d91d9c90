//! Content digests (`sha256:<64 hex>`), the identity of every blob, manifest
//! and index airgate moves. A digest is validated when parsed, so code that
//! holds a [`Digest`] never has to check it again.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A validated `sha256:` digest.
///
/// Guarantees: the algorithm is `sha256` and the hex part is 64 lowercase hex
/// digits. Other algorithms are refused rather than carried unverified.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("'{0}' is not a digest: expected sha256:<64 hex digits>")]
    Malformed(String),
    #[error("'{0}' uses an unsupported digest algorithm; airgate verifies sha256 only")]
    Unsupported(String),
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_sha256(Sha256::digest(bytes).as_slice())
    }

    /// A digest from the raw 32 bytes of a SHA-256 hash.
    pub fn from_sha256(hash: &[u8]) -> Digest {
        let mut s = String::with_capacity(71);
        s.push_str("sha256:");
        for b in hash {
            s.push_str(&format!("{b:02x}"));
        }
        Digest(s)
    }

    /// `sha256:abc...`
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits, as used for file names in an OCI layout.
    pub fn hex(&self) -> &str {
        &self.0[7..]
    }

    /// `blobs/sha256/<hex>`: where the blob lives in an OCI image layout.
    pub fn layout_path(&self) -> String {
        format!("blobs/sha256/{}", self.hex())
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((algo, hex)) = s.split_once(':') else {
            return Err(DigestError::Malformed(s.to_string()));
        };
        if algo != "sha256" {
            let valid_algo = !algo.is_empty()
                && algo
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c));
            return Err(if valid_algo && !hex.is_empty() {
                DigestError::Unsupported(s.to_string())
            } else {
                DigestError::Malformed(s.to_string())
            });
        }
        if hex.len() != 64
            || !hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        {
            return Err(DigestError::Malformed(s.to_string()));
        }
        Ok(Digest(s.to_string()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_input_is_the_well_known_one() {
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parses_and_refuses() {
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.hex().len(), 64);
        assert_eq!(d.layout_path(), format!("blobs/sha256/{}", d.hex()));
        assert!(matches!(
            "sha256:ABC".parse::<Digest>(),
            Err(DigestError::Malformed(_))
        ));
        assert!(matches!(
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
                .parse::<Digest>(),
            Err(DigestError::Malformed(_))
        ));
        assert!(matches!(
            "sha512:abcd".parse::<Digest>(),
            Err(DigestError::Unsupported(_))
        ));
        assert!(matches!(
            "nocolon".parse::<Digest>(),
            Err(DigestError::Malformed(_))
        ));
    }
}
