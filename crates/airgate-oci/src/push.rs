//! Pushing a verified bundle into a registry: bundle to registry.
//!
//! Order is what makes a push safe to interrupt: every blob first (in
//! parallel; skipped when the registry has it, mounted from another
//! repository of the push when it can), then manifests by digest (children
//! before the indexes that name them), then tags, last. A tag therefore never
//! points at something incomplete, and a second run after a crash uploads
//! only what is missing. A delta bundle is checked before anything is
//! written: every blob it leaves out must already be in the registry.
//! Signatures and other referrers go like any image (cosign's tags are
//! tags); a referrer whose subject the registry does not index itself (no
//! OCI 1.1 referrers API) is added to the subject's referrers tag, last.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use airgate_core::bundle::BundleImage;
use airgate_core::mirror::{self, Layout};
use airgate_core::oci::{self, Descriptor, Parsed};
use airgate_core::{Digest, ImageRef};
use futures_util::{StreamExt, TryStreamExt};

use crate::bundle::Verified;
use crate::progress::Progress;
use crate::registry::{BlobSource, BlobUpload, Manifest, RegistryClient, RegistryError};

/// Where to push: `host:port`, an optional path prefix, and the layout
/// under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub registry: String,
    pub prefix: Option<String>,
    pub layout: Layout,
    /// For registries that need a namespace (Harbor's `library/`): put
    /// one-component repository paths under it.
    pub namespace_single: Option<String>,
}

impl Target {
    /// Parses `HOST:PORT[/PREFIX]`.
    pub fn parse(
        s: &str,
        layout: Layout,
        namespace_single: Option<String>,
    ) -> Result<Target, String> {
        let (registry, prefix) = match s.split_once('/') {
            Some((r, p)) => (r, Some(p.trim_end_matches('/').to_string())),
            None => (s, None),
        };
        // Borrow the reference grammar to validate both parts.
        let probe = match &prefix {
            Some(p) => format!("{registry}/{p}/probe:t"),
            None => format!("{registry}/probe:t"),
        };
        let parsed = ImageRef::parse(&probe).map_err(|e| format!("--to {s}: {}", e.reason))?;
        if parsed.registry() != registry {
            return Err(format!(
                "--to {s}: '{registry}' is not a registry host (expected HOST:PORT or a name with a dot)"
            ));
        }
        if let Some(ns) = &namespace_single {
            ImageRef::parse(&format!("{registry}/{ns}/probe:t"))
                .map_err(|e| format!("--namespace-single {ns}: {}", e.reason))?;
        }
        Ok(Target {
            registry: registry.to_string(),
            prefix: prefix.filter(|p| !p.is_empty()),
            layout,
            namespace_single,
        })
    }

    /// The repository an image from `source` goes to.
    pub fn repository_for(&self, source: &ImageRef) -> Result<String, String> {
        let mut path = source.repository().to_string();
        if let Some(ns) = &self.namespace_single
            && !path.contains('/')
        {
            path = format!("{ns}/{path}");
        }
        let under =
            mirror::upstream_prefix(self.layout, self.prefix.as_deref(), source.registry())?;
        Ok(match under {
            Some(p) => format!("{p}/{path}"),
            None => path,
        })
    }
}

/// Refuses a push in which two source repositories would land on one
/// target repository: a pull by tag could then return the other image.
fn refuse_collisions(plans: &[Plan<'_>], registry: &str) -> Result<(), PushError> {
    let mut by_target: BTreeMap<&str, &ImageRef> = BTreeMap::new();
    for p in plans {
        let source = &p.image.reference;
        if let Some(other) = by_target.insert(&p.repository, source)
            && other.name() != source.name()
        {
            return Err(PushError::Invalid(format!(
                "{} and {} would both be pushed to {registry}/{}; nothing was written\n\
                 hint: push with the default --layout by-registry, which keeps each source registry apart",
                other.name(),
                source.name(),
                p.repository
            )));
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(
        "the bundle is a delta, and {count} blobs it leaves out are not in {registry}: {list}\n\
         hint: push the earlier bundle first; nothing was written"
    )]
    DeltaBase {
        registry: String,
        count: usize,
        list: String,
    },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Clone, Debug)]
pub struct PushRequest<'a> {
    pub bundle: &'a Path,
    pub verified: &'a Verified,
    pub target: &'a Target,
    pub jobs: usize,
    pub chunk_size: u64,
}

