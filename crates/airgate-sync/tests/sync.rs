//! Whole syncs against the perimeter: Git over HTTPS with basic auth, the
//! apiserver with kwok nodes, applies as the App's ServiceAccount.

use airgate_core::inventory::Inventory;
use airgate_core::policy::Policy;
use airgate_git::{Access, GitRef};
use airgate_kube::{Action, Applier};
use airgate_sync::{SyncError, SyncSpec, Syncer};
use airgate_testkit::{Perimeter, unique_name};
use anyhow::{Result, bail};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use serde_json::json;

const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// A namespace with a ServiceAccount that may do anything in it, and nothing elsewhere.
async fn tenant(p: &Perimeter, ns: &str) -> Result<()> {
    let admin = Applier::new(p.kube_client().await?, "perimeter-setup", "default");
    let objects = [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "deployer", "namespace": ns}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "deployer", "namespace": ns},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
               "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": ns}]}),
    ];
    let objects: Vec<_> = objects
        .iter()
        .map(|o| ("setup".to_string(), o.clone()))
        .collect();
    admin.apply(&objects).await?;
    Ok(())
}

fn deployment(ns: &str, image: &str, env: Option<(&str, &str)>) -> String {
    let env = env.map_or(String::new(), |(k, v)| {
        format!("\n          env: [{{name: {k}, value: \"{v}\"}}]")
    });
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n        - name: web\n          image: {image}{env}\n"
    )
}

fn spec(p: &Perimeter, ns: &str, repo: &str) -> Result<SyncSpec> {
    Ok(SyncSpec {
        app: format!("{ns}/shop"),
        namespace: ns.to_string(),
        url: format!("{}/{repo}.git", p.git_url),
        git_ref: GitRef::Branch("main".into()),
        path: "envs/prod".into(),
        access: Access {
            username: Some(p.git_user.clone()),
            password: Some(p.git_password()?),
            ca_pem: Some(std::fs::read(&p.git_ca)?),
        },
        service_account: "deployer".into(),
        policy: Policy {
            allowed_registries: vec!["registry.internal:5000".into()],
            require_digests: true,
            ..Policy::default()
        },
        prune: true,
        verify: None,
        helm: None,
        timeout: std::time::Duration::from_secs(30),
        applied: None,
    })
}

#[tokio::test]
async fn syncs_create_update_and_prune_and_a_policy_violation_applies_nothing() -> Result<()> {
    let p = Perimeter::get();
    let ns = unique_name("sync");
    tenant(&p, &ns).await?;
    let work = tempfile::tempdir()?;
    let prod = work.path().join("envs/prod");
    std::fs::create_dir_all(&prod)?;
    let image = |tag: &str| format!("registry.internal:5000/shop/web:{tag}@{DIGEST}");
    std::fs::write(
        prod.join("web.yaml"),
        deployment(&ns, &image("1.2.3"), None),
    )?;
    std::fs::write(
        prod.join("settings.yaml"),
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: {ns}}}\ndata: {{mode: prod}}\n"
        ),
    )?;
    let repo = unique_name("shop");
    let first = p.git_push(work.path(), &repo, "main", "shop 1.2.3")?;

    let cache = tempfile::tempdir()?;
    let syncer = Syncer::new(
        cache.path().to_path_buf(),
        Some(p.kustomize.clone()),
        p.kube_config().await?,
    );
    let spec = spec(&p, &ns, &repo)?;
    let one = syncer.sync(&spec, &Inventory::default()).await?;
    assert_eq!(one.commit.id, first);
    assert_eq!(one.applied.count(Action::Created), 2, "{:?}", one.applied);
    assert_eq!(one.images, [image("1.2.3")]);
    let record = one.record(&spec.app, 0, 0);
    assert_eq!(record.message.trim(), "shop 1.2.3");
    assert_eq!(record.objects.len(), 2);

    // 1.2.3 -> 1.2.4 and a new env var; the ConfigMap leaves Git.
    std::fs::write(
        prod.join("web.yaml"),
        deployment(&ns, &image("1.2.4"), Some(("FEATURE", "on"))),
    )?;
    std::fs::remove_file(prod.join("settings.yaml"))?;
    p.git_push(work.path(), &repo, "main", "shop 1.2.4")?;
    let two = syncer.sync(&spec, &one.inventory).await?;
    assert_eq!(
        two.applied.count(Action::Configured),
        1,
        "{:?}",
        two.applied
    );
    assert_eq!(two.pruned.count(Action::Deleted), 1, "{:?}", two.pruned);
    let cms: Api<ConfigMap> = Api::namespaced(p.kube_client().await?, &ns);
    assert!(cms.get_opt("settings").await?.is_none());

    // An image from outside the allowed registries blocks the whole sync.
    std::fs::write(prod.join("web.yaml"), deployment(&ns, "nginx:1.27", None))?;
    std::fs::write(
        prod.join("extra.yaml"),
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: extra, namespace: {ns}}}\n"),
    )?;
    p.git_push(work.path(), &repo, "main", "try docker hub")?;
    match syncer.sync(&spec, &two.inventory).await {
        Err(SyncError::Policy(v)) => {
            assert_eq!(v.len(), 2, "{v:?}");
            assert_eq!(v[0].object, format!("Deployment/{ns}/web"));
            assert_eq!(v[0].field, "spec.template.spec.containers[0].image");
            assert_eq!(v[0].image, "docker.io/library/nginx:1.27");
        }
        other => bail!("expected a policy violation, got {other:?}"),
    }
    assert!(
        cms.get_opt("extra").await?.is_none(),
        "a blocked sync applied something"
    );
    Ok(())
}

