//! `airgate lock`: pin every image the manifests use to its current digest.

use std::process::ExitCode;
use std::time::Instant;

use airgate_core::ImageRef;
use airgate_core::lock::{ImageLock, LockedImage};
use airgate_core::oci::{self, Parsed};
use airgate_oci::RegistryClient;
use anyhow::{Context, Result};
use futures_util::{StreamExt, TryStreamExt};

use crate::cli::LockArgs;
use crate::{manifests, registry_options};

pub fn run(args: LockArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let images = manifests::distinct_images(&args.discover)?;
    let client = RegistryClient::new(registry_options::options(&args.registry)?)?;
    let locked: Vec<LockedImage> = crate::block_on(async {
        futures_util::stream::iter(images.iter().map(|image| resolve(&client, image)))
            .buffered(args.jobs.max(1))
            .try_collect()
            .await
    })?;
    let lock = ImageLock::new(locked);
    let text = serde_saphyr::to_string(&lock).context("serialising the lock")?;
    crate::files::write_atomically(&args.output, text.as_bytes())?;
    eprintln!(
        "locked {} images to {} in {:.1}s",
        lock.images.len(),
        args.output.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

async fn resolve(client: &RegistryClient, image: &ImageRef) -> Result<LockedImage> {
    let manifest = client
        .get_manifest(
            image.registry(),
            image.repository(),
            image.manifest_reference(),
        )
        .await
        .with_context(|| format!("resolving {image}"))?;
    let platforms = match oci::parse_manifest(&manifest.bytes, &manifest.media_type)
        .with_context(|| format!("reading the manifest of {image}"))?
    {
        Parsed::Index { manifests } => manifests
            .iter()
            .filter_map(|m| m.platform.as_ref().map(|p| p.label()))
            .collect(),
        Parsed::Image { .. } => Vec::new(),
    };
    Ok(LockedImage {
        reference: image.clone(),
        digest: manifest.digest,
        media_type: manifest.media_type,
        platforms,
    })
}
