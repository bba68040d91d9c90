//! What the web UI's pages show, as plain data: pure functions from Apps,
//! records and observed objects to rows the templates print. No I/O here,
//! so every decision a page makes (what a row says, what a filter keeps,
//! where an object hangs in the owner tree) has a table test.

use std::collections::{BTreeMap, HashMap, HashSet};

use airgate_core::health::Health;
use airgate_core::object::ObjectRef;
use airgate_core::status::{ConditionStatus, ConditionType, RecordKind};
use airgate_kube::Observed;
use airgate_kube::app::{App, AppStatus};
use airgate_store::Stored;
use serde::Serialize;

/// One App in the list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppRow {
    pub namespace: String,
    pub name: String,
    /// The applied revision, short.
    pub revision: String,
    /// `True`, `False` or `Unknown`.
    pub ready: String,
    pub reason: String,
    pub message: String,
    pub frozen: bool,
    pub drifted: bool,
    pub suspended: bool,
    /// When the last sync ended (RFC 3339), empty when it never synced.
    pub last_sync: String,
    /// `ready`, `progressing`, `failed`, `suspended`: the row's colour
    /// and what the state filter matches.
    pub state: &'static str,
}

/// Short commit ids, as git prints them.
pub fn short(revision: &str) -> String {
    revision.chars().take(12).collect()
}

impl AppRow {
    pub fn of(app: &App) -> AppRow {
        let status = app.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == ConditionType::Ready.as_str());
        // Without a Ready condition (a first sync held by a freeze), the
        // condition that says why.
        let why = ready.or_else(|| status.conditions.iter().find(|c| c.status == "True"));
        let ready_status = ready.map_or("Unknown", |c| c.status.as_str()).to_string();
        let state = if app.spec.suspend {
            "suspended"
        } else if ready_status == ConditionStatus::True.as_str() {
            "ready"
        } else if ready_status == ConditionStatus::False.as_str() {
            "failed"
        } else {
            "progressing"
        };
        AppRow {
            namespace: app.metadata.namespace.clone().unwrap_or_default(),
            name: app.metadata.name.clone().unwrap_or_default(),
            revision: status
                .last_applied_revision
                .as_deref()
                .map(short)
                .unwrap_or_default(),
            ready: ready_status,
            reason: why.map(|c| c.reason.clone()).unwrap_or_default(),
            message: why.map(|c| c.message.clone()).unwrap_or_default(),
            frozen: status.is(ConditionType::Frozen, ConditionStatus::True),
            drifted: status.is(ConditionType::Drifted, ConditionStatus::True),
            suspended: app.spec.suspend,
            last_sync: last_sync(&status),
            state,
        }
    }
}

fn last_sync(status: &AppStatus) -> String {
    status
        .history
        .iter()
        .find(|h| h.kind == RecordKind::Sync.as_str())
        .map(|h| h.time.clone())
        .unwrap_or_default()
}

/// The Apps list's filter, from the query string.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(default)]
pub struct Filter {
    /// Only this namespace (empty: all the user may see).
    pub namespace: String,
    /// A substring of the name, the reason or the message.
    pub q: String,
    /// One of [`AppRow::state`]'s words, `frozen` or `drifted`.
    pub state: String,
}

impl Filter {
    pub fn keeps(&self, row: &AppRow) -> bool {
        let q = self.q.trim().to_lowercase();
        (self.namespace.is_empty() || row.namespace == self.namespace)
            && (q.is_empty()
                || row.name.to_lowercase().contains(&q)
                || row.reason.to_lowercase().contains(&q)
                || row.message.to_lowercase().contains(&q))
            && match self.state.as_str() {
                "" => true,
                "frozen" => row.frozen,
                "drifted" => row.drifted,
                state => row.state == state,
            }
    }
}

/// One object of an App's inventory, or something one of them owns, at
/// its depth in the owner tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TreeRow {
    pub depth: usize,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// `Ready`, `Progressing` or `Failed`.
    pub health: &'static str,
    pub message: String,
    /// Whether it is in the inventory (else: made by an object that is).
    pub applied: bool,
}

