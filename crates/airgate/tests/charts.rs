//! Charts and hidden images, with the real helm (v3 and v4): `airgate
//! images` renders a chart directory, a packaged chart and an `oci://`
//! chart from the perimeter's upstream registry, lists what is certain,
//! counts what is possible (operator arguments, env values, ConfigMap
//! data), and takes a custom resource's `spec.image` for certain by its
//! built-in rule. Test hooks are not rendered; a chart whose dependency is
//! not vendored fails with the hint to vendor it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use airgate_testkit::{Perimeter, run, unique_name};
use anyhow::{Result, ensure};
use serde_json::Value;

fn airgate(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_airgate"));
    c.args(args);
    c
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-operator
spec:
  replicas: {{ .Values.replicas }}
  selector: {matchLabels: {app: operator}}
  template:
    metadata: {labels: {app: operator}}
    spec:
      containers:
        - name: operator
          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
          args:
            - --config-reloader-image={{ .Values.reloader }}
            - --log-level=info
          env:
            - {name: CSI_ATTACHER_IMAGE, value: "registry.k8s.io/sig-storage/csi-attacher:v4.6.1"}
---
apiVersion: monitoring.coreos.com/v1
kind: Prometheus
metadata: {name: {{ .Release.Name }}}
spec:
  image: quay.io/prometheus/prometheus:v2.53.0
---
apiVersion: v1
kind: Pod
metadata:
  name: {{ .Release.Name }}-test
  annotations: {"helm.sh/hook": test}
spec:
  containers: [{name: t, image: "registry.example.com/tests/only:1"}]
"#;

/// A chart in `dir/demo`.
fn chart(dir: &Path) -> Result<PathBuf> {
    let chart = dir.join("demo");
    std::fs::create_dir_all(chart.join("templates"))?;
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
    )?;
    std::fs::write(
        chart.join("values.yaml"),
        "replicas: 1\nimage: {repository: registry.example.com/team/operator, tag: \"1.0\"}\nreloader: quay.io/org/config-reloader:v2.1\n",
    )?;
    std::fs::write(chart.join("templates/all.yaml"), DEPLOYMENT)?;
    Ok(chart)
}

#[test]
fn charts_render_with_helm_3_and_4_and_hidden_images_are_counted() -> Result<()> {
    let p = Perimeter::get();
    let dir = tempfile::tempdir()?;
    let chart = chart(dir.path())?;
    let extra = dir.path().join("prod.yaml");
    std::fs::write(&extra, "replicas: 3\n")?;
    let packaged = dir.path().join("pkg");
    let pack = Command::new(&p.helm)
        .arg("package")
        .arg(&chart)
        .arg("-d")
        .arg(&packaged)
        .output()?;
    ensure!(pack.status.success(), "{}", text(&pack).1);
    let tgz = packaged.join("demo-0.1.0.tgz");
    let repo = format!("{}/{}", p.upstream_registry, unique_name("charts"));
    let push = Command::new(&p.helm)
        .arg("push")
        .arg(&tgz)
        .arg(format!("oci://{repo}"))
        .arg("--plain-http")
        .env("HOME", dir.path())
        .output()?;
    ensure!(push.status.success(), "{}", text(&push).1);
    let oci = format!("oci://{repo}/demo");

    for helm in [&p.helm, &p.helm4] {
        let h = helm.display().to_string();
        for source in [
            chart.display().to_string(),
            tgz.display().to_string(),
            oci.clone(),
        ] {
            let out = airgate(&["images", &source, "--helm", &h, "--set", "image.tag=2.0"])
                .arg("--values")
                .arg(&extra)
                .output()?;
            let (stdout, stderr) = text(&out);
            ensure!(out.status.success(), "{h} {source}: {stderr}");
            assert_eq!(
                stdout.lines().collect::<Vec<_>>(),
                [
                    "quay.io/prometheus/prometheus:v2.53.0",
                    "registry.example.com/team/operator:2.0",
                ],
                "{h} {source}"
            );
            assert!(
                stderr.contains("note: 2 possible images"),
                "{h} {source}: {stderr}"
            );
        }
        let out = airgate(&[
            "images",
            &chart.display().to_string(),
            "--helm",
            &h,
            "--possible",
        ])
        .output()?;
        let (stdout, _) = text(&out);
        assert_eq!(
            stdout.lines().collect::<Vec<_>>(),
            [
                "quay.io/org/config-reloader:v2.1",
                "quay.io/prometheus/prometheus:v2.53.0",
                "registry.example.com/team/operator:1.0",
                "registry.k8s.io/sig-storage/csi-attacher:v4.6.1",
            ],
            "{h}"
        );
        let out = airgate(&[
            "images",
            &chart.display().to_string(),
            "--helm",
            &h,
            "-o",
            "json",
        ])
        .output()?;
        let json: Value = serde_json::from_slice(&out.stdout)?;
        let reloader = json["images"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|i| i["image"] == "quay.io/org/config-reloader:v2.1")
            })
            .cloned()
            .unwrap_or_default();
        assert_eq!(reloader["certain"], false, "{json}");
        assert_eq!(
            reloader["found"][0]["field"], "spec.template.spec.containers[0].args[0]",
            "{json}"
        );
        assert_eq!(
            reloader["found"][0]["object"], "Deployment/release-operator",
            "{json}"
        );
    }

    // A dependency that is not vendored is not fetched: the render fails
    // and says how to carry it.
    let needy = dir.path().join("needy");
    std::fs::create_dir_all(needy.join("templates"))?;
    std::fs::write(
        needy.join("Chart.yaml"),
        "apiVersion: v2\nname: needy\nversion: 0.1.0\ndependencies:\n  - {name: redis, version: 19.0.0, repository: https://charts.example.com}\n",
    )?;
    let out = airgate(&["images", &needy.display().to_string(), "--helm"])
        .arg(&p.helm)
        .output()?;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("helm dependency build") && stderr.contains("needy"),
        "{stderr}"
    );
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest as _, Sha256};
    Ok(format!("{:x}", Sha256::digest(std::fs::read(path)?)))
}

