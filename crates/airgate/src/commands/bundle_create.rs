//! `airgate bundle create`: registry to bundle file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use airgate_core::lock::ImageLock;
use airgate_oci::RegistryClient;
use airgate_oci::bundle::{self, CarriedFile, CreateRequest};
use anyhow::{Context, Result};

use crate::cli::{BundleCreateArgs, Output};
use crate::commands::key;
use crate::{progress_bar, registry_options};

pub fn run(args: BundleCreateArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let text = std::fs::read_to_string(&args.lock)
        .with_context(|| format!("reading {}", args.lock.display()))?;
    let lock: ImageLock = serde_saphyr::from_str(&text)
        .with_context(|| format!("{} is not an image lock", args.lock.display()))?;
    lock.validate()
        .with_context(|| args.lock.display().to_string())?;
    let files = args
        .files
        .iter()
        .map(|spec| carried_file(spec))
        .collect::<Result<Vec<_>>>()?;
    let since = match &args.since {
        Some(p) => Some(
            bundle::read_inventory_or_bundle(p)
                .with_context(|| format!("reading --since {}", p.display()))?,
        ),
        None => None,
    };
    let signing_key = args
        .sign_key
        .as_deref()
        .map(key::read_private)
        .transpose()?;
    let client = RegistryClient::new(registry_options::options(&args.registry)?)?;
    let request = CreateRequest {
        lock: &lock,
        files: &files,
        since: since.as_ref().map(|(inv, d)| (inv, d.clone())),
        signing_key: signing_key.as_ref(),
        jobs: args.jobs,
    };
    let (progress, bar) = progress_bar::bytes("bundle create");
    let result = crate::block_on(async {
        Ok(bundle::create(&client, &request, &args.output, &progress).await?)
    });
    progress_bar::finish(bar);
    let summary = result?;
    match args.format {
        Output::Json => crate::out!("{}", serde_json::to_string_pretty(&summary)?)?,
        Output::Text => {}
    }
    let left_out = if summary.blobs_left_out > 0 {
        format!(
            ", {} blobs left out (carried before)",
            summary.blobs_left_out
        )
    } else {
        String::new()
    };
    eprintln!(
        "wrote {}: {} images, {} blobs, {} files{left_out}, {}{}",
        args.output.display(),
        summary.images,
        summary.blobs,
        summary.files,
        progress_bar::rate(summary.bytes, started.elapsed()),
        if signing_key.is_some() {
            ", signed"
        } else {
            ", unsigned"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `SRC[=NAME]`
fn carried_file(spec: &str) -> Result<CarriedFile> {
    let (source, name) = match spec.split_once('=') {
        Some((s, n)) => (PathBuf::from(s), n.to_string()),
        None => {
            let p = PathBuf::from(spec);
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| {
                    format!("--file {spec}: cannot take a name from this path; use SRC=NAME")
                })?
                .to_string();
            (p, name)
        }
    };
    if !source.is_file() {
        anyhow::bail!("--file {spec}: {} is not a file", source.display());
    }
    Ok(CarriedFile { source, name })
}
