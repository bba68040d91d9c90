//! Helm Apps on the perimeter, with the real helm (v3 and v4) inside the
//! controller: a chart pushed to the internal registry (TLS, basic auth),
//! pulled as the App with its own Secret, values from Git; the chart's
//! policy (`requireDigests`); a values change rolled out; the CRD of
//! `crds/` upgraded with a new chart version; hooks mapped onto the staged
//! apply (a post hook deleted once it succeeded, a pre-upgrade hook run on
//! upgrade, and a failing one that stops the sync before stage two); and a
//! template that calls `lookup`, reported. With helm 3 the controller and
//! every helm it runs are traced: nothing but the apiserver, the Git
//! server and the internal registry is reached.

mod tenant;

use std::process::Command;

use airgate_core::status::ConditionType;
use airgate_kube::app::App;
use anyhow::{Context, Result, ensure};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use serde_json::json;
use tenant::*;

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: {{ .Release.Name }}-web}
spec:
  replicas: {{ .Values.replicas }}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - {name: web, image: {{ .Values.image | quote }}}
"#;

const SETTINGS: &str = r#"apiVersion: v1
kind: ConfigMap
metadata: {name: {{ .Release.Name }}-settings}
data: {color: {{ .Values.color | quote }}}
"#;

/// Runs on upgrade, before stage two; fails (unschedulable, with a short
/// deadline) when the values say so.
const MIGRATE: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-migrate
  annotations: {helm.sh/hook: pre-upgrade, helm.sh/hook-weight: "1"}
spec:
  backoffLimit: 0
  {{- if .Values.failMigration }}
  activeDeadlineSeconds: 2
  {{- end }}
  template:
    spec:
      restartPolicy: Never
      {{- if .Values.failMigration }}
      nodeSelector: {airgate.dev/no-such-node: "true"}
      {{- end }}
      containers:
        - {name: migrate, image: {{ .Values.image | quote }}}
"#;

/// Runs after install and upgrade once everything is healthy; deleted
/// when it succeeded.
const SMOKE: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-smoke
  annotations: {helm.sh/hook: "post-install,post-upgrade", helm.sh/hook-delete-policy: hook-succeeded}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - {name: smoke, image: {{ .Values.image | quote }}}
"#;

/// The chart at `version`, its CRD with a `size` field from 0.2.0 on;
/// pushed to the internal registry; its manifest digest.
fn push_chart(t: &Tenant, helm: &std::path::Path, version: &str) -> Result<String> {
    let group = format!("{}.example.com", t.ns);
    let dir = t.dir.path().join(format!("chart-{version}"));
    let c = dir.join("demo");
    std::fs::create_dir_all(c.join("templates"))?;
    std::fs::create_dir_all(c.join("crds"))?;
    std::fs::write(
        c.join("Chart.yaml"),
        format!("apiVersion: v2\nname: demo\nversion: {version}\n"),
    )?;
    std::fs::write(
        c.join("values.yaml"),
        "replicas: 1\ncolor: red\nfailMigration: false\n",
    )?;
    for (name, text) in [
        ("web.yaml", DEPLOYMENT),
        ("settings.yaml", SETTINGS),
        ("migrate.yaml", MIGRATE),
        ("smoke.yaml", SMOKE),
        (
            "existing.yaml",
            "{{- $old := lookup \"v1\" \"ConfigMap\" .Release.Namespace \"x\" }}\n",
        ),
    ] {
        std::fs::write(c.join("templates").join(name), text)?;
    }
    let size = if version == "0.1.0" {
        ""
    } else {
        ", properties: {size: {type: integer}}"
    };
    std::fs::write(
        c.join("crds/widgets.yaml"),
        format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: widgets.{group}}}\nspec:\n  group: {group}\n  names: {{kind: Widget, plural: widgets}}\n  scope: Namespaced\n  versions:\n    - name: v1\n      served: true\n      storage: true\n      schema: {{openAPIV3Schema: {{type: object{size}}}}}\n"
        ),
    )?;
    let home = tempfile::tempdir()?;
    let run = |command: &mut Command| -> Result<String> {
        let out = command.env("HOME", home.path()).output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(out.status.success(), "{command:?}: {text}");
        Ok(text)
    };
    run(Command::new(helm)
        .arg("package")
        .arg(&c)
        .arg("-d")
        .arg(&dir))?;
    let docker = t.p.docker_config()?;
    let pushed = run(Command::new(helm)
        .arg("push")
        .arg(dir.join(format!("demo-{version}.tgz")))
        .arg(format!("oci://{}/{}/charts", t.p.internal_registry, t.ns))
        .arg("--ca-file")
        .arg(&t.p.internal_registry_ca)
        .arg("--registry-config")
        .arg(docker.path().join("config.json")))?;
    pushed
        .split_whitespace()
        .find(|w| w.starts_with("sha256:") && w.len() == 71)
        .map(String::from)
        .with_context(|| format!("no digest in helm push's output: {pushed}"))
}

