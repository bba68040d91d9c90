//! One module per command; `run` dispatches to them.

mod audit;
mod audit_query;
mod audit_source;
mod audit_witness;
pub(crate) mod bundle_create;
mod bundle_extract;
mod bundle_inspect;
mod bundle_push;
mod bundle_verify;
mod check;
mod completion;
mod controller;
mod describe;
mod diff;
mod diff_live;
mod get;
mod images;
mod install;
mod key;
mod lock;
mod mirror_config;
mod pin;
mod promote;
mod rollback;
mod schemas;
mod verify_commits;
mod version;

use std::process::ExitCode;

pub use key::KeyType;

use crate::cli::{BundleCommand, Cli, Command, DescribeCommand, GetCommand, KeyCommand};

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Images(args) => images::run(args),
        Command::Key(KeyCommand::Generate {
            out,
            force,
            kind,
            name,
        }) => key::generate(&out, force, kind, &name),
        Command::Bundle(BundleCommand::Create(args)) => bundle_create::run(args),
        Command::Bundle(BundleCommand::Verify(args)) => bundle_verify::run(args),
        Command::Bundle(BundleCommand::Inspect(args)) => bundle_inspect::run(args),
        Command::Bundle(BundleCommand::Push(args)) => bundle_push::run(args),
        Command::Bundle(BundleCommand::Extract(args)) => bundle_extract::run(args),
        Command::Lock(args) => lock::run(args),
        Command::MirrorConfig(args) => mirror_config::run(args),
        Command::Install(args) => install::run(args),
        Command::Controller(args) => controller::run(args),
        Command::Get(GetCommand::Apps(args)) => get::apps(args),
        Command::Describe(DescribeCommand::App(args)) => describe::app(args),
        Command::VerifyCommits(args) => verify_commits::run(args),
        Command::Rollback(args) => rollback::run(args),
        Command::Pin(args) => pin::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Check(args) => check::run(args),
        Command::Schemas(crate::cli::SchemasCommand::Export(args)) => schemas::export(args),
        Command::Schemas(crate::cli::SchemasCommand::List { output }) => schemas::list(output),
        Command::Promote(args) => promote::run(args),
        Command::Audit(command) => audit::run(command),
        Command::Version { output } => version::run(output),
        Command::Completion { shell } => completion::run(shell),
    }
}
