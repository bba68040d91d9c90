//! `airgate`: deliver software into air-gapped Kubernetes.
//!
//! This file only parses the command line and reports errors; each command
//! lives in its own module under `commands/`. Data goes to stdout, logs,
//! progress and errors to stderr.

mod charts;
mod cli;
mod commands;
mod files;
mod kube_client;
mod manifests;
mod progress_bar;
mod registry_options;
mod stdout;
mod worktree;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let error_code = cli.command.error_code();
    match commands::run(cli) {
        Ok(code) => code,
        // The reader of our output went away (`| head`): nothing to report.
        Err(err) if err.is::<stdout::ClosedPipe>() => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(error_code)
        }
    }
}

/// Runs a future to completion on a multi-threaded runtime.
pub fn block_on<T>(
    future: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("starting the async runtime: {e}"))?
        .block_on(future)
}
