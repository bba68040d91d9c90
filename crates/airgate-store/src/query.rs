//! Questions a reviewer asks of the log, answered from its records alone
//! (so they hold offline, from an export, as well as from the store):
//! where an image came from and where it ran ([`trace`]), and which sync
//! last set a field of an object ([`blame`]).
//!
//! Both read records in log order and join the parts of a split record
//! first ([`syncs`]), so a large sync counts once.

use airgate_core::Digest;
use airgate_core::status::{RecordKind, RecordResult};
use serde::Serialize;

use crate::{Drift, ImageImport, ObjectChange, Store, StoreError, Stored, SyncRecord};

/// One record, with its parts joined: where it starts in the log.
#[derive(Clone, Debug)]
pub struct Joined {
    pub seq: i64,
    pub record: SyncRecord,
}

/// The records in order with split records joined (their lists
/// concatenated, the first part's seq).
pub fn syncs(records: &[Stored]) -> Vec<Joined> {
    let mut out: Vec<Joined> = Vec::new();
    for s in records {
        let continues = s.record.part.is_some_and(|p| p.index > 1);
        match out.last_mut() {
            Some(last) if continues && last.record.app == s.record.app => {
                let r = &mut last.record;
                r.objects.extend(s.record.objects.iter().cloned());
                r.images.extend(s.record.images.iter().cloned());
                r.drift.extend(s.record.drift.iter().cloned());
                r.trust.extend(s.record.trust.iter().cloned());
                r.imported.extend(s.record.imported.iter().cloned());
            }
            _ => out.push(Joined {
                seq: s.seq,
                record: SyncRecord {
                    part: None,
                    ..s.record.clone()
                },
            }),
        }
    }
    out
}

/// A record named in an answer: where it is and what it says in brief.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct At {
    pub seq: i64,
    pub time: i64,
    pub revision: String,
    pub author: String,
}

impl At {
    fn of(j: &Joined) -> At {
        At {
            seq: j.seq,
            time: j.record.started_at,
            revision: j.record.revision.clone(),
            author: j.record.author.email.clone(),
        }
    }
}

/// One App's run of an image: from the sync that deployed it to the one
/// that replaced it (`None`: still deployed at the log's end).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub app: String,
    pub image: String,
    pub since: At,
    pub until: Option<At>,
    /// The import the deploying sync named for it.
    pub import: Option<Digest>,
}

/// Where an image came from and where it ran.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    pub digest: Digest,
    /// The import records that list it, with their seq.
    pub imports: Vec<(i64, SyncRecord)>,
    pub deployments: Vec<Deployment>,
}

fn pinned_to<'a>(images: &'a [String], digest: &Digest) -> Option<&'a String> {
    let suffix = format!("@{digest}");
    images.iter().find(|i| i.ends_with(&suffix))
}

