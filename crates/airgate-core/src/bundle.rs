//! The bundle: one tar file that carries images and files across the gap.
//!
//! Layout of the tar, in this order, so a reader can verify while streaming:
//!
//! 1. `airgate-bundle.json`, the [`BundleInventory`]: every image, blob, file and
//!    layout file with its digest and size;
//! 2. `airgate-bundle.sig`, the Ed25519 signature of the inventory's exact
//!    bytes (absent in an unsigned bundle);
//! 3. `oci-layout` and `index.json`: together with the blobs, a standard OCI
//!    image layout (extract the tar and any OCI tool reads it);
//! 4. `blobs/sha256/<hex>`: manifests and indexes first, then configs and
//!    layers, each once however many images share it;
//! 5. `files/<name>`: arbitrary files.
//!
//! The signature covers the inventory and the inventory names the digest of
//! everything else, so once the signature checks, every later entry is checked
//! against it as it streams past. Nothing needs to be unpacked first.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::oci;
use crate::reference::ImageRef;

pub const INVENTORY_PATH: &str = "airgate-bundle.json";
pub const SIGNATURE_PATH: &str = "airgate-bundle.sig";
pub const OCI_LAYOUT_PATH: &str = "oci-layout";
pub const INDEX_PATH: &str = "index.json";
pub const FILES_DIR: &str = "files/";
pub const API_VERSION: &str = "airgate.dev/v1alpha1";
pub const KIND: &str = "BundleInventory";
/// Longest name of a carried file (a plain ustar header holds 100 bytes).
pub const MAX_FILE_NAME: usize = 90;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleInventory {
    pub api_version: String,
    pub kind: String,
    /// `airgate <version>`
    pub created_by: String,
    /// For a delta bundle: the digest of the earlier bundle's inventory. Blobs
    /// with `carried: false` were in that bundle and are not in this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Digest>,
    pub images: Vec<BundleImage>,
    pub blobs: Vec<BundleBlob>,
    #[serde(default)]
    pub files: Vec<BundleFile>,
    /// `oci-layout` and `index.json`.
    pub layout: Vec<LayoutFile>,
}

/// One image: its source reference and the manifest or index it is pinned to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleImage {
    /// Where it came from, normalised, with its tag (if it had one).
    pub reference: ImageRef,
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// For a signature, attestation or other referrer: what it refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleBlob {
    pub digest: Digest,
    pub size: u64,
    /// Set for manifests and indexes, which a reader parses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// False when an earlier bundle carried it and this delta leaves it out.
    pub carried: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleFile {
    pub name: String,
    pub digest: Digest,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutFile {
    pub path: String,
    pub digest: Digest,
    pub size: u64,
}

fn shown(s: &str) -> String {
    crate::text::shown(s, 200)
}

/// What a tar entry's path says it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Inventory,
    Signature,
    Layout(String),
    Blob(Digest),
    File(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("tar entry '{}' has an absolute path; refusing it", shown(.0))]
    AbsolutePath(String),
    #[error("tar entry '{}' has a '..' or empty path component; refusing it", shown(.0))]
    Traversal(String),
    #[error("tar entry '{}' is not part of an airgate bundle", shown(.0))]
    Unexpected(String),
    #[error(
        "file name '{}' must be 1 to {MAX_FILE_NAME} characters of letters, digits, '.', '_', '-', '+' in '/'-separated parts",
        shown(.0)
    )]
    FileName(String),
    #[error("not a bundle inventory: {}", shown(.0))]
    Header(String),
    #[error("the inventory lists {} twice", shown(.0))]
    Duplicate(String),
    #[error(
        "manifest {manifest} needs blob {blob}, which the bundle neither carries nor lists as carried before"
    )]
    MissingChild { manifest: Digest, blob: Digest },
    #[error("the sizes the inventory lists add up to more than 2^64 bytes; refusing it")]
    TooLarge,
    #[error("image {reference} is pinned to {digest}, which the bundle does not list")]
    MissingImage { reference: String, digest: Digest },
}

/// Classifies a tar entry path, refusing anything that could escape an
/// extraction directory or does not belong in a bundle.
pub fn classify_entry(path: &str) -> Result<EntryKind, BundleError> {
    if path.starts_with('/') {
        return Err(BundleError::AbsolutePath(path.to_string()));
    }
    let trimmed = path.strip_prefix("./").unwrap_or(path);
    if trimmed.split('/').any(|c| c.is_empty() || c == "..") {
        return Err(BundleError::Traversal(path.to_string()));
    }
    match trimmed {
        INVENTORY_PATH => return Ok(EntryKind::Inventory),
        SIGNATURE_PATH => return Ok(EntryKind::Signature),
        OCI_LAYOUT_PATH | INDEX_PATH => return Ok(EntryKind::Layout(trimmed.to_string())),
        _ => {}
    }
    if let Some(hex) = trimmed.strip_prefix("blobs/sha256/") {
        return format!("sha256:{hex}")
            .parse::<Digest>()
            .map(EntryKind::Blob)
            .map_err(|_| BundleError::Unexpected(path.to_string()));
    }
    if let Some(name) = trimmed.strip_prefix(FILES_DIR) {
        validate_file_name(name)?;
        return Ok(EntryKind::File(name.to_string()));
    }
    Err(BundleError::Unexpected(path.to_string()))
}

