//! The change-control commands on a plain Git work tree (no server):
//! `rollback` changes the path asked for and nothing else, and refuses to
//! mix its commit with changes someone staged.

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Result, ensure};

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=T",
            "-c",
            "user.email=t@x.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()?;
    ensure!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `check -o json`'s findings: (rule, object, field).
fn findings(out: &Output) -> Result<Vec<(String, String, String)>> {
    let found: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(found
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let text = |k: &str| f[k].as_str().unwrap_or("").to_string();
            (text("rule"), text("object"), text("field"))
        })
        .collect())
}

fn airgate(dir: &Path, args: &[&str]) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_airgate"))
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "R")
        .env("GIT_AUTHOR_EMAIL", "r@x.invalid")
        .env("GIT_COMMITTER_NAME", "R")
        .env("GIT_COMMITTER_EMAIL", "r@x.invalid")
        .output()?)
}

fn write(dir: &Path, path: &str, text: &str) -> Result<()> {
    let p = dir.join(path);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(p, text)?;
    Ok(())
}

#[test]
fn rollback_returns_only_the_path_and_refuses_a_staged_change() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    git(d, &["init", "--quiet", "--initial-branch", "main"])?;
    write(d, "envs/prod/web.yaml", "image: web:1.2.3\n")?;
    write(d, "envs/stage/web.yaml", "image: web:1.2.3\n")?;
    git(d, &["add", "--all"])?;
    git(d, &["commit", "--quiet", "-m", "1.2.3"])?;
    let good = git(d, &["rev-parse", "HEAD"])?;
    write(d, "envs/prod/web.yaml", "image: web:1.2.4\n")?;
    write(d, "envs/prod/extra.yaml", "added: later\n")?;
    write(d, "envs/stage/web.yaml", "image: web:1.2.4\n")?;
    git(d, &["add", "--all"])?;
    git(d, &["commit", "--quiet", "-m", "1.2.4"])?;
    let bad = git(d, &["rev-parse", "HEAD"])?;

    // Someone's staged change: refused, nothing committed.
    write(d, "README", "draft\n")?;
    git(d, &["add", "README"])?;
    let out = airgate(d, &["rollback", "envs/prod", "--to", &good])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("staged changes") && stderr.contains("README"),
        "{stderr}"
    );
    ensure!(git(d, &["rev-parse", "HEAD"])? == bad);
    git(d, &["restore", "--staged", "README"])?;

    let out = airgate(
        d,
        &["rollback", "envs/prod", "--to", &good, "--ticket", "CHG-1"],
    )?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
    ensure!(git(d, &["rev-parse", "HEAD"])? == commit);
    // Only envs/prod changed: its file back, the file added since gone.
    let changed = git(d, &["diff", "--name-status", &bad, &commit])?;
    ensure!(
        changed == "D\tenvs/prod/extra.yaml\nM\tenvs/prod/web.yaml",
        "{changed}"
    );
    ensure!(std::fs::read_to_string(d.join("envs/stage/web.yaml"))? == "image: web:1.2.4\n");
    let message = git(d, &["log", "-1", "--format=%B"])?;
    for t in [
        format!("Rolled-back-from: {bad}"),
        format!("Rolled-back-to: {good}"),
        "Ticket: CHG-1".into(),
    ] {
        ensure!(message.contains(&t), "{message}");
    }
    let trailers = git(
        d,
        &["log", "-1", "--format=%(trailers:key=Ticket,valueonly)"],
    )?;
    ensure!(trailers == "CHG-1", "git reads the trailer: {trailers:?}");

    // Again: nothing to do.
    let out = airgate(d, &["rollback", "envs/prod", "--to", &good])?;
    ensure!(
        out.status.success() && String::from_utf8_lossy(&out.stderr).contains("nothing to commit")
    );
    ensure!(git(d, &["rev-parse", "HEAD"])? == commit);
    Ok(())
}

