//! Helm charts, rendered with the real `helm template`, offline.
//!
//! Why the real binary: there is no Rust Helm, and a chart's meaning is
//! what Helm makes of it. What Helm may reach is closed off: it runs with
//! empty cache, config and data directories of its own (no repositories
//! configured, nothing from the user's Helm setup), so a chart renders
//! from what it carries or fails naming what it lacks (an undeclared
//! dependency is not fetched: `helm dependency build` belongs on the
//! connected side). Test hooks are skipped.
//!
//! A chart is a directory with a `Chart.yaml`, a packaged chart (`.tgz`),
//! or an `oci://` reference (pulled with the credentials of the Docker
//! config file the caller names; a loopback registry over plain HTTP).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Manifest, RenderError, parse_documents};

/// How to render a chart: what `helm template` is given.
#[derive(Clone, Debug, Default)]
pub struct HelmOptions {
    /// Values files, in order.
    pub values: Vec<PathBuf>,
    /// `--set K=V`, in order, applied after the files.
    pub set: Vec<String>,
    /// Default: `release`.
    pub release_name: Option<String>,
    pub namespace: Option<String>,
    /// `--kube-version` (Capabilities.KubeVersion); default [`KUBE_VERSION`].
    pub kube_version: Option<String>,
    /// `--api-versions` (Capabilities.APIVersions).
    pub api_versions: Vec<String>,
    /// `--version` of an `oci://` chart.
    pub version: Option<String>,
    /// The Docker config file an `oci://` chart's credentials are read from.
    pub registry_config: Option<PathBuf>,
    /// `--include-crds`: the chart's `crds/` among the objects (the
    /// controller applies them in its first stage, and upgrades them).
    pub include_crds: bool,
}

/// The Kubernetes version charts see when none is given: the newest
/// airgate is built for. Helm's own default depends on how helm was built
/// (v1.20 for a `go install`ed helm 3), and charts that require a newer
/// one refuse to render with it.
pub const KUBE_VERSION: &str = "v1.36.0";

/// Whether `path` names a chart (see the module docs).
pub fn is_chart(path: &Path) -> bool {
    let text = path.to_string_lossy();
    text.starts_with("oci://")
        || path.join("Chart.yaml").is_file()
        || (path.is_file() && text.ends_with(".tgz"))
}

