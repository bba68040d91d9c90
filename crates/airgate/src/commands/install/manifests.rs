//! The install's manifests (see the parent module): what is installed,
//! as data, from a checked [`Plan`].

use airgate_kube::app::App;
use anyhow::{Context, Result, bail};
use kube::CustomResourceExt;
use serde_json::{Value, json};

use crate::cli::{InstallArgs, InstallAudit};

/// The name of the controller's ServiceAccount, namespaced roles and
/// workload.
pub const NAME: &str = "airgate-controller";
/// The metrics port.
const METRICS_PORT: u16 = 8080;
/// The web UI's port.
const UI_PORT: u16 = 8081;

fn labels() -> Value {
    json!({"app.kubernetes.io/name": "airgate", "app.kubernetes.io/component": "controller"})
}

/// What to install, checked.
#[derive(Debug)]
pub struct Plan<'a> {
    pub namespace: &'a str,
    pub image: String,
    pub tenants: &'a [String],
    pub watch_namespace: Option<&'a str>,
    pub replicas: u16,
    /// (CIDR, port)
    pub egress: Vec<(String, u16)>,
    pub audit: &'a InstallAudit,
}

impl<'a> Plan<'a> {
    pub fn from_args(args: &'a InstallArgs) -> Result<Plan<'a>> {
        if args.replicas == 0 {
            bail!("--replicas must be at least 1");
        }
        if args.replicas > 1 && args.audit.log_repository.is_none() {
            bail!(
                "--replicas {} needs --log-repository: each replica keeps its own copy of the audit log, and a new leader continues the one published to the registry\nhint: airgate install --replicas {} --log-key-secret S --log-repository HOST/PATH",
                args.replicas,
                args.replicas
            );
        }
        let egress = args
            .allow_egress
            .iter()
            .map(|e| egress(e))
            .collect::<Result<_>>()?;
        let image = match (&args.image, &args.lock, &args.to) {
            (Some(image), _, _) => image.clone(),
            (None, Some(lock), Some(to)) => super::image::from_lock(lock, to, args.layout)?,
            _ => bail!("--image, or --lock with --to, names the controller's image"),
        };
        Ok(Plan {
            namespace: &args.namespace,
            image,
            tenants: &args.tenant_namespaces,
            watch_namespace: args.watch_namespace.as_deref(),
            replicas: args.replicas,
            egress,
            audit: &args.audit,
        })
    }

    /// A cluster-scoped object's name: the install's namespace in it.
    fn cluster_name(&self) -> String {
        format!("{NAME}-{}", self.namespace)
    }
}

/// `CIDR:PORT` (IPv4 or IPv6), checked.
fn egress(text: &str) -> Result<(String, u16)> {
    let hint =
        || format!("--allow-egress '{text}' is not CIDR:PORT (for example 10.0.0.1/32:6443)");
    let (cidr, port) = text.rsplit_once(':').with_context(hint)?;
    let (ip, bits) = cidr.split_once('/').with_context(hint)?;
    let ip: std::net::IpAddr = ip.parse().ok().with_context(hint)?;
    let bits: u8 = bits.parse().ok().with_context(hint)?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0).with_context(hint)?;
    if bits > if ip.is_ipv4() { 32 } else { 128 } {
        bail!(hint());
    }
    Ok((cidr.to_string(), port))
}

/// The install manifests, grouped by file name.
pub fn manifests(plan: &Plan) -> Result<Vec<(&'static str, Vec<Value>)>> {
    let crd = serde_json::to_value(App::crd()).context("serialising the App CRD")?;
    let namespace = plan.namespace;
    let namespace_obj = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": namespace, "labels": labels()}});
    Ok(vec![
        ("crd.yaml", vec![crd]),
        ("namespace.yaml", vec![namespace_obj]),
        ("rbac.yaml", rbac(plan)),
        ("controller.yaml", controller(plan)),
    ])
}