/// What the tenant needs for a Helm App: the registry Secret, and leave
/// for its ServiceAccount to manage CRDs (cluster-scoped).
async fn helm_tenant(t: &Tenant) -> Result<()> {
    let admin = airgate_kube::Applier::new(t.p.kube_client().await?, "perimeter-setup", &t.ns);
    let objects = [
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "chart-creds", "namespace": t.ns},
               "stringData": {"username": t.p.internal_registry_user, "password": t.p.internal_registry_password()?,
                              "ca.crt": std::fs::read_to_string(&t.p.internal_registry_ca)?}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": format!("{}-crds", t.ns)},
               "rules": [{"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
                          "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": format!("{}-crds", t.ns)},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("{}-crds", t.ns)},
               "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": t.ns}]}),
    ];
    let objects: Vec<_> = objects
        .iter()
        .map(|o| ("setup".to_string(), o.clone()))
        .collect();
    admin.apply(&objects).await?;
    Ok(())
}

fn condition(app: &App, kind: ConditionType) -> Option<(String, String)> {
    app.status
        .as_ref()
        .and_then(|s| s.condition(kind))
        .map(|c| (c.reason.clone(), c.message.clone()))
}

/// Images name the internal registry itself: the controller reads their
/// imports from it (an allowed registry), which the trace allows.
fn values(registry: &str, color: &str, fail: bool) -> String {
    format!("image: \"{registry}/shop/web:1.0@{DIGEST}\"\ncolor: {color}\nfailMigration: {fail}\n")
}

