//! One sync of one App, start to finish, fail closed at every step:
//!
//! 1. **Source**: fetch the ref from Git into the shared mirror; the commit it
//!    names is the revision.
//! 2. **Render**: the App's path at that commit, plain YAML or Kustomize;
//!    rendered once per (URL, revision, path) and cached.
//! 3. **Policy**: every image from an allowed registry, pinned by digest when
//!    required. A violation blocks the sync; nothing is applied.
//! 4. **Apply**: staged server-side apply after a whole-set dry-run, as the
//!    App's ServiceAccount. A failed dry-run applies nothing.
//! 5. **Prune**: what the previous inventory holds and this revision does
//!    not, unless pruning is off or the object opts out.
//!
//! The outcome carries the new inventory and everything a sync record needs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use airgate_core::discover::{Document, images_in};
use airgate_core::inventory::Inventory;
use airgate_core::policy::{Policy, Violation};
use airgate_git::{Access, Commit, GitError, GitRef, Mirror};
use airgate_kube::{Applier, ApplyError, ChangeSet};
use airgate_render::{Manifest, RenderError, Renderer};
use airgate_store::{ObjectChange, Person, SyncRecord};
use serde_json::Value;

/// Everything one App asks for.
#[derive(Clone, Debug)]
pub struct AppSpec {
    /// `namespace/name`
    pub app: String,
    pub namespace: String,
    pub url: String,
    pub git_ref: GitRef,
    pub path: String,
    pub access: Access,
    pub service_account: String,
    pub policy: Policy,
    pub prune: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("source: {0}")]
    Source(#[from] GitError),
    #[error("render {path} at {revision}: {message}")]
    Render {
        path: String,
        revision: String,
        message: String,
    },
    #[error("policy: {} violation(s); nothing was applied: {}", .0.len(), .0.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("; "))]
    Policy(Vec<Violation>),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("{0}")]
    Internal(String),
}

impl SyncError {
    /// A short machine reason, for conditions and records.
    pub fn reason(&self) -> &'static str {
        match self {
            SyncError::Source(_) => "SourceFailed",
            SyncError::Render { .. } => "RenderFailed",
            SyncError::Policy(_) => "PolicyViolation",
            SyncError::Apply(ApplyError::DryRun { .. }) => "DryRunFailed",
            SyncError::Apply(_) => "ApplyFailed",
            SyncError::Internal(_) => "InternalError",
        }
    }
}

/// What one successful sync did.
#[derive(Clone, Debug)]
pub struct SyncOutcome {
    pub commit: Commit,
    pub applied: ChangeSet,
    pub pruned: ChangeSet,
    /// What the App now owns: the next sync prunes against it.
    pub inventory: Inventory,
    /// Every image reference the revision deploys, sorted and unique.
    pub images: Vec<String>,
}

impl SyncOutcome {
    /// The record to store.
    pub fn record(&self, app: &str, started_at: i64, duration_ms: u64) -> SyncRecord {
        let changes = self.applied.changes.iter().chain(&self.pruned.changes);
        SyncRecord {
            app: app.to_string(),
            kind: "sync".to_string(),
            revision: self.commit.id.clone(),
            author: Person {
                name: self.commit.author.name.clone(),
                email: self.commit.author.email.clone(),
            },
            committer: Person {
                name: self.commit.committer.name.clone(),
                email: self.commit.committer.email.clone(),
            },
            message: self.commit.message.clone(),
            started_at,
            duration_ms,
            result: "succeeded".to_string(),
            error: None,
            objects: changes
                .map(|c| ObjectChange {
                    object: c.object.to_string(),
                    action: serde_json::to_value(c.action)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default(),
                })
                .collect(),
            images: self.images.clone(),
            drift: Vec::new(),
        }
    }
}

/// (URL, revision, path): what a rendering depends on.
type RenderKey = (String, String, String);

/// Syncs Apps; shares one Git mirror and one render cache among them.
pub struct Syncer {
    mirror: Mirror,
    renderer: Renderer,
    /// Admin (controller) configuration; every apply impersonates.
    config: kube::Config,
    field_manager: String,
    rendered: tokio::sync::Mutex<HashMap<RenderKey, Arc<Vec<Manifest>>>>,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer")
            .field("mirror", &self.mirror)
            .finish()
    }
}

impl Syncer {
    pub fn new(mirror_dir: PathBuf, kustomize: Option<PathBuf>, config: kube::Config) -> Syncer {
        Syncer {
            mirror: Mirror::new(mirror_dir),
            renderer: Renderer::new(kustomize),
            config,
            field_manager: "airgate".to_string(),
            rendered: Default::default(),
        }
    }

