//! Applying desired state to Kubernetes, the way a sync must: all or nothing
//! where the API allows it, and under the narrowest identity.
//!
//! Vocabulary (after Flux's ssa package): an [`Applier`] applies a set of
//! objects with server-side apply (field manager `airgate`) and returns a
//! [`ChangeSet`]: one [`Change`] per object with its [`Action`] (created,
//! configured, unchanged). Apply is **staged**: cluster definitions (CRDs and
//! Namespaces) first, waiting until CRDs are Established, then everything
//! else. Before anything is written, the whole set is **dry-run** on the
//! server; objects that cannot be dry-run yet (in a Namespace, or of a kind,
//! that this same set creates) are dry-run right after the first stage, and
//! before the second stage writes anything. An Applier made with
//! [`Applier::impersonating`] sends every request as a ServiceAccount.
//!
//! A change to an immutable field fails the dry-run and so the whole set,
//! naming the object; an object annotated `airgate.dev/recreate: enabled`
//! is instead deleted and created again ([`Action::Recreated`]).

pub mod app;
mod apply;
mod owner;
mod preview;
mod read;

pub use preview::{Preview, comparable};
pub use read::{CHILD_KINDS, Observed};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use airgate_core::drift;
use airgate_core::health::{self, Health};
use airgate_core::object::ObjectRef;
use airgate_core::ownership::{AppId, OWNER_ANNOTATION};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::discovery::{ApiCapabilities, Scope};
use kube::{Api, Client};
use serde_json::Value;

/// What server-side apply did to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Configured,
    Unchanged,
    /// Deleted and created again: an immutable field changed and the object
    /// opted in with `airgate.dev/recreate: enabled`.
    Recreated,
    /// Pruned: it left the desired set.
    Deleted,
    /// Left the desired set, but carries `airgate.dev/prune: disabled`.
    Skipped,
    /// Left the desired set, but no longer carries this App's ownership
    /// mark and labels (another App took it over, or someone relabelled
    /// it; see `airgate_core::ownership`): not deleted, and no longer the
    /// App's.
    Disowned,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub object: ObjectRef,
    pub action: Action,
    /// The fields airgate owns through apply once it is done (see
    /// `airgate_core::drift`); empty for deletions.
    #[serde(skip)]
    pub owned: BTreeSet<String>,
    /// The object's resourceVersion after the apply.
    #[serde(skip)]
    pub resource_version: Option<String>,
    /// Its health as the apply's answer showed it (`None` for deletions):
    /// an object Ready then needs no further read.
    #[serde(skip)]
    pub health: Option<Health>,
}

/// The result of one apply, in apply order.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChangeSet {
    pub changes: Vec<Change>,
}

impl ChangeSet {
    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Object(String),
    #[error("{object}: the cluster does not serve {api_version}/{kind}: {message}")]
    UnknownKind {
        object: String,
        api_version: String,
        kind: String,
        message: String,
    },
    #[error("{object}: the server-side dry-run failed, so nothing after it was applied: {message}")]
    DryRun {
        object: String,
        message: String,
        /// The cluster may answer otherwise later: a webhook or the API
        /// server unavailable or overloaded, or a permission (403) someone
        /// may still grant. Not set for an invalid object.
        retryable: bool,
    },
    #[error("{object}: apply failed: {message}")]
    Apply { object: String, message: String },
    /// Objects that exist and are not this App's to apply over (see
    /// `airgate_core::ownership`): nothing was written.
    #[error("nothing was applied: {}", .0.join("; "))]
    Ownership(Vec<String>),
    #[error("CustomResourceDefinition {name} was not Established within {seconds}s")]
    NotEstablished { name: String, seconds: u64 },
    #[error("{0}")]
    Client(String),
    /// A Helm hook failed, or was not done in time: nothing after it was
    /// applied.
    #[error("hook {hook} failed: {message}")]
    Hook { hook: String, message: String },
    /// `source` happened after these objects were applied (stage 1, and
    /// whatever of stage 2 had answered): they exist now. The message names
    /// them; the write-ahead of `apply_with` has put them in the inventory.
    #[error(
        "{source}\napplied before that, and kept in the App's inventory: {}",
        list(applied)
    )]
    Partial {
        applied: Vec<ObjectRef>,
        source: Box<ApplyError>,
    },
}

fn list(objects: &[ObjectRef]) -> String {
    let shown: Vec<String> = objects.iter().take(10).map(ToString::to_string).collect();
    match objects.len() {
        n if n > 10 => format!("{} and {} more", shown.join(", "), n - 10),
        _ => shown.join(", "),
    }
}

impl ApplyError {
    /// The error itself, without what was applied before it.
    pub fn cause(&self) -> &ApplyError {
        match self {
            ApplyError::Partial { source, .. } => source.cause(),
            other => other,
        }
    }