fn loopback(reference: &str) -> bool {
    let host = reference
        .trim_start_matches("oci://")
        .split('/')
        .next()
        .unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

/// `helm template` of `chart` with `options`, with Helm closed off (see
/// the module docs).
pub fn template(
    helm: &Path,
    chart: &Path,
    options: &HelmOptions,
) -> Result<Vec<Manifest>, RenderError> {
    let shown = chart.display().to_string();
    let home = temporary()?;
    let mut cmd = closed_off(helm, home.path());
    cmd.arg("template")
        .arg(options.release_name.as_deref().unwrap_or("release"))
        .arg(chart)
        .arg("--skip-tests");
    if shown.starts_with("oci://") {
        if let Some(config) = options.registry_config.as_ref().filter(|c| c.is_file()) {
            cmd.arg("--registry-config").arg(config);
        }
        if loopback(&shown) {
            cmd.arg("--plain-http");
        }
        if let Some(v) = &options.version {
            cmd.args(["--version", v]);
        }
    }
    for v in &options.values {
        cmd.arg("--values").arg(v);
    }
    for s in &options.set {
        cmd.arg("--set").arg(s);
    }
    if let Some(ns) = &options.namespace {
        cmd.args(["--namespace", ns]);
    }
    let kube_version = options.kube_version.as_deref().unwrap_or(KUBE_VERSION);
    cmd.args(["--kube-version", kube_version]);
    for a in &options.api_versions {
        cmd.args(["--api-versions", a]);
    }
    if options.include_crds {
        cmd.arg("--include-crds");
    }
    let out = succeeded(helm, &mut cmd, &shown)?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_documents(&format!("{shown} (helm template)"), &text)
}

fn temporary() -> Result<tempfile::TempDir, RenderError> {
    tempfile::tempdir().map_err(|source| RenderError::Io {
        path: "a temporary directory for helm".into(),
        source,
    })
}

/// `helm` with nothing of the user's Helm setup: homes of its own under
/// `home`, no environment but `PATH` and the TLS trust variables.
fn closed_off(helm: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(helm);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    for (name, value) in std::env::vars_os() {
        if name == "SSL_CERT_FILE" || name == "SSL_CERT_DIR" {
            cmd.env(name, value);
        }
    }
    cmd
}

/// Runs `cmd`; its output, or an error with its stderr (and a hint when
/// a dependency is missing).
fn succeeded(
    helm: &Path,
    cmd: &mut Command,
    chart: &str,
) -> Result<std::process::Output, RenderError> {
    let out = cmd.output().map_err(|source| RenderError::Io {
        path: helm.display().to_string(),
        source,
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("missing in charts/") {
            "\nhint: vendor the chart's dependencies on the connected side (helm dependency build), or carry them in a bundle"
        } else {
            ""
        };
        return Err(RenderError::Helm {
            chart: chart.to_string(),
            stderr: format!("{}{hint}", airgate_core::text::cut(stderr.trim(), 2000)),
        });
    }
    Ok(out)
}

/// A packaged chart's name, version and Helm OCI config (its `Chart.yaml`
/// as JSON, as `helm push` writes it).
pub fn package_info(package: &[u8]) -> Result<(String, String, Vec<u8>), String> {
    use std::io::Read;
    let gz = flate2::read::GzDecoder::new(package).take(MAX_CHART);
    let mut archive = tar::Archive::new(gz);
    let entries = archive.entries().map_err(|e| e.to_string())?;
    for entry in entries {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        let parts: Vec<_> = path.components().collect();
        if parts.len() != 2 || path.file_name().is_none_or(|n| n != "Chart.yaml") {
            continue;
        }
        if entry.size() > crate::MAX_FILE {
            return Err("its Chart.yaml is too large".into());
        }
        let mut text = String::new();
        entry
            .read_to_string(&mut text)
            .map_err(|e| format!("Chart.yaml: {e}"))?;
        let value: serde_json::Value =
            serde_saphyr::from_str(&text).map_err(|e| format!("Chart.yaml: {e}"))?;
        let field = |k: &str| {
            value[k]
                .as_str()
                .map(String::from)
                .ok_or_else(|| format!("Chart.yaml has no {k}"))
        };
        let config = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
        return Ok((field("name")?, field("version")?, config));
    }
    Err("it has no NAME/Chart.yaml: not a packaged chart".into())
}

/// How [`vendor`] reaches the dependencies' repositories and registries.
#[derive(Clone, Debug, Default)]
pub struct VendorOptions {
    /// The Docker config file OCI dependencies' credentials are read from.
    pub registry_config: Option<PathBuf>,
    /// A CA bundle for HTTPS repositories and registries.
    pub ca_file: Option<PathBuf>,
}

/// The chart directory `chart` packaged with every dependency its
/// `Chart.yaml` declares vendored (`helm dependency update`: chart
/// repositories by URL, `oci://` registries, `file://` directories), on
/// the connected side, in a copy: the directory itself is not changed.
/// The package's path is inside the returned directory.
pub fn vendor(
    helm: &Path,
    chart: &Path,
    options: &VendorOptions,
) -> Result<(tempfile::TempDir, PathBuf), RenderError> {
    let shown = chart.display().to_string();
    let work = temporary()?;
    let copy = work.path().join("chart");
    copy_tree(chart, &copy, 0)?;
    let dependencies = absolute_file_dependencies(chart, &copy.join("Chart.yaml"))?;
    let home = temporary()?;
    if !dependencies.is_empty() {
        let mut cmd = closed_off(helm, home.path());
        cmd.args(["dependency", "update"]).arg(&copy);
        if let Some(config) = options.registry_config.as_ref().filter(|c| c.is_file()) {
            cmd.arg("--registry-config").arg(config);
        }
        if let Some(ca) = &options.ca_file {
            cmd.arg("--ca-file").arg(ca);
        }
        if dependencies
            .iter()
            .any(|d| d.starts_with("oci://") && loopback(d))
        {
            cmd.arg("--plain-http");
        }
        succeeded(helm, &mut cmd, &shown)?;
    }
    let out = work.path().join("package");
    let mut cmd = closed_off(helm, home.path());
    cmd.arg("package").arg(&copy).arg("-d").arg(&out);
    succeeded(helm, &mut cmd, &shown)?;
    let package = std::fs::read_dir(&out)
        .map_err(|source| RenderError::Io {
            path: out.display().to_string(),
            source,
        })?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .ok_or_else(|| RenderError::Helm {
            chart: shown,
            stderr: "helm package wrote no package".into(),
        })?;
    Ok((work, package))
}

/// Copies a chart directory: regular files and directories only (a link
/// or a device in a chart is refused, naming it), each file bounded.
fn copy_tree(from: &Path, to: &Path, depth: usize) -> Result<(), RenderError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| RenderError::Io { path, source }
    };
    if depth > 32 {
        return Err(RenderError::Io {
            path: from.display().to_string(),
            source: std::io::Error::other("nested too deeply"),
        });
    }
    std::fs::create_dir_all(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io(&path))?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&path, &target, depth + 1)?;
        } else if kind.is_file() {
            let meta = entry.metadata().map_err(io(&path))?;
            if meta.len() > crate::MAX_FILE {
                return Err(RenderError::TooLarge {
                    path: path.display().to_string(),
                });
            }
            std::fs::copy(&path, &target).map_err(io(&path))?;
        } else {
            return Err(RenderError::NotAFile {
                path: path.display().to_string(),
            });
        }
    }
    Ok(())
}

