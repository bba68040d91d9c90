//! The command line: every command, flag and its help text in one place, so
//! the interface can be read (and reviewed) without reading the commands.

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "airgate",
    version,
    about = "Deliver software into air-gapped Kubernetes",
    long_about = "Deliver software into air-gapped Kubernetes: carry images and files across \
                  the gap in one signed bundle, reconcile clusters from the internal Git \
                  server, and keep an audit trail of every change.",
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print airgate's version.
    Version {
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

/// How a command prints its result on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Lines for people.
    Text,
    /// One JSON document for machines.
    Json,
}