    /// This error, after `changes` were applied ([`ApplyError::Partial`]).
    pub fn after(self, changes: &ChangeSet) -> ApplyError {
        if changes.changes.is_empty() {
            return self;
        }
        ApplyError::Partial {
            applied: changes.changes.iter().map(|c| c.object.clone()).collect(),
            source: Box::new(self),
        }
    }
}

/// One object to apply, with where it lives in the API.
struct Planned<'a> {
    reference: ObjectRef,
    /// Borrowed from the caller: a sync of a thousand objects keeps one
    /// copy of them, not one per stage.
    body: &'a Value,
    resource: Option<(ApiResource, ApiCapabilities)>,
    /// The dry-run found an immutable field changed and the object opted in
    /// to being recreated.
    recreate: bool,
    /// The resourceVersion the dry-run answered with: the object's current
    /// one, or none when it does not exist yet. An apply that answers with
    /// the same one wrote nothing.
    dry_run_version: Option<String>,
}

/// Objects opt in to delete-and-create on immutable changes with this
/// annotation set to `enabled`.
pub const RECREATE_ANNOTATION: &str = "airgate.dev/recreate";

/// The body of a [`Planned`] made only to read or delete an object.
static NO_BODY: Value = Value::Null;

fn annotation<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get("metadata")?.get("annotations")?.get(key)?.as_str()
}

/// An object without the fields every write changes.
fn content(obj: &DynamicObject) -> Value {
    let mut v = serde_json::to_value(obj).unwrap_or(Value::Null);
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for volatile in ["resourceVersion", "managedFields", "generation"] {
            meta.remove(volatile);
        }
    }
    v
}

/// The fields `manager` owns through apply in `obj`.
fn owned_by(obj: &DynamicObject, manager: &str) -> BTreeSet<String> {
    let managed = serde_json::to_value(&obj.metadata.managed_fields).unwrap_or(Value::Null);
    drift::applied_fields(&drift::owners(&managed), manager)
}

/// Applies sets of objects with one client (and so one identity).
pub struct Applier {
    client: Client,
    field_manager: String,
    default_namespace: String,
    /// The App whose objects these are: what is applied carries its
    /// ownership mark and labels, and is applied and pruned only as its own.
    owner: Option<AppId>,
    labels: BTreeMap<String, String>,
    resources: tokio::sync::Mutex<HashMap<(String, String), (ApiResource, ApiCapabilities)>>,
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier")
            .field("field_manager", &self.field_manager)
            .field("default_namespace", &self.default_namespace)
            .finish()
    }
}

/// The health of `obj`, read from the API (or seen by a watch) as
/// `reference`, judged by the kind asked for, whatever the body says: a
/// list's items carry no kind.
pub fn judged(reference: &ObjectRef, obj: &DynamicObject) -> Health {
    health::assess_as(
        reference.group(),
        &reference.kind,
        &serde_json::to_value(obj).unwrap_or(Value::Null),
    )
}

/// How many requests of one stage are in flight at once.
///
/// Always with `buffer_unordered`: `buffered` yields in order and counts a
/// finished request as in flight until every one started before it has
/// finished, so one slow request (a Service's create waits for its
/// ClusterIP, 100 to 250 ms on the perimeter) held back the fifteen after
/// it, and 100 creates took twice as long.
const CONCURRENCY: usize = 16;

/// Reading health, a group of objects of one kind in one namespace larger
/// than this is listed instead of read one by one.
const LIST_ABOVE: usize = 8;

/// Listing objects, at most this many a page.
const LIST_PAGE: u32 = 500;

/// How long to wait for a CRD to be Established.
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// `message` about `body` with every value of a Secret's `data` and
/// `stringData` (and their decoded forms, and every string inside a value
/// that is not one) replaced by `<redacted>`: the API server echoes invalid
/// values, and a message goes to status, Events, logs and the records.
pub fn scrubbed(body: &Value, message: String) -> String {
    if body.get("kind").and_then(Value::as_str) != Some("Secret") {
        return message;
    }
    let mut secrets: Vec<String> = Vec::new();
    fn leaves(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| leaves(i, out)),
            Value::Object(map) => map.values().for_each(|i| leaves(i, out)),
            Value::Number(n) => out.push(n.to_string()),
            _ => {}
        }
    }
    for field in ["data", "stringData"] {
        if let Some(v) = body.get(field) {
            leaves(v, &mut secrets);
        }
    }
    let decoded: Vec<String> = secrets
        .iter()
        .filter_map(|s| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(s).ok()
        })
        .filter_map(|b| String::from_utf8(b).ok())
        .collect();
    secrets.extend(decoded);
    airgate_core::text::redact(message, secrets)
}

/// Whether the cluster may answer a request otherwise later (see
/// [`ApplyError::DryRun`]): forbidden, throttled, a server or webhook
/// error, or no answer at all.
fn retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => {
            status.code == 403
                || status.code == 429
                || status.code >= 500
                || status.message.contains("failed calling webhook")
        }
        _ => true,
    }
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

