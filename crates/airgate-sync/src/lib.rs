//! One sync of one App, start to finish, fail closed at every step:
//!
//! 1. **Source**: fetch the ref from Git into the shared mirror; the commit it
//!    names is the revision.
//! 2. **Render**: the App's path at that commit, plain YAML or Kustomize;
//!    rendered once per (URL, revision, path) and cached; the cache keeps
//!    the [`RENDERS_KEPT`] newest revisions of each (URL, path), each object
//!    as compact JSON text (a tenth of its parsed size), so a long-running
//!    controller with many Apps holds little between syncs.
//! 3. **Policy**: every image from an allowed registry, pinned by digest when
//!    required. A violation blocks the sync; nothing is applied.
//! 4. **Apply**: staged server-side apply after a whole-set dry-run, as the
//!    App's ServiceAccount. A failed dry-run applies nothing.
//! 5. **Prune**: what the previous inventory holds and this revision does
//!    not, unless pruning is off or the object opts out.
//!
//! The outcome carries the new inventory and everything a sync record needs.
//!
//! Every object applied carries its App's ownership mark and labels
//! ([`airgate_core::ownership`]), so a watch can select exactly what an App
//! owns, and an App neither takes over nor prunes another's objects.
//! Fetches of one URL never overlap, and one fetch of a (URL, ref) answers
//! every App that asked for it before it started: each App sees Git at least
//! as new as its request, and Apps sharing a repository share its fetches.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use airgate_core::health::Health;
use airgate_core::object::ObjectRef;

use airgate_core::discover::{Document, images_in};
use airgate_core::inventory::Inventory;
use airgate_core::ownership::AppId;
use airgate_core::policy::{Policy, Violation};
use airgate_core::status::{Reason, RecordKind, RecordResult};
use airgate_core::trust::{CommitTrust, Refusal};
use airgate_git::{Access, Commit, GitError, GitRef, Mirror};
use airgate_kube::{Applier, ApplyError, ChangeSet, Observed};
use airgate_render::{Manifest, Renderer};
use airgate_store::{ObjectChange, Person, SyncRecord};
use serde_json::Value;

pub use airgate_core::ownership::{APP_NAME_LABEL, APP_NAMESPACE_LABEL};
pub use preview::SyncPreview;
pub use trust::{Verification, Verify};

pub mod helm;
mod hooks;
mod preview;
pub mod provenance;
mod trust;

/// Everything one App asks for.
#[derive(Clone, Debug)]
pub struct SyncSpec {
    /// `namespace/name`
    pub app: String,
    /// The App's namespace: where its ServiceAccount lives, and the default
    /// for namespaced objects without one.
    pub namespace: String,
    pub url: String,
    pub git_ref: GitRef,
    pub path: String,
    pub access: Access,
    pub service_account: String,
    pub policy: Policy,
    pub prune: bool,
    /// Commit trust: what the revision's signatures must meet, and the
    /// ConfigMap naming who may sign (`spec.source.verify`).
    pub verify: Option<Verify>,
    /// A Helm chart to render with values from `path` (`spec.source.helm`).
    pub helm: Option<helm::HelmSpec>,
    /// How long objects may take to become healthy (`spec.timeout`): how
    /// long a Helm hook, and the health post hooks wait for, may take.
    pub timeout: std::time::Duration,
    /// The revision applied last (`status.lastAppliedRevision`): what a
    /// sync's field paths are relative to.
    pub applied: Option<String>,
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
    #[error("commit trust refuses revision {}: {refusal}", &revision[..revision.len().min(12)])]
    Unverified {
        revision: String,
        refusal: Refusal,
        /// Every commit verified, the applied one first.
        trust: Vec<CommitTrust>,
    },
    #[error("provenance: {} image(s) not imported as requireImportedBy asks; nothing was applied: {}", .0.len(), .0.join("; "))]
    NotImported(Vec<String>),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("{0}")]
    Internal(String),
}

