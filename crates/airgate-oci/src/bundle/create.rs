//! Making a bundle from a lock: registry to file.
//!
//! Manifests are fetched first (they are small and say how big everything
//! else is). With every size known, the position of every tar entry is known
//! too, so the file is laid out up front and the blobs are downloaded in
//! parallel straight to their place in it: one write per byte, no temporary
//! copies, each blob hashed as it arrives. The file is written as
//! `NAME.partial` and renamed only when complete.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use airgate_core::archive;
use airgate_core::bundle::{
    self, BundleBlob, BundleFile, BundleImage, BundleInventory, LayoutFile,
};
use airgate_core::lock::ImageLock;
use airgate_core::oci::{self, Descriptor, Parsed};
use airgate_core::signing;
use airgate_core::{Digest, ImageRef};
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use futures_util::{StreamExt, TryStreamExt};
use sha2::{Digest as _, Sha256};

use super::output::Output;
use crate::progress::Progress;
use crate::registry::{Manifest, RegistryClient, RegistryError};

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> CreateError + '_ {
    move |source| CreateError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A file to carry: read from `source`, named `name` in the bundle.
#[derive(Clone, Debug)]
pub struct CarriedFile {
    pub source: PathBuf,
    pub name: String,
}

/// An artifact made here rather than fetched from a registry: a chart
/// packaged from a directory, or from a classic chart repository, as
/// Helm's OCI artifact. A lock entry with its digest is carried from it.
#[derive(Clone, Debug)]
pub struct Packaged {
    pub manifest: Bytes,
    /// The blobs the manifest names (config, then layers).
    pub blobs: Vec<Bytes>,
}

impl Packaged {
    /// A packaged chart (see `airgate_core::chart::oci_manifest`).
    pub fn chart(config: Vec<u8>, package: Vec<u8>, name: &str, version: &str) -> Packaged {
        let manifest = airgate_core::chart::oci_manifest(&config, &package, name, version);
        Packaged {
            manifest: Bytes::from(manifest),
            blobs: vec![Bytes::from(config), Bytes::from(package)],
        }
    }

    /// The manifest's digest: what a lock names.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }
}

#[derive(Debug)]
pub struct CreateRequest<'a> {
    pub lock: &'a ImageLock,
    pub files: &'a [CarriedFile],
    /// Artifacts made here: lock entries with their digests are carried
    /// from them, not fetched.
    pub packaged: &'a [Packaged],
    /// The inventory of an earlier bundle, and its digest: leave out the
    /// blobs it carried.
    pub since: Option<(&'a BundleInventory, Digest)>,
    pub signing_key: Option<&'a SigningKey>,
    pub jobs: usize,
}

/// What was written.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateSummary {
    pub images: usize,
    pub blobs: usize,
    pub blobs_left_out: usize,
    pub files: usize,
    /// Bytes of carried blobs and files.
    pub bytes: u64,
    /// Size of the bundle file.
    pub bundle_bytes: u64,
    pub inventory_digest: Digest,
}

/// Where a blob is fetched from.
#[derive(Clone, Debug)]
struct Source {
    registry: String,
    repository: String,
}

enum Content {
    Inline(Bytes),
    Blob { digest: Digest, source: Source },
    File { source: PathBuf, digest: Digest },
}

struct Entry {
    path: String,
    size: u64,
    content: Content,
}

/// Fetches every manifest and index under `image` (recursively), checking
/// digests and sizes.
async fn fetch_tree(
    client: &RegistryClient,
    image: &ImageRef,
    top: &Digest,
    manifests: &mut BTreeMap<Digest, (Manifest, Source)>,
) -> Result<(), CreateError> {
    let source = Source {
        registry: image.registry().to_string(),
        repository: image.repository().to_string(),
    };
    let mut queue: Vec<(Digest, Option<u64>)> = vec![(top.clone(), None)];
    while let Some((digest, size)) = queue.pop() {
        if manifests.contains_key(&digest) {
            continue;
        }
        let m = client
            .get_manifest(&source.registry, &source.repository, digest.as_str())
            .await?;
        if let Some(size) = size
            && size != m.bytes.len() as u64
        {
            return Err(CreateError::Invalid(format!(
                "manifest {digest} of {image} is {} bytes, its index says {size}",
                m.bytes.len()
            )));
        }
        let parsed = oci::parse_manifest(&m.bytes, &m.media_type)
            .map_err(|e| CreateError::Invalid(format!("manifest {digest} of {image}: {e}")))?;
        if let Parsed::Index {
            manifests: children,
        } = &parsed
        {
            for c in children {
                queue.push((c.digest.clone(), Some(c.size)));
            }
        }
        manifests.insert(digest, (m, source.clone()));
    }
    Ok(())
}