/// A chart and a Trivy-DB-shaped artifact (Trivy's own media types) are
/// locked by reference, carried in a signed bundle, pushed with their
/// digests, and fetched inside by their real consumers: `helm pull` and
/// `oras pull`, byte for byte.
#[test]
fn a_chart_and_a_vulnerability_database_cross_the_gap_for_helm_and_oras() -> Result<()> {
    let p = Perimeter::get();
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let base = unique_name("artifacts");
    let chart = chart(d)?;
    run(Command::new(&p.helm)
        .arg("package")
        .arg(&chart)
        .arg("-d")
        .arg(d))?;
    let tgz = d.join("demo-0.1.0.tgz");
    run(Command::new(&p.helm)
        .arg("push")
        .arg(&tgz)
        .arg(format!("oci://{}/{base}/charts", p.upstream_registry))
        .arg("--plain-http")
        .env("HOME", d))?;
    std::fs::write(d.join("trivy.json"), "{}")?;
    std::fs::write(
        d.join("db.tar.gz"),
        airgate_testkit::images::pseudo_random(77, 300_000),
    )?;
    let db = format!("{}/{base}/trivy-db:2", p.upstream_registry);
    run(Command::new(&p.oras)
        .current_dir(d)
        .args(["push", "--plain-http", "--config"])
        .arg("trivy.json:application/vnd.aquasec.trivy.config.v1+json")
        .arg(&db)
        .arg("db.tar.gz:application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"))?;

    let lock = d.join("x.lock");
    let chart_ref = format!("oci://{}/{base}/charts/demo:0.1.0", p.upstream_registry);
    run(airgate(&["lock", "--artifact", &chart_ref, "--artifact", &db, "--out"]).arg(&lock))?;
    let locked = std::fs::read_to_string(&lock)?;
    assert!(
        locked.contains("kind: chart") && locked.contains("kind: artifact"),
        "{locked}"
    );
    run(airgate(&["key", "generate", "--out"]).arg(d.join("k")))?;
    let bundle = d.join("b.tar");
    run(airgate(&["bundle", "create", "--lock"])
        .arg(&lock)
        .arg("--out")
        .arg(&bundle)
        .arg("--sign-key")
        .arg(d.join("k.key")))?;
    let docker = p.docker_config()?;
    let config = docker.path().join("config.json");
    let ca = p.internal_registry_ca.display().to_string();
    let pushed: Value = serde_json::from_str(&run(airgate(&["bundle", "push"])
        .arg(&bundle)
        .args([
            "--to",
            &format!("{}/{base}", p.internal_registry),
            "--ca-file",
            &ca,
        ])
        .arg("--key")
        .arg(d.join("k.pub"))
        .args(["-o", "json"])
        .env("DOCKER_CONFIG", docker.path()))?)?;
    let target = |suffix: &str| -> Result<String> {
        pushed["images"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .filter_map(|i| i["target"].as_str())
                    .find(|t| t.contains(suffix))
            })
            .map(|t| t.split('@').next().unwrap_or(t).to_string())
            .ok_or_else(|| anyhow::anyhow!("{suffix} not pushed: {pushed}"))
    };

    // oras, the real consumer, pulls the database inside: the same bytes.
    let pulled = d.join("pulled");
    run(Command::new(&p.oras)
        .args(["pull", "--ca-file", &ca, "--registry-config"])
        .arg(&config)
        .arg(target("trivy-db")?)
        .arg("-o")
        .arg(&pulled))?;
    assert_eq!(
        sha256_file(&pulled.join("db.tar.gz"))?,
        sha256_file(&d.join("db.tar.gz"))?
    );
    // helm pulls the chart inside: the same package.
    let charts = d.join("charts-inside");
    std::fs::create_dir_all(&charts)?;
    let chart_inside = target("charts/demo")?;
    let (name, version) = chart_inside.rsplit_once(':').unwrap_or((&chart_inside, ""));
    run(Command::new(&p.helm)
        .arg("pull")
        .arg(format!("oci://{name}"))
        .args(["--version", version, "--ca-file", &ca, "--registry-config"])
        .arg(&config)
        .arg("-d")
        .arg(&charts)
        .env("HOME", d))?;
    assert_eq!(
        sha256_file(&charts.join("demo-0.1.0.tgz"))?,
        sha256_file(&tgz)?
    );
    Ok(())
}