impl SyncError {
    /// Why, for the App's conditions and Events.
    pub fn reason(&self) -> Reason {
        match self {
            SyncError::Source(_) => Reason::SourceFailed,
            SyncError::Render { .. } => Reason::RenderFailed,
            SyncError::Policy(_) => Reason::PolicyViolation,
            SyncError::Unverified { .. } => Reason::VerificationFailed,
            SyncError::NotImported(_) => Reason::ImageNotImported,
            SyncError::Apply(e) => match e.cause() {
                ApplyError::DryRun { .. } => Reason::DryRunFailed,
                ApplyError::Hook { .. } => Reason::HookFailed,
                ApplyError::Ownership(_) => Reason::OwnershipConflict,
                _ => Reason::ApplyFailed,
            },
            SyncError::Internal(_) => Reason::InternalError,
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
    /// The import named for each digest-pinned image that has one.
    pub imported: Vec<provenance::ImageImport>,
    /// The revision applied before ([`SyncSpec::applied`]).
    pub from_revision: Option<String>,
    /// For each object created or configured: the field paths this
    /// revision changed relative to the one applied before
    /// ([`airgate_core::fields`]).
    pub fields: HashMap<ObjectRef, Vec<String>>,
    /// What the render warns of: chart templates that `lookup` the
    /// cluster or draw random values (`TEMPLATE uses F`).
    pub warnings: Vec<String>,
    /// What Helm hooks applied and deleted (not in the inventory).
    pub hooks: ChangeSet,
}

impl SyncOutcome {
    /// The record to store.
    pub fn record(&self, app: &str, started_at: i64, duration_ms: u64) -> SyncRecord {
        let changes = self
            .applied
            .changes
            .iter()
            .chain(&self.pruned.changes)
            .chain(&self.hooks.changes);
        let mut objects = object_changes(changes.clone());
        for (o, c) in objects.iter_mut().zip(changes) {
            o.fields = self.fields.get(&c.object).cloned().unwrap_or_default();
        }
        SyncRecord {
            app: app.to_string(),
            kind: RecordKind::Sync,
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
            result: RecordResult::Succeeded,
            error: None,
            objects,
            images: self.images.clone(),
            drift: Vec::new(),
            trust: Vec::new(),
            imported: self
                .imported
                .iter()
                .map(|i| airgate_store::ImageImport {
                    image: i.image.clone(),
                    import: i.import.id.clone(),
                    signed_by: i.import.signed_by.clone(),
                })
                .collect(),
            import: None,
            from_revision: self.from_revision.clone(),
            controller: String::new(),
            part: None,
            freeze_override: None,
        }
    }
}

/// Writes `files` (paths from the repository's root, plain names checked
/// by `airgate_git`) under `root`.
fn write_out(root: &std::path::Path, files: &BTreeMap<String, Vec<u8>>) -> Result<(), SyncError> {
    for (name, bytes) in files {
        let target = root.join(name);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| SyncError::Internal(e.to_string()))?;
        }
        std::fs::write(&target, bytes).map_err(|e| SyncError::Internal(e.to_string()))?;
    }
    Ok(())
}

impl SyncSpec {
    /// The App's name (the part of `app` after the namespace).
    pub fn name(&self) -> &str {
        self.app.rsplit_once('/').map_or(&self.app, |(_, n)| n)
    }

    /// The App, as ownership marks and labels name it.
    pub fn id(&self) -> AppId {
        AppId::new(&self.namespace, self.name())
    }

    /// The label selector of the App's objects.
    pub fn selector(&self) -> String {
        self.id().selector()
    }
}

/// The record's form of changes: `Kind/namespace/name` and the action.
pub fn object_changes<'a>(
    changes: impl IntoIterator<Item = &'a airgate_kube::Change>,
) -> Vec<ObjectChange> {
    changes
        .into_iter()
        .map(|c| ObjectChange {
            object: c.object.to_string(),
            action: serde_json::to_value(c.action)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            fields: Vec::new(),
        })
        .collect()
}

/// Whether `object` (as applied) is the one the manifest `rendered`
/// names: namespaced objects without a namespace land in the App's.
fn renders(object: &ObjectRef, rendered: &ObjectRef, app_namespace: &str) -> bool {
    let namespace = rendered.namespace.as_deref().unwrap_or(app_namespace);
    object.api_version == rendered.api_version
        && object.kind == rendered.kind
        && object.name == rendered.name
        && object.namespace.as_deref().is_none_or(|ns| ns == namespace)
}

