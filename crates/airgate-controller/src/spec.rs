//! The App's spec, checked, as the syncer wants it; and its Git
//! credentials, read as the App's ServiceAccount.

use airgate_core::policy::Policy;
use airgate_core::trust::{TrustPolicy, VerifyMode};
use airgate_git::Access;
use airgate_git::trust::Signers;
use airgate_kube::app::App;
use airgate_sync::SyncSpec;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, ResourceExt};

use super::key;
use airgate_sync::Syncer;

/// Whether a URL names a user (and maybe a password) before its host.
fn has_userinfo(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority.contains('@')
}

/// A Kubernetes object name (RFC 1123 subdomain), as ServiceAccounts have.
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The spec as the syncer wants it, without credentials yet.
pub fn sync_spec(app: &App) -> Result<SyncSpec, String> {
    let namespace = app.namespace().unwrap_or_default();
    let git_ref = app.spec.git_ref()?;
    app.spec.interval()?;
    let timeout = app.spec.timeout()?;
    if app.spec.service_account_name.is_empty() {
        return Err("spec.serviceAccountName is empty: every apply runs as a ServiceAccount of the App's namespace".into());
    }
    if !is_dns_subdomain(&app.spec.service_account_name) {
        return Err(format!(
            "spec.serviceAccountName '{}' is not a ServiceAccount name (lowercase letters, digits, '-' and '.', at most 253)",
            airgate_core::text::shown(&app.spec.service_account_name, 100)
        ));
    }
    let url = &app.spec.source.url;
    if has_userinfo(url) {
        // Never echo it: the part before '@' is a credential.
        return Err("spec.source.url carries credentials (user:password@); refusing it\nhint: put them in a Secret named by spec.source.secretRef".into());
    }
    if !(url.starts_with("https://") || url.starts_with("file://")) {
        return Err(format!(
            "spec.source.url '{}' must start with https:// or file://",
            airgate_core::text::shown(url, 200)
        ));
    }
    Ok(SyncSpec {
        app: key(app),
        namespace,
        url: url.clone(),
        git_ref,
        path: app.spec.source.path.clone(),
        access: Access::default(),
        service_account: app.spec.service_account_name.clone(),
        policy: Policy {
            allowed_registries: app.spec.policy.allowed_registries.clone(),
            require_digests: app.spec.policy.require_digests,
            require_imported_by: imported_by(app)?,
        },
        prune: app.spec.prune,
        verify: verify(app)?,
        helm: helm(app)?,
        timeout,
        applied: app
            .status
            .as_ref()
            .and_then(|s| s.last_applied_revision.clone()),
    })
}

/// `spec.source.helm`, checked (credentials are read later, as the App).
fn helm(app: &App) -> Result<Option<airgate_sync::helm::HelmSpec>, String> {
    let Some(h) = &app.spec.source.helm else {
        return Ok(None);
    };
    let chart = airgate_core::chart::ChartSource::parse(
        &h.chart,
        h.version.as_deref(),
        h.digest.as_deref(),
    )?;
    for file in &h.values_files {
        if file.starts_with('/')
            || file.is_empty()
            || file
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(format!(
                "spec.source.helm.valuesFiles: '{}' must be a file under spec.source.path, relative, without '..'",
                airgate_core::text::shown(file, 200)
            ));
        }
    }
    if let Some(v) = &h.values
        && !v.is_object()
    {
        return Err("spec.source.helm.values must be an object (key: value)".into());
    }
    let release_name = h.release_name.clone().unwrap_or_else(|| app.name_any());
    if release_name.len() > 53 || !is_dns_subdomain(&release_name) || release_name.contains('.') {
        return Err(format!(
            "spec.source.helm.releaseName '{}' is not a Helm release name (lowercase letters, digits and '-', at most 53)",
            airgate_core::text::shown(&release_name, 100)
        ));
    }
    if let Some(secret) = &h.secret_ref
        && !is_dns_subdomain(&secret.name)
    {
        return Err(format!(
            "spec.source.helm.secretRef.name '{}' is not a Secret name",
            airgate_core::text::shown(&secret.name, 100)
        ));
    }
    Ok(Some(airgate_sync::helm::HelmSpec {
        chart,
        values_files: h.values_files.clone(),
        values: h.values.clone(),
        release_name,
        access: Access::default(),
    }))
}

/// `spec.policy.requireImportedBy`: bundle key ids, checked.
fn imported_by(app: &App) -> Result<Vec<airgate_core::Digest>, String> {
    app.spec
        .policy
        .require_imported_by
        .iter()
        .map(|k| {
            k.parse().map_err(|_| {
                format!(
                    "spec.policy.requireImportedBy: '{}' is not a key id (sha256:<64 hex>)\nhint: `airgate key generate` printed it; `airgate bundle verify BUNDLE --key PREFIX.pub -o json` shows it as signedBy",
                    airgate_core::text::shown(k, 100)
                )
            })
        })
        .collect()
}

