//! The App resource (`apps.airgate.dev`, `v1alpha1`): one Git path, the
//! ServiceAccount every apply runs as, and the policy its images must meet.
//! The types are the source of the CRD (`App::crd()`), so the schema the API
//! server enforces and the code that reads it cannot drift apart.

use std::time::Duration;

use airgate_core::inventory::Inventory;
use airgate_core::object::ObjectRef;
use airgate_core::source::GitRef;
pub use airgate_core::status::{ConditionStatus, ConditionType, Reason, RecordKind, RecordResult};
use airgate_core::trust::VerifyMode;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "airgate.dev",
    version = "v1alpha1",
    kind = "App",
    namespaced,
    status = "AppStatus",
    shortname = "agapp",
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.lastAppliedRevision"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Frozen","type":"string","jsonPath":".status.conditions[?(@.type==\"Frozen\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AppSpec {
    pub source: AppSource,
    /// How often to look at Git again: `30s`, `1m`, `1h`.
    #[serde(default = "default_interval")]
    pub interval: String,
    /// The ServiceAccount (in the App's namespace) every request of a sync runs as.
    pub service_account_name: String,
    /// Delete what left Git (from the App's inventory only).
    #[serde(default)]
    pub prune: bool,
    #[serde(default)]
    pub drift: DriftMode,
    #[serde(default)]
    pub suspend: bool,
    #[serde(default)]
    pub policy: AppPolicy,
    /// How long applied objects may take to become healthy before the App
    /// is Stalled: `30s`, `5m`.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Change freezes: windows in which no new revision is applied and
    /// nothing is pruned (a commit with the trailer `Freeze-Override:
    /// <reason>` is the only exception).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freeze: Vec<FreezeWindow>,
    /// What drift does during a freeze: `correct` (default) or `warn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_drift: Option<DriftMode>,
}

/// One freeze window: recurring (`schedule`, `duration`, `timeZone`) or
/// one-off (`from`, `to`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FreezeWindow {
    /// When a window starts: cron, five fields (`0 18 * * 5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// How long it lasts: `62h`, `90m`, `2d` (at most 31 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// The IANA time zone the schedule is read in (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// A one-off window's start, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// A one-off window's end, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

fn default_interval() -> String {
    "1m".to_string()
}

fn default_timeout() -> String {
    "5m".to_string()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppSource {
    /// `https://...` or `file://...`
    pub url: String,
    #[serde(rename = "ref")]
    pub git_ref: SourceRef,
    /// Directory in the repository; empty for its root.
    #[serde(default)]
    pub path: String,
    /// A Secret in the App's namespace with `username`, `password` and
    /// `ca.crt` (each optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// Commit trust: the signatures (and trailers) a revision needs before
    /// anything of it is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<SourceVerify>,
    /// Render a Helm chart (from the internal registry, or a directory of
    /// this source) with values files read from `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmSource>,
}

/// `spec.source.helm`: a chart, rendered offline with `helm template`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmSource {
    /// `oci://REGISTRY/REPOSITORY` (pulled with `secretRef`), or
    /// `{path: DIR}`, a chart directory of the Git source.
    #[schemars(schema_with = "any_schema")]
    pub chart: serde_json::Value,
    /// The chart's version (for a registry chart; or `digest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The chart's manifest digest, `sha256:...`: what
    /// `policy.requireDigests` requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Values files, relative to `spec.source.path`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_files: Vec<String>,
    /// Inline values, applied last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "object_schema")]
    pub values: Option<serde_json::Value>,
    /// Default: the App's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_name: Option<String>,
    /// A Secret in the App's namespace, read as the App's ServiceAccount,
    /// with `username`, `password` and `ca.crt` (each optional) for the
    /// chart's registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

fn any_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"x-kubernetes-preserve-unknown-fields": true})
}

fn object_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

/// `spec.source.verify`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceVerify {
    /// `history` (default): every commit between the last applied revision
    /// and the new one; `head`: only the commit applied.
    #[serde(default)]
    #[schemars(schema_with = "verify_mode_schema")]
    pub mode: VerifyMode,
    /// Who may sign.
    pub signers: SignersRef,
    /// The verified range must carry valid signatures of at least this
    /// many distinct allowed signers (needs `mode: history` above 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int32", "minimum" = 1))]
    pub min_distinct_signers: Option<u32>,
    /// Trailers the applied commit's message must carry (`Ticket`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require_trailers: Vec<String>,
}

