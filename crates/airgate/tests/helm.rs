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
use airgate_testkit::run_both;
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

/// The color the release's settings say now.
async fn color(t: &Tenant) -> Result<String> {
    let settings = t.config_map("shop-settings").await?.context("settings")?;
    Ok(settings
        .data
        .unwrap_or_default()
        .get("color")
        .cloned()
        .unwrap_or_default())
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
    t.write(
        "envs/prod/values.yaml",
        &values(&t.p.internal_registry, "blue", false),
    )?;
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
    ensure!(color(&t).await? == "blue");
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
    t.write(
        "envs/prod/values.yaml",
        &values(&t.p.internal_registry, "green", false),
    )?;
    let green = t.push("green")?;
    t.until(
        "shop",
        "green applied",
        |a| ready(a) && applied(a).as_deref() == Some(green.as_str()),
        &c,
    )
    .await?;
    ensure!(color(&t).await? == "green");
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
    t.write(
        "envs/prod/values.yaml",
        &values(&t.p.internal_registry, "red", true),
    )?;
    t.push("a migration that fails")?;
    let failed = t.until_reason("HookFailed", &c).await?;
    let message = ready_message(&failed);
    ensure!(
        message.contains("shop-migrate") && message.contains("DeadlineExceeded"),
        "the status names the hook and the Job's reason: {message}"
    );
    ensure!(
        color(&t).await? == "green",
        "nothing of stage two was applied"
    );
    drop(c);
    if !v4 {
        let found = reached_elsewhere(&t.p, &trace, &[&t.p.internal_registry])?;
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

/// Serves the files of `dir` over plain HTTP on a loopback port, as a
/// classic chart repository (`index.yaml` and packages); its base URL.
fn chart_repository(dir: std::path::PathBuf) -> Result<String> {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", listener.local_addr()?);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let name = path.trim_start_matches('/');
            let file = (!name.contains("..") && !name.contains('/'))
                .then(|| std::fs::read(dir.join(name)).ok())
                .flatten();
            let mut out = &stream;
            let _ = match file {
                Some(body) => out
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| out.write_all(&body)),
                None => out.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            };
        }
    });
    Ok(url)
}

/// A small chart: a ConfigMap naming its image, and a Deployment of it.
fn small_chart(
    dir: &std::path::Path,
    name: &str,
    version: &str,
    image: &str,
    deps: &str,
) -> Result<std::path::PathBuf> {
    let c = dir.join(name);
    std::fs::create_dir_all(c.join("templates"))?;
    std::fs::write(
        c.join("Chart.yaml"),
        format!("apiVersion: v2\nname: {name}\nversion: {version}\n{deps}"),
    )?;
    std::fs::write(c.join("values.yaml"), format!("image: {image}\n"))?;
    std::fs::write(
        c.join("templates/web.yaml"),
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers:\n        - {{name: web, image: {{{{ .Values.image | quote }}}}}}\n"
        ),
    )?;
    Ok(c)
}

/// A chart directory whose dependencies come from a classic chart
/// repository (served here), an OCI registry and a directory beside it: `bundle create --chart`
/// vendors them, locks every image the whole chart renders, and carries
/// the chart; `bundle push` puts it in the internal registry, where a
/// Helm App installs it, images by digest. A classic repository's chart
/// locked by URL crosses the gap byte for byte (`helm pull` inside).
#[tokio::test]
async fn a_chart_with_vendored_dependencies_crosses_the_gap_and_an_app_installs_it_with_helm_3()
-> Result<()> {
    vendored(&airgate_testkit::Perimeter::get().helm).await
}

#[tokio::test]
async fn a_chart_with_vendored_dependencies_crosses_the_gap_and_an_app_installs_it_with_helm_4()
-> Result<()> {
    vendored(&airgate_testkit::Perimeter::get().helm4).await
}