/// `spec.source.verify`, checked.
fn verify(app: &App) -> Result<Option<airgate_sync::Verify>, String> {
    let Some(v) = &app.spec.source.verify else {
        return Ok(None);
    };
    let name = &v.signers.config_map_ref.name;
    if !is_dns_subdomain(name) {
        return Err(format!(
            "spec.source.verify.signers.configMapRef.name '{}' is not a ConfigMap name",
            airgate_core::text::shown(name, 100)
        ));
    }
    let min = v.min_distinct_signers.unwrap_or(1);
    if min == 0 {
        return Err("spec.source.verify.minDistinctSigners must be at least 1".into());
    }
    if min > 1 && v.mode == VerifyMode::Head {
        return Err(format!(
            "spec.source.verify.minDistinctSigners is {min} but mode is head: one commit carries one signature\nhint: use mode: history, which verifies every commit since the last applied revision"
        ));
    }
    if let Some(bad) = v
        .require_trailers
        .iter()
        .find(|t| t.is_empty() || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    {
        return Err(format!(
            "spec.source.verify.requireTrailers: '{}' is not a trailer name (letters, digits and '-')",
            airgate_core::text::shown(bad, 60)
        ));
    }
    Ok(Some(airgate_sync::Verify {
        policy: TrustPolicy {
            mode: v.mode,
            min_distinct_signers: min,
            require_trailers: v.require_trailers.clone(),
        },
        config_map: name.clone(),
    }))
}

/// The allowed signers of `spec.source.verify`, read as the App's
/// ServiceAccount (like its Git Secret): an App trusts only signers its
/// own account may read. Whoever may write that ConfigMap decides who may
/// change the App: keep write access to the platform team.
pub async fn signers(syncer: &Syncer, app: &App, spec: &SyncSpec) -> Result<Signers, String> {
    let Some(verify) = &spec.verify else {
        return Ok(Signers::default());
    };
    let ns = app.namespace().unwrap_or_default();
    let name = &verify.config_map;
    let map: ConfigMap = read_as_app(syncer, app, spec, name, "spec.source.verify.signers").await?;
    let data = map.data.unwrap_or_default();
    let binary = map.binary_data.unwrap_or_default();
    let entries = data
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_bytes()))
        .chain(binary.iter().map(|(k, v)| (k.as_str(), v.0.as_slice())));
    let signers =
        Signers::from_entries(entries).map_err(|e| format!("ConfigMap {ns}/{name}: {e}"))?;
    if signers.is_empty() {
        return Err(format!(
            "ConfigMap {ns}/{name} names no signer: nothing can be verified\nhint: add allowed_signers (git's SSH format) or *.asc OpenPGP public keys"
        ));
    }
    Ok(signers)
}

/// Object `name` of the App's namespace, read as the App's ServiceAccount;
/// an error names the object, the spec `field` that named it and the account.
async fn read_as_app<K>(
    syncer: &Syncer,
    app: &App,
    spec: &SyncSpec,
    name: &str,
    field: &str,
) -> Result<K, String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let ns = app.namespace().unwrap_or_default();
    let client = syncer.applier(spec).map_err(|e| e.to_string())?.client();
    Api::<K>::namespaced(client, &ns)
        .get(name)
        .await
        .map_err(|e| {
            format!(
                "reading {} {ns}/{name} ({field}) as ServiceAccount {ns}/{}: {}",
                K::kind(&()),
                spec.service_account,
                match e {
                    kube::Error::Api(s) => s.message,
                    other => other.to_string(),
                }
            )
        })
}

/// Git credentials and CA from `spec.source.secretRef`, read as the App's
/// ServiceAccount: an App can use only a Secret its own account may read
/// (the controller's account reads no Secret at all), so naming another
/// team's Secret sends nothing anywhere.
pub async fn access(syncer: &Syncer, app: &App, spec: &SyncSpec) -> Result<Access, String> {
    let secret_ref = app.spec.source.secret_ref.as_ref();
    secret_access(syncer, app, spec, secret_ref, "spec.source.secretRef").await
}

/// Registry credentials and CA for a Helm App's chart, from
/// `spec.source.helm.secretRef`, read as the App's ServiceAccount (as
/// [`access`]). Only `username`, `password` and `ca.crt`: a Docker config
/// is not read, since its credential helpers would run programs the
/// tenant names inside the controller.
pub async fn chart_access(syncer: &Syncer, app: &App, spec: &SyncSpec) -> Result<Access, String> {
    let secret_ref = app
        .spec
        .source
        .helm
        .as_ref()
        .and_then(|h| h.secret_ref.as_ref());
    secret_access(syncer, app, spec, secret_ref, "spec.source.helm.secretRef").await
}

async fn secret_access(
    syncer: &Syncer,
    app: &App,
    spec: &SyncSpec,
    secret_ref: Option<&airgate_kube::app::SecretRef>,
    field: &str,
) -> Result<Access, String> {
    let Some(secret_ref) = secret_ref else {
        return Ok(Access::default());
    };
    let secret: Secret = read_as_app(syncer, app, spec, &secret_ref.name, field).await?;
    let data = secret.data.unwrap_or_default();
    let text = |k: &str| {
        data.get(k).map(|b| {
            String::from_utf8_lossy(&b.0)
                .trim_end_matches('\n')
                .to_string()
        })
    };
    Ok(Access {
        username: text("username"),
        password: text("password"),
        ca_pem: data.get("ca.crt").map(|b| b.0.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_git_url_are_refused_and_never_echoed() {
        for (url, has) in [
            ("https://u:pw@git.internal/x.git", true),
            ("https://token@git.internal/x.git", true),
            ("https://git.internal/x.git", false),
            ("https://git.internal/a@b.git", false),
            ("file:///srv/git/x.git", false),
        ] {
            assert_eq!(has_userinfo(url), has, "{url}");
        }
        assert!(is_dns_subdomain("shop-deployer"));
        for bad in ["x:y", "", "Upper", "-a", "a..b", "a_b"] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
    }
}
