//! `airgate bundle verify`: check a bundle without writing anything.

use std::process::ExitCode;
use std::time::Instant;

use airgate_oci::bundle::{self, Trust, Verified};
use anyhow::Result;
use serde::Serialize;

use crate::cli::{BundleVerifyArgs, Output, TrustArgs};
use crate::commands::key;
use crate::progress_bar;

pub fn trust(args: &TrustArgs) -> Result<Trust> {
    Ok(match &args.key {
        Some(p) => Trust::Key(key::read_public(p)?),
        None => Trust::Unsigned,
    })
}

/// What `verify` and `extract` print for machines.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extracted: Option<String>,
    pub signed_by: Option<String>,
    pub inventory_digest: String,
    pub images: usize,
    pub blobs: usize,
    pub files: usize,
    pub bytes: u64,
}

impl Report {
    pub fn of(verified: &Verified, extracted: Option<String>) -> Report {
        Report {
            verified: true,
            extracted,
            signed_by: verified.signed_by.as_ref().map(|d| d.to_string()),
            inventory_digest: verified.inventory_digest.to_string(),
            images: verified.inventory.images.len(),
            blobs: verified.blobs.len(),
            files: verified.files.len(),
            bytes: verified
                .inventory
                .files
                .iter()
                .fold(verified.inventory.carried_bytes(), |n, f| {
                    n.saturating_add(f.size)
                }),
        }
    }

    /// `verified (signed by ...), N images, N blobs, N files`
    pub fn summary(&self, verified: &Verified) -> String {
        format!(
            "verified ({}), {} images, {} blobs, {} files",
            signer_text(verified),
            self.images,
            self.blobs,
            self.files
        )
    }
}

/// How to read the bundle.
#[derive(Clone, Copy, Debug)]
pub enum Pass {
    /// One sequential pass, as from a stream.
    Streaming,
    /// Headers first, then every entry hashed on all cores.
    Parallel,
}

/// Verifies with a progress bar; shared by `verify` and `push`.
pub fn verify_with_progress(path: &std::path::Path, trust: &Trust, pass: Pass) -> Result<Verified> {
    let (progress, bar) = progress_bar::bytes("verify");
    let result = match pass {
        Pass::Streaming => {
            open(path).and_then(|r| bundle::verify_stream(r, &shown_source(path), trust, &progress))
        }
        Pass::Parallel => {
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
            bundle::verify_parallel(path, trust, threads, &progress)
        }
    };
    progress_bar::finish(bar);
    result.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The bundle argument as a stream: the file, or standard input for `-`.
pub fn open(path: &std::path::Path) -> Result<Box<dyn std::io::Read>, bundle::VerifyError> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    std::fs::File::open(path)
        .map(|f| Box::new(f) as Box<dyn std::io::Read>)
        .map_err(|source| bundle::VerifyError::Io {
            path: path.display().to_string(),
            source,
        })
}

/// How a bundle argument is named in messages.
pub fn shown_source(path: &std::path::Path) -> String {
    if path.as_os_str() == "-" {
        "standard input".to_string()
    } else {
        path.display().to_string()
    }
}

/// What the signature check established, in words.
pub fn signer_text(verified: &Verified) -> String {
    match (&verified.signed_by, verified.signature_present) {
        (Some(k), _) => format!("signed by {k}"),
        (None, true) => "signature present but not checked: no --key".to_string(),
        (None, false) => "unsigned".to_string(),
    }
}

pub fn run(args: BundleVerifyArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let verified = verify_with_progress(&args.bundle, &trust(&args.trust)?, Pass::Streaming)?;
    let report = Report::of(&verified, None);
    match args.output {
        Output::Json => crate::out!("{}", serde_json::to_string_pretty(&report)?)?,
        Output::Text => crate::out!(
            "{}: {}",
            shown_source(&args.bundle),
            report.summary(&verified)
        )?,
    }
    eprintln!(
        "checked {}",
        progress_bar::rate(report.bytes, started.elapsed())
    );
    Ok(ExitCode::SUCCESS)
}
