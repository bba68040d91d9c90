//! The command line: every command, flag and its help text in one place, so
//! the interface can be read (and reviewed) without reading the commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// List every image the manifests under PATH use (or, with --cluster, the running pods).
    ///
    /// Reads containers, initContainers and ephemeralContainers of every pod spec, wherever
    /// it is embedded (workloads and custom resources alike); --rule adds other places.
    /// References are normalised as container runtimes do (nginx ->
    /// docker.io/library/nginx:latest). A directory with a kustomization.yaml is rendered
    /// with kustomize first.
    Images(ImagesArgs),
    /// Pin every image the manifests under PATH use to the digest its registry serves now.
    ///
    /// For a multi-platform image the lock holds the index digest and its platforms.
    /// Writes an ImageLock file (YAML) that `airgate bundle create` reads.
    Lock(LockArgs),
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

/// Which manifests to read.
#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// Manifest files or directories (read recursively).
    pub paths: Vec<PathBuf>,
    /// Another place images are found, as KIND:PATH (KIND may be *), e.g.
    /// 'Deployment:spec.template.spec.containers[*].env[name=SIDECAR_IMAGE].value'.
    #[arg(long = "rule", value_name = "KIND:PATH")]
    pub rules: Vec<String>,
    /// The kustomize binary (default: $AIRGATE_KUSTOMIZE, then kustomize on PATH).
    #[arg(long, value_name = "BIN")]
    pub kustomize: Option<PathBuf>,
}

/// How to reach registries. Credentials come from the Docker config file
/// ($DOCKER_CONFIG/config.json, else ~/.docker/config.json).
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Reach this registry (HOST:PORT) over plain HTTP. Registries on loopback
    /// addresses fall back to plain HTTP without it.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// Trust the CA certificates in this PEM file, besides the system's.
    #[arg(long = "ca-file", value_name = "FILE")]
    pub ca_files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    #[command(flatten)]
    pub discover: DiscoverArgs,
    /// List the images of the running pods of the current kubeconfig context instead.
    #[arg(long, conflicts_with = "paths")]
    pub cluster: bool,
    /// The kubeconfig for --cluster (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "FILE", requires = "cluster")]
    pub kubeconfig: Option<PathBuf>,
    /// text: one reference per line, sorted and unique; json: also where each was found.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(flatten)]
    pub discover: DiscoverArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The lock file to write.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        default_value = "airgate.lock"
    )]
    pub output: PathBuf,
    /// Parallel registry requests.
    #[arg(long, default_value_t = 8)]
    pub jobs: usize,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
