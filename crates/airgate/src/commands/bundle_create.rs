//! `airgate bundle create`: registry to bundle file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use airgate_core::ImageRef;
use airgate_core::lock::ImageLock;
use airgate_oci::RegistryClient;
use airgate_oci::bundle::{self, CarriedFile, CreateRequest, Packaged};
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
    let mut packaged = crate::block_on(crate::charts::remake(&client, &lock))?;
    // The remote schemas carried, in files that live until the bundle is made.
    let schemas = tempfile::tempdir()?;
    if let Some(chart) = &args.chart {
        let (chart_lock, made, package) = lock_chart(&args, chart, &client)?;
        lock = ImageLock::new(lock.images.into_iter().chain(chart_lock.images).collect());
        packaged.extend(made);
        files.extend(schema_files(&client, chart, &package, schemas.path())?);
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
        packaged: &packaged,
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

/// A lock file, parsed and validated (also `install --lock`).
pub fn read_lock(path: &std::path::Path) -> Result<ImageLock> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lock: ImageLock = serde_saphyr::from_str(&text)
        .with_context(|| format!("{} is not an image lock", path.display()))?;
    lock.validate()
        .with_context(|| path.display().to_string())?;
    Ok(lock)
}

/// `--chart`: the images the chart renders with the chart flags, and the
/// chart itself, locked now: an `oci://` chart fetched like an image; one
/// from a classic repository, a `.tgz` or a directory (dependencies
/// vendored) made into Helm's OCI artifact here (see [`crate::charts`]).
fn lock_chart(
    args: &BundleCreateArgs,
    chart: &str,
    client: &RegistryClient,
) -> Result<(ImageLock, Option<Packaged>, Vec<u8>)> {
    let c = &args.chart_args;
    let mut made = None;
    let mut kept = Vec::new();
    let rendered = if chart.starts_with("oci://") {
        PathBuf::from(chart)
    } else {
        let m = if crate::charts::is_repository_chart(chart) {
            crate::block_on(crate::charts::from_repository(client, chart))?
        } else if chart.ends_with(".tgz") {
            let package = std::fs::read(chart).with_context(|| format!("--chart {chart}"))?;
            crate::charts::from_package(package)?
        } else {
            let ca = args.registry.ca_files.first().cloned();
            let (m, work, _) =
                crate::charts::from_directory(std::path::Path::new(chart), c.helm.clone(), ca)
                    .with_context(|| format!("--chart {chart}: vendoring its dependencies"))?;
            kept.push(work);
            m
        };
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("chart.tgz");
        std::fs::write(&path, &m.package)?;
        kept.push(dir);
        made = Some(m);
        path
    };
    let discover = DiscoverArgs {
        paths: vec![rendered],
        rules: Vec::new(),
        kustomize: None,
        possible: args.possible,
        chart: c.clone(),
    };
    let mut images = manifests::distinct_images(&discover)?;
    drop(kept);
    let mut oci = None;
    if let Some(reference) = chart.strip_prefix("oci://") {
        let reference = match &c.chart_version {
            Some(v) => format!("{reference}:{v}"),
            None => reference.to_string(),
        };
        let reference = ImageRef::parse(&reference).with_context(|| format!("--chart {chart}"))?;
        images.push(reference.clone());
        oci = Some(reference);
    }
    images.sort();
    images.dedup();
    let (lock, _) = super::lock::resolve_all(client, &images, args.jobs)?;
    let Some(m) = made else {
        // An oci:// chart: its package, for its schemas.
        let package = match &oci {
            Some(r) => {
                crate::block_on(async { Ok(airgate_oci::chart::package(client, r).await?) })?
                    .1
                    .to_vec()
            }
            None => Vec::new(),
        };
        return Ok((lock, None, package));
    };
    eprintln!(
        "chart {chart} is carried as {} ({})",
        m.locked.reference, m.locked.digest
    );
    let lock = ImageLock::new(lock.images.into_iter().chain([m.locked]).collect());
    Ok((lock, Some(m.packaged), m.package))
}

/// The remote `$ref`s of the chart's `values.schema.json` files (its
/// subcharts' too), named on stderr: helm fetches them when it checks
/// values, which fails inside. Each one that resolves from here is
/// carried as `files/schemas/HOST/PATH`, written under `dir`.
fn schema_files(
    client: &RegistryClient,
    chart: &str,
    package: &[u8],
    dir: &std::path::Path,
) -> Result<Vec<CarriedFile>> {
    let mut out: Vec<CarriedFile> = Vec::new();
    for (file, url) in airgate_render::helm::remote_schema_refs_in_package(package) {
        eprintln!(
            "warning: {chart}: {file}: $ref {url} is fetched by helm when it checks values, and cannot be reached inside the perimeter"
        );
        let Some(name) = airgate_core::chart::schema_file(&url) else {
            continue;
        };
        if out.iter().any(|f| f.name == name) {
            continue;
        }
        match crate::block_on(async { Ok(client.get_url(&url, 4 << 20).await?) }) {
            Ok(bytes) => {
                let source = dir.join(out.len().to_string());
                std::fs::write(&source, &bytes)?;
                eprintln!(
                    "  carried as files/{name}: serve it inside, or put it in the chart and refer to it by a relative path"
                );
                out.push(CarriedFile { source, name });
            }
            Err(e) => eprintln!("  it does not resolve from here either: {e}"),
        }
    }
    Ok(out)
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
