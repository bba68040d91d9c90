//! The App resource (`apps.airgate.dev`, `v1alpha1`): one Git path, the
//! ServiceAccount every apply runs as, and the policy its images must meet.
//! The types are the source of the CRD (`App::crd()`), so the schema the API
//! server enforces and the code that reads it cannot drift apart.

use std::time::Duration;

use airgate_core::source::GitRef;
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
    #[serde(default)]
    pub inventory: Vec<String>,
    /// The most recent syncs, newest first (at most [`HISTORY_LIMIT`]).
    #[serde(default)]
    pub history: Vec<SyncSummary>,
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
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Sets condition `type_`; its transition time moves only when its
    /// status does.
    pub fn set_condition(
        &mut self,
        type_: &str,
        status: &str,
        reason: &str,
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
        match self.conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) if c.status == status => {
                c.reason = fresh.reason;
                c.message = fresh.message;
            }
            Some(c) => *c = fresh,
            None => self.conditions.push(fresh),
        }
    }

    /// Drops condition `type_`.
    pub fn clear_condition(&mut self, type_: &str) {
        self.conditions.retain(|c| c.type_ != type_);
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
            (None, None, Some(c))
                if c.len() == 40 && c.chars().all(|ch| ch.is_ascii_hexdigit()) =>
            {
                Ok(GitRef::Commit(c.to_ascii_lowercase()))
            }
            (None, None, Some(c)) => Err(format!(
                "spec.source.ref.commit '{c}' is not a full 40-digit commit id"
            )),
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
    use super::*;

    fn spec(r: SourceRef) -> AppSpec {
        AppSpec {
            source: AppSource {
                url: "https://git.internal/shop.git".into(),
                git_ref: r,
                path: "envs/prod".into(),
                secret_ref: None,
            },
            interval: "1m".into(),
            service_account_name: "shop-deployer".into(),
            prune: true,
            drift: DriftMode::Correct,
            suspend: false,
            policy: AppPolicy::default(),
            timeout: "5m".into(),
        }
    }

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_holds() {
        let mut status = AppStatus::default();
        status.set_condition("Ready", "False", "Progressing", "a", "t1");
        status.set_condition("Ready", "False", "HealthCheckFailed", "b", "t2");
        let ready = status.condition("Ready").cloned();
        assert_eq!(
            ready.map(|c| (c.reason, c.last_transition_time)),
            Some(("HealthCheckFailed".to_string(), "t1".to_string()))
        );
        status.set_condition("Ready", "True", "Applied", "c", "t3");
        assert_eq!(
            status
                .condition("Ready")
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