/// `airgate pin` over a corpus (comments, quotes of each kind, flow and
/// block style, key order, a kustomization without a digest, values files
/// by convention and by `--values-path`): the result is byte for byte the
/// expected file, where only version fields differ; a second run changes
/// nothing; `--check` names exactly what the lock does not cover; and
/// kustomize, the real consumer, renders the pinned reference.
#[test]
fn pin_changes_exactly_the_version_fields_and_check_names_what_is_not_pinned() -> Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pin");
    let dir = tempfile::tempdir()?;
    let tree = dir.path().join("tree");
    copy(&corpus.join("in"), &tree)?;
    let pin = |check: bool| -> Result<Output> {
        let lock = corpus.join("airgate.lock").display().to_string();
        let mut args = vec![
            "pin",
            "tree",
            "--lock",
            &lock,
            "--registry",
            "registry.internal:5000/mirror",
            "--values-path",
            "registry.example.com/shop/api:2.0=api.container.ref",
        ];
        if check {
            args.push("--check");
        }
        airgate(dir.path(), &args)
    };
    let out = pin(false)?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "deployment.yaml",
        "values.yaml",
        "overlay/kustomization.yaml",
        "overlay/base.yaml",
    ] {
        let got = std::fs::read(tree.join(name))?;
        let want = std::fs::read(corpus.join("out").join(name))?;
        ensure!(got == want, "{name}:\n{}", String::from_utf8_lossy(&got));
    }
    // Idempotent.
    let out = pin(false)?;
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("in 0 files"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --check: exactly the three references the lock does not cover.
    let out = pin(true)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.code() == Some(1) && stdout.lines().count() == 3,
        "{stdout}"
    );
    for what in [
        "not-in-the-lock:9",
        "images[1]: shop/api:2.0",
        "images[2]: registry.example.com/shop/nothing:1",
    ] {
        ensure!(stdout.contains(what), "{stdout}");
    }
    // The consumer: kustomize renders the pinned reference.
    let p = airgate_testkit::Perimeter::get();
    let built = Command::new(&p.kustomize)
        .arg("build")
        .arg(tree.join("overlay"))
        .output()?;
    let built = String::from_utf8_lossy(&built.stdout);
    ensure!(
        built.contains(&format!(
            "image: registry.internal:5000/mirror/registry.example.com/shop/web:1.2.4@sha256:{}",
            "a".repeat(64)
        )),
        "{built}"
    );
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            copy(&e.path(), &to.join(e.file_name()))?;
        } else {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// `airgate promote`: stage's version fields copied to prod (an image by
/// digest, a kustomize image entry, a Helm App's chart version) and
/// nothing else (prod's env value, replicas and comments stay, and are
/// said to differ), in one commit on a new branch with the trailers; a
/// digest the registry does not have is refused with nothing written.
#[test]
fn promote_copies_only_version_fields_and_refuses_a_digest_the_registry_lacks() -> Result<()> {
    use airgate_testkit::images::{ImageSpec, LayerSpec, seed_image};
    let p = airgate_testkit::Perimeter::get();
    let base = airgate_testkit::unique_name("promote");
    let seed = |name: &str, n: u64| {
        seed_image(
            &p.upstream_registry,
            &format!("{base}/{name}"),
            "v1",
            &ImageSpec::single(&[LayerSpec {
                seed: n,
                size: 2_000,
            }]),
        )
    };
    let (web, api) = (seed("web", 601)?, seed("api", 602)?);
    let up = &p.upstream_registry;
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    git(d, &["init", "--quiet", "--initial-branch", "main"])?;
    let deployment = |image: &str, mode: &str, replicas: u32| {
        format!(
            "# the web tier\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: {replicas}\n  template:\n    spec:\n      containers:\n        - name: web\n          image: {image}   # set by promotion\n          env:\n            - {{name: MODE, value: {mode}}}\n"
        )
    };
    let kustomization = |tag: &str, digest: Option<&str>| {
        let digest = digest
            .map(|d| format!("\n    digest: {d}"))
            .unwrap_or_default();
        format!(
            "resources: [web.yaml, app.yaml]\nimages:\n  - name: shop/api\n    newName: {up}/{base}/api\n    newTag: \"{tag}\"{digest}\n"
        )
    };
    let app = |version: &str| {
        format!(
            "apiVersion: airgate.dev/v1alpha1\nkind: App\nmetadata: {{name: search}}\nspec:\n  source:\n    helm:\n      chart: oci://r/charts/search\n      version: {version}\n"
        )
    };
    let web_new = format!("{up}/{base}/web:v1@{}", web.digest);
    let web_old = format!("{up}/{base}/web:v0@sha256:{}", "0".repeat(64));
    write(d, "envs/stage/web.yaml", &deployment(&web_new, "stage", 1))?;
    write(d, "envs/prod/web.yaml", &deployment(&web_old, "prod", 3))?;
    write(
        d,
        "envs/stage/kustomization.yaml",
        &kustomization("v1", Some(&api.digest)),
    )?;
    write(
        d,
        "envs/prod/kustomization.yaml",
        &kustomization("v0", None),
    )?;
    write(d, "envs/stage/app.yaml", &app("0.2.0"))?;
    write(d, "envs/prod/app.yaml", &app("0.1.0"))?;
    git(d, &["add", "--all"])?;
    git(d, &["commit", "--quiet", "-m", "stage has 1.2.4"])?;
    let before = git(d, &["rev-parse", "HEAD"])?;

    let out = airgate(
        d,
        &[
            "promote",
            "--from",
            "envs/stage",
            "--to",
            "envs/prod",
            "--internal",
            up,
            "--ticket",
            "CHG-9",
        ],
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "{stderr}");
    ensure!(git(d, &["rev-parse", "--abbrev-ref", "HEAD"])?.starts_with("promote/envs-prod-"));
    ensure!(
        std::fs::read_to_string(d.join("envs/prod/web.yaml"))? == deployment(&web_new, "prod", 3)
    );
    ensure!(
        std::fs::read_to_string(d.join("envs/prod/kustomization.yaml"))?
            == format!(
                "resources: [web.yaml, app.yaml]\nimages:\n  - name: shop/api\n    newName: {up}/{base}/api\n    digest: {}\n    newTag: \"v1\"\n",
                api.digest
            ),
        "the digest is added beside newName, the tag changed in place"
    );
    ensure!(std::fs::read_to_string(d.join("envs/prod/app.yaml"))? == app("0.2.0"));
    ensure!(
        stderr.contains("left as it is")
            && stderr.contains("spec.replicas")
            && stderr.contains("env"),
        "{stderr}"
    );
    let changed = git(d, &["diff", "--name-only", &before, "HEAD"])?;
    ensure!(
        changed == "envs/prod/app.yaml\nenvs/prod/kustomization.yaml\nenvs/prod/web.yaml",
        "{changed}"
    );
    let message = git(d, &["log", "-1", "--format=%B"])?;
    ensure!(
        message.contains(&format!("Promoted-from: envs/stage@{before}"))
            && message.contains("Ticket: CHG-9"),
        "{message}"
    );

    // A digest the registry does not have: refused, nothing written.
    git(d, &["checkout", "--quiet", "main"])?;
    let missing = format!("{up}/{base}/web:v2@sha256:{}", "1".repeat(64));
    write(d, "envs/stage/web.yaml", &deployment(&missing, "stage", 1))?;
    git(
        d,
        &[
            "commit",
            "--quiet",
            "-am",
            "stage has a digest nobody carried",
        ],
    )?;
    let head = git(d, &["rev-parse", "HEAD"])?;
    let out = airgate(
        d,
        &[
            "promote",
            "--from",
            "envs/stage",
            "--to",
            "envs/prod",
            "--internal",
            up,
        ],
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && stderr.contains("does not have")
            && stderr.contains(&"1".repeat(64)),
        "{stderr}"
    );
    ensure!(
        git(d, &["rev-parse", "HEAD"])? == head && git(d, &["status", "--porcelain"])?.is_empty()
    );
    Ok(())
}

/// `airgate diff` between two revisions of a kustomize overlay (its base
/// elsewhere in the repository): the image bump and the new env var by
/// field, a Secret's change masked, an object added; exit 1 when they
/// differ and 0 when they do not.
#[test]
fn diff_shows_rendered_changes_by_field_with_secrets_masked() -> Result<()> {
    let p = airgate_testkit::Perimeter::get();
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    git(d, &["init", "--quiet", "--initial-branch", "main"])?;
    write(
        d,
        "base/kustomization.yaml",
        "resources: [web.yaml, secret.yaml]\n",
    )?;
    write(
        d,
        "base/web.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers:\n        - {name: web, image: web:1.2.3}\n",
    )?;
    write(
        d,
        "base/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: old-and-secret}\n",
    )?;
    write(
        d,
        "envs/prod/kustomization.yaml",
        "namespace: shop\nresources: [../../base]\n",
    )?;
    git(d, &["add", "--all"])?;
    git(d, &["commit", "--quiet", "-m", "1.2.3"])?;
    let before = git(d, &["rev-parse", "HEAD"])?;
    write(
        d,
        "base/web.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers:\n        - name: web\n          image: web:1.2.4\n          env: [{name: FEATURE_X, value: \"on\"}]\n",
    )?;
    write(
        d,
        "base/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: new-and-secret}\n",
    )?;
    write(
        d,
        "envs/prod/extra.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\n",
    )?;
    write(
        d,
        "envs/prod/kustomization.yaml",
        "namespace: shop\nresources: [../../base, extra.yaml]\n",
    )?;
    git(d, &["add", "--all"])?;
    git(d, &["commit", "--quiet", "-m", "1.2.4"])?;
    let kustomize = p.kustomize.display().to_string();
    let out = airgate(
        d,
        &[
            "diff",
            "envs/prod",
            "--from",
            &before,
            "--kustomize",
            &kustomize,
        ],
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.code() == Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "+ ConfigMap/shop/extra",
        "~ Deployment/shop/web",
        "    spec.template.spec.containers[0].image: \"web:1.2.3\" -> \"web:1.2.4\"",
        "    spec.template.spec.containers[0].env[0].name: (none) -> \"FEATURE_X\"",
        "~ Secret/shop/db",
        "    stringData.password: \"<masked>\" -> \"<masked>\"",
    ] {
        ensure!(
            stdout.lines().any(|l| l == line),
            "no line {line:?} in:\n{stdout}"
        );
    }
    ensure!(
        !stdout.contains("secret\""),
        "a Secret's value was shown:\n{stdout}"
    );
    let out = airgate(
        d,
        &[
            "diff",
            "envs/prod",
            "--from",
            "HEAD",
            "--kustomize",
            &kustomize,
        ],
    )?;
    ensure!(out.status.success() && out.stdout.is_empty());
    ensure!(
        git(d, &["worktree", "list"])?.lines().count() == 1,
        "the checkouts are gone"
    );
    Ok(())
}

/// `airgate check` over a repository seeded with one instance of every
/// rule it has, beside a clean environment: each finding named with its
/// file, object, field and rule, the clean one silent, an allowed rule
/// allowed for its path only, SARIF for code scanning, exit 1; and exit 0
/// on the clean environment alone.
#[test]
fn check_finds_every_seeded_problem_and_nothing_in_a_clean_environment() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let (d1, d2) = (
        format!("sha256:{}", "1".repeat(64)),
        format!("sha256:{}", "2".repeat(64)),
    );
    write(
        d,
        ".airgate-check.yaml",
        "allowedRegistries: [registry.internal:5000]\nallowedHosts: ['*.internal']\nenvironments: [envs/dev, envs/prod]\nallow:\n  - {path: envs/dev, rules: [resources]}\n",
    )?;
    write(
        d,
        "envs/dev/web.yaml",
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n        - {{name: web, image: \"registry.internal:5000/shop/web:1@{d1}\"}}\n"
        ),
    )?;
    write(
        d,
        "envs/prod/web.yaml",
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      hostNetwork: true\n      volumes: [{{name: root, hostPath: {{path: /}}}}]\n      containers:\n        - name: web\n          image: \"registry.internal:5000/shop/web:1@{d2}\"\n          securityContext: {{privileged: true}}\n          resources: {{requests: {{cpu: '1', memory: 1Gi}}, limits: {{memory: 1Gi}}}}\n        - name: proxy\n          image: nginx\n          resources: {{requests: {{cpu: '1'}}}}\n"
        ),
    )?;
    write(
        d,
        "envs/prod/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: shop}\nstringData: {password: hunter2}\n",
    )?;
    write(
        d,
        "envs/prod/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: shop}\ndata:\n  rules: https://rules.falco.org/index.yaml\n  mirror: https://mirror.internal/x\n",
    )?;
    let out = airgate(d, &["check", ".", "-o", "json"])?;
    ensure!(
        out.status.code() == Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = findings(&out)?;
    let found: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let want = [
        ("plaintext-secret", "Secret/shop/db", "stringData"),
        ("external", "ConfigMap/shop/settings", "data.rules"),
        (
            "allowed-registry",
            "Deployment/shop/web",
            "spec.template.spec.containers[1].image",
        ),
        (
            "latest",
            "Deployment/shop/web",
            "spec.template.spec.containers[1].image",
        ),
        (
            "digest",
            "Deployment/shop/web",
            "spec.template.spec.containers[1].image",
        ),
        (
            "resources",
            "Deployment/shop/web",
            "spec.template.spec.containers[1].resources",
        ),
        (
            "privileged",
            "Deployment/shop/web",
            "spec.template.spec.containers[0].securityContext.privileged",
        ),
        (
            "leakage",
            "Deployment/shop/web",
            "spec.template.spec.containers[0].image",
        ),
        (
            "host-network",
            "Deployment/shop/web",
            "spec.template.spec.hostNetwork",
        ),
        (
            "host-path",
            "Deployment/shop/web",
            "spec.template.spec.volumes[0].hostPath",
        ),
    ];
    ensure!(list.len() == want.len(), "{list:#?}");
    for (rule, object, field) in want {
        ensure!(
            list.iter()
                .any(|(r, o, f)| r == rule && o == object && f == field),
            "no {rule} on {object} {field} in {list:#?}"
        );
    }
    ensure!(
        found
            .as_array()
            .into_iter()
            .flatten()
            .all(|f| f["file"].as_str().is_some_and(|p| p.contains("envs/prod"))),
        "the clean environment has no finding (its missing resources are allowed): {found:#}"
    );
    ensure!(
        !String::from_utf8_lossy(&out.stdout).contains("hunter2"),
        "a Secret value was shown"
    );
    let out = airgate(d, &["check", ".", "-o", "sarif"])?;
    let sarif: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    ensure!(
        sarif["version"] == "2.1.0"
            && sarif["runs"][0]["results"].as_array().map(Vec::len) == Some(want.len())
    );
    let out = airgate(d, &["check", ".", "--env", "envs/dev"])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(())
}

/// `airgate schemas export` from the perimeter's apiserver, then `check
/// --schemas`: a Deployment with a field that does not exist and one of
/// the wrong type, a custom resource checked against its CRD found beside
/// it, and a kind nobody serves, each named; the clean objects silent.
#[test]
fn check_validates_against_exported_schemas_and_the_crds_beside_the_objects() -> Result<()> {
    let p = airgate_testkit::Perimeter::get();
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let schemas = d.join("schemas");
    let out = airgate(
        d,
        &[
            "schemas",
            "export",
            "--kubeconfig",
            &p.kubeconfig.display().to_string(),
            "--out",
            &schemas.display().to_string(),
        ],
    )?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(schemas.join("apis_apps_v1.json").is_file() && schemas.join("api_v1.json").is_file());
    let digest = format!("sha256:{}", "1".repeat(64));
    let container = format!(
        "{{name: web, image: \"registry.internal:5000/web:1@{digest}\", resources: {{requests: {{cpu: '1', memory: 1Gi}}, limits: {{memory: 1Gi}}}}}}"
    );
    write(
        d,
        "repo/.airgate-check.yaml",
        "allowedRegistries: [registry.internal:5000]\n",
    )?;
    write(
        d,
        "repo/web.yaml",
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: shop}}\nspec:\n  replicaz: 2\n  replicas: two\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers: [{container}]\n"
        ),
    )?;
    write(
        d,
        "repo/ok.yaml",
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: ok, namespace: shop}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: ok}}}}\n  template:\n    metadata: {{labels: {{app: ok}}}}\n    spec:\n      containers: [{container}]\n"
        ),
    )?;
    write(
        d,
        "repo/crd.yaml",
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.check.example.com}\nspec:\n  group: check.example.com\n  names: {kind: Widget, plural: widgets}\n  scope: Namespaced\n  versions:\n    - name: v1\n      served: true\n      storage: true\n      schema: {openAPIV3Schema: {type: object, properties: {spec: {type: object, properties: {size: {type: integer}}}}}}\n",
    )?;
    write(
        d,
        "repo/widgets.yaml",
        "apiVersion: check.example.com/v1\nkind: Widget\nmetadata: {name: big, namespace: shop}\nspec: {size: large}\n---\napiVersion: check.example.com/v1\nkind: Widget\nmetadata: {name: small, namespace: shop}\nspec: {size: 1}\n",
    )?;
    write(
        d,
        "repo/unknown.yaml",
        "apiVersion: nobody.example.com/v1\nkind: Gadget\nmetadata: {name: g, namespace: shop}\n",
    )?;
    let out = airgate(
        d,
        &[
            "check",
            "repo",
            "--schemas",
            &schemas.display().to_string(),
            "-o",
            "json",
        ],
    )?;
    ensure!(
        out.status.code() == Some(1) && !out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut list: Vec<(String, String)> = found
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            (
                f["object"].as_str().unwrap_or("").to_string(),
                f["field"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    list.sort();
    let want = [
        ("Deployment/shop/web", "spec.replicas"),
        ("Deployment/shop/web", "spec.replicaz"),
        ("Gadget/shop/g", "kind"),
        ("Widget/shop/big", "spec.size"),
    ];
    ensure!(
        list.iter()
            .map(|(o, f)| (o.as_str(), f.as_str()))
            .collect::<Vec<_>>()
            == want,
        "{found:#}"
    );
    ensure!(
        found
            .as_array()
            .into_iter()
            .flatten()
            .all(|f| f["rule"] == "schema"),
        "{found:#}"
    );
    Ok(())
}

/// Without an export, objects are validated against the schemas airgate
/// carries for the target version: a kind that version does not serve is
/// a finding, and a version airgate does not carry is an error (exit 2),
/// not a finding.
#[test]
fn check_validates_against_the_schemas_airgate_carries_for_the_target_version() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    // MutatingAdmissionPolicy is admissionregistration.k8s.io/v1 from 1.36 on.
    write(
        d,
        "envs/prod/policy.yaml",
        "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingAdmissionPolicy\nmetadata: {name: defaults}\nspec: {failurePolicy: Fail}\n",
    )?;
    write(
        d,
        "envs/prod/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: shop}\ndata: {mode: prod}\nimmutable: maybe\n",
    )?;
    let fields = |out: &Output| -> Result<Vec<(String, String)>> {
        Ok(findings(out)?
            .into_iter()
            .map(|(_, object, field)| (object, field))
            .collect())
    };
    let newest = airgate(d, &["check", ".", "-o", "json"])?;
    ensure!(
        newest.status.code() == Some(1)
            && String::from_utf8_lossy(&newest.stderr).contains("Kubernetes v1.36.3"),
        "{}",
        String::from_utf8_lossy(&newest.stderr)
    );
    ensure!(
        fields(&newest)?
            == [(
                "ConfigMap/shop/settings".to_string(),
                "immutable".to_string()
            )],
        "{:?}",
        fields(&newest)?
    );
    let older = airgate(d, &["check", ".", "--kube-version", "1.34", "-o", "json"])?;
    let found = fields(&older)?;
    ensure!(
        found.contains(&(
            "MutatingAdmissionPolicy/defaults".to_string(),
            "kind".to_string()
        )) && found.len() == 2,
        "{found:?}"
    );
    let unknown = airgate(d, &["check", ".", "--kube-version", "1.20"])?;
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    ensure!(
        unknown.status.code() == Some(2) && stderr.contains("v1.34, v1.35, v1.36"),
        "{stderr}"
    );
    Ok(())
}
