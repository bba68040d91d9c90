//! Staged server-side apply: the whole set dry-run first, the ownership
//! check, cluster definitions (stage 1), then everything else in two
//! waves, workloads last (stage 2). See the crate docs.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use airgate_core::object::ObjectRef;
use futures_util::StreamExt;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::discovery::Scope;
use serde_json::Value;

use super::*;

/// The objects as planned: their references read, in stage order (cluster
/// definitions first), stable within a stage.
pub(crate) fn plan<V: Borrow<Value>>(
    objects: &[(String, V)],
) -> Result<Vec<Planned<'_>>, ApplyError> {
    let mut planned = Vec::with_capacity(objects.len());
    for (what, body) in objects {
        let body: &Value = body.borrow();
        let reference =
            ObjectRef::from_object(body, what).map_err(|e| ApplyError::Object(e.to_string()))?;
        planned.push(Planned {
            reference,
            body,
            resource: None,
            recreate: false,
            dry_run_version: None,
        });
    }
    planned.sort_by_key(|p| !p.reference.is_cluster_definition());
    Ok(planned)
}

impl Applier {
    /// Dry-runs `planned`: whether it must be recreated (an immutable field
    /// changed and the object opted in), and the resourceVersion answered.
    pub(crate) async fn dry_run(
        &self,
        planned: &Planned<'_>,
    ) -> Result<(bool, Option<String>), ApplyError> {
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

    pub(crate) fn body_for(&self, planned: &Planned, reference: &ObjectRef) -> Value {
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
    pub(crate) async fn delete_and_wait(
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
    pub(crate) async fn apply_one(
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

    pub(crate) async fn wait_established(&self, name: &str) -> Result<(), ApplyError> {
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
        self.apply_around(objects, vouched, before_write, || async { Ok(()) })
            .await
    }

    /// [`Applier::apply_with`], running `between` after the first stage
    /// (cluster definitions) and before the second writes anything: where
    /// Helm's pre-install and pre-upgrade hooks run. When `between` fails,
    /// nothing of the second stage is written and its error is returned
    /// (after what the first stage applied).
    pub async fn apply_around<V, F, Fut, B, BFut>(
        &self,
        objects: &[(String, V)],
        vouched: &HashSet<ObjectRef>,
        before_write: F,
        between: B,
    ) -> Result<ChangeSet, ApplyError>
    where
        V: Borrow<Value> + Sync,
        F: FnOnce(Vec<ObjectRef>) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
        B: FnOnce() -> BFut,
        BFut: std::future::Future<Output = Result<(), ApplyError>>,
    {
        let mut planned = plan(objects)?;
        // Dry-run everything that can be dry-run now; what must wait for
        // the first stage (new kinds, objects in new namespaces) is
        // dry-run after it, before the second stage writes anything.
        let deferred = self.resolve_kinds(&mut planned).await?;
        let (now, deferred) = self.split_new_namespaces(&planned, deferred).await;
        self.dry_run_all(&mut planned, &now).await?;
        self.check_ownership(&planned, &now, vouched).await?;
        let intended = planned
            .iter()
            .map(|p| self.intended_name(p, &planned))
            .collect();
        before_write(intended).await.map_err(|e| {
            ApplyError::Client(format!("recording what is about to be applied: {e}"))
        })?;
        // From here on an error says what was applied before it
        // (ApplyError::Partial).
        let changes = self.stage_one(&planned).await?;
        self.check_deferred(&mut planned, &deferred, vouched)
            .await
            .map_err(|e| e.after(&changes))?;
        between().await.map_err(|e| e.after(&changes))?;
        self.stage_two(&planned, changes).await
    }

    /// Where each object's kind lives in the API; the indices of objects
    /// whose kind a CRD of this same set creates (not served yet).
    pub(crate) async fn resolve_kinds(
        &self,
        planned: &mut [Planned<'_>],
    ) -> Result<Vec<usize>, ApplyError> {
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
        let mut deferred = Vec::new();
        for (i, p) in planned.iter_mut().enumerate() {
            let creates_kind = new_kinds
                .iter()
                .any(|(g, k)| g == p.reference.group() && k == &p.reference.kind);
            match self.resource(&p.reference).await {
                Ok(found) => p.resource = Some(found),
                Err(_) if creates_kind => deferred.push(i),
                Err(e) => return Err(unknown_kind(&p.reference, &e)),
            }
        }
        Ok(deferred)
    }

    /// Splits the objects into those to dry-run now and those that wait
    /// (`deferred`, plus namespaced objects in a Namespace that does not
    /// exist yet). One lookup per namespace, however many objects live in it.
    pub(crate) async fn split_new_namespaces(
        &self,
        planned: &[Planned<'_>],
        mut deferred: Vec<usize>,
    ) -> (Vec<usize>, Vec<usize>) {
        let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client.clone());
        let mut known: HashMap<String, bool> = HashMap::new();
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
            let exists = match known.get(&ns) {
                Some(&e) => e,
                None => {
                    let e = namespaces.get_opt(&ns).await.ok().flatten().is_some();
                    known.insert(ns.clone(), e);
                    e
                }
            };
            if namespaced && !p.reference.is_cluster_definition() && !exists {
                deferred.push(i);
            } else {
                now.push(i);
            }
        }
        (now, deferred)
    }

    /// Stage 1: cluster definitions, in order, each new CRD waited on until
    /// Established.
    pub(crate) async fn stage_one(&self, planned: &[Planned<'_>]) -> Result<ChangeSet, ApplyError> {
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
        Ok(changes)
    }

    /// After stage 1: the deferred objects resolved, dry-run and checked
    /// for ownership, before stage 2 writes anything.
    pub(crate) async fn check_deferred(
        &self,
        planned: &mut [Planned<'_>],
        deferred: &[usize],
        vouched: &HashSet<ObjectRef>,
    ) -> Result<(), ApplyError> {
        for &i in deferred {
            if planned[i].resource.is_none() {
                let found = self
                    .resource(&planned[i].reference)
                    .await
                    .map_err(|e| unknown_kind(&planned[i].reference, &e))?;
                planned[i].resource = Some(found);
            }
        }
        self.dry_run_all(planned, deferred).await?;
        self.check_ownership(planned, deferred, vouched).await
    }

    /// Stage 2: everything else, CONCURRENCY at a time, started in order;
    /// workloads only once the rest is in (see ObjectRef::is_workload).
    /// The change set lists them in order, after `changes` (stage 1).
    pub(crate) async fn stage_two(
        &self,
        planned: &[Planned<'_>],
        mut changes: ChangeSet,
    ) -> Result<ChangeSet, ApplyError> {
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
    pub(crate) async fn dry_run_all(
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
