//! Charts that do not come from an OCI registry, made into Helm's OCI
//! artifact so that they cross the gap like any other: a chart from a
//! classic chart repository (`index.yaml` -> version -> `.tgz`), and a
//! chart directory with its dependencies vendored (`helm dependency
//! update` on the connected side, in a copy). Inside, `bundle push` puts
//! them in the internal registry, where `helm pull oci://...` and a Helm
//! App find them.

use std::path::{Path, PathBuf};

use airgate_core::ImageRef;
use airgate_core::chart::{PACKAGED_REGISTRY, index_entry, repository_chart};
use airgate_core::lock::{ImageLock, Kind, LockedImage};
use airgate_core::oci::OCI_MANIFEST;
use airgate_oci::RegistryClient;
use airgate_oci::bundle::Packaged;
use anyhow::{Context, Result, bail};

/// The most an `index.yaml` may be (a package: Helm's own limit).
const MAX_INDEX: u64 = 64 << 20;
use airgate_oci::chart::MAX_PACKAGE;

/// A chart made here: its lock entry, its artifact, and its package.
#[derive(Debug)]
pub struct Made {
    pub locked: LockedImage,
    pub packaged: Packaged,
    pub package: Vec<u8>,
}

fn made(reference: ImageRef, package: Vec<u8>, source: Option<String>) -> Result<Made> {
    let (name, version, config) = airgate_render::helm::package_info(&package)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("the package of {reference}"))?;
    let packaged = Packaged::chart(config, package.clone(), &name, &version);
    Ok(Made {
        locked: LockedImage {
            reference,
            digest: packaged.digest(),
            media_type: OCI_MANIFEST.to_string(),
            platforms: Vec::new(),
            subject: None,
            source,
            kind: Kind::Chart,
        },
        packaged,
        package,
    })
}

/// Whether `text` names a chart in a classic repository
/// (`https://HOST/PATH/NAME:VERSION`).
pub fn is_repository_chart(text: &str) -> bool {
    text.starts_with("https://") || text.starts_with("http://")
}

/// The chart `https://HOST/PATH/NAME:VERSION` names, from its repository's
/// index; the package is checked against the digest the index gives.
pub async fn from_repository(client: &RegistryClient, text: &str) -> Result<Made> {
    let (repo, name, version, reference) = repository_chart(text).map_err(anyhow::Error::msg)?;
    let index_url = format!("{repo}/index.yaml");
    let index = client
        .get_url(&index_url, MAX_INDEX)
        .await
        .with_context(|| format!("reading {index_url}"))?;
    let index: serde_json::Value = std::str::from_utf8(&index)
        .map_err(anyhow::Error::from)
        .and_then(|text| Ok(serde_saphyr::from_str(text)?))
        .with_context(|| format!("{index_url} is not a chart repository index"))?;
    let (url, digest) = index_entry(&index, &repo, &name, &version).map_err(anyhow::Error::msg)?;
    let package = client
        .get_url(&url, MAX_PACKAGE)
        .await
        .with_context(|| format!("downloading {url}"))?
        .to_vec();
    if let Some(expected) = digest {
        let actual = airgate_core::Digest::of(&package);
        if actual != expected {
            bail!("{url} is {actual}, but {index_url} says {expected}: refusing it");
        }
    }
    made(reference, package, Some(url))
}

/// The chart directory `dir`, its dependencies vendored and packaged (see
/// the module docs), carried as `airgate.local/charts/NAME:VERSION`.
/// The package's file lives as long as the returned directory.
pub fn from_directory(
    dir: &Path,
    helm: Option<PathBuf>,
    ca_file: Option<PathBuf>,
) -> Result<(Made, tempfile::TempDir, PathBuf)> {
    let bin = helm
        .or_else(|| std::env::var_os("AIRGATE_HELM").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("helm"));
    let options = airgate_render::helm::VendorOptions {
        registry_config: airgate_oci::auth::config_path(),
        ca_file,
    };
    let (work, path) = airgate_render::helm::vendor(&bin, dir, &options)?;
    let package = std::fs::read(&path).with_context(|| path.display().to_string())?;
    let (name, version, _) =
        airgate_render::helm::package_info(&package).map_err(anyhow::Error::msg)?;
    let reference = packaged_reference(&name, &version)?;
    Ok((made(reference, package, None)?, work, path))
}

/// A packaged chart (`.tgz`) as it is, carried as
/// `airgate.local/charts/NAME:VERSION`.
pub fn from_package(package: Vec<u8>) -> Result<Made> {
    let (name, version, _) =
        airgate_render::helm::package_info(&package).map_err(anyhow::Error::msg)?;
    made(packaged_reference(&name, &version)?, package, None)
}

fn packaged_reference(name: &str, version: &str) -> Result<ImageRef> {
    ImageRef::parse(&format!(
        "{PACKAGED_REGISTRY}/charts/{name}:{}",
        version.replace('+', "_")
    ))
    .with_context(|| format!("chart {name} {version}: not a name a registry takes"))
}

/// The artifacts of the lock's charts from classic repositories, made
/// again from their packages: a package that changed since it was locked
/// is refused.
pub async fn remake(client: &RegistryClient, lock: &ImageLock) -> Result<Vec<Packaged>> {
    let mut out = Vec::new();
    for locked in lock.images.iter().filter(|l| l.source.is_some()) {
        let url = locked.source.as_deref().unwrap_or_default();
        let package = client
            .get_url(url, MAX_PACKAGE)
            .await
            .with_context(|| format!("downloading {url} for {}", locked.reference))?
            .to_vec();
        let again = made(locked.reference.clone(), package, locked.source.clone())?;
        if again.locked.digest != locked.digest {
            bail!(
                "{url} changed since it was locked ({} was {}, is {} now): lock it again and review",
                locked.reference,
                locked.digest,
                again.locked.digest
            );
        }
        out.push(again.packaged);
    }
    Ok(out)
}
