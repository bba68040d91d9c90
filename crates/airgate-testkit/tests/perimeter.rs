//! Smoke tests that prove the local perimeter is real: a kube-apiserver that
//! schedules and runs (kwok) Deployments and enforces RBAC, an internal
//! registry that speaks TLS and basic auth, and a Git server over HTTPS.
//!
//! They need `dev/perimeter up` (or `dev/test`, which starts it) and fail,
//! never skip, when it is not there.

use std::time::Duration;

use airgate_testkit::{Perimeter, eventually, unique_name};
use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use sha2::{Digest, Sha256};

const FIELD_MANAGER: &str = "airgate";

async fn apply_namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    api.patch(name, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(&ns))
        .await
        .with_context(|| format!("applying namespace {name}"))?;
    Ok(())
}

async fn delete_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::background()).await;
}

#[tokio::test]
async fn apiserver_reports_its_real_release() -> Result<()> {
    let p = Perimeter::get();
    let client = p.kube_client().await?;
    let info = client.apiserver_version().await?;
    assert_eq!(info.git_version, p.kube_version, "{info:?}");
    assert_eq!(info.git_tree_state, "clean");
    Ok(())
}

#[tokio::test]
async fn server_side_apply_makes_a_deployment_available() -> Result<()> {
    let p = Perimeter::get();
    let client = p.kube_client().await?;
    let ns = unique_name("smoke-ssa");
    apply_namespace(&client, &ns).await?;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.k8s.io/pause:3.10"}]}
            }
        }
    });
    let applied = deployments
        .patch(
            "web",
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&deployment),
        )
        .await?;
    let managers: Vec<_> = applied
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            (
                m.manager.unwrap_or_default(),
                m.operation.unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        managers.contains(&(FIELD_MANAGER.to_string(), "Apply".to_string())),
        "{managers:?}"
    );

    let result = eventually(
        "Deployment web to become Available",
        Duration::from_secs(120),
        || {
            let deployments = deployments.clone();
            async move {
                let d = deployments.get("web").await.map_err(|e| e.to_string())?;
                let status = d.status.unwrap_or_default();
                let available = status
                    .conditions
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Available" && c.status == "True");
                if available && status.available_replicas == Some(2) {
                    Ok(Some(()))
                } else {
                    Err(format!(
                        "available={available} availableReplicas={:?}",
                        status.available_replicas
                    ))
                }
            }
        },
    )
    .await;
    delete_namespace(&client, &ns).await;
    result
}

