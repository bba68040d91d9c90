//! `airgate mirror-config`: node configuration that sends pulls to the
//! internal registry.

use std::process::ExitCode;

use airgate_core::ImageRef;
use airgate_core::mirror::{self, DEFAULT_UPSTREAMS, MirrorSpec, Runtime};
use anyhow::{Context, Result, bail};

use crate::cli::{MirrorConfigArgs, MirrorFormat};

pub fn run(args: MirrorConfigArgs) -> Result<ExitCode> {
    let (registry, prefix) = match args.registry.split_once('/') {
        Some((r, p)) => (
            r.to_string(),
            Some(p.trim_matches('/').to_string()).filter(|p| !p.is_empty()),
        ),
        None => (args.registry.clone(), None),
    };
    let probe = format!("{registry}/{}/probe:t", prefix.as_deref().unwrap_or("x"));
    let parsed = ImageRef::parse(&probe)
        .map_err(|e| anyhow::anyhow!("--registry {}: {}", args.registry, e.reason))?;
    if parsed.registry() != registry {
        bail!(
            "--registry {}: '{registry}' is not a registry host",
            args.registry
        );
    }
    let mut upstreams: Vec<String> = if args.no_defaults {
        Vec::new()
    } else {
        DEFAULT_UPSTREAMS.iter().map(|s| s.to_string()).collect()
    };
    for m in &args.mirror_of {
        let r = ImageRef::parse(&format!("{m}/probe/x:t"))
            .map_err(|e| anyhow::anyhow!("--mirror-of {m}: {}", e.reason))?;
        if r.registry() != m {
            bail!("--mirror-of {m}: not a registry host (it needs a dot or a port)");
        }
        if !upstreams.contains(m) {
            upstreams.push(m.clone());
        }
    }
    if upstreams.is_empty() {
        bail!("nothing to mirror: --no-defaults needs at least one --mirror-of");
    }
    let runtime = match args.format {
        MirrorFormat::Containerd => Runtime::Containerd,
        MirrorFormat::K3s => Runtime::K3s,
        MirrorFormat::Crio => Runtime::Crio,
    };
    let ca = match &args.ca_file {
        Some(p) => {
            Some(std::fs::read(p).with_context(|| format!("reading --ca-file {}", p.display()))?)
        }
        None => None,
    };
    let spec = MirrorSpec {
        registry: registry.clone(),
        prefix,
        layout: args.layout.into(),
        upstreams,
        with_ca: ca.is_some(),
        plain_http: args.insecure_http,
    };
    let mut files: Vec<(String, Vec<u8>)> = mirror::render(&spec, runtime)
        .map_err(|e| anyhow::anyhow!(e))?
        .into_iter()
        .map(|f| (f.path, f.content.into_bytes()))
        .collect();
    if let Some(ca) = ca {
        files.push((mirror::ca_path(runtime, &registry), ca));
    }
    match &args.output {
        Some(dir) => {
            for (path, content) in &files {
                let target = dir.join(path);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                std::fs::write(&target, content)
                    .with_context(|| format!("writing {}", target.display()))?;
                crate::out!("{}", target.display())?;
            }
            eprintln!(
                "wrote {} files; copy them to {} on every node",
                files.len(),
                runtime.config_root()
            );
        }
        None => {
            for (path, content) in &files {
                crate::out!("# --- {}/{path}", runtime.config_root())?;
                crate::stdout::text(&String::from_utf8_lossy(content))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