/// One image as pushed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PushedImage {
    pub source: String,
    /// `registry/repository[:tag]@digest`
    pub target: String,
    /// Where it went, and its manifest or index (what an import refers to).
    #[serde(skip)]
    pub repository: String,
    #[serde(skip)]
    pub manifest: Descriptor,
    /// Set for a referrer the bundle carried (a signature, an attestation).
    #[serde(skip)]
    pub is_referrer: bool,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushSummary {
    pub images: Vec<PushedImage>,
    pub blobs_uploaded: usize,
    pub blobs_present: usize,
    pub blobs_mounted: usize,
    pub bytes_uploaded: u64,
    pub manifests: usize,
    pub tags: usize,
}

/// The manifests of `top` in push order (children first), and the blobs they need.
fn walk(verified: &Verified, top: &Digest) -> Result<(Vec<Digest>, BTreeSet<Digest>), PushError> {
    let mut order = Vec::new();
    let mut blobs = BTreeSet::new();
    let mut stack = vec![(top.clone(), false)];
    let mut seen = BTreeSet::new();
    while let Some((digest, expanded)) = stack.pop() {
        if expanded {
            order.push(digest);
            continue;
        }
        if !seen.insert(digest.clone()) {
            continue;
        }
        let (_, _, parsed) = verified
            .manifests
            .get(&digest)
            .ok_or_else(|| PushError::Invalid(format!("manifest {digest} is not in the bundle")))?;
        stack.push((digest.clone(), true));
        match parsed {
            Parsed::Index { manifests } => {
                for m in manifests {
                    stack.push((m.digest.clone(), false));
                }
            }
            Parsed::Image { config, layers } => {
                blobs.insert(config.digest.clone());
                blobs.extend(layers.iter().map(|l| l.digest.clone()));
            }
        }
    }
    Ok((order, blobs))
}

struct Plan<'a> {
    image: &'a BundleImage,
    repository: String,
    manifests: Vec<Digest>,
    blobs: BTreeSet<Digest>,
}

enum BlobOutcome {
    Present,
    Mounted,
    Uploaded(u64),
}

