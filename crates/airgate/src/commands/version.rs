//! `airgate version`: which build this is, for bug reports and audit records.

use std::process::ExitCode;

use crate::cli::Output;

pub fn run(output: Output) -> anyhow::Result<ExitCode> {
    let version = env!("CARGO_PKG_VERSION");
    match output {
        Output::Text => crate::out!("airgate {version}")?,
        Output::Json => crate::out!("{}", serde_json::json!({ "version": version }))?,
    }
    Ok(ExitCode::SUCCESS)
}
