//! `airgate bundle create`: registry to bundle file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use airgate_core::ImageRef;
use airgate_core::lock::ImageLock;
use airgate_oci::RegistryClient;
use airgate_oci::bundle::{self, CarriedFile, CreateRequest};
use anyhow::{Context, Result};

use crate::cli::{BundleCreateArgs, DiscoverArgs, Output};
use crate::commands::key;
use crate::{manifests, progress_bar, registry_options};

pub fn run(args: BundleCreateArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let client = RegistryClient::new(registry_options::options(&args.registry)?)?;
    let mut lock = match &args.lock {
        Some(path) => read_lock(path)?,
        None => ImageLock::new(Vec::new()),
    };
    let mut files = args
        .files
        .iter()
        .map(|spec| carried_file(spec))
        .collect::<Result<Vec<_>>>()?;
    if let Some(chart) = &args.chart {
        let (chart_lock, file) = lock_chart(&args, chart, &client)?;
        lock = ImageLock::new(lock.images.into_iter().chain(chart_lock.images).collect());
        files.extend(file);
        let written = PathBuf::from(format!("{}.lock", args.output.display()));
        crate::files::write_atomically(&written, serde_saphyr::to_string(&lock)?.as_bytes())?;
        eprintln!(
            "locked {} references for {chart} (the lock is {}; review it with the bundle)",
            lock.images.len(),
            written.display()
        );
    }
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

fn read_lock(path: &std::path::Path) -> Result<ImageLock> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lock: ImageLock = serde_saphyr::from_str(&text)
        .with_context(|| format!("{} is not an image lock", path.display()))?;
    lock.validate()
        .with_context(|| path.display().to_string())?;
    Ok(lock)
}

/// `--chart`: the images the chart renders with the chart flags, and the
/// chart itself (an `oci://` chart locked as a chart; a `.tgz` carried as
/// a file), locked now.
fn lock_chart(
    args: &BundleCreateArgs,
    chart: &str,
    client: &RegistryClient,
) -> Result<(ImageLock, Option<CarriedFile>)> {
    let c = &args.chart_args;
    let discover = DiscoverArgs {
        paths: vec![PathBuf::from(chart)],
        rules: Vec::new(),
        kustomize: None,
        possible: args.possible,
        chart: c.clone(),
    };
    let mut images = manifests::distinct_images(&discover)?;
    let mut file = None;
    if let Some(reference) = chart.strip_prefix("oci://") {
        let reference = match &c.chart_version {
            Some(v) => format!("{reference}:{v}"),
            None => reference.to_string(),
        };
        images.push(ImageRef::parse(&reference).with_context(|| format!("--chart {chart}"))?);
    } else if chart.ends_with(".tgz") {
        file = Some(carried_file(chart)?);
    } else {
        eprintln!(
            "note: {chart} is a directory: its images are carried, not the chart\nhint: carry the chart itself with `helm package` and --chart PACKAGE.tgz, or push it to a registry"
        );
    }
    images.sort();
    images.dedup();
    let (lock, _) = super::lock::resolve_all(client, &images, args.jobs)?;
    Ok((lock, file))
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