#[tokio::test]
async fn the_service_account_cannot_reach_outside_its_namespace() -> Result<()> {
    let p = Perimeter::get();
    let ns = unique_name("sync-sa");
    tenant(&p, &ns).await?;
    let work = tempfile::tempdir()?;
    let prod = work.path().join("envs/prod");
    std::fs::create_dir_all(&prod)?;
    std::fs::write(
        prod.join("cm.yaml"),
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: a, namespace: {ns}}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: b, namespace: kube-system}}\n"
        ),
    )?;
    let repo = unique_name("escape");
    p.git_push(work.path(), &repo, "main", "reach into kube-system")?;
    let cache = tempfile::tempdir()?;
    let syncer = Syncer::new(cache.path().to_path_buf(), None, p.kube_config().await?);
    match syncer
        .sync(&spec(&p, &ns, &repo)?, &Inventory::default())
        .await
    {
        Err(e @ SyncError::Apply(_)) => {
            assert_eq!(e.reason().as_str(), "DryRunFailed");
            assert!(e.to_string().contains("ConfigMap/kube-system/b"), "{e}");
        }
        other => bail!("expected the dry-run to be refused, got {other:?}"),
    }
    let cms: Api<ConfigMap> = Api::namespaced(p.kube_client().await?, &ns);
    assert!(cms.get_opt("a").await?.is_none());
    Ok(())
}