/// The controller's account and what it may do.
fn rbac(plan: &Plan) -> Vec<Value> {
    let namespace = plan.namespace;
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
        // The web UI: whose a token is, what that user may see, and the
        // Events on an App's page.
        json!({"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]}),
        json!({"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}),
        json!({"apiGroups": [""], "resources": ["events"], "verbs": ["list"]}),
    ];
    if plan.tenants.is_empty() {
        rules.push(impersonate.clone());
    }
    let cluster_name = plan.cluster_name();
    let subject = json!([{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]);
    let cluster_role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": cluster_name, "labels": labels()}, "rules": rules});
    let cluster_binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": cluster_name, "labels": labels()},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_name},
        "subjects": subject});
    let tenant_rbac = plan.tenants.iter().flat_map(|tenant| {
        // Named after the install: two installs may serve one tenant.
        let name = format!("{cluster_name}-impersonate");
        [
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": name, "namespace": tenant, "labels": labels()},
                "rules": [impersonate.clone()]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": tenant, "labels": labels()},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": subject}),
        ]
    });
    let lease = format!("{NAME}-lease");
    let lease_role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": lease, "namespace": namespace, "labels": labels()},
        // Leases of its own namespace only (the name is --lease-name).
        "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                   "verbs": ["get", "create", "update"]}]});
    let lease_binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": lease, "namespace": namespace, "labels": labels()},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": lease},
        "subjects": subject});
    [
        account,
        cluster_role,
        cluster_binding,
        lease_role,
        lease_binding,
    ]
    .into_iter()
    .chain(tenant_rbac)
    .collect()
}

/// The controller's pod template.
fn pod(plan: &Plan) -> Value {
    let namespace = plan.namespace;
    let mut args = vec![
        "controller".to_string(),
        "--data-dir=/var/lib/airgate".to_string(),
        format!("--lease-namespace={namespace}"),
        format!("--listen=0.0.0.0:{METRICS_PORT}"),
        format!("--ui-listen=0.0.0.0:{UI_PORT}"),
    ];
    if let Some(watch) = plan.watch_namespace {
        args.push(format!("--namespace={watch}"));
    }
    json!({
        "metadata": {"labels": labels()},
        "spec": {
            "serviceAccountName": NAME,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "fsGroup": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "controller",
                "image": plan.image,
                "args": args,
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "ports": [{"name": "metrics", "containerPort": METRICS_PORT},
                          {"name": "ui", "containerPort": UI_PORT}],
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}},
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}},
                // Peak RSS was 336 MiB for one App of 50,000 objects
                // (bench/large-app.sh); the limit leaves headroom over it.
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"memory": "768Mi"}},
                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                    "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/airgate"},
                                 {"name": "tmp", "mountPath": "/tmp"}]
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}}]
        }
    })
}

/// The controller's workload, volume, Service, and the policies around it.
fn controller(plan: &Plan) -> Vec<Value> {
    let namespace = plan.namespace;
    let claim =
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}});
    let mut template = pod(plan);
    wire_audit(&mut template, plan.audit);
    let metadata = json!({"name": NAME, "namespace": namespace, "labels": labels()});
    let mut out = Vec::new();
    if plan.replicas == 1 {
        if let Some(volumes) = template["spec"]["volumes"].as_array_mut() {
            volumes.push(
                json!({"name": "data", "persistentVolumeClaim": {"claimName": "airgate-data"}}),
            );
        }
        out.push(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "airgate-data", "namespace": namespace, "labels": labels()},
            "spec": claim}));
        out.push(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
            "spec": {
                "replicas": 1,
                // One volume, one writer: the old pod stops before the new one starts.
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": labels()},
                "template": template}}),
        );
    } else {
        out.push(
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": metadata,
            "spec": {
                "replicas": plan.replicas,
                "serviceName": format!("{NAME}-metrics"),
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": labels()},
                "template": template,
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": claim}]}}),
        );
        out.push(
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": NAME, "namespace": namespace, "labels": labels()},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels()}}}),
        );
    }
    out.push(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("{NAME}-metrics"), "namespace": namespace, "labels": labels()},
        "spec": {"selector": labels(),
                 "ports": [{"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}]}}));
    out.push(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("{NAME}-ui"), "namespace": namespace, "labels": labels()},
        "spec": {"selector": labels(),
                 "ports": [{"name": "ui", "port": UI_PORT, "targetPort": "ui", "protocol": "TCP"}]}}));
    out.push(network_policy(plan));
    out
}

/// Ingress to the metrics and UI ports only; with `--allow-egress`, egress only
/// there and to DNS.
fn network_policy(plan: &Plan) -> Value {
    let mut spec = json!({
        "podSelector": {"matchLabels": labels()},
        "policyTypes": ["Ingress"],
        "ingress": [{"ports": [{"port": METRICS_PORT, "protocol": "TCP"},
                               {"port": UI_PORT, "protocol": "TCP"}]}]
    });
    if !plan.egress.is_empty() {
        let mut egress: Vec<Value> = plan
            .egress
            .iter()
            .map(|(cidr, port)| {
                json!({"to": [{"ipBlock": {"cidr": cidr}}], "ports": [{"port": port, "protocol": "TCP"}]})
            })
            .collect();
        egress.push(
            json!({"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}),
        );
        spec["policyTypes"] = json!(["Ingress", "Egress"]);
        spec["egress"] = Value::Array(egress);
    }
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": NAME, "namespace": plan.namespace, "labels": labels()},
        "spec": spec})
}