async fn drill(helm: &std::path::Path, v4: bool) -> Result<()> {
    let _git = GIT.read().await;
    let t = Tenant::new(if v4 { "helm4" } else { "helm3" }).await?;
    helm_tenant(&t).await?;
    let first = push_chart(&t, helm, "0.1.0")?;
    t.write("envs/prod/values.yaml", &values(&t.p.internal_registry, "blue", false))?;
    t.push("values")?;
    let chart = format!("oci://{}/{}/charts/demo", t.p.internal_registry, t.ns);
    let helm_arg = helm.display().to_string();
    // With helm 3, the controller and the helm it runs are traced: the
    // render reaches nothing (air-gap discipline).
    let trace = t.dir.path().join("controller.trace");
    let c = t
        .controller_traced(
            "c1",
            &format!("{}-lease", t.ns),
            (!v4).then_some(trace.as_path()),
            &["--helm", &helm_arg],
        )
        .await?;
    let policy = json!({"allowedRegistries": [t.p.internal_registry],
                        "requireDigests": true});
    let source = |at: serde_json::Value| {
        let mut helm = json!({"chart": chart, "valuesFiles": ["values.yaml"],
                              "values": {"replicas": 2}, "releaseName": "shop",
                              "secretRef": {"name": "chart-creds"}});
        if let (Some(h), Some(at)) = (helm.as_object_mut(), at.as_object()) {
            h.extend(at.clone());
        }
        json!({"url": format!("{}/{}.git", t.p.git_url, t.repo), "ref": {"branch": "main"},
               "path": "envs/prod", "secretRef": {"name": "git-creds"}, "helm": helm})
    };

    // requireDigests covers the chart: a version alone is refused, and
    // nothing is asked of the registry.
    t.create_app(
        "shop",
        json!({"source": source(json!({"version": "0.1.0"})), "policy": policy}),
    )
    .await?;
    let refused = t.until_reason("PolicyViolation", &c).await?;
    let message = ready_message(&refused);
    ensure!(
        message.contains("spec.source.helm.chart") && message.contains("not pinned by digest"),
        "{message}"
    );

    // By digest: installed.
    t.patch_app(
        "shop",
        json!({"source": source(json!({"version": null, "digest": first}))}),
    )
    .await?;
    let app = t.until("shop", "Ready", ready, &c).await?;
    let settings = t.config_map("shop-settings").await?.context("settings")?;
    ensure!(
        settings
            .data
            .unwrap_or_default()
            .get("color")
            .map(String::as_str)
            == Some("blue")
    );
    let web = t.deployment("shop-web").await?.context("web")?;
    ensure!(
        web.spec.and_then(|s| s.replicas) == Some(2),
        "inline values applied last"
    );
    let (reason, warning) =
        condition(&app, ConditionType::RenderWarning).context("no RenderWarning")?;
    ensure!(
        reason == "NondeterministicTemplate"
            && warning.contains("templates/existing.yaml uses lookup"),
        "{warning}"
    );
    let jobs: Api<Job> = Api::namespaced(t.p.kube_client().await?, &t.ns);
    ensure!(
        jobs.get_opt("shop-migrate").await?.is_none(),
        "a pre-upgrade hook does not run on install"
    );
    ensure!(
        jobs.get_opt("shop-smoke").await?.is_none(),
        "the post-install hook was deleted once it succeeded"
    );
    let records = c.records(&format!("{}/shop", t.ns))?;
    let installed = records
        .iter()
        .find(|r| r.result.as_str() == "succeeded")
        .context("record")?;
    let smoke: Vec<&str> = installed
        .objects
        .iter()
        .filter(|o| o.object.contains("shop-smoke"))
        .map(|o| o.action.as_str())
        .collect();
    ensure!(
        smoke == ["created", "deleted"],
        "the record shows the hook: {smoke:?}"
    );
    let crds: Api<CustomResourceDefinition> = Api::all(t.p.kube_client().await?);
    let crd_name = format!("widgets.{}.example.com", t.ns);
    ensure!(
        crds.get_opt(&crd_name).await?.is_some(),
        "the CRD of crds/ applied"
    );

    // A values change in Git rolls out, after the pre-upgrade hook.
    t.write("envs/prod/values.yaml", &values(&t.p.internal_registry, "green", false))?;
    let green = t.push("green")?;
    t.until(
        "shop",
        "green applied",
        |a| ready(a) && applied(a).as_deref() == Some(green.as_str()),
        &c,
    )
    .await?;
    let settings = t.config_map("shop-settings").await?.context("settings")?;
    ensure!(
        settings
            .data
            .unwrap_or_default()
            .get("color")
            .map(String::as_str)
            == Some("green")
    );
    let migrate = jobs
        .get_opt("shop-migrate")
        .await?
        .context("the pre-upgrade hook ran")?;
    ensure!(
        migrate.status.and_then(|s| s.succeeded) == Some(1),
        "the hook was waited on until it completed"
    );

    // A new chart version upgrades the CRD (helm install would not).
    let second = push_chart(&t, helm, "0.2.0")?;
    t.patch_app(
        "shop",
        json!({"source": source(json!({"version": null, "digest": second}))}),
    )
    .await?;
    let has_size = |crd: &CustomResourceDefinition| {
        serde_json::to_string(&crd.spec.versions)
            .unwrap_or_default()
            .contains("size")
    };
    airgate_testkit::eventually(
        "the CRD upgraded",
        std::time::Duration::from_secs(60),
        || {
            let crds = crds.clone();
            let name = crd_name.clone();
            async move {
                match crds.get_opt(&name).await.map_err(|e| e.to_string())? {
                    Some(crd) if has_size(&crd) => Ok(Some(())),
                    _ => Err("no size field yet".to_string()),
                }
            }
        },
    )
    .await?;
    t.until("shop", "Ready on 0.2.0", ready, &c).await?;

    // A pre-upgrade hook that fails stops the sync before stage two.
    t.write("envs/prod/values.yaml", &values(&t.p.internal_registry, "red", true))?;
    t.push("a migration that fails")?;
    let failed = t.until_reason("HookFailed", &c).await?;
    let message = ready_message(&failed);
    ensure!(
        message.contains("shop-migrate") && message.contains("DeadlineExceeded"),
        "the status names the hook and the Job's reason: {message}"
    );
    let settings = t.config_map("shop-settings").await?.context("settings")?;
    ensure!(
        settings
            .data
            .unwrap_or_default()
            .get("color")
            .map(String::as_str)
            == Some("green"),
        "nothing of stage two was applied"
    );
    drop(c);
    if !v4 {
        let kubeconfig = std::fs::read_to_string(&t.p.kubeconfig)?;
        let server = kubeconfig
            .lines()
            .find_map(|l| l.trim().strip_prefix("server:"))
            .context("no server in the kubeconfig")?;
        let allowed = [
            airgate_testkit::airgap::endpoint(server.trim())?,
            airgate_testkit::airgap::endpoint(&t.p.git_url)?,
            airgate_testkit::airgap::endpoint(&t.p.internal_registry)?,
        ];
        let attempts = airgate_testkit::airgap::attempts(&trace)?;
        ensure!(!attempts.is_empty(), "the trace recorded nothing");
        let found = airgate_testkit::airgap::violations(&attempts, &allowed);
        ensure!(found.is_empty(), "{}", found.join("\n"));
    }
    Ok(())
}

#[tokio::test]
async fn a_helm_app_installs_upgrades_runs_hooks_and_stops_at_a_failed_hook_with_helm_3()
-> Result<()> {
    let p = airgate_testkit::Perimeter::get();
    drill(&p.helm, false).await
}

#[tokio::test]
async fn a_helm_app_installs_upgrades_runs_hooks_and_stops_at_a_failed_hook_with_helm_4()
-> Result<()> {
    let p = airgate_testkit::Perimeter::get();
    drill(&p.helm4, true).await
}
