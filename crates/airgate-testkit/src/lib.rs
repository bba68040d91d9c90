//! The local perimeter, as seen from a test.
//!
//! `dev/perimeter up` starts real servers on 127.0.0.1 (kube-apiserver with
//! controller-manager, scheduler and kwok nodes; an upstream and an internal
//! registry; a Git server over HTTPS) and writes `target/perimeter/env`. This
//! crate reads that file so integration tests and the demo talk to the same
//! servers, and hands out clients set up with the perimeter's CA and
//! credentials.
//!
//! Guarantees: a test that needs the perimeter and cannot find it fails with a
//! message that says how to start it. It never skips.

pub mod airgap;
pub mod browser;
pub mod images;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

/// The servers of a running local perimeter and how to reach them.
#[derive(Clone, Debug)]
pub struct Perimeter {
    /// Directory `dev/perimeter` keeps its state in.
    pub dir: PathBuf,
    /// Admin kubeconfig (cluster-admin through `system:masters`).
    pub kubeconfig: PathBuf,
    /// The Kubernetes release the perimeter runs, e.g. `v1.36.3`.
    pub kube_version: String,
    /// kubectl of that release.
    pub kubectl: PathBuf,
    /// `host:port` of the plain-HTTP "upstream" registry.
    pub upstream_registry: String,
    /// `host:port` of the TLS, basic-auth "internal" registry.
    pub internal_registry: String,
    /// CA that signed the internal registry's certificate.
    pub internal_registry_ca: PathBuf,
    pub internal_registry_user: String,
    pub internal_registry_password_file: PathBuf,
    /// HTTPS base URL of the Git server; a repository is `{git_url}/NAME.git`.
    pub git_url: String,
    pub git_ca: PathBuf,
    pub git_user: String,
    pub git_password_file: PathBuf,
    /// Directory holding the Git server's bare repositories.
    pub git_root: PathBuf,
    /// A `GIT_ASKPASS` program that answers with the Git server's credentials.
    pub git_askpass: PathBuf,
    pub kustomize: PathBuf,
    pub helm: PathBuf,
    /// Helm 4, beside Helm 3 (`helm`): charts are tested with both.
    pub helm4: PathBuf,
    /// The oras client, for checking carried referrers (OCI 1.1).
    pub oras: PathBuf,
    /// cosign, for signing test images and verifying carried signatures.
    pub cosign: PathBuf,
    /// Prometheus' lint rules over a /metrics text on stdin (dev/promlint).
    pub promlint: PathBuf,
    /// The apiserver's audit log: one JSON line per request of a client
    /// (the control plane's own are not logged), rotated at 500 MB.
    pub audit_log: PathBuf,
}

/// A point in the apiserver's audit log; see [`Perimeter::audit_since`].
#[derive(Clone, Debug)]
pub struct AuditMark {
    len: u64,
}