#[tokio::test]
async fn restricted_service_account_is_refused_in_another_namespace() -> Result<()> {
    let p = Perimeter::get();
    let admin = p.kube_client().await?;
    let own = unique_name("smoke-own");
    let other = unique_name("smoke-other");
    apply_namespace(&admin, &own).await?;
    apply_namespace(&admin, &other).await?;

    // A ServiceAccount that may manage ConfigMaps in its own namespace only.
    let ssa = PatchParams::apply(FIELD_MANAGER);
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), &own);
    let sa =
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "deployer"}});
    sas.patch("deployer", &ssa, &Patch::Apply(&sa)).await?;
    let rbac = [
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": "configmaps", "namespace": own},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "deployer-configmaps", "namespace": own},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmaps"},
               "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": own}]}),
    ];
    for obj in &rbac {
        let kind = obj["kind"].as_str().unwrap_or_default();
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let ar = kube::discovery::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "rbac.authorization.k8s.io",
            "v1",
            kind,
        ));
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(admin.clone(), &own, &ar);
        api.patch(name, &ssa, &Patch::Apply(obj)).await?;
    }

    // Authenticate as the ServiceAccount itself, with a token from the TokenRequest API.
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let token = sas
        .create_token_request("deployer", &PostParams::default(), &request)
        .await?
        .status
        .and_then(|s| s.token)
        .context("TokenRequest returned no token")?;
    let mut config = p.kube_config().await?;
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    let deployer = Client::try_from(config)?;

    let cm = |ns: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": ns}, "data": {"k": "v"}});
    // RBAC is eventually consistent with the RoleBinding just written.
    eventually(
        "the deployer to be allowed in its own namespace",
        Duration::from_secs(30),
        || {
            let api: Api<ConfigMap> = Api::namespaced(deployer.clone(), &own);
            let body = cm(&own);
            async move {
                match api
                    .patch(
                        "settings",
                        &PatchParams::apply(FIELD_MANAGER),
                        &Patch::Apply(&body),
                    )
                    .await
                {
                    Ok(_) => Ok(Some(())),
                    Err(e) => Err(e.to_string()),
                }
            }
        },
    )
    .await?;

    let refused: Api<ConfigMap> = Api::namespaced(deployer.clone(), &other);
    let result = refused
        .patch(
            "settings",
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&cm(&other)),
        )
        .await;
    let outcome = match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {
            assert!(
                status
                    .message
                    .contains(&format!("system:serviceaccount:{own}:deployer")),
                "{status:?}"
            );
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("expected 403 Forbidden, got {e}")),
        Ok(_) => Err(anyhow::anyhow!("the deployer wrote a ConfigMap in {other}")),
    };
    delete_namespace(&admin, &own).await;
    delete_namespace(&admin, &other).await;
    outcome
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Uploads one blob with the monolithic POST-then-PUT flow of the OCI distribution spec.
async fn push_blob(
    http: &reqwest::Client,
    registry: &str,
    repo: &str,
    auth: Option<(&str, &str)>,
    bytes: &[u8],
) -> Result<reqwest::StatusCode> {
    let digest = sha256_digest(bytes);
    let mut start = http.post(format!("https://{registry}/v2/{repo}/blobs/uploads/"));
    if let Some((u, pw)) = auth {
        start = start.basic_auth(u, Some(pw));
    }
    let started = start.send().await?;
    if started.status() != reqwest::StatusCode::ACCEPTED {
        return Ok(started.status());
    }
    let location = started
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .context("upload started without a Location")?
        .to_string();
    let location = if location.starts_with('/') {
        format!("https://{registry}{location}")
    } else {
        location
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let mut put = http
        .put(format!("{location}{sep}digest={digest}"))
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(bytes.to_vec());
    if let Some((u, pw)) = auth {
        put = put.basic_auth(u, Some(pw));
    }
    Ok(put.send().await?.status())
}

#[tokio::test]
async fn internal_registry_round_trips_over_tls_with_basic_auth() -> Result<()> {
    let p = Perimeter::get();
    let http = p.https_client()?;
    let registry = &p.internal_registry;
    let user = p.internal_registry_user.clone();
    let password = p.internal_registry_password()?;
    let auth = Some((user.as_str(), password.as_str()));
    let repo = format!("smoke/{}", unique_name("image"));

    let layer: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&layer)]}
    }))?;
    for blob in [&layer, &config] {
        let status = push_blob(&http, registry, &repo, auth, blob).await?;
        assert_eq!(status, reqwest::StatusCode::CREATED, "blob upload");
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256_digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256_digest(&layer), "size": layer.len()}]
    }))?;
    let manifest_type = "application/vnd.oci.image.manifest.v1+json";
    let put = http
        .put(format!("https://{registry}/v2/{repo}/manifests/v1"))
        .basic_auth(&user, Some(&password))
        .header(reqwest::header::CONTENT_TYPE, manifest_type)
        .body(manifest.clone())
        .send()
        .await?;
    assert_eq!(put.status(), reqwest::StatusCode::CREATED);
    let pushed_digest = put
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(pushed_digest, sha256_digest(&manifest));

    // Pull: the manifest comes back byte for byte, so its digest is intact.
    let pulled = http
        .get(format!("https://{registry}/v2/{repo}/manifests/v1"))
        .basic_auth(&user, Some(&password))
        .header(reqwest::header::ACCEPT, manifest_type)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    assert_eq!(sha256_digest(&pulled), pushed_digest);
    let blob = http
        .get(format!(
            "https://{registry}/v2/{repo}/blobs/{}",
            sha256_digest(&layer)
        ))
        .basic_auth(&user, Some(&password))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    assert!(
        blob.as_ref() == layer.as_slice(),
        "the layer came back changed"
    );

    // Without credentials, or with a wrong password, nothing may be written.
    let other_repo = format!("smoke/{}", unique_name("refused"));
    let anonymous = push_blob(&http, registry, &other_repo, None, &layer).await?;
    assert_eq!(anonymous, reqwest::StatusCode::UNAUTHORIZED);
    let wrong = push_blob(
        &http,
        registry,
        &other_repo,
        Some((&user, "not-the-password")),
        &layer,
    )
    .await?;
    assert_eq!(wrong, reqwest::StatusCode::UNAUTHORIZED);
    let anonymous_manifest = http
        .put(format!("https://{registry}/v2/{other_repo}/manifests/v1"))
        .header(reqwest::header::CONTENT_TYPE, manifest_type)
        .body(manifest)
        .send()
        .await?;
    assert_eq!(
        anonymous_manifest.status(),
        reqwest::StatusCode::UNAUTHORIZED
    );
    let tag = http
        .get(format!("https://{registry}/v2/{other_repo}/manifests/v1"))
        .basic_auth(&user, Some(&password))
        .header(reqwest::header::ACCEPT, manifest_type)
        .send()
        .await?;
    assert_eq!(
        tag.status(),
        reqwest::StatusCode::NOT_FOUND,
        "a refused push left a tag"
    );

    // The TLS port does not also answer plain HTTP.
    let plain = reqwest::Client::new()
        .get(format!("http://{registry}/v2/"))
        .send()
        .await;
    if let Ok(resp) = plain {
        assert!(
            !resp.status().is_success(),
            "plain HTTP was served: {}",
            resp.status()
        );
    }
    Ok(())
}

fn access(p: &Perimeter, password: &str) -> Result<airgate_git::Access> {
    Ok(airgate_git::Access {
        username: Some(p.git_user.clone()),
        password: Some(password.to_string()),
        ca_pem: Some(std::fs::read(&p.git_ca)?),
    })
}

#[test]
fn git_clone_over_https_with_basic_auth() -> Result<()> {
    let p = Perimeter::get();
    let work = tempfile::tempdir()?;
    let name = unique_name("smoke");
    std::fs::write(work.path().join("README"), "hello from the perimeter\n")?;
    let pushed = p.git_push(work.path(), &name, "main", "first commit")?;

    // gix, through airgate's Git adapter: a fetch into a bare mirror.
    let url = format!("{}/{name}.git", p.git_url);
    let cache = tempfile::tempdir()?;
    let mirror = airgate_git::Mirror::new(cache.path());
    let main = airgate_git::GitRef::Branch("main".into());
    let head = mirror.fetch(&url, &main, &access(&p, &p.git_password()?)?)?;
    assert_eq!(head, pushed);
    let files = mirror.read_dir(&url, &head, "")?;
    assert_eq!(
        files.get("README").map(Vec::as_slice),
        Some(&b"hello from the perimeter\n"[..])
    );

    // The wrong password is refused.
    let refused = tempfile::tempdir()?;
    match airgate_git::Mirror::new(refused.path()).fetch(
        &url,
        &main,
        &access(&p, "not-the-password")?,
    ) {
        Ok(_) => bail!("a clone with the wrong password succeeded"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("not accepted") || msg.contains("401"), "{msg}");
        }
    }
    Ok(())
}