/// The repositories of the dependencies `chart_yaml` declares; relative
/// `file://` ones rewritten to absolute paths from `original` (the copy
/// lives elsewhere).
fn absolute_file_dependencies(
    original: &Path,
    chart_yaml: &Path,
) -> Result<Vec<String>, RenderError> {
    let text = std::fs::read_to_string(chart_yaml).map_err(|source| RenderError::Io {
        path: chart_yaml.display().to_string(),
        source,
    })?;
    let yaml_error = |message: String| RenderError::Yaml {
        path: original.join("Chart.yaml").display().to_string(),
        message,
    };
    let mut value: serde_json::Value =
        serde_saphyr::from_str(&text).map_err(|e| yaml_error(e.to_string()))?;
    let mut repositories = Vec::new();
    let mut changed = false;
    if let Some(deps) = value["dependencies"].as_array_mut() {
        for d in deps {
            let Some(repo) = d["repository"].as_str().map(String::from) else {
                continue;
            };
            if let Some(rel) = repo.strip_prefix("file://")
                && !rel.starts_with('/')
            {
                let abs = original.join(rel);
                d["repository"] = serde_json::Value::String(format!("file://{}", abs.display()));
                changed = true;
            }
            repositories.push(repo);
        }
    }
    if changed {
        let text = serde_saphyr::to_string(&value).map_err(|e| yaml_error(e.to_string()))?;
        std::fs::write(chart_yaml, text).map_err(|source| RenderError::Io {
            path: chart_yaml.display().to_string(),
            source,
        })?;
    }
    Ok(repositories)
}

/// Templates whose output `helm template` cannot make a function of the
/// chart and its values ([`airgate_core::chart::nondeterministic`]): one
/// line each, `TEMPLATE uses F, G`, for the chart and its subcharts. A
/// chart directory or a packaged chart (`.tgz`, with packaged subcharts
/// inside); what cannot be read is left out (helm names it when it
/// renders).
pub fn nondeterministic(chart: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut visit = |name: &str, text: &str| {
        let found = airgate_core::chart::nondeterministic(text);
        if !found.is_empty() {
            out.push(format!("{name} uses {}", found.join(", ")));
        }
    };
    if chart.is_dir() {
        templates_in_dir(chart, "", 0, &mut visit);
    } else if let Ok(bytes) = read_small(chart) {
        templates_in_archive(&bytes, "", 0, &mut visit);
    }
    out
}