    /// Fetches the App's ref; returns the commit it names.
    pub async fn fetch(&self, spec: &AppSpec) -> Result<Commit, SyncError> {
        let mirror = self.mirror.clone();
        let (url, git_ref, access) = (spec.url.clone(), spec.git_ref.clone(), spec.access.clone());
        tokio::task::spawn_blocking(move || {
            let id = mirror.fetch(&url, &git_ref, &access)?;
            Ok(mirror.commit(&url, &id)?)
        })
        .await
        .map_err(|e| SyncError::Internal(e.to_string()))?
    }

    /// The rendered objects of `path` at `commit`, from the cache when there.
    pub async fn render(
        &self,
        spec: &AppSpec,
        commit: &str,
    ) -> Result<Arc<Vec<Manifest>>, SyncError> {
        let key = (spec.url.clone(), commit.to_string(), spec.path.clone());
        if let Some(hit) = self.rendered.lock().await.get(&key) {
            return Ok(hit.clone());
        }
        let (mirror, renderer) = (self.mirror.clone(), self.renderer.clone());
        let (url, path, revision) = (spec.url.clone(), spec.path.clone(), commit.to_string());
        let manifests = tokio::task::spawn_blocking(move || -> Result<Vec<Manifest>, SyncError> {
            let files = mirror.read_dir(&url, &revision, &path)?;
            let dir = tempfile::tempdir().map_err(|e| SyncError::Internal(e.to_string()))?;
            for (name, bytes) in &files {
                let target = dir.path().join(name);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| SyncError::Internal(e.to_string()))?;
                }
                std::fs::write(&target, bytes).map_err(|e| SyncError::Internal(e.to_string()))?;
            }
            let render_error = |e: RenderError| SyncError::Render {
                path: path.clone(),
                revision: revision.clone(),
                message: e
                    .to_string()
                    .replace(&dir.path().display().to_string(), &path),
            };
            let mut manifests = renderer
                .render(&[dir.path().to_path_buf()])
                .map_err(render_error)?;
            let short = &revision[..revision.len().min(12)];
            for m in &mut manifests {
                m.source = m.source.replace(
                    &dir.path().display().to_string(),
                    &format!("{path}@{short}"),
                );
            }
            Ok(manifests)
        })
        .await
        .map_err(|e| SyncError::Internal(e.to_string()))??;
        let manifests = Arc::new(manifests);
        self.rendered.lock().await.insert(key, manifests.clone());
        Ok(manifests)
    }

    /// One sync (see the crate docs); `previous` is the inventory the last
    /// successful sync left.
    pub async fn sync(
        &self,
        spec: &AppSpec,
        previous: &Inventory,
    ) -> Result<SyncOutcome, SyncError> {
        let commit = self.fetch(spec).await?;
        let manifests = self.render(spec, &commit.id).await?;

        let mut found = Vec::new();
        for m in manifests.iter() {
            let doc = Document {
                source: &m.source,
                index: m.index,
                value: &m.value,
            };
            found.extend(images_in(doc, &[]).map_err(|e| SyncError::Render {
                path: spec.path.clone(),
                revision: commit.id.clone(),
                message: e.to_string(),
            })?);
        }
        let violations = spec.policy.check(&found);
        if !violations.is_empty() {
            return Err(SyncError::Policy(violations));
        }
        let mut images: Vec<String> = found.iter().map(|f| f.image.to_string()).collect();
        images.sort();
        images.dedup();

        let applier = Applier::impersonating(
            &self.config,
            &spec.namespace,
            &spec.service_account,
            &self.field_manager,
        )?;
        let objects: Vec<(String, Value)> = manifests
            .iter()
            .map(|m| {
                (
                    format!("{} (document {})", m.source, m.index),
                    m.value.clone(),
                )
            })
            .collect();
        let applied = applier.apply(&objects).await?;
        let inventory = Inventory::new(applied.changes.iter().map(|c| c.object.clone()));
        let pruned = if spec.prune {
            applier.prune(&previous.stale(&inventory)).await?
        } else {
            ChangeSet::default()
        };
        // Objects that opted out of pruning stay owned, so a later sync sees them.
        let mut inventory = inventory;
        for c in pruned
            .changes
            .iter()
            .filter(|c| c.action == airgate_kube::Action::Skipped)
        {
            inventory.entries.insert(c.object.clone());
        }
        Ok(SyncOutcome {
            commit,
            applied,
            pruned,
            inventory,
            images,
        })
    }
}