/// The render a sync's field paths are relative to.
enum Before<'a> {
    /// Not known: every top-level field is named.
    Unknown,
    /// This same revision, parsed.
    Parsed(&'a [Manifest]),
    /// Another revision, as the render cache keeps it.
    Compact(&'a [Compact]),
}

/// The field paths each object created, configured or recreated by
/// `applied` changed: `after` (this revision) against `before` (the
/// revision applied last).
fn field_paths(
    spec: &SyncSpec,
    applied: &ChangeSet,
    before: Before<'_>,
    after: &[Manifest],
) -> HashMap<ObjectRef, Vec<String>> {
    use airgate_kube::Action;
    use std::borrow::Cow;
    // Each list indexed once: an App of 50,000 objects must not scan its
    // manifests once per object.
    type Key = (String, String, String, String);
    let key_of = |r: &ObjectRef| -> Key {
        let namespace = r.namespace.as_deref().unwrap_or(&spec.namespace);
        (
            r.api_version.clone(),
            r.kind.clone(),
            namespace.to_string(),
            r.name.clone(),
        )
    };
    let key = |v: &Value| ObjectRef::from_object(v, "").ok().map(|r| key_of(&r));
    let index = |values: &mut dyn Iterator<Item = Option<Key>>| -> HashMap<Key, usize> {
        values
            .enumerate()
            .filter_map(|(i, k)| k.map(|k| (k, i)))
            .collect()
    };
    let after_at = index(&mut after.iter().map(|m| key(&m.value)));
    let parse = |c: &Compact| serde_json::from_slice::<Value>(&c.json).ok();
    let before_at = match before {
        Before::Unknown => HashMap::new(),
        Before::Parsed(list) => index(&mut list.iter().map(|m| key(&m.value))),
        Before::Compact(list) => index(&mut list.iter().map(|c| parse(c).and_then(|v| key(&v)))),
    };
    let old_value = |k: &Key| -> Option<Cow<'_, Value>> {
        let &i = before_at.get(k)?;
        match before {
            Before::Unknown => None,
            Before::Parsed(list) => Some(Cow::Borrowed(&list[i].value)),
            Before::Compact(list) => parse(&list[i]).map(Cow::Owned),
        }
    };
    let mut out = HashMap::new();
    for c in &applied.changes {
        let k = key_of(&c.object);
        let Some(new) = after_at.get(&k).map(|&i| &after[i].value) else {
            continue;
        };
        let old = match c.action {
            Action::Configured | Action::Recreated => old_value(&k),
            Action::Created => None,
            _ => continue,
        };
        out.insert(
            c.object.clone(),
            airgate_core::fields::changed(old.as_deref(), new),
        );
    }
    out
}

/// How many revisions of one (URL, path) the render cache keeps: the one
/// applied and the one being tried, so drift correction re-renders nothing.
pub const RENDERS_KEPT: usize = 2;

/// One rendered object as the cache keeps it.
#[derive(Debug)]
struct Compact {
    source: String,
    index: usize,
    json: Box<[u8]>,
}

impl Compact {
    fn new(m: &Manifest) -> Result<Compact, SyncError> {
        Ok(Compact {
            source: m.source.clone(),
            index: m.index,
            json: serde_json::to_vec(&m.value)
                .map_err(|e| SyncError::Internal(format!("{}: {e}", m.source)))?
                .into_boxed_slice(),
        })
    }

    fn manifest(&self) -> Result<Manifest, SyncError> {
        Ok(Manifest {
            source: self.source.clone(),
            index: self.index,
            value: serde_json::from_slice(&self.json)
                .map_err(|e| SyncError::Internal(format!("{}: {e}", self.source)))?,
        })
    }
}

/// A render as the caches keep it: the objects, and what the render
/// warns of (templates that `lookup` or draw random values).
#[derive(Debug)]
pub(crate) struct Rendering {
    objects: Vec<Compact>,
    warnings: Vec<String>,
}

impl Rendering {
    fn new(manifests: Vec<Manifest>, warnings: Vec<String>) -> Result<Rendering, SyncError> {
        Ok(Rendering {
            objects: manifests
                .iter()
                .map(Compact::new)
                .collect::<Result<_, _>>()?,
            warnings,
        })
    }
}

/// (URL, path, Helm fingerprint) -> (revision, render), newest first.
type Rendered = HashMap<(String, String, String), Vec<(String, Arc<Rendering>)>>;

/// The files of one revision a render needs, written out.
struct Checkout {
    dir: tempfile::TempDir,
    /// The App's path, cleaned (`""` for the root).
    clean: String,
    path: String,
    revision: String,
    /// Every file read, by its path in the repository.
    files: BTreeMap<String, Vec<u8>>,
}

impl Checkout {
    /// Paths in messages are the repository's, not the temporary copy's.
    fn relative(&self, s: &str) -> String {
        let root = self.dir.path().display().to_string();
        s.replace(&format!("{root}/"), "").replace(&root, ".")
    }

    fn render_error(&self, message: &str) -> SyncError {
        SyncError::Render {
            path: self.path.clone(),
            revision: self.revision.clone(),
            message: self.relative(message),
        }
    }

    /// Sources named by the repository's paths and the revision.
    fn named(&self, mut manifests: Vec<Manifest>) -> Vec<Manifest> {
        let short = &self.revision[..self.revision.len().min(12)];
        for m in &mut manifests {
            m.source = format!("{}@{short}", self.relative(&m.source));
        }
        manifests
    }
}