/// How much of a packaged chart is read, decompressed: Helm's own limit.
const MAX_CHART: u64 = 100 << 20;

fn read_small(path: &Path) -> std::io::Result<Vec<u8>> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_file() || meta.len() > MAX_CHART {
        return Err(std::io::Error::other("not a small regular file"));
    }
    std::fs::read(path)
}

fn is_template(name: &str) -> bool {
    name.split('/').any(|p| p == "templates")
        && (name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".tpl"))
}

fn templates_in_dir(dir: &Path, prefix: &str, depth: usize, visit: &mut dyn FnMut(&str, &str)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = format!("{prefix}{}", e.file_name().to_string_lossy());
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() && depth < 16 {
            templates_in_dir(&e.path(), &format!("{name}/"), depth + 1, visit);
        } else if kind.is_file() && name.ends_with(".tgz") && depth < 16 {
            if let Ok(bytes) = read_small(&e.path()) {
                templates_in_archive(&bytes, &format!("{name}:"), depth + 1, visit);
            }
        } else if kind.is_file()
            && is_template(&name)
            && let Ok(bytes) = read_small(&e.path())
        {
            visit(&name, &String::from_utf8_lossy(&bytes));
        }
    }
}

/// Reads a gzipped tar in memory (nothing is written), packaged
/// subcharts in it too: each regular file `want` picks is handed to
/// `visit` with its path (`SUB.tgz:` before a subchart's). Every entry is
/// bounded by [`crate::MAX_FILE`], and everything decompressed, nested
/// packages included, by `budget`.
fn walk_archive(
    bytes: &[u8],
    prefix: &str,
    depth: usize,
    budget: &mut u64,
    want: &dyn Fn(&str) -> bool,
    visit: &mut dyn FnMut(&str, &str),
) {
    use std::io::Read;
    let gz = flate2::read::GzDecoder::new(bytes).take(*budget);
    let mut archive = tar::Archive::new(gz);
    let Ok(entries) = archive.entries() else {
        return;
    };
    for entry in entries {
        let Ok(mut entry) = entry else { return };
        if entry.header().entry_type() != tar::EntryType::Regular || entry.size() > crate::MAX_FILE
        {
            continue;
        }
        let name = match entry.path() {
            Ok(p) => format!("{prefix}{}", p.display()),
            Err(_) => continue,
        };
        let nested = name.ends_with(".tgz") && depth < 16;
        if !nested && !want(&name) {
            continue;
        }
        let mut content = Vec::new();
        if entry.read_to_end(&mut content).is_err() {
            return;
        }
        *budget = budget.saturating_sub(content.len() as u64);
        if nested {
            walk_archive(
                &content,
                &format!("{name}:"),
                depth + 1,
                budget,
                want,
                visit,
            );
        } else {
            visit(&name, &String::from_utf8_lossy(&content));
        }
        if *budget == 0 {
            return;
        }
    }
}

fn templates_in_archive(
    bytes: &[u8],
    prefix: &str,
    depth: usize,
    visit: &mut dyn FnMut(&str, &str),
) {
    let mut budget = MAX_CHART;
    walk_archive(bytes, prefix, depth, &mut budget, &is_template, visit);
}

/// [`remote_schema_refs`] of a packaged chart (`.tgz` bytes) and the
/// subcharts packaged in it: (file in the package, URL).
pub fn remote_schema_refs_in_package(package: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut budget = MAX_CHART;
    let want = |name: &str| name.ends_with("/values.schema.json");
    walk_archive(package, "", 0, &mut budget, &want, &mut |name, text| {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
            let mut refs = Vec::new();
            remote_refs(&value, &mut refs);
            out.extend(refs.into_iter().map(|r| (name.to_string(), r)));
        }
    });
    out
}