/// Every import of `digest` and every App's run of it, in log order.
pub fn trace(records: &[Stored], digest: &Digest) -> Trace {
    let mut imports = Vec::new();
    let mut deployments: Vec<Deployment> = Vec::new();
    // Per App: the index in `deployments` of its open run.
    let mut open: std::collections::HashMap<String, usize> = Default::default();
    for j in syncs(records) {
        let r = &j.record;
        match r.kind {
            RecordKind::Import if pinned_to(&r.images, digest).is_some() => {
                imports.push((j.seq, r.clone()));
            }
            RecordKind::Sync if r.result == RecordResult::Succeeded => {
                match (pinned_to(&r.images, digest), open.get(&r.app)) {
                    (Some(image), None) => {
                        open.insert(r.app.clone(), deployments.len());
                        deployments.push(Deployment {
                            app: r.app.clone(),
                            image: image.clone(),
                            since: At::of(&j),
                            until: None,
                            import: r
                                .imported
                                .iter()
                                .find(|i: &&ImageImport| &i.image == image)
                                .map(|i| i.import.clone()),
                        });
                    }
                    (None, Some(&at)) => {
                        deployments[at].until = Some(At::of(&j));
                        open.remove(&r.app);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Trace {
        digest: digest.clone(),
        imports,
        deployments,
    }
}

/// A sync that set a field, or a drift that took it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Setter {
    pub at: At,
    pub app: String,
    /// The signers of the commits applied, and the first `Ticket`
    /// trailer, when commit verification recorded them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    pub action: String,
    /// The paths of the change that matched.
    pub fields: Vec<String>,
}

/// Who set a field of an object, and who changed it since.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blame {
    pub object: String,
    pub field: Option<String>,
    /// The last sync that set it (created, configured or recreated the
    /// object with the field among its changes).
    pub set_by: Option<Setter>,
    /// Drift by another field manager since, oldest first.
    pub drift_since: Vec<(At, Drift)>,
}

/// Whether `path` is `field` or under it (`.spec.template` covers
/// `.spec.template.spec.containers[web].resources.limits.memory`). A
/// change names a field when either covers the other: a sync that set
/// `.spec` whole set `.spec.replicas` too.
fn covers(field: &str, path: &str) -> bool {
    path == field
        || path
            .strip_prefix(field)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

fn setter(j: &Joined, change: &ObjectChange, fields: Vec<String>) -> Setter {
    let trust = &j.record.trust;
    let mut signers: Vec<String> = trust
        .iter()
        .filter_map(|t| t.signer.as_ref().map(|s| s.principal.clone()))
        .collect();
    signers.sort();
    signers.dedup();
    Setter {
        at: At::of(j),
        app: j.record.app.clone(),
        signers,
        ticket: trust.iter().find_map(|t| {
            t.trailers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("Ticket"))
                .and_then(|(_, v)| v.first().cloned())
        }),
        action: change.action.clone(),
        fields,
    }
}

/// The last sync that set `field` (or, without one, changed anything) of
/// `object` (`Kind/namespace/name`), and the drift on it since.
pub fn blame(records: &[Stored], object: &str, field: Option<&str>) -> Blame {
    let mut set_by: Option<Setter> = None;
    let mut drift_since = Vec::new();
    for j in syncs(records) {
        for change in j.record.objects.iter().filter(|c| c.object == object) {
            let fields: Vec<String> = match field {
                None => change.fields.clone(),
                Some(f) => change
                    .fields
                    .iter()
                    .filter(|p| covers(f, p) || covers(p, f))
                    .cloned()
                    .collect(),
            };
            let touched = match field {
                None => change.action != "unchanged",
                Some(_) => !fields.is_empty(),
            };
            if touched {
                set_by = Some(setter(&j, change, fields));
                drift_since.clear();
            }
        }
        for d in j.record.drift.iter().filter(|d| d.object == object) {
            let hit = match field {
                None => true,
                Some(f) => {
                    d.fields.is_empty() || d.fields.iter().any(|p| covers(f, p) || covers(p, f))
                }
            };
            if hit {
                drift_since.push((At::of(&j), d.clone()));
            }
        }
    }
    Blame {
        object: object.to_string(),
        field: field.map(String::from),
        set_by,
        drift_since,
    }
}

impl Store {
    /// [`trace`] over the records that can answer it: those naming the
    /// digest (from the index), and each deploying App's records from its
    /// first deployment on (to see what replaced it).
    pub fn trace(&self, digest: &Digest) -> Result<Trace, StoreError> {
        let mut records = self.indexed(&crate::image_key(digest.as_str()))?;
        let mut firsts: std::collections::BTreeMap<String, i64> = Default::default();
        for s in &records {
            if s.record.kind == RecordKind::Sync {
                firsts.entry(s.record.app.clone()).or_insert(s.seq);
            }
        }
        for (app, seq) in firsts {
            records.extend(self.app_from(&app, seq)?);
        }
        records.sort_by_key(|s| s.seq);
        records.dedup_by_key(|s| s.seq);
        Ok(trace(&records, digest))
    }

    /// [`blame`] over the records naming `object` (from the index), newest
    /// first: the answer over the last N of them is the answer over all
    /// once the setter is among them (what came before it does not count),
    /// so N grows fourfold from 64 until it is, or all were read.
    pub fn blame(&self, object: &str, field: Option<&str>) -> Result<Blame, StoreError> {
        let seqs = self.indexed_seqs(&crate::object_key(object))?;
        let mut take = 64;
        loop {
            let from = seqs.len().saturating_sub(take);
            let answer = blame(&self.load(&seqs[from..])?, object, field);
            if answer.set_by.is_some() || from == 0 {
                return Ok(answer);
            }
            take = take.saturating_mul(4);
        }
    }
}

#[cfg(test)]
mod tests;