/// `bundle create --chart` carries a chart and the images it renders with
/// the values given, in one command, and writes the lock it made.
#[test]
fn bundle_create_with_a_chart_carries_the_chart_and_its_images() -> Result<()> {
    use airgate_testkit::images::{ImageSpec, LayerSpec, seed_image};
    let p = Perimeter::get();
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let base = unique_name("carry");
    let web = seed_image(
        &p.upstream_registry,
        &format!("{base}/web"),
        "v1",
        &ImageSpec::single(&[LayerSpec {
            seed: 401,
            size: 10_000,
        }]),
    )?;
    let chart = d.join("carry");
    std::fs::create_dir_all(chart.join("templates"))?;
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: carry\nversion: 1.2.0\n",
    )?;
    std::fs::write(
        chart.join("values.yaml"),
        "image: registry.example.com/unused:1\n",
    )?;
    std::fs::write(
        chart.join("templates/pod.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: web, image: \"{{ .Values.image }}\"}]\n",
    )?;
    run(Command::new(&p.helm)
        .arg("package")
        .arg(&chart)
        .arg("-d")
        .arg(d))?;
    run(Command::new(&p.helm)
        .arg("push")
        .arg(d.join("carry-1.2.0.tgz"))
        .arg(format!("oci://{}/{base}/charts", p.upstream_registry))
        .arg("--plain-http")
        .env("HOME", d))?;
    let bundle = d.join("b.tar");
    let chart_ref = format!("oci://{}/{base}/charts/carry", p.upstream_registry);
    run(airgate(&[
        "bundle",
        "create",
        "--chart",
        &chart_ref,
        "--chart-version",
        "1.2.0",
    ])
    .args(["--set", &format!("image={}", web.reference), "--out"])
    .arg(&bundle)
    .arg("--helm")
    .arg(&p.helm4))?;
    let lock = std::fs::read_to_string(d.join("b.tar.lock"))?;
    assert!(
        lock.contains("kind: chart") && lock.contains(&web.digest),
        "{lock}"
    );
    let inspected: Value =
        serde_json::from_str(&run(
            airgate(&["bundle", "inspect", "-o", "json"]).arg(&bundle)
        )?)?;
    let carried = inspected.to_string();
    assert!(
        carried.contains(&web.digest) && carried.contains("/charts/carry"),
        "{carried}"
    );
    Ok(())
}

/// A values schema that refers to a remote URL is named before helm runs:
/// inside the perimeter that fetch fails.
#[test]
fn a_remote_schema_ref_is_named_before_helm_runs() -> Result<()> {
    let p = Perimeter::get();
    let dir = tempfile::tempdir()?;
    let chart = chart(dir.path())?;
    // Refused at once (nothing listens there), as a URL outside would be.
    let url = "http://127.0.0.1:1/schemas/values.json";
    std::fs::write(
        chart.join("values.schema.json"),
        format!(r#"{{"$ref": "{url}"}}"#),
    )?;
    let out = airgate(&["images", &chart.display().to_string(), "--helm"])
        .arg(&p.helm)
        .output()?;
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("values.schema.json") && stderr.contains(url) && stderr.contains("hint:"),
        "{stderr}"
    );
    Ok(())
}