/// Makes the bundle at `out` (see the module docs).
pub async fn create(
    client: &RegistryClient,
    request: &CreateRequest<'_>,
    out: &Path,
    progress: &Progress,
) -> Result<CreateSummary, CreateError> {
    request
        .lock
        .validate()
        .map_err(|e| CreateError::Invalid(e.to_string()))?;
    if request.lock.images.is_empty() && request.files.is_empty() {
        return Err(CreateError::Invalid(
            "nothing to carry: the lock lists no images and no --file was given".to_string(),
        ));
    }

    // 1. Manifests and indexes, in parallel per image; those made here
    // are not fetched.
    let made: BTreeMap<Digest, &Packaged> =
        request.packaged.iter().map(|p| (p.digest(), p)).collect();
    let mut inline: BTreeMap<Digest, Bytes> = BTreeMap::new();
    for p in request.packaged {
        for b in &p.blobs {
            inline.insert(Digest::of(b), b.clone());
        }
    }
    let fetched = request
        .lock
        .images
        .iter()
        .filter(|locked| !made.contains_key(&locked.digest));
    let trees: Vec<BTreeMap<Digest, (Manifest, Source)>> =
        futures_util::stream::iter(fetched.map(|locked| async move {
            let mut m = BTreeMap::new();
            fetch_tree(client, &locked.reference, &locked.digest, &mut m).await?;
            Ok::<_, CreateError>(m)
        }))
        .buffer_unordered(request.jobs.max(1))
        .try_collect()
        .await?;
    let mut manifests: BTreeMap<Digest, (Manifest, Source)> = BTreeMap::new();
    for t in trees {
        manifests.extend(t);
    }
    for (digest, p) in &made {
        let manifest = Manifest {
            bytes: p.manifest.clone(),
            media_type: oci::OCI_MANIFEST.to_string(),
            digest: digest.clone(),
        };
        let here = Source {
            registry: String::new(),
            repository: String::new(),
        };
        manifests.insert(digest.clone(), (manifest, here));
    }

    // 2. Blobs named by image manifests, each once.
    let mut blobs: BTreeMap<Digest, (u64, Source)> = BTreeMap::new();
    for (m, source) in manifests.values() {
        if let Ok(Parsed::Image { config, layers }) = oci::parse_manifest(&m.bytes, &m.media_type) {
            for d in std::iter::once(&config).chain(layers.iter()) {
                if let Some((size, _)) = blobs.get(&d.digest)
                    && *size != d.size
                {
                    return Err(CreateError::Invalid(format!(
                        "blob {} is listed with two sizes ({size} and {})",
                        d.digest, d.size
                    )));
                }
                blobs
                    .entry(d.digest.clone())
                    .or_insert((d.size, source.clone()));
            }
        }
    }
    let carried_before: BTreeSet<&Digest> = request
        .since
        .as_ref()
        .map(|(inv, _)| inv.blobs.iter().map(|b| &b.digest).collect())
        .unwrap_or_default();

    // 3. Files: hashed now, copied (and hashed again) later.
    let mut files = Vec::new();
    for f in request.files {
        bundle::validate_file_name(&f.name).map_err(|e| CreateError::Invalid(e.to_string()))?;
        let (digest, size) = hash_file(&f.source)?;
        files.push(BundleFile {
            name: f.name.clone(),
            digest,
            size,
        });
    }
    let mut names = BTreeSet::new();
    for f in &files {
        if !names.insert(&f.name) {
            return Err(CreateError::Invalid(format!(
                "two files are named '{}' in the bundle",
                f.name
            )));
        }
    }

    // 4. The OCI layout's own files.
    let mut index_entries = Vec::new();
    let mut images = Vec::new();
    for locked in &request.lock.images {
        let (m, _) = manifests
            .get(&locked.digest)
            .ok_or_else(|| CreateError::Invalid(format!("{} was not fetched", locked.reference)))?;
        let name = locked.reference.to_string();
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "org.opencontainers.image.ref.name".to_string(),
            name.clone(),
        );
        annotations.insert("io.containerd.image.name".to_string(), name);
        index_entries.push(Descriptor {
            media_type: m.media_type.clone(),
            digest: m.digest.clone(),
            size: m.bytes.len() as u64,
            platform: None,
            annotations: Some(annotations),
            artifact_type: None,
        });
        images.push(BundleImage {
            reference: locked.reference.clone(),
            digest: m.digest.clone(),
            media_type: m.media_type.clone(),
            size: m.bytes.len() as u64,
            platforms: locked.platforms.clone(),
            subject: locked.subject.clone(),
        });
    }
    let oci_layout = Bytes::from(format!(
        r#"{{"imageLayoutVersion":"{}"}}"#,
        oci::OCI_LAYOUT_VERSION
    ));
    let index_json = Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": oci::OCI_INDEX,
            "manifests": index_entries,
        }))
        .map_err(|e| CreateError::Invalid(e.to_string()))?,
    );

    // 5. The inventory: manifests first, then the other blobs.
    let mut inv_blobs = Vec::new();
    for (d, (m, _)) in &manifests {
        inv_blobs.push(BundleBlob {
            digest: d.clone(),
            size: m.bytes.len() as u64,
            media_type: Some(m.media_type.clone()),
            carried: true,
        });
    }
    for (d, (size, _)) in &blobs {
        if manifests.contains_key(d) {
            continue;
        }
        inv_blobs.push(BundleBlob {
            digest: d.clone(),
            size: *size,
            media_type: None,
            carried: !carried_before.contains(d),
        });
    }
    let inventory = BundleInventory {
        api_version: bundle::API_VERSION.to_string(),
        kind: bundle::KIND.to_string(),
        created_by: concat!("airgate ", env!("CARGO_PKG_VERSION")).to_string(),
        since: request.since.as_ref().map(|(_, d)| d.clone()),
        images,
        blobs: inv_blobs,
        files: files.clone(),
        layout: vec![
            LayoutFile {
                path: bundle::OCI_LAYOUT_PATH.to_string(),
                digest: Digest::of(&oci_layout),
                size: oci_layout.len() as u64,
            },
            LayoutFile {
                path: bundle::INDEX_PATH.to_string(),
                digest: Digest::of(&index_json),
                size: index_json.len() as u64,
            },
        ],
    };
    inventory
        .validate()
        .map_err(|e| CreateError::Invalid(e.to_string()))?;
    let inventory_bytes = Bytes::from(
        serde_json::to_vec_pretty(&inventory).map_err(|e| CreateError::Invalid(e.to_string()))?,
    );
    let inventory_digest = Digest::of(&inventory_bytes);

    // 6. The tar plan.
    let mut entries = vec![Entry {
        path: bundle::INVENTORY_PATH.to_string(),
        size: inventory_bytes.len() as u64,
        content: Content::Inline(inventory_bytes.clone()),
    }];
    if let Some(key) = request.signing_key {
        let sig = signing::sign(&inventory_bytes, key);
        let sig = Bytes::from(
            serde_json::to_vec_pretty(&sig).map_err(|e| CreateError::Invalid(e.to_string()))?,
        );
        entries.push(Entry {
            path: bundle::SIGNATURE_PATH.to_string(),
            size: sig.len() as u64,
            content: Content::Inline(sig),
        });
    }
    for (path, bytes) in [
        (bundle::OCI_LAYOUT_PATH, &oci_layout),
        (bundle::INDEX_PATH, &index_json),
    ] {
        entries.push(Entry {
            path: path.to_string(),
            size: bytes.len() as u64,
            content: Content::Inline(bytes.clone()),
        });
    }
    for b in inventory.blobs.iter().filter(|b| b.carried) {
        let content = match (manifests.get(&b.digest), inline.get(&b.digest)) {
            (Some((m, _)), _) => Content::Inline(m.bytes.clone()),
            (None, Some(bytes)) => Content::Inline(bytes.clone()),
            (None, None) => {
                let (_, source) = &blobs[&b.digest];
                Content::Blob {
                    digest: b.digest.clone(),
                    source: source.clone(),
                }
            }
        };
        entries.push(Entry {
            path: b.digest.layout_path(),
            size: b.size,
            content,
        });
    }
    for (f, req) in files.iter().zip(request.files) {
        entries.push(Entry {
            path: format!("{}{}", bundle::FILES_DIR, f.name),
            size: f.size,
            content: Content::File {
                source: req.source.clone(),
                digest: f.digest.clone(),
            },
        });
    }

    // 7. Lay the file out, then fill it.
    let mut offset = 0u64;
    let mut placed = Vec::with_capacity(entries.len());
    for e in entries {
        let next = archive::end_of(offset, e.size).ok_or_else(|| {
            CreateError::Invalid(format!("{} is too large to be carried", e.path))
        })?;
        placed.push((offset, e));
        offset = next;
    }
    let total = offset
        .checked_add(archive::END_MARKER)
        .ok_or_else(|| CreateError::Invalid("the bundle would be too large".to_string()))?;
    let partial = partial_path(out);
    let result = write_bundle(client, request, &placed, total, &partial, progress).await;
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, out).map_err(io(out))?;
    let carried_blobs: Vec<_> = inventory.blobs.iter().filter(|b| b.carried).collect();
    Ok(CreateSummary {
        images: inventory.images.len(),
        blobs: carried_blobs.len(),
        blobs_left_out: inventory.blobs.len() - carried_blobs.len(),
        files: files.len(),
        bytes: carried_blobs
            .iter()
            .map(|b| b.size)
            .chain(files.iter().map(|f| f.size))
            .fold(0u64, u64::saturating_add),
        bundle_bytes: total,
        inventory_digest,
    })
}

