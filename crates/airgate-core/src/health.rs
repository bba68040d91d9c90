//! Health: is an applied object doing what it was asked to? Rules in the
//! spirit of kstatus, read from the object's own status:
//!
//! - Deployment: the controller saw the latest generation, and every replica
//!   is updated and available; a passed progress deadline is a failure.
//! - StatefulSet: latest generation seen, every replica ready and on the
//!   update revision. DaemonSet: every scheduled pod updated and available.
//! - Job: Complete, or Failed. Pod: Running and Ready, or Succeeded.
//! - CustomResourceDefinition: Established.
//! - Anything else with a `Ready` condition follows it; objects without
//!   status (ConfigMaps, Services, ...) are healthy once they exist.

use serde::Serialize;
use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "lowercase")]
pub enum Health {
    Ready,
    Progressing(String),
    Failed(String),
}

fn int(v: &Value, path: &[&str]) -> Option<i64> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_i64)
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj.get("status")?
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

fn condition_is(obj: &Value, kind: &str, status: &str) -> bool {
    condition(obj, kind)
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
        == Some(status)
}

fn message(obj: &Value, kind: &str) -> String {
    condition(obj, kind)
        .and_then(|c| c.get("message").or_else(|| c.get("reason")))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `Progressing` when the controller has not seen the latest generation.
fn generation_seen(obj: &Value) -> Option<Health> {
    let generation = int(obj, &["metadata", "generation"])?;
    let observed = int(obj, &["status", "observedGeneration"]).unwrap_or(0);
    (observed < generation)
        .then(|| Health::Progressing(format!("generation {generation} not yet observed")))
}

fn replicas(obj: &Value, desired: &[&str], have: &[(&str, &[&str])]) -> Health {
    let want = int(obj, desired).unwrap_or(1);
    for (what, path) in have {
        let n = int(obj, path).unwrap_or(0);
        if n < want {
            return Health::Progressing(format!("{n} of {want} replicas {what}"));
        }
    }
    Health::Ready
}

/// The health of `obj` as the API server returned it, judged by the
/// apiVersion and kind it carries.
pub fn assess(obj: &Value) -> Health {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let group = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .and_then(|v| v.rsplit_once('/').map(|(g, _)| g))
        .unwrap_or_default();
    assess_as(group, kind, obj)
}

/// The health of `obj` judged as a `kind` of API `group` (`""` for the core
/// group), whatever the body says: the items of a list carry no apiVersion
/// and kind, and a Deployment judged without its kind is an object without
/// rules, Ready mid-rollout.
pub fn assess_as(group: &str, kind: &str, obj: &Value) -> Health {
    match (group, kind) {
        ("apps", "Deployment") => {
            if condition(obj, "Progressing")
                .and_then(|c| c.get("reason"))
                .and_then(Value::as_str)
                == Some("ProgressDeadlineExceeded")
            {
                return Health::Failed(message(obj, "Progressing"));
            }
            generation_seen(obj).unwrap_or_else(|| {
                // Mid-rollout the old replicas still count as available:
                // it is done only when none of them is left.
                let total = int(obj, &["status", "replicas"]).unwrap_or(0);
                let updated = int(obj, &["status", "updatedReplicas"]).unwrap_or(0);
                if total > updated {
                    return Health::Progressing(format!(
                        "{} old replica(s) pending termination",
                        total - updated
                    ));
                }
                replicas(
                    obj,
                    &["spec", "replicas"],
                    &[
                        ("updated", &["status", "updatedReplicas"]),
                        ("available", &["status", "availableReplicas"]),
                    ],
                )
            })
        }
        ("apps", "StatefulSet") => generation_seen(obj).unwrap_or_else(|| {
            let h = replicas(
                obj,
                &["spec", "replicas"],
                &[
                    ("ready", &["status", "readyReplicas"]),
                    ("updated", &["status", "updatedReplicas"]),
                ],
            );
            let status = obj.get("status");
            let current = status.and_then(|s| s.get("currentRevision"));
            let update = status.and_then(|s| s.get("updateRevision"));
            match h {
                Health::Ready if current != update => {
                    Health::Progressing("the rollout to the update revision is not finished".into())
                }
                other => other,
            }
        }),
        ("apps", "DaemonSet") => generation_seen(obj).unwrap_or_else(|| {
            replicas(
                obj,
                &["status", "desiredNumberScheduled"],
                &[
                    ("updated", &["status", "updatedNumberScheduled"]),
                    ("available", &["status", "numberAvailable"]),
                ],
            )
        }),
        ("batch", "Job") => {
            if condition_is(obj, "Complete", "True") {
                Health::Ready
            } else if condition_is(obj, "Failed", "True") {
                // The reason (BackoffLimitExceeded, DeadlineExceeded) says
                // what to do; the message says it in words.
                let reason = condition(obj, "Failed")
                    .and_then(|c| c.get("reason"))
                    .and_then(Value::as_str);
                match reason {
                    Some(r) => Health::Failed(format!("{r}: {}", message(obj, "Failed"))),
                    None => Health::Failed(message(obj, "Failed")),
                }
            } else {
                Health::Progressing("the job has not completed".into())
            }
        }
        ("", "Pod") => match obj
            .get("status")
            .and_then(|s| s.get("phase"))
            .and_then(Value::as_str)
        {
            Some("Succeeded") => Health::Ready,
            Some("Failed") => Health::Failed("the pod failed".into()),
            Some("Running") if condition_is(obj, "Ready", "True") => Health::Ready,
            phase => Health::Progressing(format!("pod is {}", phase.unwrap_or("pending"))),
        },
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            if condition_is(obj, "Established", "True") {
                Health::Ready
            } else {
                Health::Progressing("not yet Established".into())
            }
        }
        _ => match condition(obj, "Ready")
            .and_then(|c| c.get("status"))
            .and_then(Value::as_str)
        {
            Some("True") => generation_seen(obj).unwrap_or(Health::Ready),
            Some(_) => Health::Progressing(message(obj, "Ready")),
            None => Health::Ready,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(status: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"generation": 2}, "spec": {"replicas": 3}, "status": status})
    }

    #[test]
    fn a_body_without_kind_is_judged_by_the_kind_given() {
        let mut listed = deployment(json!({"observedGeneration": 2, "updatedReplicas": 1}));
        if let Some(map) = listed.as_object_mut() {
            map.remove("apiVersion");
            map.remove("kind");
        }
        assert_eq!(assess(&listed), Health::Ready);
        assert_eq!(
            assess_as("apps", "Deployment", &listed),
            Health::Progressing("1 of 3 replicas updated".into())
        );
    }

    #[test]
    fn deployments_are_ready_when_every_replica_is_updated_and_available() {
        assert_eq!(
            assess(&deployment(
                json!({"observedGeneration": 2, "updatedReplicas": 3, "availableReplicas": 3})
            )),
            Health::Ready
        );
        assert_eq!(
            assess(&deployment(
                json!({"observedGeneration": 2, "updatedReplicas": 3, "availableReplicas": 1})
            )),
            Health::Progressing("1 of 3 replicas available".into())
        );
        assert!(matches!(
            assess(&deployment(
                json!({"observedGeneration": 1, "updatedReplicas": 3, "availableReplicas": 3})
            )),
            Health::Progressing(_)
        ));
        let stuck = deployment(json!({"observedGeneration": 2, "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet web-1 has timed out progressing."}]}));
        assert_eq!(
            assess(&stuck),
            Health::Failed("ReplicaSet web-1 has timed out progressing.".into())
        );
    }

    #[test]
    fn a_rollout_with_old_replicas_left_is_not_ready_though_enough_are_available() {
        // One new pod pending, the old one still serving: counts alone say 1 of 1.
        let mid_rollout = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"generation": 2}, "spec": {"replicas": 1},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 1}});
        assert_eq!(
            assess(&mid_rollout),
            Health::Progressing("1 old replica(s) pending termination".into())
        );
    }

    #[test]
    fn jobs_crds_and_ready_conditions() {
        let job = |c: &str| json!({"apiVersion": "batch/v1", "kind": "Job", "status": {"conditions": [{"type": c, "status": "True", "message": "boom"}]}});
        assert_eq!(assess(&job("Complete")), Health::Ready);
        assert_eq!(assess(&job("Failed")), Health::Failed("boom".into()));
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "status": {"conditions": [{"type": "Established", "status": "True"}]}});
        assert_eq!(assess(&crd), Health::Ready);
        let custom = json!({"apiVersion": "example.com/v1", "kind": "Thing", "status": {"conditions": [{"type": "Ready", "status": "False", "message": "waiting for db"}]}});
        assert_eq!(
            assess(&custom),
            Health::Progressing("waiting for db".into())
        );
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap"});
        assert_eq!(assess(&cm), Health::Ready);
    }

    #[test]
    fn statefulsets_wait_for_the_update_revision() {
        let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"generation": 1}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 2, "currentRevision": "a", "updateRevision": "b"}});
        assert!(matches!(assess(&sts), Health::Progressing(_)));
    }
}
