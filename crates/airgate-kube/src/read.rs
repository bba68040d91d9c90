//! Reading what was applied: health (by list or one by one), and an
//! object as it is now.

use std::collections::{BTreeMap, HashMap};

use airgate_core::health::Health;
use airgate_core::object::ObjectRef;
use futures_util::StreamExt;
use kube::api::DynamicObject;

use super::*;

impl Applier {
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
    pub(crate) async fn health_group(
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
        // A page at a time, keeping only the verdicts asked for.
        let wanted: HashMap<&str, usize> = members
            .iter()
            .map(|&i| (objects[i].name.as_str(), i))
            .collect();
        let mut by_name: HashMap<&str, Health> = HashMap::new();
        let mut params = kube::api::ListParams::default()
            .labels(&self.selector())
            .limit(LIST_PAGE);
        loop {
            let page = api.list(&params).await.map_err(|e| ApplyError::Apply {
                object: reference.to_string(),
                message: format!("listing {}s: {}", reference.kind, api_message(&e)),
            })?;
            for o in &page.items {
                let name = o.metadata.name.as_deref().unwrap_or_default();
                if let Some((name, &i)) = wanted.get_key_value(name) {
                    // A list's items carry no kind: judged by the one asked for.
                    by_name.insert(name, judged(&objects[i], o));
                }
            }
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => break,
            }
        }
        let mut out = Vec::with_capacity(members.len());
        for i in members {
            let health = match by_name.remove(objects[i].name.as_str()) {
                Some(health) => health,
                // Not selected: someone took the labels away (drift the
                // watches report), or it is gone. Read it by name.
                None => self.health(&objects[i]).await?,
            };
            out.push((i, health));
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
}