/// `PATH.partial`, next to `path`: where a file is written until complete.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}

/// The one header airgate writes (and the only one its readers accept).
fn header(path: &str, size: u64) -> Result<[u8; archive::BLOCK], CreateError> {
    archive::header(path, size).map_err(|e| CreateError::Invalid(e.to_string()))
}

async fn write_bundle(
    client: &RegistryClient,
    request: &CreateRequest<'_>,
    placed: &[(u64, Entry)],
    total: u64,
    partial: &Path,
    progress: &Progress,
) -> Result<(), CreateError> {
    // The length is set at the end: writing into a preallocated sparse file
    // measured slower than letting the writes extend it.
    let file = Arc::new(Output::create(partial).map_err(io(partial))?);
    progress.set_total(
        placed
            .iter()
            .filter(|(_, e)| matches!(e.content, Content::Blob { .. } | Content::File { .. }))
            .map(|(_, e)| e.size)
            .fold(0u64, u64::saturating_add),
    );
    let mut downloads = Vec::new();
    for (offset, entry) in placed {
        file.write(&[header(&entry.path, entry.size)?], *offset)
            .map_err(io(partial))?;
        let data = offset + 512;
        match &entry.content {
            Content::Inline(bytes) => file.write(&[bytes], data).map_err(io(partial))?,
            Content::File { source, digest } => {
                copy_file(source, digest, &file, (data, entry.size), partial, progress)?
            }
            Content::Blob { digest, source } => downloads.push((digest, source, data, entry.size)),
        }
    }
    futures_util::stream::iter(downloads.into_iter().map(|(digest, source, data, size)| {
        let file = file.clone();
        async move { download(client, source, digest, size, &file, data, partial, progress).await }
    }))
    .buffer_unordered(request.jobs.max(1))
    .try_collect::<Vec<()>>()
    .await?;
    // The last entry's padding and the end-of-archive blocks are zeros.
    file.set_len(total).map_err(io(partial))?;
    // No fsync here: a bundle is verified by digest before use, so a file
    // cut short by an OS crash is caught then; the rename below only ever
    // names a file this process finished writing.
    Ok(())
}