/// Pushes the verified bundle (see the module docs).
pub async fn push(
    client: &RegistryClient,
    request: &PushRequest<'_>,
    progress: &Progress,
) -> Result<PushSummary, PushError> {
    let verified = request.verified;
    let registry = request.target.registry.as_str();
    let mut plans = Vec::new();
    for image in &verified.inventory.images {
        let (manifests, blobs) = walk(verified, &image.digest)?;
        plans.push(Plan {
            image,
            repository: request
                .target
                .repository_for(&image.reference)
                .map_err(PushError::Invalid)?,
            manifests,
            blobs,
        });
    }
    refuse_collisions(&plans, registry)?;
    let sizes: BTreeMap<&Digest, u64> = verified
        .inventory
        .blobs
        .iter()
        .map(|b| (&b.digest, b.size))
        .collect();

    // Every repository that needs each blob, in a stable order.
    let mut needed: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    for p in &plans {
        for b in &p.blobs {
            let repos = needed.entry(b.clone()).or_default();
            if !repos.contains(&p.repository) {
                repos.push(p.repository.clone());
            }
        }
    }

    // A delta's missing blobs must already be in the registry: check before writing.
    let absent: Vec<(Digest, Vec<String>)> = needed
        .iter()
        .filter(|(d, _)| !verified.blobs.contains_key(*d))
        .map(|(d, r)| (d.clone(), r.clone()))
        .collect();
    let found: Vec<Option<(Digest, String)>> =
        futures_util::stream::iter(absent.iter().map(|(d, repos)| async move {
            for r in repos {
                if client.blob_exists(registry, r, d).await? {
                    return Ok::<_, PushError>(Some((d.clone(), r.clone())));
                }
            }
            Ok(None)
        }))
        .buffered(request.jobs.max(1))
        .try_collect()
        .await?;
    let base: BTreeMap<Digest, String> = found.iter().flatten().cloned().collect();
    let missing: Vec<&Digest> = absent
        .iter()
        .map(|(d, _)| d)
        .filter(|d| !base.contains_key(*d))
        .collect();
    if !missing.is_empty() {
        let mut list: Vec<String> = missing.iter().take(5).map(|d| d.to_string()).collect();
        if missing.len() > 5 {
            list.push(format!("and {} more", missing.len() - 5));
        }
        return Err(PushError::DeltaBase {
            registry: registry.to_string(),
            count: missing.len(),
            list: list.join(", "),
        });
    }

    // 1. Blobs.
    progress.reset(
        needed
            .iter()
            .map(|(d, r)| sizes.get(d).copied().unwrap_or(0) * r.len() as u64)
            .sum(),
    );
    let outcomes: Vec<Vec<BlobOutcome>> = futures_util::stream::iter(needed.iter().map(|(digest, repos)| {
        let size = sizes.get(digest).copied().unwrap_or(0);
        let span = verified.blobs.get(digest).copied();
        let based_in = base.get(digest).cloned();
        async move {
            let mut outcomes = Vec::new();
            let mut home: Option<String> = based_in;
            for repo in repos {
                let outcome = if client.blob_exists(registry, repo, digest).await? {
                    BlobOutcome::Present
                } else {
                    match (span, &home) {
                        (Some(span), home) => {
                            let source = BlobSource {
                                path: request.bundle.to_path_buf(),
                                offset: span.offset,
                            };
                            let upload = BlobUpload {
                                digest,
                                size,
                                source: &source,
                                mount_from: home.as_deref(),
                                chunk_size: request.chunk_size,
                            };
                            if client.push_blob(registry, repo, &upload).await? {
                                BlobOutcome::Mounted
                            } else {
                                BlobOutcome::Uploaded(size)
                            }
                        }
                        // Not carried: mount it from where an earlier push put it.
                        (None, Some(from)) => {
                            if !client.mount_blob(registry, repo, digest, from).await? {
                                return Err(PushError::Invalid(format!(
                                    "{registry} would not mount blob {digest} from {from} into {repo}, \
                                     and this delta bundle does not carry it"
                                )));
                            }
                            BlobOutcome::Mounted
                        }
                        (None, None) => {
                            return Err(PushError::Invalid(format!(
                                "blob {digest} is neither carried nor in {registry}"
                            )));
                        }
                    }
                };
                progress.advance(size);
                if home.is_none() {
                    home = Some(repo.clone());
                }
                outcomes.push(outcome);
            }
            Ok::<_, PushError>(outcomes)
        }
    }))
    .buffer_unordered(request.jobs.max(1))
    .try_collect()
    .await?;
    let mut summary = PushSummary::default();
    for o in outcomes.into_iter().flatten() {
        match o {
            BlobOutcome::Present => summary.blobs_present += 1,
            BlobOutcome::Mounted => summary.blobs_mounted += 1,
            BlobOutcome::Uploaded(n) => {
                summary.blobs_uploaded += 1;
                summary.bytes_uploaded += n;
            }
        }
    }

    // 2. Manifests by digest, children first. A referrer whose subject the
    // registry did not index (no referrers API) is listed under the
    // referrers tag with the other tags, last.
    let mut unindexed: BTreeMap<(String, Digest), Vec<Descriptor>> = BTreeMap::new();
    for p in &plans {
        for d in &p.manifests {
            let (bytes, media_type, _) = &verified.manifests[d];
            let m = Manifest {
                bytes: bytes.clone(),
                media_type: media_type.clone(),
                digest: d.clone(),
            };
            let indexed = client
                .put_manifest(registry, &p.repository, d.as_str(), &m)
                .await?;
            summary.manifests += 1;
            if let Some(subject) = oci::subject_of(bytes)
                && !indexed
            {
                unindexed
                    .entry((p.repository.clone(), subject.digest))
                    .or_default()
                    .push(oci::referrer_descriptor(bytes, media_type, d));
            }
        }
    }

    // 3. Tags, last.
    for p in &plans {
        let (bytes, media_type, _) = &verified.manifests[&p.image.digest];
        let target = ImageRef::parse(&format!("{registry}/{}", p.repository))
            .map_err(|e| PushError::Invalid(e.to_string()))?;
        let mut shown = target.name();
        if let Some(tag) = p.image.reference.tag() {
            let m = Manifest {
                bytes: bytes.clone(),
                media_type: media_type.clone(),
                digest: p.image.digest.clone(),
            };
            client
                .put_manifest(registry, &p.repository, tag, &m)
                .await?;
            summary.tags += 1;
            shown = format!("{shown}:{tag}");
        }
        summary.images.push(PushedImage {
            source: p.image.reference.to_string(),
            target: format!("{shown}@{}", p.image.digest),
            repository: p.repository.clone(),
            manifest: Descriptor {
                media_type: media_type.clone(),
                digest: p.image.digest.clone(),
                size: bytes.len() as u64,
                platform: None,
                annotations: None,
                artifact_type: None,
            },
            is_referrer: p.image.subject.is_some(),
        });
    }
    for ((repository, subject), referrers) in &unindexed {
        update_referrers_tag(client, registry, repository, subject, referrers).await?;
        summary.tags += 1;
    }
    Ok(summary)
}