impl Perimeter {
    /// The running perimeter; panics with instructions when it is not up.
    ///
    /// Tests call this first: a missing perimeter is a failure, not a skip.
    pub fn get() -> Perimeter {
        match Perimeter::load() {
            Ok(p) => p,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// Reads the env file of the perimeter in `$AIRGATE_PERIMETER_DIR`, or
    /// else in `target/perimeter` of this workspace.
    pub fn load() -> Result<Perimeter> {
        let dir = match std::env::var_os("AIRGATE_PERIMETER_DIR") {
            Some(d) => PathBuf::from(d),
            None => workspace_root().join("target/perimeter"),
        };
        Perimeter::load_from(&dir)
    }

    /// Reads `DIR/env` as written by `dev/perimeter up`.
    pub fn load_from(dir: &Path) -> Result<Perimeter> {
        let env_file = dir.join("env");
        let text = match std::fs::read_to_string(&env_file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "the local perimeter is not up: {} does not exist\n\
                 hint: start it with `dev/perimeter up`, or run every test with `dev/test`",
                env_file.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("reading {}", env_file.display())),
        };
        let vars = parse_exports(&text);
        let get = |key: &str| -> Result<String> {
            vars.get(key).cloned().with_context(|| {
                format!(
                    "{} has no {key}; it was written by an older dev/perimeter\n\
                     hint: restart it with `dev/perimeter down && dev/perimeter up`",
                    env_file.display()
                )
            })
        };
        let path = |key: &str| get(key).map(PathBuf::from);
        Ok(Perimeter {
            dir: dir.to_path_buf(),
            kubeconfig: path("KUBECONFIG")?,
            kube_version: get("AIRGATE_KUBE_VERSION")?,
            kubectl: path("AIRGATE_KUBECTL")?,
            upstream_registry: get("AIRGATE_UPSTREAM_REGISTRY")?,
            internal_registry: get("AIRGATE_INTERNAL_REGISTRY")?,
            internal_registry_ca: path("AIRGATE_INTERNAL_REGISTRY_CA")?,
            internal_registry_user: get("AIRGATE_INTERNAL_REGISTRY_USER")?,
            internal_registry_password_file: path("AIRGATE_INTERNAL_REGISTRY_PASSWORD_FILE")?,
            git_url: get("AIRGATE_GIT_URL")?,
            git_ca: path("AIRGATE_GIT_CA")?,
            git_user: get("AIRGATE_GIT_USER")?,
            git_password_file: path("AIRGATE_GIT_PASSWORD_FILE")?,
            git_root: path("AIRGATE_GIT_ROOT")?,
            git_askpass: path("AIRGATE_GIT_ASKPASS")?,
            kustomize: path("AIRGATE_KUSTOMIZE")?,
            helm: path("AIRGATE_HELM")?,
            helm4: path("AIRGATE_HELM4")?,
            oras: path("AIRGATE_ORAS")?,
            cosign: path("AIRGATE_COSIGN")?,
            promlint: path("AIRGATE_PROMLINT")?,
            audit_log: path("AIRGATE_AUDIT_LOG")?,
        })
    }

    /// Where the audit log ends now.
    pub fn audit_mark(&self) -> Result<AuditMark> {
        let len = std::fs::metadata(&self.audit_log)
            .with_context(|| format!("reading {}", self.audit_log.display()))?
            .len();
        Ok(AuditMark { len })
    }

    /// The audit events logged since `mark` (those the apiserver has
    /// written by now), across a rotation of the log in between.
    pub fn audit_since(&self, mark: &AuditMark) -> Result<Vec<serde_json::Value>> {
        // Only the part after `from`: the log runs to hundreds of MB.
        let read_from = |path: &Path, from: u64, into: &mut Vec<u8>| -> Result<()> {
            use std::io::{Read, Seek, SeekFrom};
            let mut f =
                std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
            f.seek(SeekFrom::Start(from))?;
            f.read_to_end(into)?;
            Ok(())
        };
        let mut text = Vec::new();
        if std::fs::metadata(&self.audit_log)?.len() < mark.len {
            // Rotated since the mark: the rest of the mark's file is the
            // newest rotated one.
            let dir = self.audit_log.parent().unwrap_or(Path::new("."));
            let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".log"))
                })
                .collect();
            rotated.sort();
            if let Some(newest) = rotated.last() {
                read_from(newest, mark.len, &mut text)?;
            }
            read_from(&self.audit_log, 0, &mut text)?;
        } else {
            read_from(&self.audit_log, mark.len, &mut text)?;
        }
        Ok(text
            .split(|b| *b == b'\n')
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect())
    }

    /// The internal registry's password, read from its file.
    pub fn internal_registry_password(&self) -> Result<String> {
        read_secret(&self.internal_registry_password_file)
    }

    /// The Git server's password, read from its file.
    pub fn git_password(&self) -> Result<String> {
        read_secret(&self.git_password_file)
    }

    /// The admin kubeconfig, loaded.
    pub async fn kube_config(&self) -> Result<kube::Config> {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig)
            .with_context(|| format!("reading kubeconfig {}", self.kubeconfig.display()))?;
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .with_context(|| format!("loading kubeconfig {}", self.kubeconfig.display()))
    }

    /// A kube client with the admin kubeconfig.
    pub async fn kube_client(&self) -> Result<kube::Client> {
        let config = self.kube_config().await?;
        kube::Client::try_from(config).context("building the kube client")
    }

    /// An HTTP client that trusts only the perimeter's CA.
    pub fn https_client(&self) -> Result<reqwest::Client> {
        let pem = std::fs::read(&self.internal_registry_ca)
            .with_context(|| format!("reading {}", self.internal_registry_ca.display()))?;
        let ca = reqwest::Certificate::from_pem(&pem)
            .with_context(|| format!("parsing {}", self.internal_registry_ca.display()))?;
        reqwest::Client::builder()
            .tls_certs_only([ca])
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the HTTPS client")
    }
}

