//! `airgate`: deliver software into air-gapped Kubernetes.
//!
//! This file only parses the command line and reports errors; each command
//! lives in its own module under `commands/`. Data goes to stdout, logs,
//! progress and errors to stderr.

mod cli;
mod commands;
mod kube_client;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
