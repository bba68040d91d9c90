//! `airgate install`: the manifests that install the controller.
//!
//! Least privilege is the point. The controller's own account may read
//! Apps, write App status, Events and its Lease, and impersonate
//! ServiceAccounts: those of every namespace (the default), or, with
//! `--tenant-namespace`, only those of the namespaces named. It reads no
//! Secret: everything an App applies, reads or watches, its Git Secret
//! included, is done as the App's ServiceAccount, so what an App may touch
//! is exactly what its namespace's RBAC grants.

use std::path::Path;
use std::process::ExitCode;

use airgate_kube::app::App;
use anyhow::{Context, Result};
use kube::CustomResourceExt;
use serde_json::{Value, json};

use crate::cli::{InstallArgs, InstallAudit};

/// The name of the controller's ServiceAccount, roles and Deployment.
const NAME: &str = "airgate-controller";

fn labels() -> Value {
    json!({"app.kubernetes.io/name": "airgate", "app.kubernetes.io/component": "controller"})
}

/// The install manifests, grouped by file name.
pub fn manifests(
    namespace: &str,
    image: &str,
    tenants: &[String],
    audit: &InstallAudit,
) -> Result<Vec<(&'static str, Vec<Value>)>> {
    let crd = serde_json::to_value(App::crd()).context("serialising the App CRD")?;
    let namespace_obj = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": namespace, "labels": labels()}});
    let account = json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": NAME, "namespace": namespace, "labels": labels()}});
    // Every apply, read and watch of a sync (and the read of the App's Git
    // Secret) runs as the App's account.
    let impersonate =
        json!({"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]});
    let mut rules = vec![
        json!({"apiGroups": ["airgate.dev"], "resources": ["apps"], "verbs": ["get", "list", "watch"]}),
        json!({"apiGroups": ["airgate.dev"], "resources": ["apps/status"], "verbs": ["get", "patch", "update"]}),
        json!({"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}),
    ];
    if tenants.is_empty() {
        rules.push(impersonate.clone());
    }
    let cluster_role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": NAME, "labels": labels()}, "rules": rules});
    let tenant_rbac = tenants.iter().flat_map(|tenant| {
        let name = format!("{NAME}-impersonate");
        [
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": name, "namespace": tenant, "labels": labels()},
                "rules": [impersonate.clone()]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": tenant, "labels": labels()},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]}),
        ]
    });
    let cluster_binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": NAME, "labels": labels()},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]});
    let lease_role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
    "metadata": {"name": format!("{NAME}-lease"), "namespace": namespace, "labels": labels()},
    // Leases of its own namespace only (the name is --lease-name).
    "rules": [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "verbs": ["get", "create", "update"]}
    ]});
    let lease_binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": format!("{NAME}-lease"), "namespace": namespace, "labels": labels()},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("{NAME}-lease")},
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]});
    Ok(vec![
        ("crd.yaml", vec![crd]),
        ("namespace.yaml", vec![namespace_obj]),
        (
            "rbac.yaml",
            [
                account,
                cluster_role,
                cluster_binding,
                lease_role,
                lease_binding,
            ]
            .into_iter()
            .chain(tenant_rbac)
            .collect(),
        ),
        ("controller.yaml", controller(namespace, image, audit)),
    ])
}

/// The controller's volume and Deployment.
fn controller(namespace: &str, image: &str, audit: &InstallAudit) -> Vec<Value> {
    let data = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "airgate-data", "namespace": namespace, "labels": labels()},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}});
    let mut deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": NAME, "namespace": namespace, "labels": labels()},
    "spec": {
        "replicas": 1,
        // One volume, one writer: the old pod stops before the new one starts.
        "strategy": {"type": "Recreate"},
        "selector": {"matchLabels": labels()},
        "template": {
            "metadata": {"labels": labels()},
            "spec": {
                "serviceAccountName": NAME,
                "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "fsGroup": 65532,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "controller",
                    "image": image,
                    "args": ["controller", "--data-dir=/var/lib/airgate",
                             format!("--lease-namespace={namespace}"), "--listen=0.0.0.0:8080"],
                    "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "ports": [{"name": "metrics", "containerPort": 8080}],
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}},
                    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                  "limits": {"memory": "512Mi"}},
                    "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                        "capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/airgate"},
                                     {"name": "tmp", "mountPath": "/tmp"}]
                }],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "airgate-data"}},
                            {"name": "tmp", "emptyDir": {}}]
            }
        }
    }});
    wire_audit(&mut deployment, audit);
    vec![data, deployment]
}