/// The cluster does not serve `reference`'s kind.
fn unknown_kind(reference: &ObjectRef, e: &kube::Error) -> ApplyError {
    ApplyError::UnknownKind {
        object: reference.to_string(),
        api_version: reference.api_version.clone(),
        kind: reference.kind.clone(),
        message: api_message(e),
    }
}

impl Applier {
    /// Namespaced objects without a namespace go to `default_namespace`.
    pub fn new(client: Client, field_manager: &str, default_namespace: &str) -> Applier {
        Applier {
            client,
            field_manager: field_manager.to_string(),
            default_namespace: default_namespace.to_string(),
            owner: None,
            labels: BTreeMap::new(),
            resources: Default::default(),
        }
    }

    /// The client every request goes through (and so its identity).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Applies and prunes as `app`'s: every object applied carries its
    /// ownership mark and labels (so watches can select exactly what an App
    /// owns); an object that exists is applied over only when it is `app`'s
    /// or marked for adoption by it, and pruned only when it carries its
    /// mark and labels when it is read just before the delete (see
    /// `airgate_core::ownership`).
    pub fn with_owner(mut self, app: AppId) -> Applier {
        self.labels = app.labels();
        self.owner = Some(app);
        self
    }

    /// An Applier whose every request impersonates ServiceAccount
    /// `service_account` of `namespace`. No groups are sent: the API server
    /// gives an impersonated ServiceAccount its own groups
    /// (`system:serviceaccounts`, `system:serviceaccounts:<namespace>`,
    /// `system:authenticated`), so `config` needs `impersonate` on
    /// `serviceaccounts` and nothing on `groups`.
    pub fn impersonating(
        config: &kube::Config,
        namespace: &str,
        service_account: &str,
        field_manager: &str,
    ) -> Result<Applier, ApplyError> {
        let mut config = config.clone();
        config.auth_info.impersonate = Some(format!(
            "system:serviceaccount:{namespace}:{service_account}"
        ));
        config.auth_info.impersonate_groups = None;
        let client = Client::try_from(config).map_err(|e| ApplyError::Client(e.to_string()))?;
        Ok(Applier::new(client, field_manager, namespace))
    }

    /// Where `r`'s kind lives in the API (discovery, cached per Applier).
    pub async fn resource(
        &self,
        r: &ObjectRef,
    ) -> Result<(ApiResource, ApiCapabilities), kube::Error> {
        let key = (r.api_version.clone(), r.kind.clone());
        if let Some(found) = self.resources.lock().await.get(&key) {
            return Ok(found.clone());
        }
        let gvk = GroupVersionKind::gvk(r.group(), r.version(), &r.kind);
        let found = kube::discovery::pinned_kind(&self.client, &gvk).await?;
        self.resources.lock().await.insert(key, found.clone());
        Ok(found)
    }

    pub(crate) fn api(
        &self,
        planned: &Planned,
    ) -> Result<(Api<DynamicObject>, ObjectRef), ApplyError> {
        let Some((ar, caps)) = &planned.resource else {
            return Err(ApplyError::Object(format!(
                "{}: kind not resolved",
                planned.reference
            )));
        };
        let mut reference = planned.reference.clone();
        let api = if caps.scope == Scope::Namespaced {
            let ns = reference
                .namespace
                .get_or_insert_with(|| self.default_namespace.clone())
                .clone();
            Api::namespaced_with(self.client.clone(), &ns, ar)
        } else {
            reference.namespace = None;
            Api::all_with(self.client.clone(), ar)
        };
        Ok((api, reference))
    }

    /// How the apply will name `p`: by its kind's scope when the cluster
    /// knows the kind, else by the scope of the CRD in `all` that makes it.
    pub(crate) fn intended_name(&self, p: &Planned, all: &[Planned]) -> ObjectRef {
        if let Ok((_, reference)) = self.api(p) {
            return reference;
        }
        let scope = all.iter().find_map(|crd| {
            let spec = crd.body.get("spec")?;
            (crd.reference.kind == "CustomResourceDefinition"
                && spec.get("group")?.as_str()? == p.reference.group()
                && spec.get("names")?.get("kind")?.as_str()? == p.reference.kind)
                .then(|| spec.get("scope")?.as_str())
                .flatten()
        });
        let mut reference = p.reference.clone();
        match scope {
            Some("Cluster") => reference.namespace = None,
            _ => {
                reference
                    .namespace
                    .get_or_insert_with(|| self.default_namespace.clone());
            }
        }
        reference
    }

    /// The label selector of what this Applier applies (its App's; none,
    /// so everything, without one).
    pub(crate) fn selector(&self) -> String {
        self.owner.as_ref().map(AppId::selector).unwrap_or_default()
    }
}
