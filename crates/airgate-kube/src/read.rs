//! Reading what was applied: health (by list or one by one), where each
//! object sits among owners (the web UI's tree), and an object as it is
//! now.

use std::collections::{BTreeMap, HashMap};

use airgate_core::health::Health;
use airgate_core::object::ObjectRef;
use futures_util::StreamExt;
use kube::api::DynamicObject;

use super::*;

/// An applied object as the cluster shows it now: its health, its UID and
/// the UIDs of its owners (the web UI groups objects by them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub health: Health,
    /// `None` when the object is not there.
    pub uid: Option<String>,
    pub owners: Vec<String>,
}

impl Observed {
    fn of(reference: &ObjectRef, obj: &DynamicObject) -> Observed {
        Observed {
            health: judged(reference, obj),
            ..Observed::of_metadata(&obj.metadata)
        }
    }

    /// An object of a kind without a status ([`METADATA_ONLY`]): Ready
    /// because it exists.
    fn of_metadata(meta: &kube::api::ObjectMeta) -> Observed {
        Observed {
            health: Health::Ready,
            uid: meta.uid.clone(),
            owners: meta
                .owner_references
                .iter()
                .flatten()
                .map(|o| o.uid.clone())
                .collect(),
        }
    }

    fn missing() -> Observed {
        Observed {
            health: Health::Progressing("not found".to_string()),
            uid: None,
            owners: Vec::new(),
        }
    }
}