/// Mounts what the audit log needs (the log key Secret, the registry's
/// credentials and CA) into the controller's pod and passes the flags.
fn wire_audit(deployment: &mut Value, audit: &InstallAudit) {
    let pod = &mut deployment["spec"]["template"]["spec"];
    let mut args = vec![];
    let mut env = vec![];
    let mut mounts = vec![];
    let mut volumes = vec![];
    let mut mount = |name: &str, path: &str, source: Value| {
        mounts.push(json!({"name": name, "mountPath": path, "readOnly": true}));
        let mut volume = json!({"name": name});
        if let (Some(v), Some(s)) = (volume.as_object_mut(), source.as_object()) {
            v.extend(s.clone());
        }
        volumes.push(volume);
    };
    if let Some(secret) = &audit.log_key_secret {
        mount(
            "log-key",
            "/etc/airgate/log-key",
            json!({"secret": {"secretName": secret, "defaultMode": 0o400}}),
        );
        args.push("--log-key=/etc/airgate/log-key/key".to_string());
    }
    if let Some(name) = &audit.log_name {
        args.push(format!("--log-name={name}"));
    }
    if let Some(repo) = &audit.log_repository {
        args.push(format!("--log-repository={repo}"));
    }
    if let Some(secret) = &audit.registry_secret {
        mount(
            "registry-auth",
            "/etc/airgate/docker",
            json!({"secret": {"secretName": secret,
            "items": [{"key": ".dockerconfigjson", "path": "config.json"}]}}),
        );
        env.push(json!({"name": "DOCKER_CONFIG", "value": "/etc/airgate/docker"}));
    }
    if let Some(map) = &audit.registry_ca_configmap {
        mount(
            "registry-ca",
            "/etc/airgate/registry-ca",
            json!({"configMap": {"name": map}}),
        );
        args.push("--ca-file=/etc/airgate/registry-ca/ca.crt".to_string());
    }
    let container = &mut pod["containers"][0];
    for (field, extra) in [
        (
            "args",
            args.into_iter().map(Value::from).collect::<Vec<_>>(),
        ),
        ("env", env),
        ("volumeMounts", mounts),
    ] {
        if let Some(list) = container[field].as_array_mut() {
            list.extend(extra);
        }
    }
    if let Some(list) = pod["volumes"].as_array_mut() {
        list.extend(volumes);
    }
}

fn yaml(objects: &[Value]) -> Result<String> {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(o).context("writing YAML")?);
    }
    Ok(out)
}

