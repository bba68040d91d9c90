//! `airgate completion SHELL`: the shell completion script clap writes
//! from the command line itself, so it never falls behind a flag.

use std::process::ExitCode;

/// `airgate completion SHELL`: the completion script on stdout.
pub fn run(shell: crate::cli::Shell) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory as _;
    use clap_complete::Shell as S;
    let shell = match shell {
        crate::cli::Shell::Bash => S::Bash,
        crate::cli::Shell::Zsh => S::Zsh,
        crate::cli::Shell::Fish => S::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(
        shell,
        &mut crate::cli::Cli::command(),
        "airgate",
        &mut script,
    );
    crate::stdout::text(&String::from_utf8_lossy(&script))?;
    Ok(ExitCode::SUCCESS)
}
