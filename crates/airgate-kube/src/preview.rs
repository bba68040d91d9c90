//! What an apply would do, without doing it: every object read as it is
//! now and dry-run as it would be applied (`airgate diff --live`), under
//! the Applier's identity. Nothing is written.

use std::borrow::Borrow;

use airgate_core::object::ObjectRef;
use futures_util::StreamExt;
use kube::api::{Patch, PatchParams};
use serde_json::Value;

use super::*;

/// One object of a preview.
#[derive(Clone, Debug, PartialEq)]
pub struct Preview {
    /// As the apply would name it (namespace filled in).
    pub object: ObjectRef,
    /// The object in the cluster now (`None`: it does not exist).
    pub live: Option<Value>,
    /// What the server answered the dry-run with; `None` when it could not
    /// be asked yet (a kind, or a Namespace, this same set creates): the
    /// object would be created.
    pub dry_run: Option<Value>,
}

/// Metadata that says nothing about what was applied: it moves with every
/// write (resourceVersion, generation, the managers' timestamps).
pub fn comparable(mut v: Value) -> Value {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in ["managedFields", "resourceVersion", "generation"] {
            meta.remove(k);
        }
    }
    v
}

impl Applier {
    /// Each object as it is now and as the server answers a dry-run of its
    /// apply, as this Applier's identity. Guarantees: nothing is written
    /// (every patch is a dry-run). An object the server refuses fails the
    /// whole preview, naming it, as the apply would.
    pub async fn preview<V: Borrow<Value> + Sync>(
        &self,
        objects: &[(String, V)],
    ) -> Result<Vec<Preview>, ApplyError> {
        let mut planned = apply::plan(objects)?;
        let deferred = self.resolve_kinds(&mut planned).await?;
        let (now, deferred) = self.split_new_namespaces(&planned, deferred).await;
        let mut out = Vec::with_capacity(planned.len());
        for &i in &deferred {
            out.push(Preview {
                object: self.intended_name(&planned[i], &planned),
                live: None,
                dry_run: None,
            });
        }
        let shared: &[Planned<'_>] = &planned;
        let futures = now
            .iter()
            .map(|&i| async move { self.preview_one(&shared[i]).await });
        let mut answers = futures_util::stream::iter(futures).buffered(CONCURRENCY);
        while let Some(answer) = answers.next().await {
            out.push(answer?);
        }
        out.sort_by_cached_key(|p| p.object.to_string());
        Ok(out)
    }

    async fn preview_one(&self, planned: &Planned<'_>) -> Result<Preview, ApplyError> {
        let (api, reference) = self.api(planned)?;
        let failed = |e: &kube::Error| ApplyError::DryRun {
            object: reference.to_string(),
            retryable: retryable(e),
            message: scrubbed(planned.body, api_message(e)),
        };
        let live = api.get_opt(&reference.name).await.map_err(|e| failed(&e))?;
        let params = PatchParams::apply(&self.field_manager).force().dry_run();
        let body = self.body_for(planned, &reference);
        let answer = api
            .patch(&reference.name, &params, &Patch::Apply(&body))
            .await
            .map_err(|e| failed(&e))?;
        let json = |o| serde_json::to_value(o).map_err(|e| ApplyError::Object(e.to_string()));
        Ok(Preview {
            live: live.map(json).transpose()?,
            dry_run: Some(json(answer)?),
            object: reference,
        })
    }
}
