//! `airgate check PATH [--env DIR]...`: the pre-merge checks, for CI
//! inside the perimeter, with no network at all: every environment
//! rendered (plain, Kustomize, a chart directory), then policy, strings
//! that would reach outside the perimeter, and environment leakage
//! (`airgate_core::check`), and every object validated against the
//! schemas of the target Kubernetes version (carried in airgate, or
//! exported from a cluster). Rules are allowed per path in
//! `PATH/.airgate-check.yaml`. Exits 1 when anything is found.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airgate_core::check::{self, Allowed, Finding, Rule};
use airgate_core::discover::{Document, images_in};
use airgate_core::schema::Schemas;
use airgate_render::Renderer;
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::json;

use crate::cli::{CheckArgs, CheckOutput};

/// `.airgate-check.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CheckFile {
    #[serde(default)]
    allowed_registries: Vec<String>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    /// The promotion order: each environment's digests must be in the one
    /// before it.
    #[serde(default)]
    environments: Vec<String>,
    #[serde(default)]
    allow: Vec<AllowEntry>,
    /// The Kubernetes version objects are validated against (`--kube-version`).
    #[serde(default)]
    kubernetes_version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowEntry {
    path: String,
    rules: Vec<String>,
}

const CHECK_FILE: &str = ".airgate-check.yaml";

fn read_config(root: &Path) -> Result<CheckFile> {
    let file = root.join(CHECK_FILE);
    if !file.is_file() {
        return Ok(CheckFile::default());
    }
    let text = std::fs::read_to_string(&file)?;
    let config: CheckFile =
        serde_saphyr::from_str(&text).with_context(|| format!("{}", file.display()))?;
    for a in &config.allow {
        for r in &a.rules {
            if Rule::parse(r).is_none() {
                let ids: Vec<&str> = Rule::ALL.iter().map(|r| r.id()).collect();
                bail!(
                    "{}: allow: '{r}' is not a rule ({})",
                    file.display(),
                    ids.join(", ")
                );
            }
        }
    }
    Ok(config)
}