fn health_words(h: &Health) -> (&'static str, String) {
    match h {
        Health::Ready => ("Ready", String::new()),
        Health::Progressing(m) => ("Progressing", m.clone()),
        Health::Failed(m) => ("Failed", m.clone()),
    }
}

/// The owner tree of an App's objects: `inventory[i]` observed as
/// `observed[i]`, and `children` (objects in the same namespaces that
/// have owners) hung under the object whose UID they name, at any depth.
/// Inventory objects owned by another inventory object hang under it too;
/// children whose owners are not in the tree are left out (they are not
/// the App's). Siblings are in inventory order, then by kind and name.
pub fn tree(
    inventory: &[ObjectRef],
    observed: &[Observed],
    children: &[(ObjectRef, Observed)],
) -> Vec<TreeRow> {
    struct Node<'a> {
        reference: &'a ObjectRef,
        observed: &'a Observed,
        applied: bool,
    }
    let mut nodes: Vec<Node> = inventory
        .iter()
        .zip(observed)
        .map(|(reference, observed)| Node {
            reference,
            observed,
            applied: true,
        })
        .collect();
    let mut sorted: Vec<&(ObjectRef, Observed)> = children.iter().collect();
    sorted.sort_by(|a, b| (&a.0.kind, &a.0.name).cmp(&(&b.0.kind, &b.0.name)));
    nodes.extend(sorted.into_iter().map(|(reference, observed)| Node {
        reference,
        observed,
        applied: false,
    }));
    let by_uid: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.observed.uid.as_deref().map(|u| (u, i)))
        .collect();
    let parent: Vec<Option<usize>> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            n.observed
                .owners
                .iter()
                .filter_map(|u| by_uid.get(u.as_str()).copied())
                .find(|&p| p != i)
        })
        .collect();
    let mut kids: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut roots = Vec::new();
    for (i, p) in parent.iter().enumerate() {
        match p {
            Some(p) => kids.entry(*p).or_default().push(i),
            None if nodes[i].applied => roots.push(i),
            None => {}
        }
    }
    let mut out = Vec::with_capacity(nodes.len());
    let mut seen = HashSet::new();
    let mut stack: Vec<(usize, usize)> = roots.into_iter().rev().map(|i| (i, 0)).collect();
    while let Some((i, depth)) = stack.pop() {
        // An owner cycle (the cluster forbids them; a hostile reader
        // could answer one) is cut rather than followed.
        if !seen.insert(i) {
            continue;
        }
        let n = &nodes[i];
        let (health, message) = health_words(&n.observed.health);
        out.push(TreeRow {
            depth,
            kind: n.reference.kind.clone(),
            namespace: n.reference.namespace.clone().unwrap_or_default(),
            name: n.reference.name.clone(),
            health,
            message,
            applied: n.applied,
        });
        for &k in kids.get(&i).into_iter().flatten().rev() {
            stack.push((k, depth + 1));
        }
    }
    out
}