/// Reads from Git only what the App needs: its path and `also`, then what
/// its kustomizations refer to elsewhere in the repository (an overlay's
/// `../../base`), until nothing is missing. Nothing outside the
/// repository, nothing remote: checked in each kustomization before
/// kustomize runs.
fn checkout(
    mirror: &Mirror,
    url: &str,
    revision: &str,
    path: &str,
    also: &[String],
) -> Result<Checkout, SyncError> {
    let clean = path.trim_matches('/');
    let clean = if clean == "." { "" } else { clean };
    let dir = tempfile::tempdir().map_err(|e| SyncError::Internal(e.to_string()))?;
    let mut out = Checkout {
        dir,
        clean: clean.to_string(),
        path: path.to_string(),
        revision: revision.to_string(),
        files: BTreeMap::new(),
    };
    let mut budget = airgate_git::MAX_TREE;
    let mut asked = std::collections::BTreeSet::new();
    // What the App names must be there: its path, and `also`.
    for required in std::iter::once(clean.to_string()).chain(also.iter().cloned()) {
        let files = mirror
            .read_paths(url, revision, std::slice::from_ref(&required), &mut budget)?
            .ok_or_else(|| {
                SyncError::Source(GitError::NoSuchPath {
                    commit: revision.to_string(),
                    path: required.clone(),
                })
            })?;
        write_out(out.dir.path(), &files)?;
        out.files.extend(files);
        asked.insert(required);
    }
    // Then what its kustomizations refer to, until nothing is missing
    // (kustomize names what cannot be found).
    loop {
        let root = out.dir.path().to_path_buf();
        let missing = airgate_render::confine::check_from(&root, &root.join(clean), &|p| {
            out.relative(&p.display().to_string())
        })
        .map_err(|e| out.render_error(&e.to_string()))?;
        let wanted: Vec<String> = missing
            .iter()
            .filter_map(|m| m.strip_prefix(&root).ok())
            .map(|m| m.display().to_string())
            .filter(|m| !asked.contains(m))
            .collect();
        if wanted.is_empty() {
            break;
        }
        asked.extend(wanted.iter().cloned());
        let files = mirror
            .read_paths(url, revision, &wanted, &mut budget)?
            .unwrap_or_default();
        write_out(out.dir.path(), &files)?;
        out.files.extend(files);
    }
    Ok(out)
}

/// Every image `manifests` (the render of `spec` at `revision`) names.
fn images(
    spec: &SyncSpec,
    revision: &str,
    manifests: &[Manifest],
) -> Result<Vec<airgate_core::discover::Found>, SyncError> {
    let mut found = Vec::new();
    for m in manifests {
        let doc = Document {
            source: &m.source,
            index: m.index,
            value: &m.value,
        };
        found.extend(images_in(doc, &[]).map_err(|e| SyncError::Render {
            path: spec.path.clone(),
            revision: revision.to_string(),
            message: e.to_string(),
        })?);
    }
    Ok(found)
}

/// Per URL: when the last fetch of each ref started, and the commit it named.
type Fetched = HashMap<String, (Instant, Commit)>;

/// Syncs Apps; shares one Git mirror and one render cache among them.
pub struct Syncer {
    mirror: Mirror,
    renderer: Renderer,
    /// Admin (controller) configuration; every apply impersonates.
    config: kube::Config,
    field_manager: String,
    rendered: tokio::sync::Mutex<Rendered>,
    fetched: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Fetched>>>>,
    fetches: std::sync::atomic::AtomicU64,
    /// (App, ServiceAccount) -> its Applier.
    appliers: std::sync::Mutex<HashMap<(String, String), Arc<Applier>>>,
    /// Where imports are read; `None`: no registry is read, and an App
    /// with `requireImportedBy` is refused.
    imports: Option<provenance::Imports>,
    /// Helm Apps' charts, capabilities and renders.
    helm: Arc<helm::Helm>,
    /// Told how long each render took (not those served from the cache).
    render_observer: Option<RenderObserver>,
}

