//! The reconciler: keeps every App's cluster state equal to its Git path.
//!
//! Pieces, each in its own module:
//! - [`lease`]: leader election, so only one controller applies;
//! - [`reconcile`]: one pass over one App (fetch, sync, health, status);
//! - [`drift`]: metadata watches on exactly the objects Apps applied, which
//!   notice a field airgate owns changing hands and trigger a pass;
//! - [`metrics`] and [`log`]: what an operator sees;
//! - [`ui`]: the read-only web UI (`--ui-listen`).
//!
//! In steady state (nothing new in Git, nothing drifted) a pass sends no
//! request to the API server at all: it fetches from Git and compares
//! commits. Every request of a sync impersonates the App's ServiceAccount.

mod audit;
mod correct;
mod decide;
mod drift;
mod freeze;
mod health;
mod imports;
mod lease;
pub mod log;
mod metrics;
mod outcome;
pub mod preview;
mod reconcile;
mod spec;
mod state;
mod trust;
mod ui;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airgate_kube::app::App;
use airgate_store::Store;
use airgate_sync::Syncer;
use anyhow::{Context as _, Result, bail};
use futures_util::StreamExt;
use kube::runtime::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef as AppRef;
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::mpsc;

pub use state::AppState;

/// What the controller needs to run.
#[derive(Debug)]
pub struct Settings {
    pub config: kube::Config,
    pub namespace: Option<String>,
    pub lease_namespace: String,
    pub lease_name: String,
    pub lease_duration: Duration,
    pub identity: String,
    pub data_dir: PathBuf,
    pub store: PathBuf,
    /// The note signing key of the audit log's checkpoints.
    pub log_key: Option<PathBuf>,
    pub log_name: String,
    /// Where the audit log is published (`HOST/PATH` in a registry).
    pub log_repository: Option<airgate_oci::files::RepoFiles>,
    /// Reads images' imports (provenance), with the controller's registry
    /// credentials and CAs.
    pub registry: airgate_oci::RegistryClient,
    pub kustomize: Option<PathBuf>,
    /// The helm binary Helm Apps render with.
    pub helm: Option<PathBuf>,
    pub listen: String,
    /// Where the web UI listens, if anywhere.
    pub ui_listen: Option<String>,
    pub concurrency: u16,
}

/// Shared by every reconcile pass and every drift watch.
pub struct Context {
    /// The controller's own identity: Apps, their Secrets, status, Events.
    pub client: Client,
    pub syncer: Syncer,
    pub store: Mutex<Store>,
    /// The audit log: appends, checkpoints, publication.
    pub audit: audit::AuditLog,
    pub recorder: Recorder,
    pub metrics: Arc<metrics::Metrics>,
    /// Per App (`namespace/name`): what this controller knows of it.
    pub apps: Mutex<HashMap<String, AppState>>,
    /// Drift watches send the App to reconcile here.
    pub trigger: mpsc::UnboundedSender<AppRef<App>>,
    pub watches: Mutex<HashMap<String, drift::WatchSet>>,
    /// Ticks when an App's status or the audit log changed (the UI's live
    /// updates follow it).
    pub changes: tokio::sync::watch::Sender<u64>,
}

impl Context {
    /// Says that something the UI shows changed.
    pub fn changed(&self) {
        self.changes.send_modify(|g| *g = g.wrapping_add(1));
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("syncer", &self.syncer)
            .finish()
    }
}

impl Context {
    /// Runs `f` on the state of App `key` (created empty when absent).
    pub fn with_state<T>(&self, key: &str, f: impl FnOnce(&mut AppState) -> T) -> T {
        let mut apps = match self.apps.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(apps.entry(key.to_string()).or_default())
    }
}

/// An App's key: `namespace/name`.
pub fn key(app: &App) -> String {
    use kube::ResourceExt;
    format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any())
}

/// The context every pass and watch shares.
fn context(
    settings: &Settings,
    client: Client,
    (store, audit): (Store, audit::AuditLog),
    metrics: Arc<metrics::Metrics>,
    trigger: mpsc::UnboundedSender<AppRef<App>>,
) -> Context {
    Context {
        client: client.clone(),
        syncer: Syncer::new(
            settings.data_dir.join("git"),
            settings.kustomize.clone(),
            settings.config.clone(),
        )
        .with_imports(settings.registry.clone())
        .with_helm(settings.helm.clone())
        .with_render_observer({
            let metrics = metrics.clone();
            Arc::new(move |took| metrics.render(took.as_secs_f64()))
        }),
        store: Mutex::new(store),
        audit,
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "airgate".to_string(),
                instance: Some(settings.identity.clone()),
            },
        ),
        metrics,
        apps: Mutex::new(HashMap::new()),
        trigger,
        watches: Mutex::new(HashMap::new()),
        changes: tokio::sync::watch::Sender::new(0),
    }
}