async fn join_write(handle: tokio::task::JoinHandle<std::io::Result<()>>) -> std::io::Result<()> {
    handle.await.map_err(std::io::Error::other)?
}

/// Bytes gathered before they are handed to the blocking pool to write.
const WRITE_BLOCK: usize = 2 << 20;

#[allow(clippy::too_many_arguments)]
async fn download(
    client: &RegistryClient,
    source: &Source,
    digest: &Digest,
    size: u64,
    file: &Arc<Output>,
    offset: u64,
    partial: &Path,
    progress: &Progress,
) -> Result<(), CreateError> {
    let what = format!(
        "blob {digest} from {}/{}",
        source.registry, source.repository
    );
    client
        .retry(|| async {
            let resp = client
                .get_blob(&source.registry, &source.repository, digest)
                .await?;
            let mut stream = resp.bytes_stream();
            let mut hasher = Sha256::new();
            // Gather the network's chunks (not copied: they are slices of
            // the connection's buffers) into blocks, and write each block on
            // the blocking pool while the next one arrives, so the async
            // workers never wait on the page cache.
            let mut block: Vec<Bytes> = Vec::new();
            let mut block_len = 0usize;
            let mut writing: Option<tokio::task::JoinHandle<std::io::Result<()>>> = None;
            let mut written = 0u64;
            let mut received = 0u64;
            let io_error = |source: std::io::Error| RegistryError::Io {
                path: partial.display().to_string(),
                source,
            };
            let flush = |block: Vec<Bytes>, len: usize, written: &mut u64| {
                let file = file.clone();
                let at = offset + *written;
                *written += len as u64;
                tokio::task::spawn_blocking(move || file.write(&block, at))
            };
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| RegistryError::Unreachable {
                    registry: source.registry.clone(),
                    message: format!("reading {what}: {e}"),
                })?;
                received += chunk.len() as u64;
                if received > size {
                    return Err(RegistryError::SizeMismatch {
                        what: what.clone(),
                        expected: size,
                        actual: received,
                    });
                }
                hasher.update(&chunk);
                progress.advance(chunk.len() as u64);
                block_len += chunk.len();
                block.push(chunk);
                if block_len >= WRITE_BLOCK {
                    if let Some(w) = writing.take() {
                        join_write(w).await.map_err(io_error)?;
                    }
                    let full = std::mem::take(&mut block);
                    writing = Some(flush(full, std::mem::take(&mut block_len), &mut written));
                }
            }
            if let Some(w) = writing.take() {
                join_write(w).await.map_err(io_error)?;
            }
            join_write(flush(block, block_len, &mut written))
                .await
                .map_err(io_error)?;
            if written != size {
                return Err(RegistryError::SizeMismatch {
                    what: what.clone(),
                    expected: size,
                    actual: written,
                });
            }
            let actual = Digest::from_sha256(hasher.finalize().as_slice());
            if &actual != digest {
                return Err(RegistryError::DigestMismatch {
                    what: what.clone(),
                    expected: digest.clone(),
                    actual,
                });
            }
            Ok(())
        })
        .await
        .map_err(CreateError::from)
}

fn hash_file(path: &Path) -> Result<(Digest, u64), CreateError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((Digest::from_sha256(hasher.finalize().as_slice()), size))
}

/// Copies a carried file into place, failing if it changed since it was hashed.
fn copy_file(
    src: &Path,
    digest: &Digest,
    file: &Output,
    (offset, size): (u64, u64),
    partial: &Path,
    progress: &Progress,
) -> Result<(), CreateError> {
    let changed = || {
        CreateError::Invalid(format!(
            "{} changed while the bundle was made",
            src.display()
        ))
    };
    let mut f = std::fs::File::open(src).map_err(io(src))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut hasher = Sha256::new();
    let mut written = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io(src))?;
        if n == 0 {
            break;
        }
        if written + n as u64 > size {
            return Err(changed());
        }
        hasher.update(&buf[..n]);
        file.write(&[&buf[..n]], offset + written)
            .map_err(io(partial))?;
        written += n as u64;
        progress.advance(n as u64);
    }
    if written != size || &Digest::from_sha256(hasher.finalize().as_slice()) != digest {
        return Err(changed());
    }
    Ok(())
}
