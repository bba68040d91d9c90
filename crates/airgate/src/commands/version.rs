//! `airgate version`: which build this is, for bug reports and audit
//! records; and `airgate completion`, the shell completion scripts clap
//! writes from the same command line.

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

/// `airgate completion SHELL`: the completion script on stdout.
pub fn completion(shell: crate::cli::Shell) -> anyhow::Result<ExitCode> {
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
