//! The command line: every command, flag and its help text in one place, so
//! the interface can be read (and reviewed) without reading the commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `airgate --version`: the version, the commit and its date.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("AIRGATE_COMMIT_SHORT"),
    ", ",
    env!("AIRGATE_COMMIT_DATE"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "airgate",
    version = LONG_VERSION,
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

impl Command {
    /// The exit code of an error. Commands whose 1 says "they differ" or
    /// "findings" (diff, check, pin --check) exit 2 on an error instead, as
    /// `kubectl diff` does, so CI can tell the two apart.
    pub fn error_code(&self) -> u8 {
        match self {
            Command::Diff(_) | Command::Check(_) => 2,
            Command::Pin(args) if args.check => 2,
            _ => 1,
        }
    }
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
    /// Make a signing key pair for bundles.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Make, check, inspect and push bundles: images and files in one signed file.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Node configuration so pulls of docker.io, quay.io, ghcr.io, registry.k8s.io
    /// (and any --mirror-of) are served by the internal registry.
    ///
    /// containerd: certs.d/<registry>/hosts.toml files (for /etc/containerd/certs.d);
    /// k3s: registries.yaml (for /etc/rancher/k3s, RKE2 alike); crio: registries.conf
    /// (for /etc/containers). Paths follow `bundle push`: REGISTRY[/PREFIX]/<source path>.
    MirrorConfig(MirrorConfigArgs),
    /// Print the manifests that install the controller: the App CRD, a namespace, the
    /// controller's ServiceAccount with least-privilege RBAC, and its Deployment.
    ///
    /// Without -o, one multi-document YAML on stdout; with -o DIR, one file per object
    /// kind group in DIR. Nothing is applied: review them, then apply through your
    /// change process.
    Install(InstallArgs),
    /// Run the reconciler: sync every App from Git into the cluster.
    ///
    /// In the cluster it uses its ServiceAccount; from outside, --kubeconfig (or
    /// KUBECONFIG). Every apply impersonates the App's ServiceAccount. Only the holder of
    /// the Lease reconciles: run several for availability, never two appliers.
    Controller(ControllerArgs),
    /// Check a clone's commits as the controller would before applying them: signatures
    /// by allowed signers (SSH and OpenPGP), distinct signers, required trailers.
    ///
    /// Verifies --to (a commit, or an annotated tag whose signature counts) and every
    /// commit reachable from it but not from --from; without --from, what --to brings in
    /// (for a merge, the merged commits). Exits non-zero naming each problem: run it in CI
    /// before merge to refuse what the controller would refuse.
    VerifyCommits(VerifyCommitsArgs),
    /// The audit log: the controller's records as a transparency log (RFC 6962 Merkle
    /// tree, signed checkpoints), checked and read offline.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Rewrite every image reference the lock covers to the internal registry's
    /// digest-pinned reference, changing only those bytes.
    ///
    /// Plain manifests (wherever images are found), kustomize `images:` entries
    /// (newName, digest) and Helm values files (values*.yaml: a string under a key
    /// named `image`, or --values-path). Paths follow `bundle push`. --check changes
    /// nothing and exits 1 naming each reference that is not pinned (for CI).
    Pin(PinArgs),
    /// Copy the version fields (image references and digests, kustomize images,
    /// chart versions, image values) of one environment to another, and nothing
    /// else, in a commit on a new branch.
    ///
    /// Refuses a digest the internal registry does not have (--internal names it).
    /// The commit carries Promoted-from: FROM@REV (and Ticket). Nothing is pushed.
    Promote(PromoteArgs),
    /// The cluster's API schemas, for checking objects offline.
    #[command(subcommand)]
    Schemas(SchemasCommand),
    /// Check a repository before merge, offline: every environment rendered, then
    /// policy (registries, digests, latest, plaintext Secrets, privileged, hostPath,
    /// hostNetwork, resources), hosts outside the perimeter in any string, and
    /// environment leakage.
    ///
    /// Objects are validated against the schemas of the target Kubernetes version,
    /// carried in airgate (or exported from a cluster with `airgate schemas export`).
    /// Rules are allowed per path in PATH/.airgate-check.yaml. Exits 1 on findings.
    Check(CheckArgs),
    /// Show what a change does to the rendered objects: each object added, removed
    /// or changed between two revisions of PATH, by field, Secret values masked; or,
    /// with --live APP, what syncing the App would change in the cluster now.
    ///
    /// Renders as the controller does (plain YAML, Kustomize, a chart directory),
    /// from the work tree's Git objects. With --live, the App's revision is fetched
    /// and rendered as the controller would, and every object is dry-run on the
    /// server as the App's ServiceAccount (you need to read the App and impersonate
    /// that account). Exits 1 when they differ, like kubectl diff.
    Diff(DiffArgs),
    /// Make one commit that returns PATH, and nothing else, to its content at a
    /// revision; the controller applies it like any commit.
    ///
    /// The commit carries the trailers Rolled-back-from and Rolled-back-to (and Ticket).
    /// It is made with your git (identity, signing); nothing is pushed: the command to
    /// push is printed.
    Rollback(RollbackArgs),
    /// Show Apps: revision, readiness and why.
    #[command(subcommand)]
    Get(GetCommand),
    /// Show one App in full: spec, conditions, revisions, inventory, recent syncs and
    /// events.
    #[command(subcommand)]
    Describe(DescribeCommand),
    /// Print a shell completion script: `airgate completion bash > /etc/bash_completion.d/airgate`,
    /// `airgate completion zsh > "${fpath[1]}/_airgate"`, `airgate completion fish >
    /// ~/.config/fish/completions/airgate.fish`.
    Completion {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print airgate's version, the commit it was built from and that commit's date.
    Version {
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

/// The shells `airgate completion` writes for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// How a command prints its result on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Lines for people.
    Text,
    /// One JSON document for machines.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write PREFIX.key (private, mode 0600) and PREFIX.pub (Ed25519, PEM); with
    /// --type note, PREFIX.key and PREFIX.vkey for signing the audit log's checkpoints.
    Generate {
        /// Path prefix of the two files.
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
        /// What the key signs.
        #[arg(long = "type", value_enum, default_value_t = crate::commands::KeyType::Bundle)]
        kind: crate::commands::KeyType,
        /// The key's name (--type note, witness): it names the signer in every checkpoint.
        #[arg(long, default_value = "airgate")]
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Write the manifests into DIR (crd.yaml, namespace.yaml, rbac.yaml,
    /// controller.yaml) instead of stdout.
    #[arg(long, value_name = "DIR", conflicts_with = "apply")]
    pub out: Option<PathBuf>,
    /// Apply them to the cluster instead (server-side apply, field manager
    /// airgate-install): the CRD first, until Established, then the rest.
    #[arg(long)]
    pub apply: bool,
    /// With --apply: replace the install already in the namespace (see the README:
    /// upgrading).
    #[arg(long, requires = "apply")]
    pub upgrade: bool,
    /// With --apply: the kubeconfig (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "FILE", requires = "apply")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, value_name = "NAME", requires = "apply")]
    pub context: Option<String>,
    /// The namespace the controller runs in. Cluster-scoped objects are named
    /// after it, so installs in two namespaces coexist.
    #[arg(long, default_value = "airgate-system")]
    pub namespace: String,
    /// The controller's image in your internal registry, pinned by digest: the one
    /// `dev/image` builds, carried across in a bundle. Without it, --lock and --to
    /// say where `bundle push` put it.
    #[arg(
        long,
        value_name = "REF",
        required_unless_present = "lock",
        conflicts_with = "lock"
    )]
    pub image: Option<String>,
    /// The lock of the bundle that carried airgate's image (`bundle create` writes it
    /// beside the bundle): the image is its `airgate/airgate` entry of this version,
    /// at the digest locked, in the repository `bundle push --to` gave it.
    #[arg(long, value_name = "FILE", requires = "to")]
    pub lock: Option<PathBuf>,
    /// With --lock: the `bundle push --to` the bundle was pushed with.
    #[arg(long, value_name = "HOST:PORT[/PREFIX]", requires = "lock")]
    pub to: Option<String>,
    /// With --lock: the `bundle push --layout` the bundle was pushed with.
    #[arg(long, value_enum, default_value_t = LayoutArg::ByRegistry)]
    pub layout: LayoutArg,
    /// Let the controller act only in this namespace (repeatable): it may
    /// impersonate that namespace's ServiceAccounts, through a Role and
    /// RoleBinding there, and no others. Without it, it may impersonate
    /// every ServiceAccount in the cluster (a ClusterRole).
    #[arg(long = "tenant-namespace", value_name = "NS")]
    pub tenant_namespaces: Vec<String>,
    /// Reconcile only the Apps of this namespace (default: every namespace). Two
    /// installs in one cluster must watch different namespaces.
    #[arg(long, value_name = "NS")]
    pub watch_namespace: Option<String>,
    /// Controller replicas: one leads, the others wait on the Lease. More than one
    /// runs as a StatefulSet (a volume each) with a PodDisruptionBudget, and needs
    /// --log-repository: a new leader continues the published audit log.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub replicas: u16,
    /// Allow the controller's egress to CIDR:PORT (repeatable: the apiserver's
    /// endpoints, the Git server, the registry); with any, a NetworkPolicy allows
    /// egress only there (and DNS). Ingress is allowed to the metrics and UI ports only.
    #[arg(long = "allow-egress", value_name = "CIDR:PORT")]
    pub allow_egress: Vec<String>,
    #[command(flatten)]
    pub audit: InstallAudit,
}

/// How the installed controller signs and publishes its audit log: from
/// Secrets and a ConfigMap the kubelet mounts (the controller's account
/// reads no Secret).
#[derive(Debug, Default, Args)]
pub struct InstallAudit {
    /// A Secret in the controller's namespace whose key `key` holds the note signing
    /// key (`airgate key generate --type note`): mounted, and passed as --log-key.
    #[arg(long, value_name = "SECRET")]
    pub log_key_secret: Option<String>,
    /// The audit log's name (its checkpoints' origin is airgate.dev/audit/NAME).
    #[arg(long, value_name = "NAME", requires = "log_key_secret")]
    pub log_name: Option<String>,
    /// Publish the audit log to this registry repository (HOST[:PORT]/PATH).
    #[arg(long, value_name = "REPOSITORY", requires = "log_key_secret")]
    pub log_repository: Option<String>,
    /// A `kubernetes.io/dockerconfigjson` Secret with push credentials for
    /// --log-repository: mounted as DOCKER_CONFIG.
    #[arg(long, value_name = "SECRET", requires = "log_repository")]
    pub registry_secret: Option<String>,
    /// A ConfigMap whose key `ca.crt` holds the registry's CA: mounted, and passed
    /// as --ca-file.
    #[arg(long, value_name = "CONFIGMAP", requires = "log_repository")]
    pub registry_ca_configmap: Option<String>,
}

#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Kubeconfig to use instead of KUBECONFIG, ~/.kube/config or the in-cluster account.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Reconcile only the Apps of this namespace (default: every namespace).
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Where the Lease lives.
    #[arg(long, value_name = "NS", default_value = "airgate-system")]
    pub lease_namespace: String,
    /// The Lease's name: controllers sharing it elect one leader.
    #[arg(long, default_value = "airgate-controller")]
    pub lease_name: String,
    /// How long a leader holds the Lease without renewing it (seconds).
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    pub lease_duration: u64,
    /// This controller's name in the Lease (default: hostname and process id).
    #[arg(long)]
    pub identity: Option<String>,
    /// Where the Git mirror and the sync record store live.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/airgate")]
    pub data_dir: PathBuf,
    /// The sync record store (SQLite); default DATA_DIR/records.db.
    #[arg(long, value_name = "FILE")]
    pub store: Option<PathBuf>,
    /// A note signing key (`airgate key generate --type note`, kept in a Secret): the
    /// controller signs a checkpoint of the audit log after every record, to
    /// DATA_DIR/checkpoint, and at start refuses a log that does not extend it.
    #[arg(long, value_name = "FILE")]
    pub log_key: Option<PathBuf>,
    /// The audit log's name: its checkpoints' origin is airgate.dev/audit/NAME.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub log_name: String,
    /// Publish the audit log (tiles, entry bundles, signed checkpoint) to this
    /// registry repository, HOST[:PORT]/PATH, within a second of each record; a new
    /// leader continues the published log. Needs --log-key. Credentials come from
    /// the Docker config (DOCKER_CONFIG), as for `bundle push`.
    #[arg(long, value_name = "REPOSITORY", requires = "log_key")]
    pub log_repository: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The kustomize binary (else AIRGATE_KUSTOMIZE, else PATH).
    #[arg(long, value_name = "BIN")]
    pub kustomize: Option<PathBuf>,
    /// The helm binary Helm Apps render with, v3 or v4 (else AIRGATE_HELM, else PATH).
    #[arg(long, value_name = "BIN")]
    pub helm: Option<PathBuf>,
    /// Serve /metrics and /healthz here.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Serve the read-only web UI here (for example 0.0.0.0:8081). Users
    /// log in with a token the apiserver accepts and see the Apps of the
    /// namespaces where they may get apps.airgate.dev.
    #[arg(long, value_name = "ADDR")]
    pub ui_listen: Option<String>,
    /// How logs on stderr look.
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// What is logged: a level (error, warn, info, debug, trace: the controller
    /// at that level, kube and the rest at warn or below), or tracing's
    /// target=level list (`info,kube=debug`).
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,
    /// How many Apps sync at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Plain lines for people.
    Text,
}

#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// List Apps with their revision, readiness and the reason.
    Apps(GetAppsArgs),
}

#[derive(Debug, Args)]
pub struct GetAppsArgs {
    /// Apps of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// The namespace (default: the kubeconfig's, else `default`).
    #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = ObjectOutput::Table)]
    pub output: ObjectOutput,
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ObjectOutput {
    Table,
    Yaml,
    Json,
}

#[derive(Debug, Args)]
pub struct PinArgs {
    /// A manifest file or a directory (read recursively: *.yaml, *.yml).
    pub path: PathBuf,
    /// The image lock the references are pinned from (`airgate lock`).
    #[arg(long, value_name = "FILE")]
    pub lock: PathBuf,
    /// The internal registry, as `bundle push --to` was given.
    #[arg(long, value_name = "HOST:PORT[/PREFIX]")]
    pub registry: String,
    /// The path layout `bundle push` used.
    #[arg(long, value_enum, default_value_t = LayoutArg::ByRegistry)]
    pub layout: LayoutArg,
    /// In Helm values files, the value at this path is IMAGE (repeatable):
    /// IMAGE=a.b.image.
    #[arg(long = "values-path", value_name = "IMAGE=PATH")]
    pub values_paths: Vec<String>,
    /// Change nothing; exit 1 naming every reference not pinned in the registry.
    #[arg(long)]
    pub check: bool,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The environment promoted from (a directory in a Git work tree).
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// The environment promoted to.
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Promote only these (an image's last path component, a kustomize images
    /// name, an App's name); repeatable.
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,
    /// The internal registry (HOST:PORT): digests under it must exist there
    /// (repeatable).
    #[arg(long = "internal", value_name = "HOST:PORT")]
    pub internal: Vec<String>,
    /// The branch made (default promote/TO-REV).
    #[arg(long, value_name = "NAME")]
    pub branch: Option<String>,
    /// A Ticket trailer.
    #[arg(long, value_name = "T")]
    pub ticket: Option<String>,
    /// Why: the commit message's body.
    #[arg(long, value_name = "M")]
    pub message: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Subcommand)]
pub enum SchemasCommand {
    /// Write the cluster's OpenAPI v3 documents (one file per group and version,
    /// its CRDs included) to a directory, for `airgate check --schemas DIR`.
    Export(SchemasExportArgs),
    /// List the Kubernetes versions whose schemas airgate carries for `check`.
    List {
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

#[derive(Debug, Args)]
pub struct SchemasExportArgs {
    /// The kubeconfig (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// The directory to write.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The repository (its .airgate-check.yaml is read).
    pub path: PathBuf,
    /// Validate every object against these OpenAPI v3 documents (`airgate schemas
    /// export`) instead of the schemas airgate carries; with the CRDs rendered
    /// beside it either way; an unknown kind is a finding.
    #[arg(long, value_name = "DIR")]
    pub schemas: Option<PathBuf>,
    /// The Kubernetes version whose schemas (carried in airgate) objects are
    /// validated against: 1.34, 1.35 or 1.36 (default: the check file's
    /// kubernetesVersion, else the newest).
    #[arg(long, value_name = "VERSION", conflicts_with = "schemas")]
    pub kube_version: Option<String>,
    /// An environment to render and check (repeatable; default: the check file's
    /// environments, else PATH).
    #[arg(long = "env", value_name = "DIR")]
    pub envs: Vec<PathBuf>,
    /// The kustomize binary (default: $AIRGATE_KUSTOMIZE, then kustomize on PATH).
    #[arg(long, value_name = "BIN")]
    pub kustomize: Option<PathBuf>,
    /// The helm binary for chart directories (default: $AIRGATE_HELM, then PATH).
    #[arg(long, value_name = "BIN")]
    pub helm: Option<PathBuf>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = CheckOutput::Text)]
    pub output: CheckOutput,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CheckOutput {
    /// Lines for people, each with its fix.
    Text,
    /// One JSON document.
    Json,
    /// SARIF 2.1.0, for code scanning tools.
    Sarif,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The path (in a Git work tree) an App renders.
    #[arg(required_unless_present = "live", conflicts_with = "live")]
    pub path: Option<PathBuf>,
    /// The revision before (a commit, branch or tag).
    #[arg(long, value_name = "REV", required_unless_present = "live")]
    pub from: Option<String>,
    /// The revision after.
    #[arg(long, value_name = "REV", default_value = "HEAD")]
    pub to: String,
    /// Compare App APP's revision with the cluster instead (server-side dry-run
    /// as its ServiceAccount).
    #[arg(long, value_name = "APP", conflicts_with = "from")]
    pub live: Option<String>,
    /// With --live: the revision to compare: `applied` (the App's last applied
    /// revision), `head` (its ref's newest commit: what the next sync applies), or
    /// a full commit id.
    #[arg(long, value_name = "REV", default_value = "applied", requires = "live")]
    pub revision: String,
    /// With --live: the App's namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long, requires = "live")]
    pub namespace: Option<String>,
    #[arg(long, value_name = "FILE", requires = "live")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, value_name = "NAME", requires = "live")]
    pub context: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The kustomize binary (default: $AIRGATE_KUSTOMIZE, then kustomize on PATH).
    #[arg(long, value_name = "BIN")]
    pub kustomize: Option<PathBuf>,
    /// The helm binary for a chart directory (default: $AIRGATE_HELM, then PATH).
    #[arg(long, value_name = "BIN")]
    pub helm: Option<PathBuf>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The path to roll back (a directory or file in a Git work tree).
    pub path: PathBuf,
    /// The revision whose content PATH returns to.
    #[arg(long, value_name = "REV")]
    pub to: String,
    /// A Ticket trailer for the commit.
    #[arg(long, value_name = "T")]
    pub ticket: Option<String>,
    /// Why: the commit message's body.
    #[arg(long, value_name = "M")]
    pub message: Option<String>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct VerifyCommitsArgs {
    /// A clone (or bare repository) holding the commits.
    #[arg(value_name = "PATH_TO_CLONE")]
    pub repository: PathBuf,
    /// Who may sign: a directory with `allowed_signers` (git's SSH format) and `*.asc`
    /// OpenPGP public keys, or one such file.
    #[arg(long, value_name = "DIR_OR_FILE")]
    pub signers: PathBuf,
    /// The last revision already accepted (the App's last applied revision).
    #[arg(long, value_name = "REV")]
    pub from: Option<String>,
    /// The revision to accept: a full commit id, HEAD, a branch or a tag.
    #[arg(long, value_name = "REV", default_value = "HEAD")]
    pub to: String,
    /// The range must carry valid signatures of at least N distinct allowed signers.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub min_distinct_signers: u32,
    /// The --to commit's message must carry this trailer (repeatable), e.g. Ticket.
    #[arg(long, value_name = "TRAILER")]
    pub require_trailer: Vec<String>,
    /// Verify only --to (the App's `mode: head`).
    #[arg(long)]
    pub head_only: bool,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute every record's leaf and the Merkle tree; check the checkpoint's
    /// signature and that the log extends it, and each witness's cosignature. Names the
    /// first bad record or file and exits non-zero.
    Verify {
        #[command(flatten)]
        source: AuditSource,
        /// With --store: a signed checkpoint kept from before (`audit checkpoint`,
        /// `audit export`) that the log must extend.
        #[arg(long, value_name = "FILE", requires = "log_key")]
        checkpoint: Option<PathBuf>,
        /// With --log: require the cosignature of this witness (its verifier key file,
        /// from `key generate --type witness`) and that the log extends what it
        /// cosigned. Repeatable.
        #[arg(long, value_name = "FILE", requires = "log")]
        witness_key: Vec<PathBuf>,
    },
    /// Sign a checkpoint of the log now (C2SP tlog-checkpoint, a signed note).
    Checkpoint {
        #[arg(long, value_name = "FILE")]
        store: PathBuf,
        /// The note signing key (`key generate --type note`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The log's name: the checkpoint's origin is airgate.dev/audit/NAME.
        #[arg(long, default_value = "default")]
        log: String,
        /// Write it to FILE (which must not exist) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// The records, oldest first.
    Log {
        #[command(flatten)]
        source: AuditSource,
        /// Only this App's records.
        #[arg(long, value_name = "NS/NAME")]
        app: Option<String>,
        /// Only records started at or after this time (seconds since the epoch).
        #[arg(long, value_name = "EPOCH_SECONDS")]
        since: Option<i64>,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = AuditFormat::Text)]
        output: AuditFormat,
    },
    /// One record with its leaf index and inclusion proof in the tree now (JSON).
    Show {
        seq: i64,
        #[command(flatten)]
        source: AuditSource,
    },
    /// Where an image came from and where it ran: the import that brought the digest
    /// (bundle, signer, who pushed it, when) and every App that deployed it, from which
    /// sync until which. Exits 1 when the log knows nothing of it.
    Trace {
        /// IMAGE@sha256:<hex>, or the digest alone.
        image: String,
        #[command(flatten)]
        source: AuditSource,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Which sync last set a field of an object (revision, author, signers, ticket,
    /// time), and any drift by another field manager since. Exits 1 when no sync set it.
    Blame {
        /// KIND/NAMESPACE/NAME (KIND/NAME for a cluster-scoped object).
        object: String,
        /// A field path: .spec.replicas, .spec.template.spec.containers[web].resources.limits.memory.
        /// Without it: the last sync that changed the object at all.
        #[arg(long, value_name = "PATH")]
        field: Option<String>,
        #[command(flatten)]
        source: AuditSource,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Write the log into DIR in the C2SP tlog-tiles layout (tile/..., tile/entries/...),
    /// DIR/entries.jsonl (every record, what a SIEM ingests) and, with --key,
    /// DIR/checkpoint and DIR/log.vkey. DIR must not exist.
    Export {
        dir: PathBuf,
        #[arg(long, value_name = "FILE")]
        store: PathBuf,
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        #[arg(long, default_value = "default")]
        log: String,
    },
    /// Cosign the log's checkpoint as a witness: check the log's signature, prove from
    /// the published tiles that the log extends the checkpoint cosigned last time
    /// (kept in --state), cosign (C2SP tlog-cosignature), keep it in --state and publish
    /// it at LOCATION as witness/KEY_ID. Refuses a rewritten log, even one re-signed
    /// with the log's key.
    Witness {
        /// Where the log is published: an export directory, or HOST[:PORT]/PATH.
        #[arg(long, value_name = "LOCATION")]
        log: String,
        /// The log's verifier key (`name+id+key`).
        #[arg(long, value_name = "FILE")]
        log_key: PathBuf,
        /// The witness's signing key (`key generate --type witness`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The last checkpoint this witness cosigned (created the first time).
        #[arg(long, value_name = "FILE")]
        state: PathBuf,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

/// Where `audit` reads the log: the controller's store, or a published log.
#[derive(Debug, Args)]
#[group(required = true, multiple = false, id = "source_kind")]
pub struct AuditSource {
    /// The record store (the controller's DATA_DIR/records.db).
    #[arg(long, value_name = "FILE", group = "source_kind")]
    pub store: Option<PathBuf>,
    /// A published log: an export directory, or the registry repository the controller
    /// publishes to (HOST[:PORT]/PATH). Read whole and checked against its signed
    /// checkpoint before anything is shown.
    #[arg(
        long,
        value_name = "LOCATION",
        group = "source_kind",
        requires = "log_key"
    )]
    pub log: Option<String>,
    /// The log's verifier key (`name+id+key`, from `key generate --type note`).
    #[arg(long, value_name = "FILE")]
    pub log_key: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuditFormat {
    Text,
    Json,
    /// One JSON object a line.
    Jsonl,
}

#[derive(Debug, Subcommand)]
pub enum DescribeCommand {
    /// One App: spec, conditions, revisions, inventory, recent syncs and events.
    App(DescribeAppArgs),
}

#[derive(Debug, Args)]
pub struct DescribeAppArgs {
    pub name: String,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Make a bundle from a lock: every image (all platforms, digests kept) and
    /// the given files in one tar holding an OCI image layout, signed.
    Create(BundleCreateArgs),
    /// Check a bundle in one streaming pass: signature, every digest and size,
    /// every manifest's blobs. Exits non-zero naming the first problem.
    Verify(BundleVerifyArgs),
    /// Show what a bundle holds (reads the inventory only; use verify to check it).
    Inspect(BundleInspectArgs),
    /// Verify a bundle and unpack it into a new directory (an OCI image layout
    /// plus files/), in one streaming pass: nothing is left behind unless the
    /// whole bundle verifies. The safe replacement for `tar xf`.
    Extract(BundleExtractArgs),
    /// Verify a bundle, then push every image into a registry with the same
    /// digests and tags: blobs in parallel, then manifests, tags last.
    ///
    /// Nothing is written if verification fails. Re-running after an
    /// interruption uploads only what is missing.
    Push(BundlePushArgs),
}

#[derive(Debug, Args)]
pub struct BundlePushArgs {
    pub bundle: PathBuf,
    /// The registry, and an optional path prefix: HOST:PORT[/PREFIX]. Images
    /// go to HOST:PORT[/PREFIX]/<source repository path>.
    #[arg(long, value_name = "HOST:PORT[/PREFIX]")]
    pub to: String,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// The target registry speaks plain HTTP.
    #[arg(long)]
    pub insecure_http: bool,
    /// Put one-component repository paths under this namespace (Harbor needs `library`).
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace_single: Option<String>,
    /// The path layout under the prefix; mirror-config must be given the same.
    #[arg(long, value_enum, default_value_t = LayoutArg::ByRegistry)]
    pub layout: LayoutArg,
    /// Parallel blob uploads.
    #[arg(long, default_value_t = 8)]
    pub jobs: usize,
    /// Blobs larger than this many MiB are uploaded in chunks of this size.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub chunk_size: u64,
    /// The audit log's repository (the controller's --log-repository): the import
    /// is also left in REPO/imports, where the controller records it in the log.
    #[arg(long, value_name = "HOST[:PORT]/PATH")]
    pub log_repository: Option<String>,
    /// Sign every image pushed with this key (`key generate --type cosign`), in
    /// cosign's format (the `sha256-<hex>.sig` tag), so admission can require it.
    #[arg(long, value_name = "PREFIX.key")]
    pub sign_images: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// How to print the summary.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    pub format: Output,
}

#[derive(Debug, Args)]
pub struct BundleCreateArgs {
    /// The image lock (from `airgate lock`).
    #[arg(long, value_name = "FILE", required_unless_present = "chart")]
    pub lock: Option<PathBuf>,
    /// Carry a Helm chart and every image it renders with the chart flags
    /// (--values, --set, ...), as a chart inside: oci://HOST/PATH/NAME
    /// (--chart-version), https://HOST/PATH/NAME:VERSION (a classic chart
    /// repository), a packaged .tgz, or a chart directory (its dependencies
    /// vendored first; a .tgz or directory is carried as
    /// airgate.local/charts/NAME:VERSION). The images are locked now
    /// (possible ones with --possible); the lock made is written next to the
    /// bundle (BUNDLE.lock).
    #[arg(long, value_name = "REF")]
    pub chart: Option<String>,
    #[command(flatten)]
    pub chart_args: ChartArgs,
    /// With --chart: also lock the possible images the chart names.
    #[arg(long, requires = "chart")]
    pub possible: bool,
    /// The bundle to write.
    #[arg(long = "out", value_name = "BUNDLE")]
    pub output: PathBuf,
    /// Sign with this private key (from `airgate key generate`).
    #[arg(long, value_name = "PREFIX.key")]
    pub sign_key: Option<PathBuf>,
    /// Carry a file too, as files/NAME (NAME defaults to the file's name).
    #[arg(long = "file", value_name = "SRC[=NAME]")]
    pub files: Vec<String>,
    /// Leave out the blobs an earlier bundle carried (give that bundle or its
    /// inventory): a delta for a registry that already has them.
    #[arg(long, value_name = "OLD_BUNDLE_OR_INVENTORY")]
    pub since: Option<PathBuf>,
    /// Parallel downloads.
    #[arg(long, default_value_t = 8)]
    pub jobs: usize,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// How to print the summary.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    pub format: Output,
}

#[derive(Debug, Args)]
pub struct BundleVerifyArgs {
    /// The bundle file, or - to read it from standard input (a pipe, a diode).
    pub bundle: PathBuf,
    #[command(flatten)]
    pub trust: TrustArgs,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Which signature to require.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// The public key the bundle must be signed with.
    #[arg(
        long,
        value_name = "PREFIX.pub",
        required_unless_present = "allow_unsigned"
    )]
    pub key: Option<PathBuf>,
    /// Accept a bundle without a signature (its integrity is still checked).
    #[arg(long, conflicts_with = "key")]
    pub allow_unsigned: bool,
}

#[derive(Debug, Args)]
pub struct BundleExtractArgs {
    /// The bundle file, or - to read it from standard input (a pipe, a diode).
    pub bundle: PathBuf,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// The directory to create (it must not exist, or be empty).
    #[arg(long = "out", value_name = "DIR")]
    pub output: PathBuf,
    /// How to print the summary.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    pub format: Output,
}

#[derive(Debug, Args)]
pub struct BundleInspectArgs {
    pub bundle: PathBuf,
    /// Check the inventory's signature with this public key (inspect reads
    /// the inventory only; `verify` checks the whole bundle).
    #[arg(long, value_name = "PREFIX.pub")]
    pub key: Option<PathBuf>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct MirrorConfigArgs {
    /// The internal registry and the prefix images were pushed under.
    #[arg(long, value_name = "HOST:PORT[/PREFIX]")]
    pub registry: String,
    #[arg(long, value_enum)]
    pub format: MirrorFormat,
    /// The registry's CA certificate: copied next to the configuration and referenced from it.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Mirror this registry too (repeatable).
    #[arg(long = "mirror-of", value_name = "REGISTRY")]
    pub mirror_of: Vec<String>,
    /// Mirror only the --mirror-of registries, not the default ones.
    #[arg(long)]
    pub no_defaults: bool,
    /// The internal registry speaks plain HTTP.
    #[arg(long)]
    pub insecure_http: bool,
    /// The path layout the push used (`bundle push --layout`).
    #[arg(long, value_enum, default_value_t = LayoutArg::ByRegistry)]
    pub layout: LayoutArg,
    /// Write the files into this directory (the runtime's config root); without it,
    /// print them.
    #[arg(long = "out", value_name = "DIR")]
    pub output: Option<PathBuf>,
}

/// Where images from each source registry go under the prefix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LayoutArg {
    /// PREFIX/<source registry>/<repository>: docker.io/org/x and quay.io/org/x
    /// stay apart (`127.0.0.1:5000` is written `127.0.0.1_5000`).
    #[default]
    ByRegistry,
    /// PREFIX/<repository>: shorter; a push refuses two sources that would meet.
    Flat,
}

impl From<LayoutArg> for airgate_core::mirror::Layout {
    fn from(l: LayoutArg) -> Self {
        match l {
            LayoutArg::ByRegistry => airgate_core::mirror::Layout::ByRegistry,
            LayoutArg::Flat => airgate_core::mirror::Layout::Flat,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MirrorFormat {
    Containerd,
    K3s,
    Crio,
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
    /// Also take possible images: strings outside pod specs that name a registry
    /// host and a tag or digest (arguments, env values, custom resource fields,
    /// ConfigMap data).
    #[arg(long)]
    pub possible: bool,
    #[command(flatten)]
    pub chart: ChartArgs,
}

/// How a chart among the paths (a directory with Chart.yaml, a .tgz, an oci://
/// reference) is rendered: with the real `helm template`, offline.
#[derive(Clone, Debug, Args)]
pub struct ChartArgs {
    /// A values file for charts (repeatable, applied in order).
    #[arg(long = "values", value_name = "FILE")]
    pub values: Vec<PathBuf>,
    /// A value for charts, as helm --set takes it (repeatable, after the files).
    #[arg(long = "set", value_name = "K=V")]
    pub set: Vec<String>,
    /// The release name charts are rendered with (default: release).
    #[arg(long, value_name = "NAME")]
    pub release_name: Option<String>,
    /// The namespace charts are rendered for.
    #[arg(long = "namespace", value_name = "NS")]
    pub namespace: Option<String>,
    /// The Kubernetes version charts see (Capabilities.KubeVersion; default
    /// v1.36.0, the newest airgate is built for).
    #[arg(long, value_name = "VERSION")]
    pub kube_version: Option<String>,
    /// The version of an oci:// chart (default: its newest).
    #[arg(long, value_name = "VERSION")]
    pub chart_version: Option<String>,
    /// The helm binary, v3 or v4 (default: $AIRGATE_HELM, then helm on PATH).
    #[arg(long, value_name = "BIN")]
    pub helm: Option<PathBuf>,
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
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, value_name = "NAME", requires = "cluster")]
    pub context: Option<String>,
    /// text: one reference per line, sorted and unique (certain ones; with
    /// --possible, possible ones too); json: every one, whether it is certain, and
    /// where each was found.
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
    #[arg(long = "out", value_name = "FILE", default_value = "airgate.lock")]
    pub output: PathBuf,
    /// Parallel registry requests.
    #[arg(long, default_value_t = 8)]
    pub jobs: usize,
    /// Also lock this OCI reference, whatever it holds: a Helm chart
    /// (oci://HOST/PATH/NAME:VERSION), a vulnerability database, a rule pack
    /// (repeatable). Each lock entry says its kind: image, chart or artifact.
    /// A chart in a classic chart repository is https://HOST/PATH/NAME:VERSION
    /// (its index.yaml is read); it is carried as Helm's OCI artifact.
    #[arg(long = "artifact", value_name = "REF")]
    pub artifacts: Vec<String>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
