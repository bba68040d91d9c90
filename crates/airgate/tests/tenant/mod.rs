//! The controller harness the perimeter tests share: a tenant (namespace,
//! ServiceAccount, Git repository), a controller process of the `airgate`
//! binary, and readers of what they did. Each test binary uses part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use airgate_core::status::ConditionType;
use airgate_kube::app::App;
use airgate_store::Store;
use airgate_testkit::{Perimeter, eventually, unique_name};
use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

pub const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Who the controller is to the apiserver (its requests as an App's
/// ServiceAccount are impersonated, and logged under this name).
pub const CONTROLLER_USER: &str = "system:serviceaccount:airgate-system:airgate-controller";

/// The Git-outage test takes this for writing; every other test for
/// reading, so none of them sees the Git server go away.
pub static GIT: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

pub fn airgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_airgate"))
}

/// Runs `command`; its stderr when it fails.
fn succeeds(command: &mut Command) -> Result<(), String> {
    let out = command.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `airgate install`'s CRD, namespace and RBAC, applied once per run.
pub fn installed(p: &Perimeter) -> Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        succeeds(
            airgate()
                .args(["install", "--image", "r.internal/airgate:1", "--out"])
                .arg(dir.path()),
        )?;
        let kubectl = || {
            let mut c = Command::new(&p.kubectl);
            c.arg("--kubeconfig")
                .arg(&p.kubeconfig)
                .current_dir(dir.path());
            c
        };
        // Forced: the perimeter may hold the CRD of an older build.
        succeeds(kubectl().args([
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=airgate-install",
            "-f",
            "crd.yaml",
            "-f",
            "namespace.yaml",
            "-f",
            "rbac.yaml",
        ]))?;
        succeeds(kubectl().args([
            "wait",
            "--for=condition=Established",
            "crd/apps.airgate.dev",
        ]))?;
        Ok(())
    })
    .clone()
    .map_err(|e| anyhow::anyhow!("installing airgate: {e}"))
}