/// Core kinds that have no status: existing is being Ready, so they are
/// read as metadata only (a Secret's data never reaches the reader, and a
/// list of thousands of ConfigMaps costs a fraction of the bytes).
/// `(group, kind)`; custom resources are never here, since some keep a
/// status without the subresource.
const METADATA_ONLY: &[(&str, &str)] = &[
    ("", "ConfigMap"),
    ("", "Secret"),
    ("", "ServiceAccount"),
    ("rbac.authorization.k8s.io", "Role"),
    ("rbac.authorization.k8s.io", "RoleBinding"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
];

fn metadata_only(reference: &ObjectRef) -> bool {
    METADATA_ONLY.contains(&(reference.group(), reference.kind.as_str()))
}

/// The kinds whose objects workloads own, listed to show them under
/// their owners: `(apiVersion, kind)`.
pub const CHILD_KINDS: &[(&str, &str)] = &[("apps/v1", "ReplicaSet"), ("v1", "Pod")];

impl Applier {
    /// The health of each of `objects`, read from the cluster now, in order.
    ///
    /// Objects of one kind in one namespace are read with one list (selected
    /// by this Applier's labels) when there are more than [`LIST_ABOVE`] of
    /// them, one by one otherwise ([`CONCURRENCY`] reads at once): a rollout
    /// of hundreds of Deployments costs a few lists per look, not hundreds of
    /// reads.
    pub async fn health_of(&self, objects: &[ObjectRef]) -> Result<Vec<Health>, ApplyError> {
        Ok(self
            .observe(objects)
            .await?
            .into_iter()
            .map(|o| o.health)
            .collect())
    }

    /// [`Applier::health_of`], with each object's UID and owners.
    pub async fn observe(&self, objects: &[ObjectRef]) -> Result<Vec<Observed>, ApplyError> {
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
            .map(|members| self.observe_group(objects, members))
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

    /// `objects[i]` observed, for each `i` in `members` (one kind, one
    /// namespace).
    async fn observe_group(
        &self,
        objects: &[ObjectRef],
        members: Vec<usize>,
    ) -> Result<Vec<(usize, Observed)>, ApplyError> {
        if let [i] = members[..] {
            return Ok(vec![(i, self.observe_one(&objects[i]).await?)]);
        }
        let first = &objects[members[0]];
        let planned = self.located(first).await?;
        let (api, reference) = self.api(&planned)?;
        // A page at a time, keeping only the verdicts asked for.
        let wanted: HashMap<&str, usize> = members
            .iter()
            .map(|&i| (objects[i].name.as_str(), i))
            .collect();
        let mut by_name: HashMap<&str, Observed> = HashMap::new();
        let mut params = kube::api::ListParams::default()
            .labels(&self.selector())
            .limit(LIST_PAGE);
        let listing = |e: kube::Error| ApplyError::Apply {
            object: reference.to_string(),
            message: format!("listing {}s: {}", reference.kind, api_message(&e)),
        };
        let asked = |meta: &kube::api::ObjectMeta| {
            wanted
                .get_key_value(meta.name.as_deref().unwrap_or_default())
                .map(|(name, _)| *name)
        };
        loop {
            let continue_ = if metadata_only(&reference) {
                let page = api.list_metadata(&params).await.map_err(listing)?;
                for o in &page.items {
                    if let Some(name) = asked(&o.metadata) {
                        by_name.insert(name, Observed::of_metadata(&o.metadata));
                    }
                }
                page.metadata.continue_
            } else {
                let page = api.list(&params).await.map_err(listing)?;
                for o in &page.items {
                    if let Some(name) = asked(&o.metadata) {
                        // A list's items carry no kind: judged by the one
                        // asked for (one kind a group).
                        by_name.insert(name, Observed::of(&reference, o));
                    }
                }
                page.metadata.continue_
            };
            match continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => break,
            }
        }
        let mut out = Vec::with_capacity(members.len());
        for i in members {
            let observed = match by_name.remove(objects[i].name.as_str()) {
                Some(observed) => observed,
                // Not selected: someone took the labels away (drift the
                // watches report), or it is gone. Read it by name.
                None => self.observe_one(&objects[i]).await?,
            };
            out.push((i, observed));
        }
        Ok(out)
    }

    /// `reference` with where its kind lives in the API, for a read.
    pub(crate) async fn located(
        &self,
        reference: &ObjectRef,
    ) -> Result<Planned<'static>, ApplyError> {
        Ok(Planned {
            reference: reference.clone(),
            body: &NO_BODY,
            resource: Some(
                self.resource(reference)
                    .await
                    .map_err(|e| unknown_kind(reference, &e))?,
            ),
            recreate: false,
            dry_run_version: None,
        })
    }

    /// The health of an applied object, read from the cluster now.
    pub async fn health(&self, reference: &ObjectRef) -> Result<Health, ApplyError> {
        Ok(self.observe_one(reference).await?.health)
    }

    async fn observe_one(&self, reference: &ObjectRef) -> Result<Observed, ApplyError> {
        let planned = self.located(reference).await?;
        let (api, reference) = self.api(&planned)?;
        let found = if metadata_only(&reference) {
            api.get_metadata_opt(&reference.name)
                .await
                .map(|o| o.map(|o| Observed::of_metadata(&o.metadata)))
        } else {
            api.get_opt(&reference.name)
                .await
                .map(|o| o.map(|o| Observed::of(&reference, &o)))
        };
        match found {
            Ok(observed) => Ok(observed.unwrap_or_else(Observed::missing)),
            Err(e) => Err(ApplyError::Apply {
                object: reference.to_string(),
                message: api_message(&e),
            }),
        }
    }

    /// The objects of [`CHILD_KINDS`] in `namespace` that have an owner:
    /// what workloads made (ReplicaSets, Pods), for the caller to hang
    /// under the objects it knows by UID. A kind this Applier may not list
    /// gives nothing rather than an error: the tree is then shallower.
    pub async fn children(&self, namespace: &str) -> Vec<(ObjectRef, Observed)> {
        let mut out = Vec::new();
        for (api_version, kind) in CHILD_KINDS {
            let probe = ObjectRef {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
                namespace: Some(namespace.to_string()),
                name: String::new(),
            };
            let Ok(planned) = self.located(&probe).await else {
                continue;
            };
            let Ok((api, _)) = self.api(&planned) else {
                continue;
            };
            let mut params = kube::api::ListParams::default().limit(LIST_PAGE);
            while let Ok(page) = api.list(&params).await {
                for o in &page.items {
                    let observed = Observed::of(&probe, o);
                    if observed.owners.is_empty() {
                        continue;
                    }
                    let reference = ObjectRef {
                        name: o.metadata.name.clone().unwrap_or_default(),
                        ..probe.clone()
                    };
                    out.push((reference, observed));
                }
                match page.metadata.continue_ {
                    Some(token) if !token.is_empty() => params = params.continue_token(&token),
                    _ => break,
                }
            }
        }
        out
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
}