pub fn run(args: CheckArgs) -> Result<ExitCode> {
    let root = args.path.clone();
    let config = read_config(&root)?;
    let allowed = Allowed {
        registries: config.allowed_registries.clone(),
        hosts: config.allowed_hosts.clone(),
    };
    let envs: Vec<PathBuf> = if !args.envs.is_empty() {
        args.envs.clone()
    } else if !config.environments.is_empty() {
        config.environments.iter().map(|e| root.join(e)).collect()
    } else {
        vec![root.clone()]
    };
    let renderer =
        Renderer::new(args.kustomize.clone()).with_helm(args.helm.clone(), Default::default());
    let started = std::time::Instant::now();
    let mut findings = Vec::new();
    let mut objects = 0;
    let mut digests: Vec<(PathBuf, Vec<(Finding, String)>)> = Vec::new();
    let mut rendered = Vec::new();
    for env in &envs {
        let manifests = renderer
            .render(std::slice::from_ref(env))
            .with_context(|| format!("rendering {}", env.display()))?;
        rendered.push((env.clone(), manifests));
    }
    let version = args
        .kube_version
        .as_deref()
        .or(config.kubernetes_version.as_deref());
    let schemas = load_schemas(args.schemas.as_deref(), version, &rendered)?;
    for (env, manifests) in &rendered {
        objects += manifests.len();
        let mut pinned = Vec::new();
        for m in manifests {
            let doc = Document {
                source: &m.source,
                index: m.index,
                value: &m.value,
            };
            findings.extend(check::policy(doc, &allowed));
            findings.extend(check::external(doc, &allowed));
            findings.extend(schema_findings(&schemas, doc));
            for f in images_in(doc, &[]).unwrap_or_default() {
                if let Some(d) = f.image.digest() {
                    let at = Finding {
                        file: m.source.clone(),
                        document: m.index,
                        object: f.object.clone(),
                        field: f.field.clone(),
                        rule: Rule::Leakage,
                        message: String::new(),
                    };
                    pinned.push((at, d.to_string()));
                }
            }
        }
        digests.push((env.clone(), pinned));
    }
    if envs.len() > 1 && !config.environments.is_empty() {
        findings.extend(leakage(&digests));
    }
    let allows: Vec<(PathBuf, Vec<Rule>)> = config
        .allow
        .iter()
        .map(|a| {
            (
                root.join(&a.path),
                a.rules.iter().filter_map(|r| Rule::parse(r)).collect(),
            )
        })
        .collect();
    findings.retain(|f| {
        !allows.iter().any(|(path, rules)| {
            rules.contains(&f.rule) && clean(Path::new(&f.file)).starts_with(clean(path))
        })
    });
    findings.sort_by(|a, b| {
        (&a.file, a.document, &a.field, a.rule).cmp(&(&b.file, b.document, &b.field, b.rule))
    });
    findings.dedup();
    match args.output {
        CheckOutput::Json => crate::out!("{}", serde_json::to_string_pretty(&findings)?)?,
        CheckOutput::Sarif => crate::out!("{}", serde_json::to_string_pretty(&sarif(&findings))?)?,
        CheckOutput::Text => {
            for f in &findings {
                crate::out!(
                    "{} (document {}) {} {}: [{}] {}\n  fix: {}",
                    f.file,
                    f.document,
                    f.object,
                    f.field,
                    f.rule.id(),
                    f.message,
                    f.rule.fix()
                )?;
            }
        }
    }
    eprintln!(
        "checked {objects} objects in {} environment(s) in {:.2}s: {} finding(s)",
        envs.len(),
        started.elapsed().as_secs_f64(),
        findings.len()
    );
    Ok(if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Leakage: in the promotion order, each environment's digests must be in
/// the one before it.
fn leakage(digests: &[(PathBuf, Vec<(Finding, String)>)]) -> Vec<Finding> {
    let mut out = Vec::new();
    for pair in digests.windows(2) {
        let before: BTreeSet<&String> = pair[0].1.iter().map(|(_, d)| d).collect();
        for (at, d) in pair[1].1.iter().filter(|(_, d)| !before.contains(d)) {
            out.push(Finding {
                message: format!("{d} is not in {}", pair[0].0.display()),
                ..at.clone()
            });
        }
    }
    out
}

/// The OpenAPI v3 documents in `dir`, or else those airgate carries for
/// `version`; and the CRDs among the rendered objects.
fn load_schemas(
    dir: Option<&Path>,
    version: Option<&str>,
    rendered: &[(PathBuf, Vec<airgate_render::Manifest>)],
) -> Result<Schemas> {
    let mut schemas = Schemas::default();
    match dir {
        Some(dir) => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .with_context(|| format!("--schemas {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            files.sort();
            for file in &files {
                let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(file)?)
                    .with_context(|| format!("{} is not JSON", file.display()))?;
                schemas.add_document(&doc);
            }
            if schemas.is_empty() {
                bail!(
                    "--schemas {}: no OpenAPI v3 document with kinds in it\nhint: airgate schemas export --out {}",
                    dir.display(),
                    dir.display()
                );
            }
        }
        None => {
            let (release, doc) = super::schemas::embedded(version)?;
            eprintln!(
                "validating against the schemas of Kubernetes {release} (carried in airgate)"
            );
            schemas.add_document(&doc);
        }
    }
    for (_, manifests) in rendered {
        for m in manifests
            .iter()
            .filter(|m| m.value["kind"] == "CustomResourceDefinition")
        {
            schemas.add_crd(&m.value);
        }
    }
    Ok(schemas)
}

/// An object's schema problems, or that no schema knows its kind.
fn schema_findings(schemas: &Schemas, doc: Document<'_>) -> Vec<Finding> {
    let object = airgate_core::discover::object_label(doc.value);
    let finding = |field: String, message: String| Finding {
        file: doc.source.to_string(),
        document: doc.index,
        object: object.clone(),
        field,
        rule: Rule::Schema,
        message,
    };
    match schemas.check(doc.value) {
        Some(problems) => problems.into_iter().map(|(f, m)| finding(f, m)).collect(),
        None => vec![finding(
            "kind".into(),
            format!(
                "no schema knows {}/{}: the cluster does not serve it and no CRD here defines it",
                doc.value["apiVersion"].as_str().unwrap_or("?"),
                doc.value["kind"].as_str().unwrap_or("?")
            ),
        )],
    }
}

/// A path without `.` components, so `./envs/dev` and `envs/dev` compare.
fn clean(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

/// SARIF 2.1.0, as code scanning tools read it.
fn sarif(findings: &[Finding]) -> serde_json::Value {
    let rules: Vec<_> = Rule::ALL
        .iter()
        .map(|r| json!({"id": r.id(), "shortDescription": {"text": r.why()}, "help": {"text": r.fix()}}))
        .collect();
    let results: Vec<_> = findings
        .iter()
        .map(|f| {
            let file = f.file.split(" (").next().unwrap_or(&f.file);
            json!({
                "ruleId": f.rule.id(),
                "level": "error",
                "message": {"text": format!("{} {}: {} (fix: {})", f.object, f.field, f.message, f.rule.fix())},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": file}},
                               "logicalLocations": [{"fullyQualifiedName": format!("{}/{}", f.object, f.field)}]}],
            })
        })
        .collect();
    json!({
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [{"tool": {"driver": {"name": "airgate", "version": env!("CARGO_PKG_VERSION"), "rules": rules}},
                  "results": results}],
    })
}