pub fn kubectl(p: &Perimeter, args: &[&str]) -> Result<String> {
    let out = Command::new(&p.kubectl)
        .arg("--kubeconfig")
        .arg(&p.kubeconfig)
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The problems Prometheus' lint rules find in a /metrics text (empty:
/// none); an error when the text does not parse.
pub fn promlint(p: &Perimeter, metrics: &str) -> Result<String> {
    use std::io::Write as _;
    let mut child = Command::new(&p.promlint)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(metrics.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.code() == Some(2) {
        bail!("promlint: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A running `airgate controller`; killed when dropped.
pub struct Controller {
    pub child: Child,
    pub log: PathBuf,
    pub data: PathBuf,
    pub metrics: String,
}

impl Drop for Controller {
    fn drop(&mut self) {
        // Under strace the controller is strace's child: a killed strace
        // would leave it running, untraced. Kill it first.
        let pid = self.child.id();
        let children = format!("/proc/{pid}/task/{pid}/children");
        if let Ok(list) = std::fs::read_to_string(children) {
            for child in list.split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", child]).status();
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Controller {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn records(&self, app: &str) -> Result<Vec<airgate_store::SyncRecord>> {
        let store = Store::open(&self.data.join("records.db"))?;
        Ok(store
            .recent(app, 100)?
            .into_iter()
            .map(|s| s.record)
            .collect())
    }
}

/// One test's world: a tenant namespace whose ServiceAccount `deployer` may
/// do anything there and nothing elsewhere, a Git repository, a worktree.
pub struct Tenant {
    pub p: Perimeter,
    pub ns: String,
    pub repo: String,
    pub work: tempfile::TempDir,
    pub dir: tempfile::TempDir,
}

impl Tenant {
    pub async fn new(prefix: &str) -> Result<Tenant> {
        let p = Perimeter::get();
        installed(&p)?;
        let ns = unique_name(prefix);
        let admin = airgate_kube::Applier::new(p.kube_client().await?, "perimeter-setup", &ns);
        let objects = [
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "deployer", "namespace": ns}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": "deployer", "namespace": ns},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
                   "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": ns}]}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "git-creds", "namespace": ns},
                   "stringData": {"username": p.git_user, "password": p.git_password()?,
                                  "ca.crt": std::fs::read_to_string(&p.git_ca)?}}),
        ];
        let objects: Vec<_> = objects
            .iter()
            .map(|o| ("setup".to_string(), o.clone()))
            .collect();
        admin.apply(&objects).await?;
        Ok(Tenant {
            repo: format!("{ns}-config"),
            ns,
            p,
            work: tempfile::tempdir()?,
            dir: tempfile::tempdir()?,
        })
    }

    pub fn write(&self, path: &str, content: &str) -> Result<()> {
        let target = self.work.path().join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(target, content)?;
        Ok(())
    }

    pub fn remove(&self, path: &str) -> Result<()> {
        std::fs::remove_file(self.work.path().join(path))?;
        Ok(())
    }

    pub fn push(&self, message: &str) -> Result<String> {
        self.p
            .git_push(self.work.path(), &self.repo, "main", message)
    }

    /// Starts a controller for this tenant's namespace on `lease`.
    pub async fn controller(&self, name: &str, lease: &str) -> Result<Controller> {
        self.controller_traced(name, lease, None, &[]).await
    }

    /// [`Tenant::controller`], with its connection attempts traced to
    /// `trace` when given (see `airgate_testkit::airgap`).
    pub async fn controller_traced(
        &self,
        name: &str,
        lease: &str,
        trace: Option<&std::path::Path>,
        extra: &[&str],
    ) -> Result<Controller> {
        let data = self.dir.path().join(name);
        std::fs::create_dir_all(&data)?;
        let kubeconfig = self.dir.path().join("controller.kubeconfig");
        if !kubeconfig.exists() {
            self.p
                .service_account_kubeconfig("airgate-system", "airgate-controller", &kubeconfig)
                .await?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = data.join("controller.log");
        let binary = std::path::Path::new(env!("CARGO_BIN_EXE_airgate"));
        let mut command = match trace {
            Some(t) => airgate_testkit::airgap::traced(binary, t),
            None => airgate(),
        };
        let child = command
            .arg("controller")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args([
                "--namespace",
                &self.ns,
                "--lease-namespace",
                "airgate-system",
            ])
            .args(["--lease-name", lease, "--lease-duration", "6"])
            .args(["--identity", name])
            .arg("--data-dir")
            .arg(&data)
            .arg("--kustomize")
            .arg(&self.p.kustomize)
            .args(if extra.contains(&"--helm") {
                vec![]
            } else {
                vec![std::ffi::OsStr::new("--helm"), self.p.helm.as_os_str()]
            })
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("DOCKER_CONFIG", self.dir.path().join("docker"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting airgate controller")?;
        Ok(Controller {
            child,
            log,
            data,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
        })
    }

    /// Starts controller `c1` on this tenant's own Lease and creates App
    /// `shop` with `extra` spec fields.
    pub async fn start(&self, extra: Value) -> Result<Controller> {
        let c = self.controller("c1", &format!("{}-lease", self.ns)).await?;
        self.create_app("shop", extra).await?;
        Ok(c)
    }

    /// [`Tenant::start`], then waits until the App is Ready.
    pub async fn ready(&self, extra: Value) -> Result<Controller> {
        let c = self.start(extra).await?;
        self.until("shop", "Ready", ready, &c).await?;
        Ok(c)
    }

    pub fn app_spec(&self, extra: Value) -> Value {
        let mut spec = json!({
            "source": {"url": format!("{}/{}.git", self.p.git_url, self.repo),
                       "ref": {"branch": "main"}, "path": "envs/prod",
                       "secretRef": {"name": "git-creds"}},
            "interval": "2s",
            "timeout": "30s",
            "serviceAccountName": "deployer",
            "prune": true,
            "policy": {"allowedRegistries": ["registry.internal:5000"], "requireDigests": true}
        });
        if let (Some(base), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                base.insert(k.clone(), v.clone());
            }
        }
        spec
    }

    pub async fn apps(&self) -> Result<Api<App>> {
        Ok(Api::namespaced(self.p.kube_client().await?, &self.ns))
    }

    pub async fn create_app(&self, name: &str, extra: Value) -> Result<()> {
        let app = json!({"apiVersion": "airgate.dev/v1alpha1", "kind": "App",
                         "metadata": {"name": name, "namespace": self.ns},
                         "spec": self.app_spec(extra)});
        self.apps()
            .await?
            .patch(
                name,
                &PatchParams::apply("test").force(),
                &Patch::Apply(&app),
            )
            .await?;
        Ok(())
    }

    pub async fn patch_app(&self, name: &str, spec: Value) -> Result<()> {
        self.apps()
            .await?
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await?;
        Ok(())
    }

    /// Waits until App `name` satisfies `ok`; the error shows its status.
    pub async fn until(
        &self,
        name: &str,
        what: &str,
        ok: impl Fn(&App) -> bool,
        controller: &Controller,
    ) -> Result<App> {
        let apps = self.apps().await?;
        let result = eventually(what, Duration::from_secs(90), || {
            let apps = apps.clone();
            let ok = &ok;
            async move {
                let app = apps.get(name).await.map_err(|e| e.to_string())?;
                if ok(&app) {
                    Ok(Some(app))
                } else {
                    Err(serde_json::to_string(&app.status).unwrap_or_default())
                }
            }
        })
        .await;
        result.with_context(|| format!("controller log:\n{}", controller.log()))
    }

    /// Waits until App `shop` is not Ready for `reason`.
    pub async fn until_reason(&self, reason_wanted: &str, controller: &Controller) -> Result<App> {
        self.until(
            "shop",
            &format!("Ready reason {reason_wanted}"),
            |a| reason(a) == reason_wanted,
            controller,
        )
        .await
    }

    /// Waits (up to 30 s) until the App `shop` owns more than `more_than`
    /// ConfigMaps, and returns how many: to kill a controller mid-apply.
    pub async fn until_applying(&self, more_than: usize) -> Result<usize> {
        let cms: Api<ConfigMap> = Api::namespaced(self.p.kube_client().await?, &self.ns);
        let selector = kube::api::ListParams::default().labels("airgate.dev/app-name=shop");
        let mut seen = 0;
        for _ in 0..1500 {
            seen = cms.list_metadata(&selector).await?.items.len();
            if seen > more_than {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(seen)
    }

    pub async fn config_map(&self, name: &str) -> Result<Option<ConfigMap>> {
        let api: Api<ConfigMap> = Api::namespaced(self.p.kube_client().await?, &self.ns);
        Ok(api.get_opt(name).await?)
    }

    pub async fn deployment(&self, name: &str) -> Result<Option<Deployment>> {
        let api: Api<Deployment> = Api::namespaced(self.p.kube_client().await?, &self.ns);
        Ok(api.get_opt(name).await?)
    }
}

/// The connection attempts a traced controller made (see
/// `airgate_testkit::airgap`) to anything but the apiserver, the Git
/// server and `also`; an error when the trace recorded nothing.
pub fn reached_elsewhere(
    p: &Perimeter,
    trace: &std::path::Path,
    also: &[&str],
) -> Result<Vec<String>> {
    let kubeconfig = std::fs::read_to_string(&p.kubeconfig)?;
    let server = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .context("no server in the kubeconfig")?;
    let mut allowed = vec![
        airgate_testkit::airgap::endpoint(server.trim())?,
        airgate_testkit::airgap::endpoint(&p.git_url)?,
    ];
    for a in also {
        allowed.push(airgate_testkit::airgap::endpoint(a)?);
    }
    let attempts = airgate_testkit::airgap::attempts(trace)?;
    if attempts.is_empty() {
        bail!("the trace recorded nothing");
    }
    Ok(airgate_testkit::airgap::violations(&attempts, &allowed))
}

pub fn image(tag: &str) -> String {
    format!("registry.internal:5000/shop/web:{tag}@{DIGEST}")
}

pub fn deployment(image: &str, env: Option<(&str, &str)>, node_selector: bool) -> String {
    let env = env.map_or(String::new(), |(k, v)| {
        format!("\n          env: [{{name: {k}, value: \"{v}\"}}]")
    });
    let selector = if node_selector {
        "\n      nodeSelector: {airgate.dev/no-such-node: \"true\"}"
    } else {
        ""
    };
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:{selector}\n      containers:\n        - name: web\n          image: {image}{env}\n"
    )
}

pub fn config_map(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{mode: \"{value}\"}}\n"
    )
}

pub fn ready(app: &App) -> bool {
    app.status
        .as_ref()
        .and_then(|s| s.condition(ConditionType::Ready))
        .is_some_and(|c| c.status == "True")
}

pub fn reason(app: &App) -> String {
    app.status
        .as_ref()
        .and_then(|s| s.condition(ConditionType::Ready))
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

pub fn ready_message(app: &App) -> String {
    app.status
        .as_ref()
        .and_then(|s| s.condition(ConditionType::Ready))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

pub fn applied(app: &App) -> Option<String> {
    app.status
        .as_ref()
        .and_then(|s| s.last_applied_revision.clone())
}

pub fn image_of(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}