async fn vendored(helm: &std::path::Path) -> Result<()> {
    use airgate_testkit::images::{ImageSpec, LayerSpec, seed_image};
    let _git = GIT.read().await;
    let t = Tenant::new("helm-vendor").await?;
    helm_tenant(&t).await?;
    let p = &t.p;
    let d = t.dir.path().join("charts");
    std::fs::create_dir_all(&d)?;
    let base = t.ns.clone();
    let seed = |name: &str, seed: u64| {
        seed_image(
            &p.upstream_registry,
            &format!("{base}/{name}"),
            "v1",
            &ImageSpec::single(&[LayerSpec { seed, size: 5_000 }]),
        )
    };
    let (web, classic_img, oci_img) = (seed("web", 501)?, seed("classic", 502)?, seed("oci", 503)?);

    // The classic repository, with sub-classic 0.3.0.
    let repo = d.join("repo");
    std::fs::create_dir_all(&repo)?;
    let classic = small_chart(&d, "sub-classic", "0.3.0", &classic_img.reference, "")?;
    run_both(
        Command::new(&p.helm)
            .arg("package")
            .arg(&classic)
            .arg("-d")
            .arg(&repo),
    )?;
    let repo_url = chart_repository(repo.clone())?;
    run_both(
        Command::new(&p.helm)
            .args(["repo", "index"])
            .arg(&repo)
            .args(["--url", &repo_url])
            .env("HOME", &d),
    )?;
    // The OCI subchart, in the upstream registry; its values schema
    // refers to a schema on the repository's server.
    let oci = small_chart(&d, "sub-oci", "0.4.0", &oci_img.reference, "")?;
    std::fs::write(repo.join("schema.json"), r#"{"type": "object"}"#)?;
    std::fs::write(
        oci.join("values.schema.json"),
        format!(r#"{{"$ref": "{repo_url}/schema.json"}}"#),
    )?;
    run_both(
        Command::new(&p.helm)
            .arg("package")
            .arg(&oci)
            .arg("-d")
            .arg(&d),
    )?;
    run_both(
        Command::new(&p.helm)
            .arg("push")
            .arg(d.join("sub-oci-0.4.0.tgz"))
            .arg(format!("oci://{}/{base}/charts", p.upstream_registry))
            .arg("--plain-http")
            .env("HOME", &d),
    )?;
    // A directory beside the parent, named relative to it.
    small_chart(&d, "sub-local", "0.1.0", &web.reference, "")?;
    // The parent, a directory naming all three.
    let deps = format!(
        "dependencies:\n  - {{name: sub-classic, version: 0.3.0, repository: \"{repo_url}\"}}\n  - {{name: sub-oci, version: 0.4.0, repository: \"oci://{}/{base}/charts\"}}\n  - {{name: sub-local, version: 0.1.0, repository: \"file://../sub-local\"}}\n",
        p.upstream_registry
    );
    let parent = small_chart(&d, "parent", "1.0.0", &web.reference, &deps)?;

    let keys = d.join("k");
    run_both(airgate().args(["key", "generate", "--out"]).arg(&keys))?;
    let lock = d.join("classic.lock");
    run_both(
        airgate()
            .args([
                "lock",
                "--artifact",
                &format!("{repo_url}/sub-classic:0.3.0"),
                "--out",
            ])
            .arg(&lock),
    )?;
    let bundle = d.join("b.tar");
    let (_, created) = run_both(
        airgate()
            .args(["bundle", "create", "--lock"])
            .arg(&lock)
            .arg("--chart")
            .arg(&parent)
            .arg("--helm")
            .arg(helm)
            .arg("--out")
            .arg(&bundle)
            .arg("--sign-key")
            .arg(d.join("k.key")),
    )?;
    ensure!(
        created.contains("carried as airgate.local/charts/parent:1.0.0"),
        "{created}"
    );
    // The remote $ref is named, and carried since it resolves from here.
    let schema = format!(
        "schemas/{}/schema.json",
        repo_url.trim_start_matches("http://").replace(':', "_")
    );
    ensure!(
        created.contains("sub-oci/values.schema.json")
            && created.contains(&format!("files/{schema}")),
        "{created}"
    );
    let (inspected, _) = run_both(
        airgate()
            .args(["bundle", "inspect", "-o", "json"])
            .arg(&bundle),
    )?;
    ensure!(inspected.contains(&schema), "{inspected}");
    let locked = std::fs::read_to_string(d.join("b.tar.lock"))?;
    for digest in [&web.digest, &classic_img.digest, &oci_img.digest] {
        ensure!(
            locked.contains(digest.as_str()),
            "every image the vendored chart renders is locked: {locked}"
        );
    }
    ensure!(
        !std::fs::read_dir(&parent)?.any(|e| e.is_ok_and(|e| e.file_name() == "charts")),
        "the user's chart directory is not changed"
    );

    let docker = p.docker_config()?;
    let pushed: serde_json::Value = serde_json::from_str(
        &run_both(
            airgate()
                .arg("bundle")
                .arg("push")
                .arg(&bundle)
                .args(["--to", &format!("{}/{base}", p.internal_registry)])
                .arg("--ca-file")
                .arg(&p.internal_registry_ca)
                .arg("--key")
                .arg(d.join("k.pub"))
                .args(["-o", "json"])
                .env("DOCKER_CONFIG", docker.path()),
        )?
        .0,
    )?;
    let target = |suffix: &str| -> Result<String> {
        pushed["images"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .filter_map(|i| i["target"].as_str())
                    .find(|t| t.contains(suffix))
            })
            .map(String::from)
            .with_context(|| format!("{suffix} not pushed: {pushed}"))
    };

    // helm pulls the classic repository's chart inside: the same package.
    let classic_inside = target("sub-classic:0.3.0")?;
    let tagged = classic_inside.split('@').next().unwrap_or_default();
    let name = &tagged[..tagged.rfind(':').unwrap_or(tagged.len())];
    let pulled = d.join("pulled");
    std::fs::create_dir_all(&pulled)?;
    run_both(
        Command::new(&p.helm)
            .arg("pull")
            .arg(format!("oci://{name}"))
            .args(["--version", "0.3.0", "--registry-config"])
            .arg(docker.path().join("config.json"))
            .arg("--ca-file")
            .arg(&p.internal_registry_ca)
            .arg("-d")
            .arg(&pulled)
            .env("HOME", &d),
    )?;
    ensure!(
        std::fs::read(pulled.join("sub-classic-0.3.0.tgz"))?
            == std::fs::read(repo.join("sub-classic-0.3.0.tgz"))?,
        "the classic repository's package crossed byte for byte"
    );

    // A Helm App installs the vendored chart from the internal registry.
    let parent_inside = target("airgate.local/charts/parent")?;
    let (at, digest) = parent_inside.split_once('@').context("a digest")?;
    let chart = format!("oci://{}", &at[..at.rfind(':').unwrap_or(at.len())]);
    let pin =
        |img: &airgate_testkit::images::SeededImage| format!("{}@{}", img.reference, img.digest);
    t.write(
        "envs/prod/values.yaml",
        &format!(
            "image: {}\nsub-classic: {{image: {}}}\nsub-oci: {{image: {}}}\nsub-local: {{image: {}}}\n",
            pin(&web),
            pin(&classic_img),
            pin(&oci_img),
            pin(&web)
        ),
    )?;
    t.push("values")?;
    let helm_arg = helm.display().to_string();
    let c = t
        .controller_traced(
            "c1",
            &format!("{}-lease", t.ns),
            None,
            &["--helm", &helm_arg],
        )
        .await?;
    let source = json!({"url": format!("{}/{}.git", p.git_url, t.repo), "ref": {"branch": "main"},
                        "path": "envs/prod", "secretRef": {"name": "git-creds"},
                        "helm": {"chart": chart, "digest": digest, "valuesFiles": ["values.yaml"],
                                 "secretRef": {"name": "chart-creds"}}});
    t.create_app(
        "shop",
        json!({"source": source,
               "policy": {"allowedRegistries": [p.upstream_registry, p.internal_registry], "requireDigests": true}}),
    )
    .await?;
    t.until("shop", "Ready", ready, &c).await?;
    for name in ["parent", "sub-classic", "sub-oci", "sub-local"] {
        ensure!(t.deployment(name).await?.is_some(), "{name} installed");
    }
    Ok(())
}