impl Perimeter {
    /// Commits everything in `worktree` (a plain directory; a Git repository
    /// is made there if there is none) and pushes it to `branch` of
    /// `{git_url}/{repo}.git` with the `git` command line, the way an engineer
    /// would. The server creates the repository on its first push. Returns the
    /// commit id pushed.
    pub fn git_push(
        &self,
        worktree: &Path,
        repo: &str,
        branch: &str,
        message: &str,
    ) -> Result<String> {
        let url = format!("{}/{repo}.git", self.git_url);
        if !worktree.join(".git").exists() {
            self.git(worktree, &["init", "--quiet", "--initial-branch", branch])?;
        }
        self.git(worktree, &["add", "--all"])?;
        self.git(
            worktree,
            &["commit", "--quiet", "--allow-empty", "-m", message],
        )?;
        self.git(
            worktree,
            &[
                "push",
                "--quiet",
                &url,
                &format!("HEAD:refs/heads/{branch}"),
            ],
        )?;
        let head = self.git(worktree, &["rev-parse", "HEAD"])?;
        Ok(head.trim().to_string())
    }

    /// Runs `git ARGS` in `dir` against the perimeter's Git server: its CA,
    /// its credentials through `GIT_ASKPASS`, no other helper, no prompt.
    pub fn git(&self, dir: &Path, args: &[&str]) -> Result<String> {
        let out = std::process::Command::new("git")
            .current_dir(dir)
            .arg("-c")
            .arg(format!("http.sslCAInfo={}", self.git_ca.display()))
            .args(["-c", "credential.helper=", "-c", "user.name=Perimeter Test"])
            .args([
                "-c",
                "user.email=test@perimeter.invalid",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            // An inherited GIT_SSL_CAINFO would override http.sslCAInfo.
            .env("GIT_SSL_CAINFO", &self.git_ca)
            .env("GIT_ASKPASS", &self.git_askpass)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .context("running git")?;
        if !out.status.success() {
            bail!(
                "git {} failed in {}: {}",
                args.join(" "),
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Perimeter {
    /// A Docker config directory (for `DOCKER_CONFIG`) holding the internal
    /// registry's credentials, as an operator would set it up.
    pub fn docker_config(&self) -> Result<tempfile::TempDir> {
        use base64_like::encode;
        let dir = tempfile::tempdir()?;
        let auth = encode(
            format!(
                "{}:{}",
                self.internal_registry_user,
                self.internal_registry_password()?
            )
            .as_bytes(),
        );
        let config = serde_json::json!({"auths": {self.internal_registry.clone(): {"auth": auth}}});
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_vec_pretty(&config)?,
        )?;
        Ok(dir)
    }
}

impl Perimeter {
    /// Restarts one perimeter process (e.g. `registry-internal`) on the same
    /// port with the same data, through `dev/perimeter restart`.
    pub fn restart(&self, name: &str) -> Result<()> {
        self.perimeter_command("restart", name)
    }

    /// Stops one perimeter process (`nginx`: the Git server goes away) until
    /// [`Perimeter::start`] brings it back, through `dev/perimeter stop`.
    pub fn stop(&self, name: &str) -> Result<()> {
        self.perimeter_command("stop", name)
    }

    /// Starts a process [`Perimeter::stop`] stopped, with the same command line.
    pub fn start(&self, name: &str) -> Result<()> {
        self.perimeter_command("start", name)
    }

    fn perimeter_command(&self, verb: &str, name: &str) -> Result<()> {
        let script = workspace_root().join("dev/perimeter");
        let out = std::process::Command::new(&script)
            .args([verb, name])
            .env("AIRGATE_PERIMETER_DIR", &self.dir)
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "dev/perimeter {verb} {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// The manifest bytes `repository:reference` has in the internal
    /// registry, or `None` when it has none. Retries while the registry is
    /// unreachable (a test may be restarting it).
    pub fn internal_manifest(&self, repository: &str, reference: &str) -> Result<Option<Vec<u8>>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let http = self.https_client()?;
            let url = format!("https://{}/v2/{repository}/manifests/{reference}", self.internal_registry);
            let accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
                          application/vnd.docker.distribution.manifest.list.v2+json, \
                          application/vnd.docker.distribution.manifest.v2+json";
            let mut last = None;
            for _ in 0..40 {
                let sent = http
                    .get(&url)
                    .basic_auth(&self.internal_registry_user, Some(self.internal_registry_password()?))
                    .header(reqwest::header::ACCEPT, accept)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => return Ok(None),
                    Ok(r) if r.status().is_success() => return Ok(Some(r.bytes().await?.to_vec())),
                    Ok(r) => last = Some(format!("HTTP {}", r.status())),
                    Err(e) => last = Some(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            bail!("GET {url}: {}", last.unwrap_or_default())
        })
    }

    /// How many blobs the internal registry has linked into `repository`
    /// (read from its storage directory).
    pub fn internal_layer_count(&self, repository: &str) -> usize {
        let dir = self
            .dir
            .join("data/registry-internal/docker/registry/v2/repositories")
            .join(repository)
            .join("_layers/sha256");
        std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
    }
}

/// Standard base64, enough for a Docker config `auth` field.
mod base64_like {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(input: &[u8]) -> String {
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn encodes_like_rfc_4648() {
        assert_eq!(encode(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(encode(b"ab"), "YWI=");
        assert_eq!(encode(b"a"), "YQ==");
    }
}

/// Runs `command`: its stdout and stderr, or an error naming the command
/// with its stderr.
pub fn run_both(command: &mut std::process::Command) -> Result<(String, String)> {
    let out = command.output()?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    if !out.status.success() {
        bail!("{command:?}: {stderr}");
    }
    Ok((stdout, stderr))
}

/// [`run_both`], its stdout.
pub fn run(command: &mut std::process::Command) -> Result<String> {
    Ok(run_both(command)?.0)
}

/// A name no other test run uses, for namespaces, repositories and tags:
/// `PREFIX-` followed by 8 hex digits.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mixed =
        (nanos ^ (u64::from(std::process::id()) << 32) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .wrapping_mul(0xBF58_476D_1CE4_E5B9);
    format!("{prefix}-{:08x}", (mixed >> 32) as u32)
}

/// Polls `check` every 250 ms until it returns `Some`, or fails after `timeout`
/// with `what` and the last state `check` reported.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let deadline = std::time::Instant::now() + timeout;
    let mut last = String::from("never checked");
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(state) => last = state,
        }
        if std::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}; last state: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn read_secret(path: &Path) -> Result<String> {
    let s = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(s.trim_end_matches(['\n', '\r']).to_string())
}

/// `export KEY=VALUE` lines; comments and blank lines ignored.
fn parse_exports(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

fn workspace_root() -> PathBuf {
    // crates/airgate-testkit -> the workspace root
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

impl Perimeter {
    /// A token of ServiceAccount `namespace/name` from the TokenRequest
    /// API, valid for an hour.
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> Result<String> {
        use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
        use k8s_openapi::api::core::v1::ServiceAccount;
        let sas: kube::Api<ServiceAccount> =
            kube::Api::namespaced(self.kube_client().await?, namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        sas.create_token_request(name, &Default::default(), &request)
            .await
            .with_context(|| format!("TokenRequest for ServiceAccount {namespace}/{name}"))?
            .status
            .and_then(|s| s.token)
            .filter(|t| !t.is_empty())
            .context("TokenRequest returned no token")
    }

    /// Writes a kubeconfig at `path` that authenticates as ServiceAccount
    /// `namespace/name` with a token from the TokenRequest API (valid for an
    /// hour): what a controller running in the cluster under that account
    /// would have.
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        path: &Path,
    ) -> Result<()> {
        let token = self.service_account_token(namespace, name).await?;
        let admin = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let cluster = admin
            .clusters
            .first()
            .and_then(|c| c.cluster.clone())
            .context("the admin kubeconfig has no cluster")?;
        let mut cluster_json = serde_json::json!({"server": cluster.server});
        if let Some(ca) = &cluster.certificate_authority {
            cluster_json["certificate-authority"] = ca.clone().into();
        }
        if let Some(ca) = &cluster.certificate_authority_data {
            cluster_json["certificate-authority-data"] = ca.clone().into();
        }
        let config = serde_json::json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "perimeter", "cluster": cluster_json}],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": "perimeter", "user": name, "namespace": namespace}}],
            "current-context": name,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&config)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_perimeter_says_how_to_start_it() {
        let dir = std::env::temp_dir().join(unique_name("no-perimeter"));
        let err = Perimeter::load_from(&dir).err().map(|e| format!("{e:#}"));
        let err = err.unwrap_or_default();
        assert!(err.contains("not up"), "{err}");
        assert!(err.contains("dev/perimeter up"), "{err}");
    }

    #[test]
    fn env_file_lines_are_parsed_as_exports() {
        let vars = parse_exports("# comment\nexport A=1\n\nexport B=\"two words\"\nNOT=exported\n");
        assert_eq!(vars.get("A").map(String::as_str), Some("1"));
        assert_eq!(vars.get("B").map(String::as_str), Some("two words"));
        assert!(!vars.contains_key("NOT"));
    }

    #[test]
    fn unique_names_differ() {
        let a = unique_name("t");
        let b = unique_name("t");
        assert_ne!(a, b);
        assert!(a.starts_with("t-") && a.len() == 10, "{a}");
    }
}
