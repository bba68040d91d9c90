//! `airgate bundle extract`: verify a bundle and unpack it, in one pass.

use std::process::ExitCode;
use std::time::Instant;

use airgate_oci::bundle;
use anyhow::Result;

use crate::cli::{BundleExtractArgs, Output};
use crate::commands::bundle_verify::{Report, open, shown_source, trust};
use crate::progress_bar;

pub fn run(args: BundleExtractArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let trust = trust(&args.trust)?;
    let source = shown_source(&args.bundle);
    let (progress, bar) = progress_bar::bytes("extract");
    let result = open(&args.bundle)
        .and_then(|r| bundle::extract::extract(r, &source, &trust, &args.output, &progress));
    progress_bar::finish(bar);
    let verified = result.map_err(|e| {
        anyhow::anyhow!(
            "{source}: {e}\nnothing was extracted to {}",
            args.output.display()
        )
    })?;
    let report = Report::of(&verified, Some(args.output.display().to_string()));
    match args.format {
        Output::Json => crate::out!("{}", serde_json::to_string_pretty(&report)?)?,
        Output::Text => crate::out!(
            "{source}: {} and extracted to {}",
            report.summary(&verified),
            args.output.display()
        )?,
    }
    eprintln!(
        "extracted {}",
        progress_bar::rate(report.bytes, started.elapsed())
    );
    Ok(ExitCode::SUCCESS)
}