fn verify_mode_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "enum": ["history", "head"], "default": "history"})
}

/// Where the allowed signers are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignersRef {
    /// A ConfigMap in the App's namespace, read as the App's
    /// ServiceAccount: key `allowed_signers` (git's SSH allowed-signers
    /// format) and keys ending in `.asc` (armored OpenPGP public keys).
    pub config_map_ref: ConfigMapRef,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigMapRef {
    pub name: String,
}

/// Exactly one of branch, tag or commit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SourceRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SecretRef {
    pub name: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DriftMode {
    /// Put drifted fields back.
    #[default]
    Correct,
    /// Only report drift.
    Warn,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppPolicy {
    #[serde(default)]
    pub allowed_registries: Vec<String>,
    #[serde(default)]
    pub require_digests: bool,
    /// Bundle signing key ids (`sha256:...`): every image must have come
    /// through a `bundle push` of a bundle signed by one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require_imported_by: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// What the App applied, compact: `apiVersion|Kind|namespace|name`.
    /// Empty when the inventory is kept in `inventoryCompressed`; read and
    /// write it with [`AppStatus::objects`] and [`AppStatus::set_objects`].
    #[serde(default)]
    pub inventory: Vec<String>,
    /// An inventory of more than [`INVENTORY_PLAIN_MAX`] objects: its
    /// compact entries, sorted, one per line, deflated (raw DEFLATE,
    /// RFC 1951), in base64. Written as null otherwise, so a merge patch
    /// clears it.
    #[serde(default)]
    pub inventory_compressed: Option<String>,
    /// How many objects the inventory holds (both forms).
    #[serde(default)]
    #[schemars(extend("format" = "int64", "minimum" = 0))]
    pub inventory_count: u64,
    /// The most recent syncs, newest first (at most [`HISTORY_LIMIT`]).
    #[serde(default)]
    pub history: Vec<SyncSummary>,
    /// Who signed the last applied revision (with `spec.source.verify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<SourceVerification>,
}

/// What commit trust found for the last revision it accepted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceVerification {
    pub revision: String,
    /// The last applied revision the range started from (none the first time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Which signers ConfigMap content it was checked against (a SHA-256).
    pub signers_digest: String,
    /// `principal (key type fingerprint)` of each distinct signer.
    pub signers: Vec<String>,
    /// The applied commit's recorded trailers, `Name: value`.
    #[serde(default)]
    pub trailers: Vec<String>,
    /// How many commits were verified.
    #[serde(default)]
    #[schemars(extend("format" = "int64", "minimum" = 0))]
    pub commits: u64,
}

/// Inventories of more objects than this are kept compressed in status.
pub const INVENTORY_PLAIN_MAX: usize = 1000;

/// The most the compressed inventory may take, in base64 bytes: with the
/// rest of the App, a status write stays under etcd's 1.5 MiB request
/// limit. About 200,000 objects with names of 20 characters fit.
pub const INVENTORY_COMPRESSED_MAX: usize = 1 << 20;

/// The most a compressed inventory may inflate to when read back: a status
/// anyone with access can edit is not trusted with the controller's memory.
const INVENTORY_INFLATED_MAX: usize = 64 << 20;

/// An inventory entry in status: `apiVersion|Kind|namespace|name`.
pub fn compact(r: &ObjectRef) -> String {
    format!(
        "{}|{}|{}|{}",
        r.api_version,
        r.kind,
        r.namespace.as_deref().unwrap_or(""),
        r.name
    )
}

/// The object a [`compact`] entry names; `None` when it is not one.
pub fn from_compact(s: &str) -> Option<ObjectRef> {
    let mut parts = s.splitn(4, '|');
    let (api_version, kind, namespace, name) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (!api_version.is_empty() && !kind.is_empty() && !name.is_empty()).then(|| ObjectRef {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
        name: name.to_string(),
    })
}

/// The status fields that hold `inventory`, as a merge patch of `status`
/// writes them: the plain list up to [`INVENTORY_PLAIN_MAX`] objects, else
/// the compressed form. Fails when even that is over
/// [`INVENTORY_COMPRESSED_MAX`].
pub fn inventory_fields(inventory: &Inventory) -> Result<serde_json::Value, String> {
    let mut status = AppStatus::default();
    status.set_objects(inventory)?;
    Ok(serde_json::json!({
        "inventory": status.inventory,
        "inventoryCompressed": status.inventory_compressed,
        "inventoryCount": status.inventory_count,
    }))
}

