//! Pinning an image to what its registry serves now, with everything that
//! vouches for it: registry to lock.
//!
//! Why referrers: signature verification inside the perimeter needs the
//! signatures and attestations that came with an image. They live beside it
//! in two ways: OCI 1.1 referrers (manifests whose `subject` is the image,
//! found through the referrers API or, on registries without it, the
//! `sha256-<hex>` referrers tag) and cosign's tags (`sha256-<hex>.sig`,
//! `.att`, `.sbom`). Each one found is locked as an image of its own, with
//! its digest and the digest it refers to, so a bundle carries it and a push
//! puts it back with every digest intact.

use airgate_core::ImageRef;
use airgate_core::lock::{Kind, LockedImage};
use airgate_core::oci::{self, Parsed};

use crate::registry::{RegistryClient, RegistryError};

/// `image` pinned to its digest, followed by its referrers.
pub async fn resolve(
    client: &RegistryClient,
    image: &ImageRef,
) -> Result<Vec<LockedImage>, RegistryError> {
    let (registry, repository) = (image.registry(), image.repository());
    let manifest = client
        .get_manifest(registry, repository, image.manifest_reference())
        .await?;
    let parsed = oci::parse_manifest(&manifest.bytes, &manifest.media_type)
        .map_err(|e| RegistryError::Protocol(format!("the manifest of {image}: {e}")))?;
    let (platforms, kind) = match &parsed {
        Parsed::Index { manifests } => (
            manifests
                .iter()
                .filter_map(|m| m.platform.as_ref().map(|p| p.label()))
                .collect(),
            Kind::Image,
        ),
        Parsed::Image { config, .. } => (
            Vec::new(),
            Kind::of(
                Some(&config.media_type),
                oci::artifact_type_of(&manifest.bytes).as_deref(),
            ),
        ),
    };
    let subject = manifest.digest.clone();
    let mut out = vec![LockedImage {
        reference: image.clone(),
        kind,
        digest: manifest.digest,
        media_type: manifest.media_type,
        platforms,
        subject: None,
        source: None,
    }];

    let listed = client
        .list_referrers(registry, repository, &subject)
        .await?;
    for d in listed {
        let reference = by_digest(image, &d.digest)?;
        out.push(LockedImage {
            reference,
            kind: Kind::Artifact,
            digest: d.digest,
            media_type: d.media_type,
            platforms: Vec::new(),
            subject: Some(subject.clone()),
            source: None,
        });
    }

    // cosign's tags.
    for tag in oci::cosign_tags(&subject) {
        let found = match client.get_manifest(registry, repository, &tag).await {
            Ok(m) => m,
            Err(RegistryError::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        let reference = ImageRef::parse(&format!("{}:{tag}", image.name()))
            .map_err(|e| RegistryError::Protocol(e.to_string()))?;
        out.push(LockedImage {
            reference,
            kind: Kind::Artifact,
            digest: found.digest,
            media_type: found.media_type,
            platforms: Vec::new(),
            subject: Some(subject.clone()),
            source: None,
        });
    }
    Ok(out)
}

fn by_digest(image: &ImageRef, digest: &airgate_core::Digest) -> Result<ImageRef, RegistryError> {
    ImageRef::parse(&format!("{}@{digest}", image.name()))
        .map_err(|e| RegistryError::Protocol(e.to_string()))
}