/// See [`Syncer::with_render_observer`].
pub type RenderObserver = Arc<dyn Fn(std::time::Duration) + Send + Sync>;

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
            fetched: Default::default(),
            appliers: Default::default(),
            fetches: Default::default(),
            imports: None,
            helm: Default::default(),
            render_observer: None,
        }
    }

    /// Tells `observe` how long each render took (plain YAML, kustomize,
    /// helm template); renders served from the cache are not told.
    pub fn with_render_observer(mut self, observe: RenderObserver) -> Syncer {
        self.render_observer = Some(observe);
        self
    }

    /// Reads each image's imports with `client` (see [`provenance`]); Helm
    /// Apps' charts are read trusting its CAs and plain-HTTP registries
    /// (with each App's own credentials).
    pub fn with_imports(mut self, client: airgate_oci::RegistryClient) -> Syncer {
        self.helm = Arc::new(helm::Helm::new(client.options()));
        self.imports = Some(provenance::Imports::new(client));
        self
    }

    /// Renders Helm Apps with `helm` (`None`: `$AIRGATE_HELM`, then `helm`
    /// on `PATH`).
    pub fn with_helm(mut self, helm: Option<PathBuf>) -> Syncer {
        self.renderer = self.renderer.with_helm(helm, Default::default());
        self
    }

    /// The mirror an App's fetches and reads go to: Apps that verify
    /// commits walk histories, so theirs are whole.
    pub(crate) fn mirror_for(&self, spec: &SyncSpec) -> Mirror {
        if spec.verify.is_some() {
            self.mirror.with_history()
        } else {
            self.mirror.clone()
        }
    }

    /// The field manager every apply uses.
    pub fn field_manager(&self) -> &str {
        &self.field_manager
    }

    /// How many fetches from Git this Syncer has made.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Fetches the App's ref; returns the commit it names. A fetch of the
    /// same (URL, ref) with the same credentials that started after this
    /// call was made answers instead: an App never gets content through a
    /// fetch made with another App's credentials (a tenant naming a private
    /// URL without the right Secret fails, whatever others fetched).
    pub async fn fetch(&self, spec: &SyncSpec) -> Result<Commit, SyncError> {
        let asked = Instant::now();
        let per_url = {
            let mut all = self
                .fetched
                .lock()
                .map_err(|_| SyncError::Internal("fetch cache poisoned".into()))?;
            all.entry(spec.url.clone()).or_default().clone()
        };
        let mut per_url = per_url.lock().await;
        let history = spec.verify.is_some();
        let key = format!("{} {} {history}", spec.git_ref, spec.access.fingerprint());
        if let Some((started, commit)) = per_url.get(&key)
            && *started >= asked
        {
            return Ok(commit.clone());
        }
        let started = Instant::now();
        let mirror = self.mirror_for(spec);
        let (url, git_ref, access) = (spec.url.clone(), spec.git_ref.clone(), spec.access.clone());
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let commit = tokio::task::spawn_blocking(move || -> Result<Commit, SyncError> {
            let id = mirror.fetch(&url, &git_ref, &access)?;
            let mut commit = mirror.commit(&url, &id)?;
            if matches!(git_ref, GitRef::Tag(_)) {
                commit.tag = mirror.fetched_tag(&url)?;
            }
            Ok(commit)
        })
        .await
        .map_err(|e| SyncError::Internal(e.to_string()))??;
        per_url.insert(key, (started, commit.clone()));
        Ok(commit)
    }

    /// The Applier that acts as the App's ServiceAccount and labels what it
    /// applies with the App. One per (App, ServiceAccount), kept: its
    /// connections and what it learnt by discovery serve every later sync
    /// and health read.
    pub fn applier(&self, spec: &SyncSpec) -> Result<Arc<Applier>, SyncError> {
        let key = (spec.app.clone(), spec.service_account.clone());
        let mut appliers = self
            .appliers
            .lock()
            .map_err(|_| SyncError::Internal("applier cache poisoned".into()))?;
        if let Some(found) = appliers.get(&key) {
            return Ok(found.clone());
        }
        let applier = Arc::new(
            Applier::impersonating(
                &self.config,
                &spec.namespace,
                &spec.service_account,
                &self.field_manager,
            )?
            .with_owner(spec.id()),
        );
        // Another account for the same App replaces the old one.
        appliers.retain(|(app, _), _| *app != spec.app);
        appliers.insert(key, applier.clone());
        Ok(applier)
    }

    /// Drops what this Syncer keeps for Apps not in `live` (`namespace/name`).
    pub fn retain_apps(&self, live: &std::collections::BTreeSet<String>) {
        if let Ok(mut appliers) = self.appliers.lock() {
            appliers.retain(|(app, _), _| live.contains(app));
        }
    }

    /// The health of each of `objects`, read now as the App's ServiceAccount.
    pub async fn health(
        &self,
        spec: &SyncSpec,
        objects: &[ObjectRef],
    ) -> Result<Vec<(ObjectRef, Health)>, SyncError> {
        let healths = self.applier(spec)?.health_of(objects).await?;
        Ok(objects.iter().cloned().zip(healths).collect())
    }

    /// Each of `objects` observed now as the App's ServiceAccount (health,
    /// UID, owners), with what workloads among them made in their
    /// namespaces (see [`airgate_kube::Applier::children`]).
    pub async fn observe(
        &self,
        spec: &SyncSpec,
        objects: &[ObjectRef],
    ) -> Result<(Vec<Observed>, Vec<(ObjectRef, Observed)>), SyncError> {
        let applier = self.applier(spec)?;
        let observed = applier.observe(objects).await?;
        let workloads: std::collections::BTreeSet<&str> = objects
            .iter()
            .filter(|o| o.is_workload())
            .filter_map(|o| o.namespace.as_deref())
            .collect();
        let mut children = Vec::new();
        for namespace in workloads {
            children.extend(applier.children(namespace).await);
        }
        Ok((observed, children))
    }

    /// Applies again, from `revision`, just the objects named (drift
    /// correction): dry-run first, as the App's ServiceAccount.
    pub async fn reapply(
        &self,
        spec: &SyncSpec,
        revision: &str,
        objects: &[ObjectRef],
    ) -> Result<ChangeSet, SyncError> {
        let manifests = self.render(spec, revision).await?;
        let applier = self.applier(spec)?;
        let mut selected = Vec::new();
        for m in manifests.iter() {
            let what = m.origin();
            let Ok(r) = ObjectRef::from_object(&m.value, &what) else {
                continue;
            };
            if objects.iter().any(|o| renders(o, &r, &spec.namespace)) {
                selected.push((what, &m.value));
            }
        }
        Ok(applier.apply(&selected).await?)
    }

    /// The rendered objects of `path` at `commit`, from the cache when there.
    pub async fn render(&self, spec: &SyncSpec, commit: &str) -> Result<Vec<Manifest>, SyncError> {
        let rendering = self.rendering(spec, commit).await?;
        rendering.objects.iter().map(Compact::manifest).collect()
    }

    /// [`Syncer::render`], as the cache keeps it, with its warnings.
    async fn rendering(&self, spec: &SyncSpec, commit: &str) -> Result<Arc<Rendering>, SyncError> {
        let fingerprint = spec
            .helm
            .as_ref()
            .map(|h| h.fingerprint())
            .unwrap_or_default();
        let key = (spec.url.clone(), spec.path.clone(), fingerprint);
        let hit = self
            .rendered
            .lock()
            .await
            .get(&key)
            .and_then(|revisions| revisions.iter().find(|(r, _)| r == commit))
            .map(|(_, hit)| hit.clone());
        if let Some(hit) = hit {
            return Ok(hit);
        }
        let started = Instant::now();
        let rendering = match &spec.helm {
            Some(helm) => self.render_chart(spec, helm, commit).await?,
            None => {
                let (mirror, renderer) = (self.mirror_for(spec), self.renderer.clone());
                let (url, path, revision) =
                    (spec.url.clone(), spec.path.clone(), commit.to_string());
                tokio::task::spawn_blocking(move || -> Result<Arc<Rendering>, SyncError> {
                    let source = checkout(&mirror, &url, &revision, &path, &[])?;
                    let manifests = renderer
                        .render(&[source.dir.path().join(&source.clean)])
                        .map_err(|e| source.render_error(&e.to_string()))?;
                    Ok(Arc::new(Rendering::new(
                        source.named(manifests),
                        Vec::new(),
                    )?))
                })
                .await
                .map_err(|e| SyncError::Internal(e.to_string()))??
            }
        };
        if let Some(observe) = &self.render_observer {
            observe(started.elapsed());
        }
        let mut rendered = self.rendered.lock().await;
        let revisions = rendered.entry(key).or_default();
        revisions.retain(|(r, _)| r != commit);
        revisions.insert(0, (commit.to_string(), rendering.clone()));
        revisions.truncate(RENDERS_KEPT);
        Ok(rendering)
    }

    /// A Helm App's render (see [`helm`]): the chart pulled as the App (or
    /// read from Git), the values files from the App's path, served from
    /// the render cache when chart, values and capabilities are the same.
    async fn render_chart(
        &self,
        spec: &SyncSpec,
        helm: &helm::HelmSpec,
        commit: &str,
    ) -> Result<Arc<Rendering>, SyncError> {
        use airgate_core::chart::ChartSource;
        let pulled = match &helm.chart {
            ChartSource::Registry(reference) => {
                let found = airgate_core::discover::Found {
                    object: format!("App/{}", spec.app),
                    field: "spec.source.helm.chart".into(),
                    written: format!("oci://{reference}"),
                    image: reference.clone(),
                    source: "the App's spec".into(),
                    document: 1,
                };
                let violations = spec.policy.check(std::slice::from_ref(&found));
                if !violations.is_empty() {
                    return Err(SyncError::Policy(violations));
                }
                Some(self.helm.pull(reference, &helm.access).await?)
            }
            ChartSource::Git { .. } => None,
        };
        let caps = self.helm.capabilities(&self.config).await?;
        let (mirror, renderer, cache) = (
            self.mirror_for(spec),
            self.renderer.clone(),
            self.helm.clone(),
        );
        let (url, path, revision) = (spec.url.clone(), spec.path.clone(), commit.to_string());
        let (helm, namespace) = (helm.clone(), spec.namespace.clone());
        tokio::task::spawn_blocking(move || -> Result<Arc<Rendering>, SyncError> {
            let chart_dir = match &helm.chart {
                ChartSource::Git { path } => vec![path.clone()],
                ChartSource::Registry(_) => Vec::new(),
            };
            let source = checkout(&mirror, &url, &revision, &path, &chart_dir)?;
            let mut values_paths = Vec::new();
            let mut values_bytes = Vec::new();
            for file in &helm.values_files {
                let name = [source.clean.as_str(), file.as_str()]
                    .iter()
                    .filter(|p| !p.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join("/");
                let bytes = source.files.get(&name).ok_or_else(|| {
                    source.render_error(&format!(
                        "values file {name} (spec.source.helm.valuesFiles) is not in the revision"
                    ))
                })?;
                values_paths.push(source.dir.path().join(&name));
                values_bytes.push(bytes.as_slice());
            }
            let inline = helm
                .values
                .as_ref()
                .map(|v| v.to_string())
                .unwrap_or_default();
            let chart_digest = match (&pulled, &helm.chart) {
                (Some(p), _) => p.digest.to_string(),
                (None, ChartSource::Git { path }) => {
                    helm::directory_digest(&source.files, path).to_string()
                }
                (None, ChartSource::Registry(_)) => String::new(),
            };
            let key = airgate_core::chart::RenderInputs {
                chart: &chart_digest,
                values_files: values_bytes,
                values: inline.as_bytes(),
                release_name: &helm.release_name,
                namespace: &namespace,
                kube_version: &caps.kube_version,
                api_versions: &caps.api_versions,
            }
            .key();
            if let Some(hit) = cache.cached(&key) {
                return Ok(hit);
            }
            // Beside the checkout, not in it: no file of the repository
            // can be in the way.
            let own = tempfile::tempdir().map_err(|e| SyncError::Internal(e.to_string()))?;
            let (chart_path, shown) = match (&pulled, &helm.chart) {
                (Some(p), chart) => {
                    let file = own.path().join("chart.tgz");
                    std::fs::write(&file, &p.tgz)
                        .map_err(|e| SyncError::Internal(e.to_string()))?;
                    (file, chart.shown())
                }
                (None, chart @ ChartSource::Git { path }) => {
                    (source.dir.path().join(path), chart.shown())
                }
                (None, ChartSource::Registry(_)) => {
                    return Err(SyncError::Internal(
                        "a registry chart was not pulled".into(),
                    ));
                }
            };
            if !inline.is_empty() {
                let file = own.path().join("values.json");
                std::fs::write(&file, &inline).map_err(|e| SyncError::Internal(e.to_string()))?;
                values_paths.push(file);
            }
            let options = airgate_render::helm::HelmOptions {
                values: values_paths,
                release_name: Some(helm.release_name.clone()),
                namespace: Some(namespace.clone()),
                kube_version: Some(caps.kube_version.clone()),
                api_versions: caps.api_versions.clone(),
                include_crds: true,
                ..Default::default()
            };
            let inline_file = own.path().join("values.json").display().to_string();
            let from_chart = |text: &str| {
                text.replace(&chart_path.display().to_string(), &shown)
                    .replace(&inline_file, "spec.source.helm.values")
            };
            let manifests = renderer
                .chart(&chart_path, &options)
                .map_err(|e| source.render_error(&from_chart(&e.to_string())))?;
            let warnings = airgate_render::helm::nondeterministic(&chart_path)
                .into_iter()
                .map(|w| format!("{}: {w}", shown))
                .collect();
            let mut manifests = manifests;
            for m in &mut manifests {
                m.source = from_chart(&m.source);
            }
            let manifests = source.named(manifests);
            let rendering = Arc::new(Rendering::new(manifests, warnings)?);
            cache.keep(key, rendering.clone());
            Ok(rendering)
        })
        .await
        .map_err(|e| SyncError::Internal(e.to_string()))?
    }

    /// One sync (see the crate docs); `previous` is the inventory the last
    /// successful sync left.
    pub async fn sync(
        &self,
        spec: &SyncSpec,
        previous: &Inventory,
    ) -> Result<SyncOutcome, SyncError> {
        let commit = self.fetch(spec).await?;
        self.sync_commit(spec, commit, previous).await
    }

    /// [`Syncer::sync`] of a commit already fetched.
    pub async fn sync_commit(
        &self,
        spec: &SyncSpec,
        commit: Commit,
        previous: &Inventory,
    ) -> Result<SyncOutcome, SyncError> {
        let vouched = Default::default();
        self.sync_commit_with(spec, commit, previous, &vouched, |_| async { Ok(()) })
            .await
    }

    /// [`Syncer::sync_commit`], calling `before_write` with what the apply
    /// is about to write, before the first write (see
    /// `Applier::apply_with`): the controller records it in the App's
    /// inventory first, so a crash mid-sync leaves no orphan. `vouched`:
    /// objects the caller's watches saw carry the App's ownership mark (see
    /// `Applier::apply_with`).
    pub async fn sync_commit_with<F, Fut>(
        &self,
        spec: &SyncSpec,
        commit: Commit,
        previous: &Inventory,
        vouched: &std::collections::HashSet<ObjectRef>,
        before_write: F,
    ) -> Result<SyncOutcome, SyncError>
    where
        F: FnOnce(Vec<ObjectRef>) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let rendering = self.rendering(spec, &commit.id).await?;
        let manifests = rendering
            .objects
            .iter()
            .map(Compact::manifest)
            .collect::<Result<Vec<_>, _>>()?;

        let found = images(spec, &commit.id, &manifests)?;
        let violations = spec.policy.check(&found);
        if !violations.is_empty() {
            return Err(SyncError::Policy(violations));
        }
        let (imported, refused) = match &self.imports {
            Some(imports) => imports.check(&spec.policy, &found).await,
            None if spec.policy.require_imported_by.is_empty() => Default::default(),
            None => (
                Vec::new(),
                vec!["this controller reads no registry, so no import can be checked".to_string()],
            ),
        };
        if !refused.is_empty() {
            return Err(SyncError::NotImported(refused));
        }
        let mut images: Vec<String> = found.iter().map(|f| f.image.to_string()).collect();
        images.sort();
        images.dedup();

        let applier = self.applier(spec)?;
        let split = hooks::split_for(spec, &manifests, previous);
        let objects: Vec<(String, &Value)> =
            split.main.iter().map(|m| (m.origin(), &m.value)).collect();
        let hooked = std::sync::Mutex::new(ChangeSet::default());
        let pre_hooks = || async {
            let done = hooks::run(&applier, &split.before, spec.timeout).await?;
            if let Ok(mut h) = hooked.lock() {
                h.changes.extend(done.changes);
            }
            Ok(())
        };
        let applied = applier
            .apply_around(&objects, vouched, before_write, pre_hooks)
            .await?;
        let inventory = Inventory::new(applied.changes.iter().map(|c| c.object.clone()));
        let pruned = if spec.prune {
            applier
                .prune(&previous.stale(&inventory), &inventory)
                .await?
        } else {
            ChangeSet::default()
        };
        if !split.after.is_empty() {
            let objects: Vec<ObjectRef> = inventory.entries.iter().cloned().collect();
            hooks::wait(&applier, &objects, spec.timeout)
                .await
                .map_err(|message| {
                    airgate_kube::ApplyError::Hook {
                        hook: "post-install/post-upgrade".into(),
                        message: format!("not run: the applied objects are not healthy: {message}"),
                    }
                    .after(&applied)
                })?;
            let done = hooks::run(&applier, &split.after, spec.timeout)
                .await
                .map_err(|e| e.after(&applied))?;
            if let Ok(mut h) = hooked.lock() {
                h.changes.extend(done.changes);
            }
        }
        let hooks = hooked.into_inner().unwrap_or_default();
        // The revision applied before stays compact: its objects are read
        // one at a time, so a large App never holds two parsed renders.
        let earlier = match &spec.applied {
            Some(r) if r != &commit.id => self.rendering(spec, r).await.ok(),
            _ => None,
        };
        let before = match (&spec.applied, &earlier) {
            (Some(r), _) if r == &commit.id => Before::Parsed(&manifests),
            (_, Some(earlier)) => Before::Compact(&earlier.objects),
            _ => Before::Unknown,
        };
        let fields = field_paths(spec, &applied, before, &manifests);
        let from_revision = spec.applied.clone().filter(|r| r != &commit.id);
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
            imported,
            fields,
            from_revision,
            warnings: rendering.warnings.clone(),
            hooks,
        })
    }
}
