//! `airgate schemas export --out DIR`: the cluster's OpenAPI v3 documents,
//! one file per group and version, so that `airgate check --schemas DIR`
//! validates objects offline against exactly what that cluster serves
//! (its CRDs included). Carry DIR across the gap in a bundle like any file.
//!
//! airgate also carries the schemas of the Kubernetes versions it
//! supports ([`EMBEDDED`], made by `dev/schemas` from the OpenAPI v3
//! documents in the k8s.io/kubernetes module of each release), so `check`
//! validates with no export at all.

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cli::{Output, SchemasExportArgs};

/// The schemas carried in the binary, by minor version, oldest first:
/// every named schema of one release, descriptions left out, gzipped
/// (about 23 KB each).
pub const EMBEDDED: &[(&str, &[u8])] = &[
    (
        "v1.34",
        include_bytes!("../../schemas/kubernetes-v1.34.json.gz"),
    ),
    (
        "v1.35",
        include_bytes!("../../schemas/kubernetes-v1.35.json.gz"),
    ),
    (
        "v1.36",
        include_bytes!("../../schemas/kubernetes-v1.36.json.gz"),
    ),
];

/// The carried schemas of `version` (`1.35`, `v1.35`, `v1.35.2`; `None`:
/// the newest) as one OpenAPI document, with the release it came from.
pub fn embedded(version: Option<&str>) -> Result<(String, Value)> {
    let minor = version.map(|v| {
        let v = v.trim_start_matches('v');
        let mut parts = v.split('.');
        format!(
            "v{}.{}",
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default()
        )
    });
    let found = match &minor {
        Some(m) => EMBEDDED.iter().find(|(v, _)| v == m),
        None => EMBEDDED.last(),
    };
    let Some((_, gz)) = found else {
        let known: Vec<&str> = EMBEDDED.iter().map(|(v, _)| *v).collect();
        bail!(
            "airgate carries no schemas for Kubernetes {} (it has {})\nhint: `airgate schemas export --out DIR` on a cluster of that version, then `check --schemas DIR`",
            version.unwrap_or_default(),
            known.join(", ")
        );
    };
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(*gz)
        .read_to_end(&mut text)
        .context("the schemas carried in airgate do not decompress")?;
    let doc: Value = serde_json::from_slice(&text)?;
    let release = doc["kubernetesVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Ok((release, doc))
}

/// `airgate schemas list`.
pub fn list(output: Output) -> Result<ExitCode> {
    let mut releases = Vec::new();
    for (minor, _) in EMBEDDED {
        releases.push(embedded(Some(minor))?.0);
    }
    match output {
        Output::Text => {
            for r in &releases {
                crate::out!("{r}")?;
            }
        }
        Output::Json => crate::out!("{}", serde_json::json!({"kubernetesVersions": releases}))?,
    }
    Ok(ExitCode::SUCCESS)
}

pub fn export(args: SchemasExportArgs) -> Result<ExitCode> {
    crate::block_on(async {
        let (client, _) = crate::kube_client::from_kubeconfig(
            args.kubeconfig.as_deref(),
            args.context.as_deref(),
        )
        .await?;
        let get = |url: String| {
            let client = client.clone();
            async move {
                let request = http::Request::get(&url).body(Vec::new())?;
                client
                    .request_text(request)
                    .await
                    .with_context(|| format!("GET {url}"))
            }
        };
        let index: Value = serde_json::from_str(&get("/openapi/v3".into()).await?)
            .context("the cluster's /openapi/v3 is not JSON")?;
        std::fs::create_dir_all(&args.out).with_context(|| args.out.display().to_string())?;
        let mut written = 0;
        for (path, entry) in index["paths"].as_object().into_iter().flatten() {
            let Some(url) = entry["serverRelativeURL"].as_str() else {
                continue;
            };
            // Only API groups: what objects are checked against.
            if !(path == "api/v1" || path.starts_with("apis/")) {
                continue;
            }
            let text = get(url.to_string()).await?;
            let name = format!("{}.json", path.replace('/', "_"));
            crate::files::write_atomically(&args.out.join(name), text.as_bytes())?;
            written += 1;
        }
        let version = client
            .apiserver_version()
            .await
            .map(|v| v.git_version)
            .unwrap_or_default();
        eprintln!(
            "exported {written} OpenAPI documents of Kubernetes {version} to {}\nhint: carry the directory across with `bundle create --file`, then `airgate check --schemas DIR`",
            args.out.display()
        );
        Ok(ExitCode::SUCCESS)
    })
}