/// Every `$ref` to a remote URL in the `values.schema.json` of the chart
/// directory `chart` and of the subcharts vendored under its `charts/`:
/// Helm fetches them when it checks values, which fails inside the
/// perimeter (zarf#3118, flux2#4992). Files over [`crate::MAX_FILE`] and
/// subcharts deeper than 8 levels are not read.
pub fn remote_schema_refs(chart: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![(chart.to_path_buf(), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let schema = dir.join("values.schema.json");
        let small = std::fs::symlink_metadata(&schema)
            .is_ok_and(|m| m.is_file() && m.len() <= crate::MAX_FILE);
        if small
            && let Ok(text) = std::fs::read(&schema)
            && let Ok(value) = serde_json::from_slice::<serde_json::Value>(&text)
        {
            let mut refs = Vec::new();
            remote_refs(&value, &mut refs);
            out.extend(refs.into_iter().map(|r| (schema.clone(), r)));
        }
        if depth < 8
            && let Ok(entries) = std::fs::read_dir(dir.join("charts"))
        {
            let mut subs: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect();
            subs.sort();
            dirs.extend(subs.into_iter().rev().map(|d| (d, depth + 1)));
        }
    }
    out
}

fn remote_refs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                match child.as_str() {
                    Some(url)
                        if k == "$ref"
                            && (url.starts_with("http://") || url.starts_with("https://")) =>
                    {
                        out.push(url.to_string());
                    }
                    _ => remote_refs(child, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                remote_refs(item, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nondeterministic_templates_are_named_in_directories_and_packaged_subcharts()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let chart = dir.path().join("app");
        std::fs::create_dir_all(chart.join("templates"))?;
        std::fs::create_dir_all(chart.join("charts"))?;
        std::fs::write(chart.join("Chart.yaml"), "name: app\nversion: 1.0.0\n")?;
        std::fs::write(
            chart.join("templates/secret.yaml"),
            "data:\n  p: {{ randAlphaNum 8 | b64enc }}\n",
        )?;
        std::fs::write(chart.join("templates/cm.yaml"), "data: {{ .Values.x }}\n")?;
        // A packaged subchart whose template looks the cluster up.
        let mut tgz = Vec::new();
        {
            let gz = flate2::write::GzEncoder::new(&mut tgz, flate2::Compression::fast());
            let mut builder = tar::Builder::new(gz);
            let text = b"{{ $s := lookup \"v1\" \"Secret\" \"\" \"x\" }}\n";
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, "db/templates/check.yaml", &text[..])?;
            builder.into_inner()?.finish()?;
        }
        std::fs::write(chart.join("charts/db-1.0.0.tgz"), &tgz)?;
        assert_eq!(
            nondeterministic(&chart),
            [
                "charts/db-1.0.0.tgz:db/templates/check.yaml uses lookup",
                "templates/secret.yaml uses randAlphaNum",
            ]
        );
        // The same, read from the packaged subchart alone.
        let file = dir.path().join("db.tgz");
        std::fs::write(&file, &tgz)?;
        assert_eq!(
            nondeterministic(&file),
            ["db/templates/check.yaml uses lookup"]
        );
        Ok(())
    }

    #[test]
    fn remote_schema_refs_are_found_in_the_chart_and_its_vendored_subcharts()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let chart = dir.path().join("app");
        let sub = chart.join("charts/db");
        std::fs::create_dir_all(&sub)?;
        std::fs::write(
            chart.join("values.schema.json"),
            r##"{"properties": {"a": {"$ref": "#/definitions/a"}, "b": {"$ref": "https://json.schemastore.org/b.json"}}}"##,
        )?;
        std::fs::write(
            sub.join("values.schema.json"),
            r#"{"allOf": [{"$ref": "http://schemas.example.com/db.json"}, {"$ref": "file.json"}]}"#,
        )?;
        let found: Vec<String> = remote_schema_refs(&chart)
            .into_iter()
            .map(|(f, u)| format!("{}: {u}", f.strip_prefix(&chart).unwrap_or(&f).display()))
            .collect();
        assert_eq!(
            found,
            [
                "values.schema.json: https://json.schemastore.org/b.json",
                "charts/db/values.schema.json: http://schemas.example.com/db.json",
            ]
        );
        Ok(())
    }
}