pub fn run(args: InstallArgs) -> Result<ExitCode> {
    let groups = manifests(
        &args.namespace,
        &args.image,
        &args.tenant_namespaces,
        &args.audit,
    )?;
    match &args.output {
        None => {
            let all: Vec<Value> = groups.into_iter().flat_map(|(_, o)| o).collect();
            crate::stdout::text(&yaml(&all)?)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for (file, objects) in &groups {
                let path = Path::new(dir).join(file);
                std::fs::write(&path, yaml(objects)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            eprintln!(
                "wrote {} files to {}\nhint: apply them with `kubectl apply -f {}`",
                groups.len(),
                dir.display(),
                dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controller_account_may_impersonate_but_not_write_workloads() -> Result<()> {
        let groups = manifests(
            "airgate-system",
            "registry.internal:5000/airgate:1",
            &[],
            &InstallAudit::default(),
        )?;
        let role = groups
            .iter()
            .flat_map(|(_, o)| o)
            .find(|o| o["kind"] == "ClusterRole")
            .cloned()
            .unwrap_or_default();
        let rules = role["rules"].as_array().cloned().unwrap_or_default();
        let verbs_on = |resource: &str| -> Vec<String> {
            rules
                .iter()
                .filter(|r| {
                    r["resources"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x == resource))
                })
                .flat_map(|r| r["verbs"].as_array().cloned().unwrap_or_default())
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        };
        assert_eq!(verbs_on("serviceaccounts"), ["impersonate"]);
        // The App's Git Secret is read as the App's account, not the controller's.
        assert!(verbs_on("secrets").is_empty());
        assert!(verbs_on("deployments").is_empty());
        assert!(!rules.iter().any(|r| {
            r["verbs"]
                .as_array()
                .is_some_and(|v| v.iter().any(|x| x == "*"))
        }));
        Ok(())
    }

    #[test]
    fn the_audit_log_key_and_registry_credentials_are_mounted_not_read_by_the_controller()
    -> Result<()> {
        let audit = InstallAudit {
            log_key_secret: Some("airgate-log-key".into()),
            log_name: Some("prod".into()),
            log_repository: Some("registry.internal:5000/airgate/audit".into()),
            registry_secret: Some("airgate-registry".into()),
            registry_ca_configmap: Some("registry-ca".into()),
        };
        let groups = manifests("airgate-system", "r:1", &[], &audit)?;
        let all: Vec<&Value> = groups.iter().flat_map(|(_, o)| o).collect();
        let deployment = all
            .iter()
            .find(|o| o["kind"] == "Deployment")
            .ok_or_else(|| anyhow::anyhow!("no Deployment"))?;
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let args: Vec<&str> = container["args"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for want in [
            "--log-key=/etc/airgate/log-key/key",
            "--log-name=prod",
            "--log-repository=registry.internal:5000/airgate/audit",
            "--ca-file=/etc/airgate/registry-ca/ca.crt",
        ] {
            assert!(args.contains(&want), "{want} not in {args:?}");
        }
        assert_eq!(container["env"][1]["value"], "/etc/airgate/docker");
        let volumes = deployment["spec"]["template"]["spec"]["volumes"].to_string();
        for want in ["airgate-log-key", "airgate-registry", "registry-ca"] {
            assert!(volumes.contains(want), "{want} not in {volumes}");
        }
        // Still no Secret in the controller's own RBAC.
        let rbac = serde_json::to_string(
            &all.iter()
                .filter(|o| o["kind"] == "ClusterRole")
                .collect::<Vec<_>>(),
        )?;
        assert!(!rbac.contains("secrets"), "{rbac}");
        Ok(())
    }

    #[test]
    fn tenant_namespaces_get_impersonation_through_namespaced_roles_only() -> Result<()> {
        let tenants = ["team-a".to_string(), "team-b".to_string()];
        let groups = manifests("airgate-system", "r:1", &tenants, &InstallAudit::default())?;
        let all: Vec<&Value> = groups.iter().flat_map(|(_, o)| o).collect();
        let cluster_role = all.iter().find(|o| o["kind"] == "ClusterRole");
        let cluster_impersonates = cluster_role.is_some_and(|r| {
            r["rules"]
                .as_array()
                .is_some_and(|rules| rules.iter().any(|x| x["verbs"][0] == "impersonate"))
        });
        assert!(!cluster_impersonates, "impersonation stayed cluster-wide");
        let roles: Vec<&str> = all
            .iter()
            .filter(|o| o["kind"] == "Role" && o["rules"][0]["verbs"][0] == "impersonate")
            .filter_map(|o| o["metadata"]["namespace"].as_str())
            .collect();
        assert_eq!(roles, ["team-a", "team-b"]);
        Ok(())
    }
}