/// Names of carried files: safe to extract anywhere, short enough for ustar.
pub fn validate_file_name(name: &str) -> Result<(), BundleError> {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
    };
    if name.is_empty() || name.len() > MAX_FILE_NAME || !name.split('/').all(part_ok) {
        return Err(BundleError::FileName(name.to_string()));
    }
    Ok(())
}

impl BundleInventory {
    /// Checks the header, that nothing is listed twice, and that every
    /// image's digest is among the blobs.
    pub fn validate(&self) -> Result<(), BundleError> {
        if self.api_version != API_VERSION || self.kind != KIND {
            return Err(BundleError::Header(format!(
                "apiVersion/kind are '{}/{}', expected '{API_VERSION}/{KIND}'",
                self.api_version, self.kind
            )));
        }
        let mut seen = BTreeSet::new();
        for b in &self.blobs {
            if !seen.insert(b.digest.clone()) {
                return Err(BundleError::Duplicate(format!("blob {}", b.digest)));
            }
        }
        let mut names = BTreeSet::new();
        for f in &self.files {
            validate_file_name(&f.name)?;
            if !names.insert(f.name.as_str()) {
                return Err(BundleError::Duplicate(format!("file {}", f.name)));
            }
        }
        // Every size comes from input: they must add up without overflow,
        // with a tar header and padding each (see `archive::end_of`).
        let sizes = self.blobs.iter().map(|b| b.size);
        let sizes = sizes.chain(self.files.iter().map(|f| f.size));
        let mut sizes = sizes.chain(self.layout.iter().map(|l| l.size));
        sizes
            .try_fold(0u64, crate::archive::end_of)
            .ok_or(BundleError::TooLarge)?;
        for image in &self.images {
            if !seen.contains(&image.digest) {
                return Err(BundleError::MissingImage {
                    reference: image.reference.to_string(),
                    digest: image.digest.clone(),
                });
            }
        }
        Ok(())
    }

    /// Blobs by digest.
    pub fn blob_map(&self) -> BTreeMap<&Digest, &BundleBlob> {
        self.blobs.iter().map(|b| (&b.digest, b)).collect()
    }

    /// Total bytes of the blobs this bundle carries (saturating; a validated
    /// inventory's total fits).
    pub fn carried_bytes(&self) -> u64 {
        self.blobs
            .iter()
            .filter(|b| b.carried)
            .fold(0u64, |total, b| total.saturating_add(b.size))
    }

    /// Checks that every blob a manifest names is listed (carried now or
    /// before). `parsed` holds the manifests and indexes read from the bundle.
    pub fn check_children(
        &self,
        parsed: &BTreeMap<Digest, oci::Parsed>,
    ) -> Result<(), BundleError> {
        let blobs = self.blob_map();
        for (manifest, p) in parsed {
            for child in p.children() {
                if !blobs.contains_key(&child.digest) {
                    return Err(BundleError::MissingChild {
                        manifest: manifest.clone(),
                        blob: child.digest.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_that_escape_or_do_not_belong_are_refused() {
        assert_eq!(
            classify_entry("airgate-bundle.json"),
            Ok(EntryKind::Inventory)
        );
        assert_eq!(
            classify_entry("./index.json"),
            Ok(EntryKind::Layout("index.json".into()))
        );
        assert_eq!(
            classify_entry("files/db/rules.tar.gz"),
            Ok(EntryKind::File("db/rules.tar.gz".into()))
        );
        assert!(matches!(
            classify_entry("/etc/passwd"),
            Err(BundleError::AbsolutePath(_))
        ));
        assert!(matches!(
            classify_entry("files/../../x"),
            Err(BundleError::Traversal(_))
        ));
        assert!(matches!(
            classify_entry("blobs/sha256/nothex"),
            Err(BundleError::Unexpected(_))
        ));
        assert!(matches!(
            classify_entry("other.txt"),
            Err(BundleError::Unexpected(_))
        ));
        assert!(matches!(
            classify_entry("files/a b"),
            Err(BundleError::FileName(_))
        ));
    }

    #[test]
    fn blob_sizes_that_sum_past_two_to_the_64_are_refused_not_wrapped() {
        let blob = |n: u8, size| BundleBlob {
            digest: Digest::of(&[n]),
            size,
            media_type: None,
            carried: true,
        };
        let mut inv = BundleInventory {
            api_version: API_VERSION.to_string(),
            kind: KIND.to_string(),
            created_by: "test".to_string(),
            since: None,
            images: vec![],
            blobs: vec![blob(1, u64::MAX / 2), blob(2, u64::MAX / 2), blob(3, 4096)],
            files: vec![],
            layout: vec![],
        };
        assert_eq!(inv.validate(), Err(BundleError::TooLarge));
        assert_eq!(inv.carried_bytes(), u64::MAX);
        inv.blobs.truncate(1);
        assert_eq!(inv.validate(), Ok(()));
    }
}
