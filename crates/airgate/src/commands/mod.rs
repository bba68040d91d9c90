//! One module per command; `run` dispatches to them.

mod version;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Version { output } => version::run(output),
    }
}
