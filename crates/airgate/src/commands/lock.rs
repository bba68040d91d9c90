//! `airgate lock`: pin every image the manifests use to its current digest.

use std::process::ExitCode;
use std::time::Instant;

use airgate_core::ImageRef;
use airgate_core::lock::{ImageLock, Kind, LockedImage};
use airgate_oci::RegistryClient;
use anyhow::{Context, Result};
use futures_util::{StreamExt, TryStreamExt};

use crate::cli::LockArgs;
use crate::{manifests, registry_options};

/// Each of `images` pinned with its referrers (`jobs` at a time): the
/// lock, and how many referrers it holds.
pub fn resolve_all(
    client: &RegistryClient,
    images: &[ImageRef],
    jobs: usize,
) -> Result<(ImageLock, usize)> {
    let locked: Vec<Vec<LockedImage>> = crate::block_on(async {
        futures_util::stream::iter(images.iter().map(|image| async move {
            airgate_oci::lock::resolve(client, image)
                .await
                .with_context(|| format!("resolving {image}"))
        }))
        .buffered(jobs.max(1))
        .try_collect()
        .await
    })?;
    let referrers = locked.iter().map(|l| l.len() - 1).sum::<usize>();
    Ok((
        ImageLock::new(locked.into_iter().flatten().collect()),
        referrers,
    ))
}

pub fn run(args: LockArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let mut images = if args.discover.paths.is_empty() && !args.artifacts.is_empty() {
        Vec::new()
    } else {
        manifests::distinct_images(&args.discover)?
    };
    let client = RegistryClient::new(registry_options::options(&args.registry)?)?;
    let mut from_repositories = Vec::new();
    for a in &args.artifacts {
        if crate::charts::is_repository_chart(a) {
            let made = crate::block_on(crate::charts::from_repository(&client, a))
                .with_context(|| format!("--artifact {a}"))?;
            from_repositories.push(made.locked);
            continue;
        }
        images.push(
            ImageRef::parse(a.trim_start_matches("oci://"))
                .with_context(|| format!("--artifact {a}"))?,
        );
    }
    images.sort();
    images.dedup();
    let (lock, referrers) = resolve_all(&client, &images, args.jobs)?;
    let lock = ImageLock::new(lock.images.into_iter().chain(from_repositories).collect());
    let text = serde_saphyr::to_string(&lock).context("serialising the lock")?;
    crate::files::write_atomically(&args.output, text.as_bytes())?;
    let count = |k: Kind| {
        lock.images
            .iter()
            .filter(|i| i.kind == k && i.subject.is_none())
            .count()
    };
    eprintln!(
        "locked {} references ({} images, {} charts, {} artifacts; {referrers} signatures, attestations or other referrers) to {} in {:.1}s",
        lock.images.len(),
        count(Kind::Image),
        count(Kind::Chart),
        count(Kind::Artifact),
        args.output.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