/// How many syncs `status.history` keeps.
pub const HISTORY_LIMIT: usize = 10;

/// One sync, as `status.history` shows it; the full record is in the store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncSummary {
    /// `sync` or `drift`
    pub kind: String,
    pub revision: String,
    /// RFC 3339, when it started.
    pub time: String,
    /// succeeded, failed, blocked, unhealthy
    pub result: String,
    #[serde(default)]
    pub message: String,
    /// How long it took, in milliseconds.
    // Kubernetes knows no `uint64` format and warns on every write of the
    // CRD that has one: the schema says int64 from 0.
    #[serde(default)]
    #[schemars(extend("format" = "int64", "minimum" = 0))]
    pub duration_ms: u64,
}

impl AppStatus {
    /// The inventory, from whichever form holds it. Entries that do not
    /// parse are left out; a compressed form that does not decode, or
    /// inflates past 64 MiB, is an error.
    pub fn objects(&self) -> Result<Inventory, String> {
        let Some(compressed) = &self.inventory_compressed else {
            return Ok(Inventory::new(
                self.inventory.iter().filter_map(|e| from_compact(e)),
            ));
        };
        use base64::Engine as _;
        let deflated = base64::engine::general_purpose::STANDARD
            .decode(compressed)
            .map_err(|e| format!("status.inventoryCompressed is not base64: {e}"))?;
        let text =
            miniz_oxide::inflate::decompress_to_vec_with_limit(&deflated, INVENTORY_INFLATED_MAX)
                .map_err(|e| {
                format!(
                    "status.inventoryCompressed does not inflate: {}",
                    e.status as i32
                )
            })?;
        let text = String::from_utf8(text)
            .map_err(|_| "status.inventoryCompressed is not UTF-8".to_string())?;
        Ok(Inventory::new(text.lines().filter_map(from_compact)))
    }

    /// Keeps `inventory` in status: the plain list up to
    /// [`INVENTORY_PLAIN_MAX`] objects, compressed above. Fails, changing
    /// nothing, when the compressed form is over
    /// [`INVENTORY_COMPRESSED_MAX`].
    pub fn set_objects(&mut self, inventory: &Inventory) -> Result<(), String> {
        let entries: Vec<String> = inventory.entries.iter().map(compact).collect();
        let count = entries.len() as u64;
        if entries.len() <= INVENTORY_PLAIN_MAX {
            self.inventory = entries;
            self.inventory_compressed = None;
            self.inventory_count = count;
            return Ok(());
        }
        use base64::Engine as _;
        let deflated = miniz_oxide::deflate::compress_to_vec(entries.join("\n").as_bytes(), 6);
        let encoded = base64::engine::general_purpose::STANDARD.encode(deflated);
        if encoded.len() > INVENTORY_COMPRESSED_MAX {
            return Err(format!(
                "the App's inventory of {count} objects takes {} bytes compressed, over the \
                 {INVENTORY_COMPRESSED_MAX} bytes an App's status can hold\nhint: split the App \
                 into several, each with a path of its own",
                encoded.len()
            ));
        }
        self.inventory = Vec::new();
        self.inventory_compressed = Some(encoded);
        self.inventory_count = count;
        Ok(())
    }

    pub fn condition(&self, type_: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_.as_str())
    }

    /// Whether condition `type_` is there with `status`.
    pub fn is(&self, type_: ConditionType, status: ConditionStatus) -> bool {
        self.condition(type_)
            .is_some_and(|c| c.status == status.as_str())
    }

    /// Whether condition `type_` is there with `reason`.
    pub fn has_reason(&self, type_: ConditionType, reason: Reason) -> bool {
        self.condition(type_)
            .is_some_and(|c| c.reason == reason.as_str())
    }

    /// Sets condition `type_`; its transition time moves only when its
    /// status does.
    pub fn set_condition(
        &mut self,
        type_: ConditionType,
        status: ConditionStatus,
        reason: Reason,
        message: &str,
        now: &str,
    ) {
        let fresh = Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            last_transition_time: now.to_string(),
        };
        match self
            .conditions
            .iter_mut()
            .find(|c| c.type_ == type_.as_str())
        {
            Some(c) if c.status == status.as_str() => {
                c.reason = fresh.reason;
                c.message = fresh.message;
            }
            Some(c) => *c = fresh,
            None => self.conditions.push(fresh),
        }
    }

    /// Drops condition `type_`.
    pub fn clear_condition(&mut self, type_: ConditionType) {
        self.conditions.retain(|c| c.type_ != type_.as_str());
    }

    /// Adds a sync to the front of the history, keeping [`HISTORY_LIMIT`].
    pub fn push_history(&mut self, entry: SyncSummary) {
        self.history.insert(0, entry);
        self.history.truncate(HISTORY_LIMIT);
    }
}

