//! `airgate bundle push`: verify, then bundle to registry.

use std::process::ExitCode;
use std::time::Instant;

use airgate_oci::RegistryClient;
use airgate_oci::push::{self, PushRequest, Target};
use anyhow::{Result, anyhow};

use crate::cli::{BundlePushArgs, Output};
use crate::commands::bundle_verify;
use crate::{progress_bar, registry_options};

pub fn run(args: BundlePushArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let target = Target::parse(&args.to, args.layout.into(), args.namespace_single.clone())
        .map_err(|e| anyhow!(e))?;
    if args.bundle.as_os_str() == "-" {
        anyhow::bail!(
            "bundle push needs the bundle as a file: it reads blobs by offset\nhint: save the stream first, or check it as it arrives with `airgate bundle verify -`"
        );
    }
    if args.chunk_size == 0 {
        anyhow::bail!("--chunk-size must be at least 1 MiB");
    }
    let mut options = registry_options::options(&args.registry)?;
    if args.insecure_http {
        options.insecure.push(target.registry.clone());
    }
    let client = RegistryClient::new(options)?;
    // Verify the whole bundle before a single byte goes to the registry.
    let verified = bundle_verify::verify_with_progress(
        &args.bundle,
        &bundle_verify::trust(&args.trust)?,
        bundle_verify::Pass::Parallel,
    )?;
    let verified_in = started.elapsed();
    let request = PushRequest {
        bundle: &args.bundle,
        verified: &verified,
        target: &target,
        jobs: args.jobs,
        chunk_size: args.chunk_size << 20,
    };
    let (progress, bar) = progress_bar::bytes("push");
    let result = crate::block_on(async { Ok(push::push(&client, &request, &progress).await?) });
    progress_bar::finish(bar);
    let summary = result?;
    match args.format {
        Output::Json => crate::out!("{}", serde_json::to_string_pretty(&summary)?)?,
        Output::Text => {
            for i in &summary.images {
                crate::out!("{} -> {}", i.source, i.target)?;
            }
        }
    }
    eprintln!(
        "pushed {} images to {}: {} blobs uploaded, {} already there, {} mounted; {} manifests, {} tags; {} (verify {:.1}s)",
        summary.images.len(),
        args.to,
        summary.blobs_uploaded,
        summary.blobs_present,
        summary.blobs_mounted,
        summary.manifests,
        summary.tags,
        progress_bar::rate(summary.bytes_uploaded, started.elapsed()),
        verified_in.as_secs_f64(),
    );
    Ok(ExitCode::SUCCESS)
}
