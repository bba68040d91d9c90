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

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use airgate_core::drift;
use airgate_core::health::{self, Health};
use airgate_core::inventory::PRUNE_ANNOTATION;
use airgate_core::object::ObjectRef;
use airgate_core::ownership::{self, AppId, Claim, OWNER_ANNOTATION};
use futures_util::StreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
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

    fn after(self, changes: &ChangeSet) -> ApplyError {
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

    fn api(&self, planned: &Planned) -> Result<(Api<DynamicObject>, ObjectRef), ApplyError> {
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
    fn intended_name(&self, p: &Planned, all: &[Planned]) -> ObjectRef {
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

    /// Dry-runs `planned`: whether it must be recreated (an immutable field
    /// changed and the object opted in), and the resourceVersion answered.
    async fn dry_run(&self, planned: &Planned<'_>) -> Result<(bool, Option<String>), ApplyError> {
        let (api, reference) = self.api(planned)?;
        let params = PatchParams::apply(&self.field_manager).force().dry_run();
        let result = api
            .patch(
                &reference.name,
                &params,
                &Patch::Apply(&self.body_for(planned, &reference)),
            )
            .await;
        let e = match result {
            Ok(answer) => {
                let version = answer.metadata.resource_version.filter(|v| !v.is_empty());
                return Ok((false, version));
            }
            Err(e) => e,
        };
        let message = scrubbed(planned.body, api_message(&e));
        if !message.contains("immutable") {
            return Err(ApplyError::DryRun {
                object: reference.to_string(),
                retryable: retryable(&e),
                message,
            });
        }
        if annotation(planned.body, RECREATE_ANNOTATION) == Some("enabled") {
            return Ok((true, None));
        }
        Err(ApplyError::DryRun {
            object: reference.to_string(),
            retryable: false,
            message: format!(
                "{message}\nhint: an immutable field changed; annotate the object \
                 {RECREATE_ANNOTATION}: enabled to let airgate delete and create it again"
            ),
        })
    }

    fn body_for(&self, planned: &Planned, reference: &ObjectRef) -> Value {
        let mut body = planned.body.clone();
        let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) else {
            return body;
        };
        if let Some(ns) = &reference.namespace {
            meta.insert("namespace".to_string(), Value::String(ns.clone()));
        }
        if let Some(owner) = &self.owner {
            let annotations = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(Default::default()));
            if !annotations.is_object() {
                *annotations = Value::Object(Default::default());
            }
            if let Some(annotations) = annotations.as_object_mut() {
                annotations.insert(
                    OWNER_ANNOTATION.to_string(),
                    Value::String(owner.mark(reference)),
                );
            }
        }
        if !self.labels.is_empty() {
            let labels = meta
                .entry("labels")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Some(labels) = labels.as_object_mut() {
                for (k, v) in &self.labels {
                    labels.insert(k.clone(), Value::String(v.clone()));
                }
            }
        }
        body
    }

    /// Deletes `reference` and waits until it is gone.
    async fn delete_and_wait(
        &self,
        api: &Api<DynamicObject>,
        reference: &ObjectRef,
    ) -> Result<(), ApplyError> {
        let fail = |e: kube::Error| ApplyError::Apply {
            object: reference.to_string(),
            message: api_message(&e),
        };
        api.delete(&reference.name, &kube::api::DeleteParams::foreground())
            .await
            .map_err(fail)?;
        let deadline = tokio::time::Instant::now() + ESTABLISH_TIMEOUT;
        while api.get_opt(&reference.name).await.map_err(fail)?.is_some() {
            if tokio::time::Instant::now() > deadline {
                return Err(ApplyError::Apply {
                    object: reference.to_string(),
                    message: format!(
                        "still present {}s after deletion (to recreate it)",
                        ESTABLISH_TIMEOUT.as_secs()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// Applies one object. `read_before`: read it first, so that a write
    /// that changed only bookkeeping counts as unchanged (see below).
    async fn apply_one(
        &self,
        planned: &Planned<'_>,
        read_before: bool,
    ) -> Result<Change, ApplyError> {
        let (api, reference) = self.api(planned)?;
        let fail = |e: kube::Error| ApplyError::Apply {
            object: reference.to_string(),
            message: scrubbed(planned.body, api_message(&e)),
        };
        let before = if read_before || planned.recreate {
            api.get_opt(&reference.name).await.map_err(fail)?
        } else {
            None
        };
        if planned.recreate && before.is_some() {
            self.delete_and_wait(&api, &reference).await?;
        }
        let params = PatchParams::apply(&self.field_manager).force();
        let after = api
            .patch(
                &reference.name,
                &params,
                &Patch::Apply(&self.body_for(planned, &reference)),
            )
            .await
            .map_err(fail)?;
        // The dry-run answered with the version the object had (none: it
        // did not exist); an apply that wrote nothing leaves that version
        // (the server writes no no-op apply, not even a new managedFields
        // timestamp). It does write when only managedFields change, as
        // when a bare Namespace is applied again right after its creation:
        // where the object was read before, such a write is unchanged.
        let action = match (&planned.dry_run_version, &before) {
            _ if planned.recreate => Action::Recreated,
            (None, _) => Action::Created,
            (Some(v), _) if after.metadata.resource_version.as_ref() == Some(v) => {
                Action::Unchanged
            }
            (Some(_), Some(b)) if content(b) == content(&after) => Action::Unchanged,
            (Some(_), _) => Action::Configured,
        };
        Ok(Change {
            owned: owned_by(&after, &self.field_manager),
            resource_version: after.metadata.resource_version.clone(),
            health: Some(judged(&reference, &after)),
            object: reference,
            action,
        })
    }

    async fn wait_established(&self, name: &str) -> Result<(), ApplyError> {
        let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
            Api::all(self.client.clone());
        let deadline = tokio::time::Instant::now() + ESTABLISH_TIMEOUT;
        loop {
            let crd = crds.get(name).await.map_err(|e| ApplyError::Apply {
                object: format!("CustomResourceDefinition/{name}"),
                message: api_message(&e),
            })?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ApplyError::NotEstablished {
                    name: name.to_string(),
                    seconds: ESTABLISH_TIMEOUT.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The health of each of `objects`, read from the cluster now, in order.
    ///
    /// Objects of one kind in one namespace are read with one list (selected
    /// by this Applier's labels) when there are more than [`LIST_ABOVE`] of
    /// them, one by one otherwise ([`CONCURRENCY`] reads at once): a rollout
    /// of hundreds of Deployments costs a few lists per look, not hundreds of
    /// reads.
    pub async fn health_of(&self, objects: &[ObjectRef]) -> Result<Vec<Health>, ApplyError> {
        let mut groups: BTreeMap<(&str, &str, Option<&str>), Vec<usize>> = BTreeMap::new();
        for (i, o) in objects.iter().enumerate() {
            groups
                .entry((&o.api_version, &o.kind, o.namespace.as_deref()))
                .or_default()
                .push(i);
        }
        // A small group is read one by one: each read is a request of its own.
        let futures: Vec<_> = groups
            .into_values()
            .flat_map(|members| {
                if members.len() <= LIST_ABOVE {
                    members.into_iter().map(|i| vec![i]).collect()
                } else {
                    vec![members]
                }
            })
            .map(|members| self.health_group(objects, members))
            .collect();
        let mut found = Vec::with_capacity(objects.len());
        let mut groups = futures_util::stream::iter(futures).buffer_unordered(CONCURRENCY);
        while let Some(group) = groups.next().await {
            found.extend(group?);
        }
        // Every index is in exactly one group.
        found.sort_by_key(|(i, _)| *i);
        Ok(found.into_iter().map(|(_, h)| h).collect())
    }

    /// The health of `objects[i]` for each `i` in `members` (one kind, one
    /// namespace).
    async fn health_group(
        &self,
        objects: &[ObjectRef],
        members: Vec<usize>,
    ) -> Result<Vec<(usize, Health)>, ApplyError> {
        if let [i] = members[..] {
            return Ok(vec![(i, self.health(&objects[i]).await?)]);
        }
        let first = &objects[members[0]];
        let planned = self.located(first).await?;
        let (api, reference) = self.api(&planned)?;
        let listed = api
            .list(&kube::api::ListParams::default().labels(&self.selector()))
            .await
            .map_err(|e| ApplyError::Apply {
                object: reference.to_string(),
                message: format!("listing {}s: {}", reference.kind, api_message(&e)),
            })?;
        let by_name: HashMap<String, &DynamicObject> = listed
            .items
            .iter()
            .filter_map(|o| Some((o.metadata.name.clone()?, o)))
            .collect();
        let mut out = Vec::with_capacity(members.len());
        for i in members {
            let health = match by_name.get(&objects[i].name) {
                // A list's items carry no kind: judged by the one asked for.
                Some(obj) => judged(&objects[i], obj),
                // Not selected: someone took the labels away (drift the
                // watches report), or it is gone. Read it by name.
                None => self.health(&objects[i]).await?,
            };
            out.push((i, health));
        }
        Ok(out)
    }

    /// `reference` with where its kind lives in the API, for a read.
    async fn located(&self, reference: &ObjectRef) -> Result<Planned<'static>, ApplyError> {
        Ok(Planned {
            reference: reference.clone(),
            body: &NO_BODY,
            resource: Some(self.resource(reference).await.map_err(|e| {
                ApplyError::UnknownKind {
                    object: reference.to_string(),
                    api_version: reference.api_version.clone(),
                    kind: reference.kind.clone(),
                    message: api_message(&e),
                }
            })?),
            recreate: false,
            dry_run_version: None,
        })
    }

    /// The health of an applied object, read from the cluster now.
    pub async fn health(&self, reference: &ObjectRef) -> Result<Health, ApplyError> {
        let planned = self.located(reference).await?;
        let (api, reference) = self.api(&planned)?;
        match api.get_opt(&reference.name).await {
            Ok(Some(obj)) => Ok(judged(&reference, &obj)),
            Ok(None) => Ok(Health::Progressing("not found".to_string())),
            Err(e) => Err(ApplyError::Apply {
                object: reference.to_string(),
                message: api_message(&e),
            }),
        }
    }

    /// The object as it is now, or `None` when it (or its kind) is gone.
    pub async fn live(&self, reference: &ObjectRef) -> Result<Option<DynamicObject>, ApplyError> {
        let Ok(planned) = self.located(reference).await else {
            return Ok(None);
        };
        let (api, reference) = self.api(&planned)?;
        api.get_opt(&reference.name)
            .await
            .map_err(|e| ApplyError::Apply {
                object: reference.to_string(),
                message: api_message(&e),
            })
    }

    /// Deletes `stale` objects (from the inventory, see
    /// `Inventory::stale`), in order, except those annotated
    /// `airgate.dev/prune: disabled` ([`Action::Skipped`]) and those that
    /// do not carry this Applier's labels when they are read just before
    /// the delete ([`Action::Disowned`]). Objects already gone are skipped.
    /// Never deletes an object of `keep`, however `stale` spells it (an
    /// entry written ahead before its kind was known may name it with a
    /// namespace its kind does not have).
    pub async fn prune(
        &self,
        stale: &[ObjectRef],
        keep: &airgate_core::inventory::Inventory,
    ) -> Result<ChangeSet, ApplyError> {
        let mut changes = ChangeSet::default();
        for reference in stale {
            let planned = match self.located(reference).await {
                Ok(p) => p,
                // The kind itself is gone (its CRD was pruned): so is the object.
                Err(_) => continue,
            };
            let (api, reference) = self.api(&planned)?;
            if keep.entries.contains(&reference) {
                continue;
            }
            let fail = |e: kube::Error| ApplyError::Apply {
                object: reference.to_string(),
                message: api_message(&e),
            };
            let Some(live) = api.get_opt(&reference.name).await.map_err(fail)? else {
                continue;
            };
            let opted_out = live
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(PRUNE_ANNOTATION))
                .is_some_and(|v| v == "disabled");
            // Delete only what carries this App's mark and labels now: an
            // inventory (a status anyone with access can edit) is not proof
            // enough.
            let ours = match &self.owner {
                Some(app) => self.claim(app, &reference, &live.metadata).may_delete(),
                None => true,
            };
            let action = if !ours {
                Action::Disowned
            } else if opted_out {
                Action::Skipped
            } else {
                // The very object read: not one created since under its name.
                let params = kube::api::DeleteParams {
                    preconditions: Some(kube::api::Preconditions {
                        uid: live.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..kube::api::DeleteParams::background()
                };
                match api.delete(&reference.name, &params).await {
                    Ok(_) => Action::Deleted,
                    Err(kube::Error::Api(s)) if s.code == 404 => continue,
                    // Replaced since it was read: that object is not ours.
                    Err(kube::Error::Api(s)) if s.code == 409 => Action::Disowned,
                    Err(e) => return Err(fail(e)),
                }
            };
            changes.changes.push(Change {
                object: reference,
                action,
                owned: BTreeSet::new(),
                resource_version: None,
                health: None,
            });
        }
        Ok(changes)
    }

    /// The label selector of what this Applier applies.
    fn selector(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        labels.join(",")
    }

    /// Whose the live object `reference` is, as seen by `app`.
    fn claim(&self, app: &AppId, reference: &ObjectRef, meta: &kube::api::ObjectMeta) -> Claim {
        ownership::claim(
            app,
            reference,
            &meta.annotations.clone().unwrap_or_default(),
            &meta.labels.clone().unwrap_or_default(),
        )
    }

    /// Refuses, before anything is written, to apply over an object of
    /// `planned[i]` for `i` in `which` that exists (its dry-run answered
    /// with a version), is not `vouched` for, and is not this App's (see
    /// [`Applier::with_owner`]).
    /// Objects of one kind in one namespace are read with one metadata list
    /// of this App's objects when there are more than [`LIST_ABOVE`] of
    /// them, and any the list does not show by name; never their content.
    async fn check_ownership(
        &self,
        planned: &[Planned<'_>],
        which: &[usize],
        vouched: &HashSet<ObjectRef>,
    ) -> Result<(), ApplyError> {
        let Some(app) = &self.owner else {
            return Ok(());
        };
        let mut groups: BTreeMap<(String, String, Option<String>), Vec<ObjectRef>> =
            BTreeMap::new();
        for &i in which {
            if planned[i].dry_run_version.is_none() {
                continue;
            }
            let (_, reference) = self.api(&planned[i])?;
            if vouched.contains(&reference) {
                continue;
            }
            groups
                .entry((
                    reference.api_version.clone(),
                    reference.kind.clone(),
                    reference.namespace.clone(),
                ))
                .or_default()
                .push(reference);
        }
        // A small group is read one by one: each read is a request of its own.
        let futures = groups
            .into_values()
            .flat_map(|members| {
                if members.len() <= LIST_ABOVE {
                    members.into_iter().map(|m| vec![m]).collect()
                } else {
                    vec![members]
                }
            })
            .map(|members| self.metadata_of(members));
        let mut read = futures_util::stream::iter(futures).buffer_unordered(CONCURRENCY);
        let mut refused = Vec::new();
        while let Some(group) = read.next().await {
            for (reference, meta) in group? {
                let Some(meta) = meta else { continue };
                if let Some(why) = self.claim(app, &reference, &meta).refusal(app, &reference) {
                    refused.push((reference, why));
                }
            }
        }
        if refused.is_empty() {
            return Ok(());
        }
        refused.sort();
        Err(ApplyError::Ownership(
            refused.into_iter().map(|(_, why)| why).collect(),
        ))
    }

    /// The live metadata of each of `members` (one kind, one namespace,
    /// named as the apply names them), `None` for those that do not exist.
    async fn metadata_of(
        &self,
        members: Vec<ObjectRef>,
    ) -> Result<Vec<(ObjectRef, Option<kube::api::ObjectMeta>)>, ApplyError> {
        let planned = self.located(&members[0]).await?;
        let (api, first) = self.api(&planned)?;
        let fail = |e: kube::Error| ApplyError::Apply {
            object: first.to_string(),
            message: format!("reading who owns it: {}", api_message(&e)),
        };
        let mut listed: HashMap<String, kube::api::ObjectMeta> = HashMap::new();
        if members.len() > LIST_ABOVE {
            let params = kube::api::ListParams::default().labels(&self.selector());
            for item in api.list_metadata(&params).await.map_err(fail)?.items {
                if let Some(name) = item.metadata.name.clone() {
                    listed.insert(name, item.metadata);
                }
            }
        }
        let mut out = Vec::with_capacity(members.len());
        for reference in members {
            let meta = match listed.remove(&reference.name) {
                Some(meta) => Some(meta),
                None => api
                    .get_metadata_opt(&reference.name)
                    .await
                    .map_err(fail)?
                    .map(|m| m.metadata),
            };
            out.push((reference, meta));
        }
        Ok(out)
    }

    /// Applies `objects` (see the crate docs). `objects` are (what, object)
    /// pairs, the objects owned or borrowed; `what` names the object's
    /// origin in errors.
    pub async fn apply<V: Borrow<Value> + Sync>(
        &self,
        objects: &[(String, V)],
    ) -> Result<ChangeSet, ApplyError> {
        self.apply_with(objects, &HashSet::new(), |_| async { Ok(()) })
            .await
    }

    /// [`Applier::apply`], calling `before_write` with every object it is
    /// about to apply, named as the apply will name them, after the dry-run
    /// and before the first write: the caller records them first
    /// (write-ahead), so a crash mid-apply leaves nothing it does not know
    /// of. If `before_write` fails, nothing is written.
    ///
    /// `vouched`: objects the caller has seen carry this App's ownership
    /// mark and labels since their last change (the controller's watches,
    /// selected by those labels, saw them so): their ownership is not read
    /// again. Every other object that exists is read (see
    /// [`Applier::with_owner`]).
    pub async fn apply_with<V, F, Fut>(
        &self,
        objects: &[(String, V)],
        vouched: &HashSet<ObjectRef>,
        before_write: F,
    ) -> Result<ChangeSet, ApplyError>
    where
        V: Borrow<Value> + Sync,
        F: FnOnce(Vec<ObjectRef>) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let mut planned = Vec::new();
        for (what, body) in objects {
            let body: &Value = body.borrow();
            let reference = ObjectRef::from_object(body, what)
                .map_err(|e| ApplyError::Object(e.to_string()))?;
            planned.push(Planned {
                reference,
                body,
                resource: None,
                recreate: false,
                dry_run_version: None,
            });
        }
        // Stage order, stable within a stage.
        planned.sort_by_key(|p| !p.reference.is_cluster_definition());
        let new_kinds: Vec<(String, String)> = planned
            .iter()
            .filter(|p| p.reference.kind == "CustomResourceDefinition")
            .filter_map(|p| {
                let spec = p.body.get("spec")?;
                let group = spec.get("group")?.as_str()?;
                let kind = spec.get("names")?.get("kind")?.as_str()?;
                Some((group.to_string(), kind.to_string()))
            })
            .collect();
        let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client.clone());

        // Dry-run everything that can be dry-run now; note what must wait
        // for the first stage (new kinds, objects in new namespaces).
        let mut deferred = Vec::new();
        for (i, p) in planned.iter_mut().enumerate() {
            let creates_kind = new_kinds
                .iter()
                .any(|(g, k)| g == p.reference.group() && k == &p.reference.kind);
            match self.resource(&p.reference).await {
                Ok(found) => p.resource = Some(found),
                Err(_) if creates_kind => {
                    deferred.push(i);
                    continue;
                }
                Err(e) => {
                    return Err(ApplyError::UnknownKind {
                        object: p.reference.to_string(),
                        api_version: p.reference.api_version.clone(),
                        kind: p.reference.kind.clone(),
                        message: api_message(&e),
                    });
                }
            }
        }
        // One lookup per namespace, however many objects live in it.
        let mut known_namespaces: HashMap<String, bool> = HashMap::new();
        let mut now = Vec::new();
        for (i, p) in planned.iter().enumerate() {
            if deferred.contains(&i) {
                continue;
            }
            let namespaced = p
                .resource
                .as_ref()
                .is_some_and(|(_, c)| c.scope == Scope::Namespaced);
            let ns = p
                .reference
                .namespace
                .clone()
                .unwrap_or_else(|| self.default_namespace.clone());
            let exists = match known_namespaces.get(&ns) {
                Some(&e) => e,
                None => {
                    let e = namespaces.get_opt(&ns).await.ok().flatten().is_some();
                    known_namespaces.insert(ns.clone(), e);
                    e
                }
            };
            if namespaced && !p.reference.is_cluster_definition() && !exists {
                deferred.push(i);
                continue;
            }
            now.push(i);
        }
        self.dry_run_all(&mut planned, &now).await?;
        self.check_ownership(&planned, &now, vouched).await?;
        let intended = planned
            .iter()
            .map(|p| self.intended_name(p, &planned))
            .collect();
        before_write(intended).await.map_err(|e| {
            ApplyError::Client(format!("recording what is about to be applied: {e}"))
        })?;

        // Stage 1: cluster definitions, then wait for new CRDs. From here
        // on an error says what was applied before it (ApplyError::Partial).
        let mut changes = ChangeSet::default();
        for p in planned
            .iter()
            .filter(|p| p.reference.is_cluster_definition())
        {
            let change = self
                .apply_one(p, true)
                .await
                .map_err(|e| e.after(&changes))?;
            changes.changes.push(change);
            if p.reference.kind == "CustomResourceDefinition" {
                self.wait_established(&p.reference.name)
                    .await
                    .map_err(|e| e.after(&changes))?;
            }
        }
        // The deferred objects can be checked now, before stage 2 writes.
        for &i in &deferred {
            if planned[i].resource.is_none() {
                let reference = planned[i].reference.clone();
                let found = self.resource(&reference).await.map_err(|e| {
                    ApplyError::UnknownKind {
                        object: reference.to_string(),
                        api_version: reference.api_version.clone(),
                        kind: reference.kind.clone(),
                        message: api_message(&e),
                    }
                    .after(&changes)
                })?;
                planned[i].resource = Some(found);
            }
        }
        self.dry_run_all(&mut planned, &deferred)
            .await
            .map_err(|e| e.after(&changes))?;
        self.check_ownership(&planned, &deferred, vouched)
            .await
            .map_err(|e| e.after(&changes))?;
        // Stage 2: everything else, CONCURRENCY at a time, started in order;
        // workloads only once the rest is in (see ObjectRef::is_workload).
        // The change set lists them in order.
        let rest: Vec<&Planned> = planned
            .iter()
            .filter(|p| !p.reference.is_cluster_definition())
            .collect();
        let mut second = Vec::with_capacity(rest.len());
        for workloads in [false, true] {
            let wave: Vec<usize> = (0..rest.len())
                .filter(|&i| rest[i].reference.is_workload() == workloads)
                .collect();
            // Made as they are needed (a thousand futures made up front
            // hold megabytes); by index: a closure over references would
            // keep the stream from being provably Send.
            let (rest, wave) = (&rest, &wave);
            let futures = (0..wave.len()).map(move |w| async move {
                let i = wave[w];
                self.apply_one(rest[i], false).await.map(|c| (i, c))
            });
            let mut applied = futures_util::stream::iter(futures).buffer_unordered(CONCURRENCY);
            while let Some(change) = applied.next().await {
                match change {
                    Ok(c) => second.push(c),
                    Err(e) => {
                        changes.changes.extend(second.into_iter().map(|(_, c)| c));
                        return Err(e.after(&changes));
                    }
                }
            }
        }
        second.sort_by_key(|(i, _)| *i);
        changes.changes.extend(second.into_iter().map(|(_, c)| c));
        Ok(changes)
    }

    /// Dry-runs `planned[i]` for each `i` in `which`, CONCURRENCY at a time;
    /// the first failure in `which` order is the one reported.
    async fn dry_run_all(
        &self,
        planned: &mut [Planned<'_>],
        which: &[usize],
    ) -> Result<(), ApplyError> {
        let mut results: Vec<_> = {
            let shared: &[Planned<'_>] = planned;
            let futures = which
                .iter()
                .copied()
                .enumerate()
                .map(move |(at, i)| async move { (at, self.dry_run(&shared[i]).await) });
            futures_util::stream::iter(futures)
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await
        };
        results.sort_by_key(|(at, _)| *at);
        for (at, result) in results {
            let i = which[at];
            (planned[i].recreate, planned[i].dry_run_version) = result?;
        }
        Ok(())
    }
}