/// Lists `referrers` in the referrers index at `subject`'s referrers tag
/// (OCI 1.1's fallback for registries without the referrers API), keeping
/// what the index already lists.
pub(crate) async fn update_referrers_tag(
    client: &RegistryClient,
    registry: &str,
    repository: &str,
    subject: &Digest,
    referrers: &[Descriptor],
) -> Result<(), PushError> {
    let tag = oci::referrers_tag(subject);
    let existing = match client.get_manifest(registry, repository, &tag).await {
        Ok(m) if oci::is_index(&m.media_type) => Some(m.bytes),
        Ok(_) | Err(RegistryError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let bytes = oci::referrers_index(existing.as_deref(), referrers)
        .map_err(|e| PushError::Invalid(format!("the referrers index of {subject}: {e}")))?;
    let index = Manifest {
        digest: Digest::of(&bytes),
        bytes: bytes.into(),
        media_type: oci::OCI_INDEX.to_string(),
    };
    client
        .put_manifest(registry, repository, &tag, &index)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn targets_map_source_paths_under_the_prefix() -> Result<(), String> {
        let t = Target::parse("registry.internal:5000/mirror", Layout::Flat, None)?;
        assert_eq!(t.repository_for(&r("nginx:1.27"))?, "mirror/library/nginx");
        assert_eq!(
            t.repository_for(&r("quay.io/org/app:v1"))?,
            "mirror/org/app"
        );
        let t = Target::parse("127.0.0.1:5000", Layout::Flat, Some("library".into()))?;
        assert_eq!(
            t.repository_for(&r("registry.example/app:v1"))?,
            "library/app"
        );
        assert_eq!(
            t.repository_for(&r("registry.example/team/app:v1"))?,
            "team/app"
        );
        assert!(
            Target::parse("nohost", Layout::Flat, None).is_err(),
            "a name without a dot or port is not a registry"
        );
        assert!(Target::parse("127.0.0.1:5000/Bad", Layout::Flat, None).is_err());
        Ok(())
    }

    #[test]
    fn the_default_layout_keeps_the_source_registry_in_the_path() -> Result<(), String> {
        let t = Target::parse("registry.internal:5000/mirror", Layout::ByRegistry, None)?;
        assert_eq!(
            t.repository_for(&r("nginx:1.27"))?,
            "mirror/docker.io/library/nginx"
        );
        assert_eq!(
            t.repository_for(&r("127.0.0.1:5001/team/app:2.1"))?,
            "mirror/127.0.0.1_5001/team/app"
        );
        let flat = Target::parse("registry.internal:5000/mirror", Layout::Flat, None)?;
        assert_eq!(
            flat.repository_for(&r("127.0.0.1:5001/team/app:2.1"))?,
            flat.repository_for(&r("127.0.0.1:5002/team/app:2.1"))?,
            "the flat layout collides; push refuses it (see refuse_collisions)"
        );
        Ok(())
    }
}