/// A status condition (Ready, Reconciling, Stalled), as Kubernetes writes them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    pub last_transition_time: String,
}

impl AppSpec {
    /// The Git ref, checked to be exactly one of branch, tag and commit.
    pub fn git_ref(&self) -> Result<GitRef, String> {
        let r = &self.source.git_ref;
        match (&r.branch, &r.tag, &r.commit) {
            (Some(b), None, None) => Ok(GitRef::Branch(b.clone())),
            (None, Some(t), None) => Ok(GitRef::Tag(t.clone())),
            (None, None, Some(c)) => GitRef::commit(c).ok_or_else(|| {
                format!("spec.source.ref.commit '{c}' is not a full 40-digit commit id")
            }),
            _ => Err("spec.source.ref needs exactly one of branch, tag and commit".to_string()),
        }
    }

    /// `spec.interval` as a duration: a number and `s`, `m` or `h`.
    pub fn interval(&self) -> Result<Duration, String> {
        parse_duration("spec.interval", &self.interval)
    }

    /// `spec.timeout` as a duration.
    pub fn timeout(&self) -> Result<Duration, String> {
        parse_duration("spec.timeout", &self.timeout)
    }
}

/// `30s`, `5m`, `1h`; at least one second.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    parse_duration("spec.interval", s)
}