/// Mounts what the audit log needs (the log key Secret, the registry's
/// credentials and CA) into the controller's pod and passes the flags.
fn wire_audit(template: &mut Value, audit: &InstallAudit) {
    let pod = &mut template["spec"];
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

#[cfg(test)]
mod tests {
    use super::*;

    fn plan<'a>(namespace: &'a str, tenants: &'a [String], audit: &'a InstallAudit) -> Plan<'a> {
        Plan {
            namespace,
            image: "registry.internal:5000/airgate:1".into(),
            tenants,
            watch_namespace: None,
            replicas: 1,
            egress: Vec::new(),
            audit,
        }
    }

    #[test]
    fn the_controller_account_may_impersonate_but_not_write_workloads() -> Result<()> {
        let groups = manifests(&plan("airgate-system", &[], &InstallAudit::default()))?;
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
        let groups = manifests(&plan("airgate-system", &[], &audit))?;
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
        let audit = InstallAudit::default();
        let groups = manifests(&plan("airgate-system", &tenants, &audit))?;
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

    fn cluster_names(groups: &[(&str, Vec<Value>)]) -> Vec<String> {
        groups
            .iter()
            .flat_map(|(_, o)| o)
            .filter(|o| o["metadata"]["namespace"].is_null() && o["kind"] != "Namespace")
            .filter(|o| o["kind"] != "CustomResourceDefinition")
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    #[test]
    fn two_installs_share_no_cluster_scoped_name_but_the_crd() -> Result<()> {
        let audit = InstallAudit::default();
        let a = manifests(&plan("airgate-a", &[], &audit))?;
        let b = manifests(&plan("airgate-b", &[], &audit))?;
        assert_eq!(
            cluster_names(&a),
            [
                "ClusterRole/airgate-controller-airgate-a",
                "ClusterRoleBinding/airgate-controller-airgate-a"
            ]
        );
        assert!(
            cluster_names(&a)
                .iter()
                .all(|n| !cluster_names(&b).contains(n))
        );
        Ok(())
    }

    #[test]
    fn replicas_run_as_a_statefulset_with_a_budget_and_need_a_published_log() -> Result<()> {
        let audit = InstallAudit {
            log_key_secret: Some("k".into()),
            log_repository: Some("registry.internal:5000/airgate/audit".into()),
            ..Default::default()
        };
        let mut p = plan("airgate-system", &[], &audit);
        p.replicas = 3;
        p.egress = vec![("10.0.0.1/32".into(), 6443)];
        let all: Vec<Value> = manifests(&p)?.into_iter().flat_map(|(_, o)| o).collect();
        let kinds: Vec<&str> = all.iter().filter_map(|o| o["kind"].as_str()).collect();
        assert!(kinds.contains(&"StatefulSet") && kinds.contains(&"PodDisruptionBudget"));
        assert!(!kinds.contains(&"Deployment") && !kinds.contains(&"PersistentVolumeClaim"));
        let policy = all
            .iter()
            .find(|o| o["kind"] == "NetworkPolicy")
            .ok_or_else(|| anyhow::anyhow!("no NetworkPolicy"))?;
        assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(
            policy["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"],
            "10.0.0.1/32"
        );

        let args = crate::cli::InstallArgs {
            out: None,
            apply: false,
            upgrade: false,
            kubeconfig: None,
            context: None,
            namespace: "airgate-system".into(),
            image: Some("r:1".into()),
            lock: None,
            to: None,
            layout: crate::cli::LayoutArg::ByRegistry,
            tenant_namespaces: Vec::new(),
            watch_namespace: None,
            replicas: 2,
            allow_egress: Vec::new(),
            audit: InstallAudit::default(),
        };
        let refused = Plan::from_args(&args)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(refused.contains("needs --log-repository"), "{refused}");
        Ok(())
    }

    #[test]
    fn egress_is_cidr_and_port() {
        for (text, ok) in [
            ("10.0.0.1/32:6443", true),
            ("fd00::/64:443", true),
            ("10.0.0.0/8", false),
            ("10.0.0.1:443", false),
            ("10.0.0.1/33:443", false),
            ("host.internal/32:443", false),
            ("10.0.0.1/32:0", false),
        ] {
            assert_eq!(egress(text).is_ok(), ok, "{text}");
        }
    }
}
