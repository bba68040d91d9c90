//! Whose an object is, before it is applied over and before it is
//! deleted (see `airgate_core::ownership`): existing objects read as
//! metadata only, and prune.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use airgate_core::object::ObjectRef;
use airgate_core::ownership::{self, AppId, Claim};
use futures_util::StreamExt;

use super::*;

impl Applier {
    /// Whose the live object `reference` is, as seen by `app`.
    pub(crate) fn claim(
        &self,
        app: &AppId,
        reference: &ObjectRef,
        meta: &kube::api::ObjectMeta,
    ) -> Claim {
        ownership::claim(
            app,
            reference,
            meta.annotations.as_ref().unwrap_or(&Default::default()),
            meta.labels.as_ref().unwrap_or(&Default::default()),
        )
    }

    /// Refuses, before anything is written, to apply over an object of
    /// `planned[i]` for `i` in `which` that exists (its dry-run answered
    /// with a version), is not `vouched` for, and is not this App's (see
    /// [`Applier::with_owner`]).
    /// Objects of one kind in one namespace are read with one metadata list
    /// of this App's objects when there are more than [`LIST_ABOVE`] of
    /// them, and any the list does not show by name; never their content.
    pub(crate) async fn check_ownership(
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
            .map(|members| self.claims_of(app, members));
        let mut read = futures_util::stream::iter(futures).buffer_unordered(CONCURRENCY);
        let mut refused = Vec::new();
        while let Some(group) = read.next().await {
            for (reference, claim) in group? {
                let Some(claim) = claim else { continue };
                if let Some(why) = claim.refusal(app, &reference) {
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

    /// Whose each of `members` is (one kind, one namespace, named as the
    /// apply names them), `None` for those that do not exist. A list of the
    /// App's objects is read a page at a time and only claims are kept:
    /// an App of 50,000 objects never holds all their metadata at once.
    pub(crate) async fn claims_of(
        &self,
        app: &AppId,
        members: Vec<ObjectRef>,
    ) -> Result<Vec<(ObjectRef, Option<Claim>)>, ApplyError> {
        let planned = self.located(&members[0]).await?;
        let (api, first) = self.api(&planned)?;
        let fail = |e: kube::Error| ApplyError::Apply {
            object: first.to_string(),
            message: format!("reading who owns it: {}", api_message(&e)),
        };
        let mut found: HashMap<&str, Claim> = HashMap::new();
        if members.len() > LIST_ABOVE {
            let wanted: HashMap<&str, &ObjectRef> =
                members.iter().map(|m| (m.name.as_str(), m)).collect();
            let mut params = kube::api::ListParams::default()
                .labels(&self.selector())
                .limit(LIST_PAGE);
            loop {
                let page = api.list_metadata(&params).await.map_err(fail)?;
                for item in &page.items {
                    let name = item.metadata.name.as_deref().unwrap_or_default();
                    if let Some((name, reference)) = wanted.get_key_value(name) {
                        found.insert(name, self.claim(app, reference, &item.metadata));
                    }
                }
                match page.metadata.continue_ {
                    Some(token) if !token.is_empty() => params = params.continue_token(&token),
                    _ => break,
                }
            }
        }
        let mut out = Vec::with_capacity(members.len());
        for reference in &members {
            let claim = match found.remove(reference.name.as_str()) {
                Some(claim) => Some(claim),
                None => api
                    .get_metadata_opt(&reference.name)
                    .await
                    .map_err(fail)?
                    .map(|m| self.claim(app, reference, &m.metadata)),
            };
            out.push((reference.clone(), claim));
        }
        Ok(out)
    }

    /// Deletes `stale` objects (from the inventory, see
    /// `Inventory::stale`), except those annotated `airgate.dev/prune:
    /// disabled` ([`Action::Skipped`]) and those that do not carry this
    /// App's ownership mark and labels when they are read just before the
    /// delete ([`Action::Disowned`]). Objects already gone are skipped.
    /// Objects inside cluster definitions go first, [`CONCURRENCY`] at a
    /// time; Namespaces and CRDs last, one by one. The change set keeps
    /// `stale`'s order.
    /// Never deletes an object of `keep`, however `stale` spells it (an
    /// entry written ahead before its kind was known may name it with a
    /// namespace its kind does not have).
    pub async fn prune(
        &self,
        stale: &[ObjectRef],
        keep: &airgate_core::inventory::Inventory,
    ) -> Result<ChangeSet, ApplyError> {
        // What lives in the cluster's definitions first, CONCURRENCY at a
        // time; then the definitions (Namespaces, CRDs), one by one, last.
        let (inside, definitions): (Vec<&ObjectRef>, Vec<&ObjectRef>) =
            stale.iter().partition(|r| !r.is_cluster_definition());
        // By index: a closure over references would keep the stream from
        // being provably Send (see stage two of the apply).
        let inside = &inside;
        let futures = (0..inside.len())
            .map(move |i| async move { (i, self.prune_one(inside[i], keep).await) });
        let mut done: Vec<(usize, Option<Change>)> = Vec::with_capacity(inside.len());
        let mut pruning = futures_util::stream::iter(futures).buffer_unordered(CONCURRENCY);
        while let Some((i, result)) = pruning.next().await {
            done.push((i, result?));
        }
        done.sort_by_key(|(i, _)| *i);
        let mut changes = ChangeSet::default();
        changes
            .changes
            .extend(done.into_iter().filter_map(|(_, c)| c));
        for reference in definitions {
            changes
                .changes
                .extend(self.prune_one(reference, keep).await?);
        }
        Ok(changes)
    }

    /// Prunes one object (see [`Applier::prune`]); `None` when there was
    /// nothing to do (gone already, its kind gone, or kept).
    async fn prune_one(
        &self,
        reference: &ObjectRef,
        keep: &airgate_core::inventory::Inventory,
    ) -> Result<Option<Change>, ApplyError> {
        let Ok(planned) = self.located(reference).await else {
            // The kind itself is gone (its CRD was pruned): so is the object.
            return Ok(None);
        };
        let (api, reference) = self.api(&planned)?;
        if keep.entries.contains(&reference) {
            return Ok(None);
        }
        let fail = |e: kube::Error| ApplyError::Apply {
            object: reference.to_string(),
            message: api_message(&e),
        };
        let Some(live) = api.get_opt(&reference.name).await.map_err(fail)? else {
            return Ok(None);
        };
        let annotations = live.metadata.annotations.as_ref();
        let opted_out = airgate_core::inventory::kept(|k| {
            annotations.and_then(|a| a.get(k)).map(String::as_str)
        });
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
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
                // Replaced since it was read: that object is not ours.
                Err(kube::Error::Api(s)) if s.code == 409 => Action::Disowned,
                Err(e) => return Err(fail(e)),
            }
        };
        Ok(Some(Change {
            object: reference,
            action,
            owned: BTreeSet::new(),
            resource_version: None,
            health: None,
        }))
    }
}