/// One record (sync, drift, health failure, import) as the pages show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordRow {
    pub seq: i64,
    pub app: String,
    pub kind: &'static str,
    pub result: &'static str,
    pub revision: String,
    /// RFC 3339, UTC.
    pub time: String,
    pub duration_ms: u64,
    pub author: String,
    pub message: String,
    pub error: String,
    /// Who signed the commits applied (principal and key), deduplicated.
    pub signers: Vec<String>,
    /// `Ticket: ...` and the other recorded trailers.
    pub trailers: Vec<String>,
    pub changes: Vec<ChangeRow>,
    pub images: Vec<ImageRow>,
    pub drift: Vec<DriftRow>,
    pub freeze_override: String,
    /// For an import: the bundle's signer key and where it was pushed.
    pub import: Option<ImportRow>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChangeRow {
    pub object: String,
    pub action: String,
    pub fields: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImageRow {
    pub image: String,
    /// The import that brought it, short; empty when the record names none.
    pub import: String,
    pub signed_by: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DriftRow {
    pub object: String,
    pub field_manager: String,
    pub fields: Vec<String>,
    pub corrected: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImportRow {
    pub id: String,
    pub inventory: String,
    pub signed_by: String,
    pub target: String,
    pub pushed_by: String,
    pub pushed_at: String,
    pub images: Vec<String>,
}

/// Seconds since the epoch as RFC 3339 (UTC, to the second).
pub fn time(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn digest_short(d: &impl std::fmt::Display) -> String {
    d.to_string().chars().take(19).collect()
}

impl RecordRow {
    pub fn of(stored: &Stored) -> RecordRow {
        let r = &stored.record;
        let mut signers: Vec<String> = r
            .trust
            .iter()
            .filter_map(|t| t.signer.as_ref())
            .map(|s| format!("{} ({} {})", s.principal, s.key_type, s.fingerprint))
            .collect();
        signers.dedup();
        let mut trailers: Vec<String> = r
            .trust
            .iter()
            .flat_map(|t| &t.trailers)
            .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}: {v}")))
            .collect();
        trailers.sort();
        trailers.dedup();
        let provenance: HashMap<&str, _> =
            r.imported.iter().map(|i| (i.image.as_str(), i)).collect();
        RecordRow {
            seq: stored.seq,
            app: r.app.clone(),
            kind: r.kind.as_str(),
            result: r.result.as_str(),
            revision: short(&r.revision),
            time: time(r.started_at),
            duration_ms: r.duration_ms,
            author: if r.author.email.is_empty() {
                r.author.name.clone()
            } else {
                format!("{} <{}>", r.author.name, r.author.email)
            },
            message: r.message.lines().next().unwrap_or_default().to_string(),
            error: r.error.clone().unwrap_or_default(),
            signers,
            trailers,
            changes: r
                .objects
                .iter()
                .filter(|o| o.action != "unchanged")
                .map(|o| ChangeRow {
                    object: o.object.clone(),
                    action: o.action.clone(),
                    fields: o.fields.clone(),
                })
                .collect(),
            images: if r.import.is_some() {
                Vec::new()
            } else {
                r.images
                    .iter()
                    .map(|image| {
                        let i = provenance.get(image.as_str());
                        ImageRow {
                            image: image.clone(),
                            import: i.map(|i| digest_short(&i.import)).unwrap_or_default(),
                            signed_by: i
                                .and_then(|i| i.signed_by.as_ref())
                                .map(digest_short)
                                .unwrap_or_default(),
                        }
                    })
                    .collect()
            },
            drift: r
                .drift
                .iter()
                .map(|d| DriftRow {
                    object: d.object.clone(),
                    field_manager: d.field_manager.clone(),
                    fields: d.fields.clone(),
                    corrected: d.corrected,
                })
                .collect(),
            freeze_override: r.freeze_override.clone().unwrap_or_default(),
            import: r.import.as_ref().map(|i| ImportRow {
                id: digest_short(&i.id),
                inventory: digest_short(&i.inventory),
                signed_by: i.signed_by.as_ref().map(digest_short).unwrap_or_default(),
                target: i.target.clone(),
                pushed_by: i.pushed_by.clone(),
                pushed_at: time(i.pushed_at),
                images: r.images.clone(),
            }),
        }
    }
}

/// A freeze window of the App's spec, in words.
pub fn freeze_window(w: &airgate_kube::app::FreezeWindow) -> String {
    let zone = w.time_zone.as_deref().unwrap_or("UTC");
    match (&w.schedule, &w.from, &w.to) {
        (Some(s), _, _) => format!(
            "every `{s}` for {} ({zone})",
            w.duration.as_deref().unwrap_or("?")
        ),
        (None, Some(from), Some(to)) => format!("from {from} to {to} ({zone})"),
        _ => "(incomplete window)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(kind: &str, name: &str) -> ObjectRef {
        ObjectRef {
            api_version: "v1".into(),
            kind: kind.into(),
            namespace: Some("ns".into()),
            name: name.into(),
        }
    }

    fn seen(uid: &str, owners: &[&str], health: Health) -> Observed {
        Observed {
            health,
            uid: Some(uid.into()),
            owners: owners.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn shape(rows: &[TreeRow]) -> Vec<String> {
        rows.iter()
            .map(|r| format!("{}{} {}", "  ".repeat(r.depth), r.kind, r.name))
            .collect()
    }

    #[test]
    fn tree_hangs_children_under_their_owners_and_drops_strangers() {
        let inventory = [obj("Deployment", "web"), obj("ConfigMap", "conf")];
        let observed = [
            seen("d1", &[], Health::Ready),
            seen("c1", &[], Health::Ready),
        ];
        let children = [
            (obj("Pod", "web-1-a"), seen("p1", &["r1"], Health::Ready)),
            (
                obj("ReplicaSet", "web-1"),
                seen("r1", &["d1"], Health::Ready),
            ),
            // Another team's pod in the same namespace: not the App's.
            (obj("Pod", "other"), seen("p9", &["x9"], Health::Ready)),
        ];
        let rows = tree(&inventory, &observed, &children);
        assert_eq!(
            shape(&rows),
            [
                "Deployment web",
                "  ReplicaSet web-1",
                "    Pod web-1-a",
                "ConfigMap conf"
            ]
        );
        assert!(rows[0].applied && !rows[1].applied);
    }

    #[test]
    fn tree_cuts_an_owner_cycle_and_keeps_missing_objects() {
        let inventory = [obj("ConfigMap", "a"), obj("ConfigMap", "gone")];
        let observed = [
            seen("a", &[], Health::Ready),
            Observed {
                health: Health::Progressing("not found".into()),
                uid: None,
                owners: vec![],
            },
        ];
        let children = [
            (obj("Pod", "x"), seen("x", &["y"], Health::Ready)),
            (obj("Pod", "y"), seen("y", &["x"], Health::Ready)),
        ];
        let rows = tree(&inventory, &observed, &children);
        assert_eq!(shape(&rows), ["ConfigMap a", "ConfigMap gone"]);
        assert_eq!(rows[1].health, "Progressing");
        assert_eq!(rows[1].message, "not found");
    }

    fn row(name: &str, state: &'static str, frozen: bool) -> AppRow {
        AppRow {
            namespace: "team-a".into(),
            name: name.into(),
            revision: String::new(),
            ready: String::new(),
            reason: "Succeeded".into(),
            message: String::new(),
            frozen,
            drifted: false,
            suspended: false,
            last_sync: String::new(),
            state,
        }
    }

    #[test]
    fn filter_by_namespace_text_and_state() {
        let cases = [
            (Filter::default(), row("web", "ready", false), true),
            (
                Filter {
                    namespace: "team-b".into(),
                    ..Filter::default()
                },
                row("web", "ready", false),
                false,
            ),
            (
                Filter {
                    q: "WE".into(),
                    ..Filter::default()
                },
                row("web", "ready", false),
                true,
            ),
            (
                Filter {
                    q: "succeeded".into(),
                    ..Filter::default()
                },
                row("x", "ready", false),
                true,
            ),
            (
                Filter {
                    state: "failed".into(),
                    ..Filter::default()
                },
                row("web", "ready", false),
                false,
            ),
            (
                Filter {
                    state: "frozen".into(),
                    ..Filter::default()
                },
                row("web", "ready", true),
                true,
            ),
        ];
        for (filter, row, keeps) in cases {
            assert_eq!(filter.keeps(&row), keeps, "{filter:?} {row:?}");
        }
    }

    #[test]
    fn app_row_reads_the_ready_condition_and_suspension() {
        let app: App = serde_json::from_value(serde_json::json!({
            "apiVersion": "airgate.dev/v1alpha1", "kind": "App",
            "metadata": {"name": "web", "namespace": "team-a"},
            "spec": {"source": {"url": "https://git/x", "ref": {"branch": "main"}, "path": "."},
                     "serviceAccountName": "sa", "suspend": true},
            "status": {"lastAppliedRevision": "0123456789abcdef0123",
                       "conditions": [
                         {"type": "Ready", "status": "False", "reason": "SyncFailed", "message": "m", "lastTransitionTime": "t"},
                         {"type": "Drifted", "status": "True", "reason": "DriftReported", "message": "", "lastTransitionTime": "t"}]}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let row = AppRow::of(&app);
        assert_eq!(row.revision, "0123456789ab");
        assert_eq!(
            (row.ready.as_str(), row.reason.as_str()),
            ("False", "SyncFailed")
        );
        assert_eq!(row.state, "suspended");
        assert!(row.drifted && !row.frozen);
    }
}