/// A whole number and `s`, `m` or `h`, at least one second; `field` names
/// it in the error.
pub fn parse_duration(field: &str, s: &str) -> Result<Duration, String> {
    let bad = || format!("{field} '{s}' must be a whole number followed by s, m or h, e.g. 1m");
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(bad()),
    };
    if secs == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {

    fn cm(i: usize) -> ObjectRef {
        ObjectRef {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("large".into()),
            name: format!("settings-{i:05}"),
        }
    }

    /// A 50,000-object App once lost its inventory: the status patch was
    /// over etcd's request limit. Above 1,000 objects it is compressed.
    #[test]
    fn a_large_inventory_is_kept_compressed_and_read_back_whole() -> Result<(), String> {
        for n in [0, 1, INVENTORY_PLAIN_MAX, INVENTORY_PLAIN_MAX + 1, 50_000] {
            let inventory = Inventory::new((0..n).map(cm));
            let mut status = AppStatus::default();
            status.set_objects(&inventory)?;
            assert_eq!(status.inventory_count, n as u64);
            assert_eq!(
                status.inventory_compressed.is_some(),
                n > INVENTORY_PLAIN_MAX,
                "{n}"
            );
            assert_eq!(status.objects()?, inventory, "{n}");
            // What a merge patch of the status sends, read back.
            let json = serde_json::to_value(&status).map_err(|e| e.to_string())?;
            let back: AppStatus = serde_json::from_value(json).map_err(|e| e.to_string())?;
            assert_eq!(back.objects()?, inventory, "{n}");
            if n == 50_000 {
                let size = status.inventory_compressed.as_ref().map_or(0, String::len);
                assert!(size < 400_000, "{size} bytes for 50,000 objects");
            }
        }
        // From compressed back to plain: the compressed form is cleared.
        let mut status = AppStatus::default();
        status.set_objects(&Inventory::new((0..5000).map(cm)))?;
        status.set_objects(&Inventory::new((0..2).map(cm)))?;
        assert_eq!(status.inventory_compressed, None);
        assert_eq!(status.inventory.len(), 2);
        Ok(())
    }

    #[test]
    fn a_hostile_compressed_inventory_is_refused_not_inflated_without_bound() {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        // 100 MiB of zeros deflate to about 100 KB.
        let bomb = miniz_oxide::deflate::compress_to_vec(&vec![0u8; 100 << 20], 9);
        for (case, compressed) in [
            ("not base64", "!!!".to_string()),
            ("not deflate", b64(b"plain text")),
            ("a bomb", b64(&bomb)),
        ] {
            let status = AppStatus {
                inventory_compressed: Some(compressed),
                ..AppStatus::default()
            };
            assert!(status.objects().is_err(), "{case}");
        }
    }

    #[test]
    fn an_inventory_too_large_even_compressed_is_refused_with_a_hint() {
        // Names that do not compress: 40,000 of 64 random-looking characters.
        let inventory = Inventory::new((0..40_000u64).map(|i| {
            let mut name = String::new();
            let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            for _ in 0..64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                name.push(char::from(b'a' + (x % 26) as u8));
            }
            ObjectRef { name, ..cm(0) }
        }));
        let mut status = AppStatus::default();
        let e = status.set_objects(&inventory).err().unwrap_or_default();
        assert!(e.contains("split the App"), "{e}");
        assert_eq!(status, AppStatus::default(), "changed on failure");
    }

    use super::*;

    fn spec(r: SourceRef) -> AppSpec {
        AppSpec {
            source: AppSource {
                url: "https://git.internal/shop.git".into(),
                git_ref: r,
                path: "envs/prod".into(),
                secret_ref: None,
                verify: None,
                helm: None,
            },
            interval: "1m".into(),
            service_account_name: "shop-deployer".into(),
            prune: true,
            drift: DriftMode::Correct,
            suspend: false,
            policy: AppPolicy::default(),
            timeout: "5m".into(),
            freeze: Vec::new(),
            freeze_drift: None,
        }
    }

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_holds() {
        let mut status = AppStatus::default();
        status.set_condition(
            ConditionType::Ready,
            ConditionStatus::False,
            Reason::Progressing,
            "a",
            "t1",
        );
        status.set_condition(
            ConditionType::Ready,
            ConditionStatus::False,
            Reason::HealthCheckFailed,
            "b",
            "t2",
        );
        let ready = status.condition(ConditionType::Ready).cloned();
        assert_eq!(
            ready.map(|c| (c.reason, c.last_transition_time)),
            Some(("HealthCheckFailed".to_string(), "t1".to_string()))
        );
        status.set_condition(
            ConditionType::Ready,
            ConditionStatus::True,
            Reason::Succeeded,
            "c",
            "t3",
        );
        assert_eq!(
            status
                .condition(ConditionType::Ready)
                .map(|c| c.last_transition_time.as_str()),
            Some("t3")
        );
        for i in 0..15 {
            status.push_history(SyncSummary {
                revision: i.to_string(),
                ..Default::default()
            });
        }
        assert_eq!(status.history.len(), HISTORY_LIMIT);
        assert_eq!(status.history[0].revision, "14");
    }

    #[test]
    fn a_ref_is_exactly_one_of_branch_tag_and_commit() {
        let branch = SourceRef {
            branch: Some("main".into()),
            ..Default::default()
        };
        assert_eq!(spec(branch).git_ref(), Ok(GitRef::Branch("main".into())));
        let both = SourceRef {
            branch: Some("main".into()),
            tag: Some("v1".into()),
            ..Default::default()
        };
        assert!(spec(both).git_ref().is_err());
        let short = SourceRef {
            commit: Some("abc123".into()),
            ..Default::default()
        };
        assert!(
            spec(short)
                .git_ref()
                .err()
                .unwrap_or_default()
                .contains("40-digit")
        );
    }

    #[test]
    fn intervals_are_seconds_minutes_or_hours() {
        assert_eq!(parse_interval("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_interval("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_interval("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "1", "m", "0s", "1d", "-1m", "1.5m"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_spec_reads_the_yaml_of_the_issue() {
        let yaml = serde_json::json!({
            "source": {"url": "https://git.internal/platform/shop.git", "ref": {"branch": "main"},
                       "path": "envs/prod", "secretRef": {"name": "git-creds"}},
            "interval": "1m", "serviceAccountName": "shop-deployer", "prune": true, "drift": "correct",
            "suspend": false, "policy": {"allowedRegistries": ["registry.internal:5000"], "requireDigests": true}});
        let spec: AppSpec = serde_json::from_value(yaml).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            spec.source.secret_ref.map(|s| s.name).as_deref(),
            Some("git-creds")
        );
        assert!(spec.policy.require_digests);
    }
}
