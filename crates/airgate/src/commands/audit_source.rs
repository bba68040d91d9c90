//! Where `airgate audit` reads a log: the controller's record store, or a
//! published log (an export directory, or the registry repository the
//! controller publishes to). A published log is read whole and checked
//! against its signed checkpoint (`airgate_store::tiles::read_log`) before
//! any command shows a record of it, so every command answers from a log
//! that verifies.

use std::path::{Path, PathBuf};

use airgate_oci::files::RepoFiles;
use airgate_store::Store;
use airgate_store::tiles::{Dir, paths, read_log, write_dir, write_file};
use anyhow::{Context as _, Result, bail};
use futures_util::{StreamExt as _, TryStreamExt as _};

use crate::cli::{AuditSource, RegistryArgs};

/// A published log's home.
pub enum Location {
    Dir(PathBuf),
    Registry(RepoFiles),
}

impl Location {
    /// A directory that exists, else a registry repository.
    pub fn parse(location: &str, registry: &RegistryArgs) -> Result<Location> {
        let path = Path::new(location);
        if path.is_dir() {
            return Ok(Location::Dir(path.to_path_buf()));
        }
        if location.starts_with('.') || location.starts_with('/') || !location.contains('/') {
            bail!(
                "{location}: no such directory\nhint: --log takes an export directory, or a registry repository HOST[:PORT]/PATH"
            );
        }
        let client = airgate_oci::RegistryClient::new(crate::registry_options::options(registry)?)?;
        Ok(Location::Registry(RepoFiles::new(client, location)?))
    }

    pub fn shown(&self) -> String {
        match self {
            Location::Dir(d) => d.display().to_string(),
            Location::Registry(r) => r.location(),
        }
    }

    /// The file at `path`, if there is one.
    pub async fn get(&self, path: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Location::Dir(d) => match std::fs::read(d.join(path)) {
                Ok(data) => Ok(Some(data)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).with_context(|| format!("reading {}", d.join(path).display())),
            },
            Location::Registry(r) => Ok(r.get(path).await?),
        }
    }

    /// Keeps `data` at `path`, replacing what was there.
    pub async fn put(&self, path: &str, data: &[u8]) -> Result<()> {
        match self {
            Location::Dir(d) => {
                let full = d.join(path);
                write_file(&full, data).with_context(|| format!("writing {}", full.display()))
            }
            Location::Registry(r) => Ok(r.put(path, data).await?),
        }
    }

    /// The signed checkpoint, and a directory holding every file of the
    /// log it covers (the export directory itself, or a fresh copy of the
    /// registry's, in `scratch`).
    pub async fn fetch(&self, scratch: &Path) -> Result<(Vec<u8>, PathBuf)> {
        let checkpoint = self.get("checkpoint").await?.with_context(|| {
            format!(
                "{} has no checkpoint\nhint: the controller publishes one with --log-key and --log-repository; `audit export --key` writes one",
                self.shown()
            )
        })?;
        let repo = match self {
            Location::Dir(d) => return Ok((checkpoint, d.clone())),
            Location::Registry(repo) => repo,
        };
        let size = airgate_store::tiles::checkpoint_size(&checkpoint)?;
        anyhow::ensure!(
            size <= 1 << 32,
            "the checkpoint at {} claims {size} records; refusing to fetch that many",
            repo.location()
        );
        let files: Vec<(String, Vec<u8>)> = futures_util::stream::iter(paths(size))
            .map(|path| async move {
                let data = repo
                    .get(&path)
                    .await?
                    .with_context(|| format!("{} has no {path}", repo.location()))?;
                anyhow::Ok((path, data))
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        write_dir(scratch, &files)?;
        Ok((checkpoint, scratch.to_path_buf()))
    }
}

/// A log opened for reading.
pub struct Opened {
    pub store: Store,
    /// For a published log: where, its checkpoint and the log's verifier key.
    pub published: Option<(Location, Vec<u8>, String)>,
}

pub fn read_vkey(path: &Path) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_string())
}

/// The controller's record store at `path`.
pub fn open_store(path: &Path) -> Result<Store> {
    anyhow::ensure!(
        path.exists(),
        "{} does not exist\nhint: the controller keeps its records in DATA_DIR/records.db",
        path.display()
    );
    Ok(Store::open(path)?)
}

/// Opens the store, or reads and checks the published log.
pub fn open(source: &AuditSource) -> Result<Opened> {
    if let Some(path) = &source.store {
        return Ok(Opened {
            store: open_store(path)?,
            published: None,
        });
    }
    let (Some(location), Some(key)) = (&source.log, &source.log_key) else {
        bail!("give --store FILE, or --log LOCATION with --log-key FILE");
    };
    let vkey = read_vkey(key)?;
    let location = Location::parse(location, &source.registry)?;
    let scratch = tempfile::tempdir()?;
    let (checkpoint, dir) = crate::block_on(location.fetch(scratch.path()))?;
    let (store, _) = read_log(&Dir(dir), &checkpoint, &vkey)
        .with_context(|| format!("the log at {} does not verify", location.shown()))?;
    Ok(Opened {
        store,
        published: Some((location, checkpoint, vkey)),
    })
}
