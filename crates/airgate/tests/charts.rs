//! Charts and hidden images, with the real helm (v3 and v4): `airgate
//! images` renders a chart directory, a packaged chart and an `oci://`
//! chart from the perimeter's upstream registry, lists what is certain,
//! counts what is possible (operator arguments, env values, ConfigMap
//! data), and takes a custom resource's `spec.image` for certain by its
//! built-in rule. Test hooks are not rendered; a chart whose dependency is
//! not vendored fails with the hint to vendor it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use airgate_testkit::{Perimeter, unique_name};
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
