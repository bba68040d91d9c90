//! `airgate diff --live`: an App's revision previewed against the cluster
//! as the controller would sync it: the same spec checks, Git and chart
//! credentials read as the App's ServiceAccount, the same render, and
//! every object dry-run as that account. Nothing is written, and commit
//! trust and freezes are not consulted (they decide whether a sync runs,
//! not what it would change).

use std::path::PathBuf;

use airgate_core::source::GitRef;
use airgate_kube::app::App;
use airgate_sync::{SyncPreview, Syncer};

use super::spec;

/// Which revision to preview.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revision {
    /// The one the App applied last (`status.lastAppliedRevision`); its
    /// ref's newest commit when it has applied none.
    Applied,
    /// The newest commit of the App's ref: what the next sync would apply.
    Head,
    /// A full commit id.
    Commit(String),
}

/// What [`preview`] needs beside the App.
#[derive(Debug)]
pub struct PreviewSettings {
    /// Whoever runs it: must read the App and impersonate its
    /// ServiceAccount.
    pub config: kube::Config,
    /// Where the Git mirror goes (a scratch directory).
    pub work_dir: PathBuf,
    pub kustomize: Option<PathBuf>,
    pub helm: Option<PathBuf>,
    /// Trusted CAs and plain-HTTP registries for a Helm App's chart.
    pub registry: Option<airgate_oci::RegistryClient>,
}

/// The sync of `app` at `revision`, previewed (see the module docs).
pub async fn preview(
    settings: PreviewSettings,
    app: &App,
    revision: Revision,
) -> Result<SyncPreview, String> {
    let mut spec = spec::sync_spec(app)?;
    let mut syncer = Syncer::new(
        settings.work_dir.join("git"),
        settings.kustomize,
        settings.config,
    )
    .with_helm(settings.helm);
    if let Some(registry) = settings.registry {
        syncer = syncer.with_imports(registry);
    }
    spec.access = spec::access(&syncer, app, &spec).await?;
    if spec.helm.is_some() {
        let access = spec::chart_access(&syncer, app, &spec).await?;
        if let Some(h) = spec.helm.as_mut() {
            h.access = access;
        }
    }
    let pinned = match revision {
        Revision::Commit(c) => Some(c),
        Revision::Applied => spec.applied.clone(),
        Revision::Head => None,
    };
    if let Some(commit) = pinned {
        spec.git_ref = GitRef::commit(&commit).ok_or_else(|| {
            format!(
                "revision '{}' is not a full commit id (40 hex digits)\nhint: `git rev-parse REV` prints one",
                airgate_core::text::shown(&commit, 60)
            )
        })?;
    }
    let commit = syncer.fetch(&spec).await.map_err(|e| e.to_string())?;
    let previous = app
        .status
        .as_ref()
        .map(|s| s.objects())
        .transpose()?
        .unwrap_or_default();
    syncer
        .preview(&spec, commit, &previous)
        .await
        .map_err(|e| e.to_string())
}
