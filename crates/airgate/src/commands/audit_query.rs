//! `airgate audit trace` and `audit blame`: a reviewer's questions,
//! answered from the log alone (the store, an export, or the published
//! log), by `airgate_store::query`.
//!
//! Both print data on stdout (`-o json` for machines) and exit 1 when the
//! log has no answer, so a script can tell "never" from "here".

use std::process::ExitCode;

use airgate_core::Digest;
use airgate_store::query::{At, Blame, Trace};
use anyhow::{Context as _, Result};

use super::audit_source;
use crate::cli::{AuditSource, Output};

fn time(t: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(t).map_or_else(|_| t.to_string(), |t| t.to_string())
}

fn at(a: &At) -> String {
    format!(
        "#{} {} revision {:.12} by {}",
        a.seq,
        time(a.time),
        a.revision,
        a.author
    )
}

/// `IMAGE@sha256:...` or the digest alone.
fn digest_of(image: &str) -> Result<Digest> {
    let d = image.rsplit_once('@').map_or(image, |(_, d)| d);
    d.parse()
        .with_context(|| format!("{image:?} names no digest\nhint: give IMAGE@sha256:<64 hex>, as `airgate get` and the records show it"))
}

pub fn trace(image: &str, source: &AuditSource, output: Output) -> Result<ExitCode> {
    let digest = digest_of(image)?;
    let store = audit_source::open(source)?.store;
    let t = store.trace(&digest)?;
    match output {
        Output::Json => crate::out!("{}", serde_json::to_string_pretty(&t)?)?,
        Output::Text => print_trace(&t)?,
    }
    if t.imports.is_empty() && t.deployments.is_empty() {
        eprintln!("the log has no import and no deployment of {digest}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_trace(t: &Trace) -> Result<()> {
    crate::out!("{}", t.digest)?;
    for (seq, r) in &t.imports {
        let Some(i) = &r.import else { continue };
        crate::out!(
            "imported  #{seq}  pushed {} by {}@{} into {}: bundle {}, signed by {}, import {}",
            time(i.pushed_at),
            i.user,
            i.host,
            i.target,
            i.inventory,
            i.signed_by
                .as_ref()
                .map_or("nobody (unsigned)", |k| k.as_str()),
            i.id
        )?;
    }
    if t.imports.is_empty() {
        crate::out!("imported  never: no import record lists it")?;
    }
    for d in &t.deployments {
        crate::out!(
            "deployed  {}  {}  since {}  until {}{}",
            d.app,
            d.image,
            at(&d.since),
            d.until.as_ref().map_or("now".to_string(), at),
            d.import
                .as_ref()
                .map_or(String::new(), |i| format!("  (import {i})"))
        )?;
    }
    Ok(())
}

pub fn blame(
    object: &str,
    field: Option<&str>,
    source: &AuditSource,
    output: Output,
) -> Result<ExitCode> {
    if object.split('/').count() != 3 && object.split('/').count() != 2 {
        anyhow::bail!(
            "{object:?} is not KIND/NAMESPACE/NAME (or KIND/NAME for a cluster-scoped object)"
        );
    }
    if let Some(f) = field
        && !f.starts_with('.')
    {
        anyhow::bail!(
            "--field {f:?} is not a field path\nhint: paths start with a dot, and name list items by their name: .spec.template.spec.containers[web].resources.limits.memory"
        );
    }
    let store = audit_source::open(source)?.store;
    let b = store.blame(object, field)?;
    match output {
        Output::Json => crate::out!("{}", serde_json::to_string_pretty(&b)?)?,
        Output::Text => print_blame(&b)?,
    }
    if b.set_by.is_none() {
        eprintln!(
            "no sync in the log set {}{}",
            field.map_or(String::new(), |f| format!("{f} of ")),
            object
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_blame(b: &Blame) -> Result<()> {
    crate::out!("{} {}", b.object, b.field.as_deref().unwrap_or(""))?;
    if let Some(s) = &b.set_by {
        crate::out!(
            "set by    {}  app {}  {}{}{}",
            at(&s.at),
            s.app,
            s.action,
            if s.signers.is_empty() {
                String::new()
            } else {
                format!("  signed by {}", s.signers.join(", "))
            },
            s.ticket
                .as_ref()
                .map_or(String::new(), |t| format!("  ticket {t}"))
        )?;
        crate::out!("          {}", s.fields.join(" "))?;
    }
    for (a, d) in &b.drift_since {
        crate::out!(
            "drift     #{} {}  by {}  {}  ({})",
            a.seq,
            time(a.time),
            d.field_manager,
            if d.fields.is_empty() {
                "deleted it".to_string()
            } else {
                d.fields.join(" ")
            },
            if d.corrected {
                "corrected"
            } else {
                "not corrected"
            }
        )?;
    }
    Ok(())
}
