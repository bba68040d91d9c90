//! `airgate version`: which build this is, for bug reports and audit records.

use std::process::ExitCode;

use crate::cli::Output;

pub fn run(output: Output) -> anyhow::Result<ExitCode> {
    let version = env!("CARGO_PKG_VERSION");
    match output {
        Output::Text => crate::out!("airgate {}", crate::cli::LONG_VERSION)?,
        Output::Json => crate::out!(
            "{}",
            serde_json::json!({
                "version": version,
                "commit": env!("AIRGATE_COMMIT"),
                "commitDate": env!("AIRGATE_COMMIT_DATE"),
            })
        )?,
    }
    Ok(ExitCode::SUCCESS)
}