/// Binds `--listen` (metrics, health) and `--ui-listen` (the web UI),
/// and serves both until the process ends; followers serve too.
async fn serve(settings: &Settings, ctx: &Arc<Context>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    let ui = match &settings.ui_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--ui-listen {addr}"))?,
        ),
        None => None,
    };
    log::info(
        "serving metrics",
        json!({"listen": settings.listen, "paths": ["/metrics", "/healthz"]}),
    );
    let served = ctx.clone();
    tokio::spawn(metrics::serve(listener, move || {
        served.metrics.exposition(served.syncer.fetch_count())
    }));
    if let Some(listener) = ui {
        log::info("serving the web UI", json!({"listen": settings.ui_listen}));
        tokio::spawn(ui::serve(listener, ctx.clone(), settings.namespace.clone()));
    }
    Ok(())
}

/// Runs the controller until it loses its Lease or fails.
pub async fn run(settings: Settings) -> Result<()> {
    let client = Client::try_from(settings.config.clone()).context("building the client")?;
    std::fs::create_dir_all(&settings.data_dir).with_context(|| {
        format!(
            "creating the data directory {}\nhint: pass --data-dir with a writable directory",
            settings.data_dir.display()
        )
    })?;
    let store = Store::open(&settings.store)
        .with_context(|| format!("opening the sync record store {}", settings.store.display()))?;
    let audit = audit::AuditLog::new(&settings)?;

    // Fail early, and clearly, when the CRD is missing or not readable.
    let apps: Api<App> = match &settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    if let Err(e) = apps.list(&kube::api::ListParams::default().limit(1)).await {
        bail!(
            "cannot list Apps (apps.airgate.dev): {e}\nhint: install the CRD and the controller's RBAC first: `airgate install | kubectl apply -f -`"
        );
    }

    let metrics = Arc::new(metrics::Metrics::default());
    let election = lease::Election {
        api: Api::namespaced(client.clone(), &settings.lease_namespace),
        name: settings.lease_name.clone(),
        identity: settings.identity.clone(),
        duration: settings.lease_duration,
    };
    let (trigger, triggered) = mpsc::unbounded_channel();
    let ctx = Arc::new(context(
        &settings,
        client,
        (store, audit),
        metrics.clone(),
        trigger,
    ));
    serve(&settings, &ctx).await?;

    election.acquire().await?;
    metrics.leader.set(1);
    // Only the leader appends: the log is checked (and a published one
    // restored) now, not at start, since another leader may have appended.
    ctx.audit.open(&ctx.store, &metrics).await;
    let publisher = ctx.clone();
    tokio::spawn(async move {
        publisher
            .audit
            .publish_forever(&publisher.store, &publisher.metrics)
            .await;
    });
    let recorder = ctx.clone();
    tokio::spawn(async move {
        imports::record_forever(&recorder.audit, &recorder.store, || recorder.changed()).await
    });

    let triggers = futures_util::stream::unfold(triggered, |mut rx| async move {
        rx.recv().await.map(|r| (r, rx))
    });
    let controller = Controller::new(apps, watcher::Config::default());
    let store_reader = controller.store();
    let janitor = drift::forget_deleted_apps(ctx.clone(), store_reader);
    let running = controller
        .with_config(kube::runtime::controller::Config::default().concurrency(settings.concurrency))
        .reconcile_on(triggers)
        .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                log::warn("reconcile failed", json!({"error": e.to_string()}));
            }
        });
    log::info(
        "reconciling",
        json!({"namespace": settings.namespace.clone().unwrap_or_else(|| "*".into()),
               "identity": settings.identity, "store": settings.store.display().to_string()}),
    );
    tokio::select! {
        _ = running => bail!("the App watch ended"),
        _ = janitor => bail!("the App cleanup task ended"),
        lost = election.hold() => {
            metrics.leader.set(0);
            Err(lost.context("leadership lost; stopping so that no two controllers apply"))
        }
    }
}