/// Every render read the whole repository: a 100 MB file of one team took
/// the controller past its memory limit for every App on that repository.
/// Now a render reads the App's path and what its kustomizations refer to
/// elsewhere in the repository (an overlay's base, and that base's), and
/// nothing else: a file over the per-file bound in another directory does
/// not stop this App, while the same file in its own path fails it by name.
#[tokio::test]
async fn a_render_reads_only_the_apps_path_and_what_its_kustomization_refers_to() -> Result<()> {
    let p = Perimeter::get();
    let ns = unique_name("sync-part");
    tenant(&p, &ns).await?;
    let work = tempfile::tempdir()?;
    let files = [
        (
            "base/kustomization.yaml",
            "resources: [cm.yaml, ../shared]\n".to_string(),
        ),
        (
            "base/cm.yaml",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: base, namespace: {ns}}}\ndata: {{from: base}}\n"
            ),
        ),
        (
            "shared/kustomization.yaml",
            "resources: [cm.yaml]\n".to_string(),
        ),
        (
            "shared/cm.yaml",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: shared, namespace: {ns}}}\n"
            ),
        ),
        (
            "envs/prod/patch.yaml",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: base, namespace: {ns}}}\ndata: {{patched: \"yes\"}}\n"
            ),
        ),
        (
            "envs/prod/kustomization.yaml",
            "resources: [../../base]\npatches: [{path: patch.yaml}]\n".to_string(),
        ),
    ];
    for (path, text) in &files {
        let target = work.path().join(path);
        std::fs::create_dir_all(target.parent().unwrap_or(work.path()))?;
        std::fs::write(target, text)?;
    }
    // Over the 64 MiB bound for one file, in another team's directory.
    let huge = work.path().join("other-team/huge.bin");
    std::fs::create_dir_all(huge.parent().unwrap_or(work.path()))?;
    std::fs::File::create(&huge)?.set_len(airgate_git::MAX_FILE + 1)?;
    let repo = unique_name("partial");
    p.git_push(
        work.path(),
        &repo,
        "main",
        "overlay, base, patch, and a huge file elsewhere",
    )?;

    let cache = tempfile::tempdir()?;
    let syncer = Syncer::new(
        cache.path().to_path_buf(),
        Some(p.kustomize.clone()),
        p.kube_config().await?,
    );
    let spec = spec(&p, &ns, &repo)?;
    let one = syncer.sync(&spec, &Inventory::default()).await?;
    assert_eq!(one.applied.count(Action::Created), 2, "{:?}", one.applied);
    let cms: Api<ConfigMap> = Api::namespaced(p.kube_client().await?, &ns);
    let data = cms.get("base").await?.data.unwrap_or_default();
    assert_eq!(data.get("from").map(String::as_str), Some("base"));
    assert_eq!(data.get("patched").map(String::as_str), Some("yes"));

    // The same file inside the App's path fails this App, naming it.
    std::fs::rename(&huge, work.path().join("envs/prod/huge.bin"))?;
    p.git_push(
        work.path(),
        &repo,
        "main",
        "the huge file moves into the App",
    )?;
    match syncer.sync(&spec, &one.inventory).await {
        Err(e @ SyncError::Source(_)) => {
            assert!(e.to_string().contains("envs/prod/huge.bin"), "{e}");
        }
        other => bail!("expected the huge file to be refused, got {other:?}"),
    }
    Ok(())
}

/// One fetch per URL and ref served every App that asked before it
/// started: a tenant naming another tenant's private repository, without
/// its credentials, got the commit fetched with the other tenant's. Here a
/// fetch holds the URL while a tenant with the credentials and then one
/// without queue behind it; the one with the credentials fetches, and the
/// one without must not be answered by that fetch.
#[tokio::test]
async fn a_fetch_is_shared_only_with_apps_that_have_the_same_credentials() -> Result<()> {
    let p = Perimeter::get();
    let ns = unique_name("sync-share");
    let work = tempfile::tempdir()?;
    std::fs::create_dir_all(work.path().join("envs/prod"))?;
    std::fs::write(
        work.path().join("envs/prod/cm.yaml"),
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: private, namespace: {ns}}}\n"),
    )?;
    let repo = unique_name("private");
    p.git_push(work.path(), &repo, "main", "private")?;
    let cache = tempfile::tempdir()?;
    let syncer = Syncer::new(cache.path().to_path_buf(), None, p.kube_config().await?);
    let owner = spec(&p, &ns, &repo)?;
    let mut stranger = spec(&p, &format!("{ns}-x"), &repo)?;
    stranger.app = format!("{ns}-x/shop");
    stranger.access.password = Some("not-the-password".into());
    let (first, second, theirs) = tokio::join!(
        syncer.fetch(&owner),
        syncer.fetch(&owner),
        syncer.fetch(&stranger)
    );
    first?;
    second?;
    match theirs {
        Err(SyncError::Source(_)) => {}
        other => bail!("a tenant without the credentials was answered: {other:?}"),
    }
    Ok(())
}
