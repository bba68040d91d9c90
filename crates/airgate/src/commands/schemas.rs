//! `airgate schemas export --out DIR`: the cluster's OpenAPI v3 documents,
//! one file per group and version, so that `airgate check --schemas DIR`
//! validates objects offline against exactly what that cluster serves
//! (its CRDs included). Carry DIR across the gap in a bundle like any file.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::cli::SchemasExportArgs;

pub fn export(args: SchemasExportArgs) -> Result<ExitCode> {
    crate::block_on(async {
        let (client, _) = crate::kube_client::from_kubeconfig(args.kubeconfig.as_deref()).await?;
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
