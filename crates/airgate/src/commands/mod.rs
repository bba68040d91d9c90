//! One module per command; `run` dispatches to them.

mod images;
mod lock;
mod version;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Images(args) => images::run(args),
        Command::Lock(args) => lock::run(args),
        Command::Version { output } => version::run(output),
    }
}
