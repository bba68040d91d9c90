//! A client for the OCI distribution API, written for moving content without
//! changing it: manifests are kept as the exact bytes served, every blob is
//! checked against its digest, and transient failures (a registry restarting,
//! a 5xx, a dropped connection) are retried with backoff.
//!
//! Transport rules, as Docker applies them: HTTPS by default; plain HTTP for a
//! registry named with `--insecure-registry`; a registry on a loopback address
//! may fall back to plain HTTP when HTTPS fails. Extra CA files are trusted in
//! addition to the system roots.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use airgate_core::Digest;
use airgate_core::oci::{self, MANIFEST_TYPES};
use bytes::Bytes;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;

use crate::auth::{Challenge, Credential, Credentials, parse_challenge};

/// How to reach registries.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// `host:port` of registries that speak plain HTTP.
    pub insecure: Vec<String>,
    /// Extra CA certificates (PEM) to trust.
    pub ca_files: Vec<PathBuf>,
    /// Extra CA certificates (PEM) given as bytes (a Secret's `ca.crt`).
    pub ca_pems: Vec<Vec<u8>>,
    pub credentials: Credentials,
    /// Attempts for one request before giving up (at least 1).
    pub attempts: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Transient: worth retrying (a registry restarting, a dropped connection).
    #[error("cannot reach registry {registry}: {message}")]
    Unreachable { registry: String, message: String },
    /// Final: the registry did not answer the first contact.
    #[error("cannot reach registry {registry}: {message}")]
    NoAnswer { registry: String, message: String },
    #[error(
        "TLS with registry {registry} failed: {message}\n\
         hint: for a registry with a private CA pass --ca-file; for plain HTTP pass --insecure-registry"
    )]
    Tls { registry: String, message: String },
    #[error("registry {registry} refused access to {repository} (HTTP {status}){hint}")]
    Denied {
        registry: String,
        repository: String,
        status: u16,
        hint: String,
    },
    #[error("{what} not found in {registry}/{repository}")]
    NotFound {
        registry: String,
        repository: String,
        what: String,
    },
    #[error("{method} {url}: HTTP {status}: {body}")]
    Status {
        method: String,
        url: String,
        status: u16,
        body: String,
    },
    #[error("{what}: expected digest {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("{0}")]
    Protocol(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("{what} is larger than {max} bytes; refusing it")]
    TooLarge { what: String, max: u64 },
    #[error(
        "registry {registry} asks for credentials to be sent to {realm} over plain HTTP; refusing\n\
         hint: if that host is trusted, name it with --insecure-registry {host}"
    )]
    PlainCredentials {
        registry: String,
        realm: String,
        host: String,
    },
}

impl RegistryError {
    /// Worth another attempt: the registry may be restarting or overloaded.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } => true,
            RegistryError::Status { status, .. } => {
                *status == 429 || (*status >= 500 && *status != 501)
            }
            _ => false,
        }
    }
}

/// A manifest or index exactly as served.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: Digest,
}

/// What a cross-repository mount did.
#[derive(Debug)]
pub enum Mount {
    Mounted,
    /// Not mounted; an upload session was opened instead at this URL.
    Upload(reqwest::Url),
}

#[derive(Debug)]
enum Auth {
    Anonymous,
    /// The registry asked for basic auth and there are no credentials for it.
    Missing,
    Basic(String),
    Bearer {
        realm: String,
        service: Option<String>,
        credential: Option<Credential>,
        tokens: tokio::sync::Mutex<HashMap<String, String>>,
    },
}

#[derive(Debug)]
struct Host {
    /// `https://host:port` or `http://host:port`.
    base: String,
    auth: Auth,
}

/// A registry client shared by every task of one command.
#[derive(Clone, Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    options: Arc<RegistryOptions>,
    hosts: Arc<tokio::sync::Mutex<HashMap<String, Arc<Host>>>>,
}

/// The API host behind a normalised registry name.
fn api_host(registry: &str) -> &str {
    if registry == airgate_core::reference::DOCKER_HUB {
        "registry-1.docker.io"
    } else {
        registry
    }
}

fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The most a manifest or index may be: what registries themselves accept.
pub const MAX_MANIFEST: u64 = 4 << 20;
/// The most a token response may be.
const MAX_TOKEN: u64 = 1 << 20;
/// How much of an error body is read (and then shortened for the message).
const MAX_ERROR_BODY: usize = 16 << 10;

/// Reads a response body of at most `max` bytes; refuses a longer one (by
/// its Content-Length, or as it streams in) without reading the rest.
async fn read_capped(
    mut resp: Response,
    max: u64,
    what: &str,
    registry: &str,
) -> Result<Bytes, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        what: what.to_string(),
        max,
    };
    if resp.content_length().is_some_and(|len| len > max) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| transport_error(registry, &e))?
    {
        if (out.len() + chunk.len()) as u64 > max {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

/// The start of an error body, for a message; never the whole of an
/// endless one.
async fn error_body(mut resp: Response) -> String {
    let mut out = Vec::new();
    while out.len() < MAX_ERROR_BODY {
        match resp.chunk().await {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status_error(method: &Method, url: &str, status: StatusCode, body: &str) -> RegistryError {
    let body = airgate_core::text::shown(body.trim(), 300);
    RegistryError::Status {
        method: method.to_string(),
        url: redact(url),
        status: status.as_u16(),
        body,
    }
}

/// Drops query strings, which may carry upload state or tokens, from URLs in messages.
fn redact(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

fn transport_error(registry: &str, e: &reqwest::Error) -> RegistryError {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    // A certificate the client does not trust will not change on a retry;
    // a connection dropped mid-TLS (a restarting registry) may.
    if message.to_ascii_lowercase().contains("certificate") {
        return RegistryError::Tls {
            registry: registry.to_string(),
            message: redact(&message),
        };
    }
    RegistryError::Unreachable {
        registry: registry.to_string(),
        message: redact(&message),
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

impl RegistryClient {
    pub fn new(mut options: RegistryOptions) -> Result<RegistryClient, RegistryError> {
        options.attempts = options.attempts.max(1);
        let mut roots = Vec::new();
        for file in &options.ca_files {
            let pem = std::fs::read(file).map_err(|source| RegistryError::Io {
                path: file.display().to_string(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                RegistryError::Config(format!(
                    "{}: not a PEM certificate bundle: {e}",
                    file.display()
                ))
            })?;
            roots.extend(certs);
        }
        for pem in &options.ca_pems {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                RegistryError::Config(format!("ca.crt is not a PEM certificate bundle: {e}"))
            })?;
            roots.extend(certs);
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("airgate/", env!("CARGO_PKG_VERSION")))
            .http1_only()
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(32);
        if !roots.is_empty() {
            builder = builder.tls_certs_merge(roots);
        }
        let http = builder
            .build()
            .map_err(|e| RegistryError::Config(format!("building the HTTP client: {e}")))?;
        Ok(RegistryClient {
            http,
            options: Arc::new(options),
            hosts: Arc::default(),
        })
    }

    /// The options this client was made with.
    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    /// A plain HTTP(S) GET of at most `max` bytes (a classic chart
    /// repository's index or package), trusting this client's CAs, with
    /// retries. No credentials are sent.
    pub async fn get_url(&self, url: &str, max: u64) -> Result<Bytes, RegistryError> {
        let host = url
            .split_once("://")
            .map_or(url, |(_, r)| r)
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        self.retry(|| async {
            let resp = self
                .http
                .get(url)
                .send()
                .await
                .map_err(|e| transport_error(&host, &e))?;
            let status = resp.status();
            if status == StatusCode::NOT_FOUND {
                return Err(RegistryError::NotFound {
                    registry: host.clone(),
                    repository: String::new(),
                    what: redact(url),
                });
            }
            if !status.is_success() {
                let body = error_body(resp).await;
                return Err(status_error(&Method::GET, url, status, &body));
            }
            read_capped(resp, max, &redact(url), &host).await
        })
        .await
    }

    /// Runs `op` until it succeeds, fails for good, or runs out of attempts.
    /// Backoff doubles from 250 ms up to 5 s.
    pub async fn retry<T, F, Fut>(&self, mut op: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        let mut delay = Duration::from_millis(250);
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e) if e.is_transient() && attempt < self.options.attempts => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// The connection details of `registry`, found once: scheme and auth.
    async fn host(&self, registry: &str) -> Result<Arc<Host>, RegistryError> {
        if let Some(h) = self.hosts.lock().await.get(registry) {
            return Ok(h.clone());
        }
        // First contact gets few attempts: an address that does not answer
        // now is more likely wrong than restarting.
        let mut attempt = 0;
        let host = loop {
            attempt += 1;
            match self.discover(registry).await {
                Err(e) if e.is_transient() && attempt < 3 => {
                    tokio::time::sleep(Duration::from_millis(300 * attempt)).await;
                }
                Err(RegistryError::Unreachable { registry, message }) => {
                    return Err(RegistryError::NoAnswer { registry, message });
                }
                other => break other?,
            }
        };
        let host = Arc::new(host);
        self.hosts
            .lock()
            .await
            .insert(registry.to_string(), host.clone());
        Ok(host)
    }

    async fn discover(&self, registry: &str) -> Result<Host, RegistryError> {
        let api = api_host(registry);
        let insecure = self
            .options
            .insecure
            .iter()
            .any(|r| r == registry || r == api);
        let https = format!("https://{api}");
        let http = format!("http://{api}");
        let (base, response) = if insecure {
            let r = self.http.get(format!("{http}/v2/")).send().await;
            (http, r.map_err(|e| transport_error(registry, &e))?)
        } else {
            match self.http.get(format!("{https}/v2/")).send().await {
                Ok(r) => (https, r),
                Err(e) => {
                    let err = transport_error(registry, &e);
                    // Like Docker: a loopback registry may be plain HTTP. Only
                    // a real registry answer counts, not a TLS port's 400.
                    if is_loopback(registry)
                        && !e.is_timeout()
                        && let Ok(r) = self.http.get(format!("{http}/v2/")).send().await
                        && (r.status().is_success() || r.status() == StatusCode::UNAUTHORIZED)
                    {
                        return self.host_from(registry, http, r).await;
                    }
                    return Err(err);
                }
            }
        };
        self.host_from(registry, base, response).await
    }

    /// Reads the auth scheme from the registry's answer to `GET /v2/`.
    async fn host_from(
        &self,
        registry: &str,
        base: String,
        response: Response,
    ) -> Result<Host, RegistryError> {
        let credential = self
            .options
            .credentials
            .get(registry)
            .map_err(|e| RegistryError::Config(e.to_string()))?;
        let auth = match response.status() {
            s if s.is_success() => Auth::Anonymous,
            StatusCode::UNAUTHORIZED => {
                let challenge = response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                match challenge {
                    Some(Challenge::Bearer { realm, service }) => Auth::Bearer {
                        realm,
                        service,
                        credential,
                        tokens: Default::default(),
                    },
                    Some(Challenge::Basic) | None => match credential {
                        Some(c) => Auth::Basic(c.basic_header()),
                        None => Auth::Missing,
                    },
                }
            }
            s if s.is_server_error() => {
                let body = error_body(response).await;
                return Err(status_error(&Method::GET, &format!("{base}/v2/"), s, &body));
            }
            // Some registries answer /v2/ with 404 yet serve the API.
            _ => match credential {
                Some(c) => Auth::Basic(c.basic_header()),
                None => Auth::Anonymous,
            },
        };
        Ok(Host { base, auth })
    }

    /// The `Authorization` header for `scopes` on `host`, fetching a token if needed.
    async fn authorization(
        &self,
        registry: &str,
        host: &Host,
        scopes: &[String],
        refresh: bool,
    ) -> Result<Option<String>, RegistryError> {
        match &host.auth {
            Auth::Anonymous | Auth::Missing => Ok(None),
            Auth::Basic(h) => Ok(Some(h.clone())),
            Auth::Bearer {
                realm,
                service,
                credential,
                tokens,
            } => {
                let key = scopes.join(" ");
                let mut tokens = tokens.lock().await;
                if !refresh && let Some(t) = tokens.get(&key) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let mut url = reqwest::Url::parse(realm).map_err(|e| {
                    RegistryError::Protocol(format!(
                        "registry {registry} sent a bad token realm: {e}"
                    ))
                })?;
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in scopes {
                        q.append_pair("scope", s);
                    }
                }
                let mut req = self.http.get(url.clone());
                if let Some(c) = credential {
                    self.check_realm(registry, &url)?;
                    req = req.header(AUTHORIZATION, c.basic_header());
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| transport_error(registry, &e))?;
                if !resp.status().is_success() {
                    let status = resp.status();
                    let body = error_body(resp).await;
                    return Err(status_error(&Method::GET, url.as_str(), status, &body));
                }
                let body =
                    read_capped(resp, MAX_TOKEN, &format!("token from {registry}"), registry)
                        .await?;
                let t: TokenResponse = serde_json::from_slice(&body)
                    .map_err(|e| RegistryError::Protocol(format!("token from {registry}: {e}")))?;
                let token = t.token.or(t.access_token).ok_or_else(|| {
                    RegistryError::Protocol(format!("token response from {registry} has no token"))
                })?;
                tokens.insert(key, token.clone());
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// Sends the request `build` makes, with auth; on a 401 from a token
    /// registry, refreshes the token once. Does not retry (see [`Self::retry`]).
    async fn send(
        &self,
        registry: &str,
        repository: &str,
        scopes: &[String],
        build: impl Fn(&reqwest::Client, &str) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let host = self.host(registry).await?;
        if matches!(host.auth, Auth::Missing) {
            return Err(self.denied(registry, repository, 401));
        }
        let mut refresh = false;
        loop {
            let mut req = build(&self.http, &host.base);
            if let Some(h) = self.authorization(registry, &host, scopes, refresh).await? {
                req = req.header(AUTHORIZATION, h);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| transport_error(registry, &e))?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED
                && matches!(host.auth, Auth::Bearer { .. })
                && !refresh
            {
                refresh = true;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(self.denied(registry, repository, status.as_u16()));
            }
            return Ok(resp);
        }
    }

    /// Where an upload continues. Uploads carry the registry's credentials:
    /// another host is followed only over HTTPS (as a registry behind a proxy
    /// may answer), never in the clear to a host nobody named.
    fn upload_location(
        &self,
        registry: &str,
        host: &Host,
        location: &str,
    ) -> Result<reqwest::Url, RegistryError> {
        let url = resolve(&host.base, location)?;
        let same_origin = reqwest::Url::parse(&host.base).is_ok_and(|b| b.origin() == url.origin());
        if !same_origin {
            self.check_realm(registry, &url).map_err(|_| {
                RegistryError::Protocol(format!(
                    "{registry} sent an upload Location on another host over plain HTTP ({}); airgate sends credentials in the clear only to the registry itself",
                    url.origin().ascii_serialization()
                ))
            })?;
        }
        Ok(url)
    }

    /// Credentials go to a token realm (or another host) over plain HTTP only
    /// when its host is loopback or named with `--insecure-registry`: a
    /// registry must not be able to send them in the clear to a host of its
    /// choosing.
    fn check_realm(&self, registry: &str, realm: &reqwest::Url) -> Result<(), RegistryError> {
        if realm.scheme() == "https" {
            return Ok(());
        }
        let host = match (realm.host_str(), realm.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => String::new(),
        };
        if realm.scheme() == "http"
            && (is_loopback(&host) || self.options.insecure.iter().any(|i| i == &host))
        {
            return Ok(());
        }
        Err(RegistryError::PlainCredentials {
            registry: registry.to_string(),
            realm: redact(realm.as_str()),
            host,
        })
    }

    fn denied(&self, registry: &str, repository: &str, status: u16) -> RegistryError {
        let hint = match self.options.credentials.get(registry).ok().flatten() {
            None => format!(
                "\nhint: add credentials for {registry} to the Docker config file ({})",
                self.options.credentials.source.as_ref().map_or(
                    "$DOCKER_CONFIG/config.json or ~/.docker/config.json".to_string(),
                    |p| p.display().to_string()
                )
            ),
            Some(_) => "\nhint: check the credentials for it in the Docker config file".to_string(),
        };
        RegistryError::Denied {
            registry: registry.to_string(),
            repository: repository.to_string(),
            status,
            hint,
        }
    }

    fn pull(repository: &str) -> Vec<String> {
        vec![format!("repository:{repository}:pull")]
    }

    fn push(repository: &str) -> Vec<String> {
        vec![format!("repository:{repository}:pull,push")]
    }

    /// Fetches a manifest or index by tag or digest and checks its digest.
    pub async fn get_manifest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
    ) -> Result<Manifest, RegistryError> {
        self.retry(|| self.get_manifest_once(registry, repository, reference))
            .await
    }

    async fn get_manifest_once(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
    ) -> Result<Manifest, RegistryError> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let accept = MANIFEST_TYPES.join(", ");
        let resp = self
            .send(registry, repository, &Self::pull(repository), |c, base| {
                c.get(format!("{base}{path}")).header(ACCEPT, &accept)
            })
            .await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                registry: registry.to_string(),
                repository: repository.to_string(),
                what: format!("manifest {reference}"),
            });
        }
        if !status.is_success() {
            let body = error_body(resp).await;
            return Err(status_error(&Method::GET, &path, status, &body));
        }
        let header_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
            .unwrap_or_default();
        let served_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let what = format!("manifest {registry}/{repository}:{reference}");
        let bytes = read_capped(resp, MAX_MANIFEST, &what, registry).await?;
        let digest = Digest::of(&bytes);
        if let Ok(expected) = reference.parse::<Digest>()
            && expected != digest
        {
            return Err(RegistryError::DigestMismatch {
                what,
                expected,
                actual: digest,
            });
        }
        if let Some(served) = served_digest
            && served != digest
        {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: served,
                actual: digest,
            });
        }
        let media_type = oci::declared_media_type(&bytes).unwrap_or(header_type);
        if !oci::is_manifest_type(&media_type) {
            return Err(RegistryError::Protocol(format!(
                "{what} has media type '{media_type}'; airgate carries OCI and Docker v2 manifests and indexes"
            )));
        }
        Ok(Manifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// The digest a tag or digest resolves to, or `None` when absent.
    pub async fn manifest_digest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Digest>, RegistryError> {
        self.retry(|| async {
            let path = format!("/v2/{repository}/manifests/{reference}");
            let accept = MANIFEST_TYPES.join(", ");
            let resp = self
                .send(registry, repository, &Self::pull(repository), |c, base| {
                    c.head(format!("{base}{path}")).header(ACCEPT, &accept)
                })
                .await?;
            match resp.status() {
                StatusCode::NOT_FOUND => Ok(None),
                s if s.is_success() => Ok(resp
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())),
                s => Err(status_error(&Method::HEAD, &path, s, "")),
            }
        })
        .await
    }

    /// The referrers of `digest` by the OCI 1.1 referrers API, or `None`
    /// when the registry does not have that API (it answers 404; one that
    /// has it answers an index, empty if there are none).
    pub async fn referrers(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<Vec<oci::Descriptor>>, RegistryError> {
        self.retry(|| async {
            let path = format!("/v2/{repository}/referrers/{digest}");
            let resp = self
                .send(registry, repository, &Self::pull(repository), |c, base| {
                    c.get(format!("{base}{path}"))
                        .header(ACCEPT, oci::OCI_INDEX)
                })
                .await?;
            let status = resp.status();
            if !status.is_success() {
                if status.is_server_error() {
                    let body = error_body(resp).await;
                    return Err(status_error(&Method::GET, &path, status, &body));
                }
                return Ok(None);
            }
            let what = format!("referrers of {registry}/{repository}@{digest}");
            let bytes = read_capped(resp, MAX_MANIFEST, &what, registry).await?;
            match oci::parse_manifest(&bytes, oci::OCI_INDEX) {
                Ok(oci::Parsed::Index { manifests }) => Ok(Some(manifests)),
                _ => Err(RegistryError::Protocol(format!("{what}: not an OCI index"))),
            }
        })
        .await
    }

    /// The referrers of `digest`: by the referrers API, else from the
    /// referrers tag (OCI 1.1's fallback); empty when there are none.
    pub async fn list_referrers(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
    ) -> Result<Vec<oci::Descriptor>, RegistryError> {
        if let Some(list) = self.referrers(registry, repository, digest).await? {
            return Ok(list);
        }
        match self
            .get_manifest(registry, repository, &oci::referrers_tag(digest))
            .await
        {
            Ok(index) => match oci::parse_manifest(&index.bytes, &index.media_type) {
                Ok(oci::Parsed::Index { manifests }) => Ok(manifests),
                _ => Ok(Vec::new()),
            },
            Err(RegistryError::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Every tag of `repository` (paged, a thousand at a time; at most
    /// 100,000), or none when the repository does not exist.
    pub async fn list_tags(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Vec<String>, RegistryError> {
        const PAGE: usize = 1000;
        let mut tags: Vec<String> = Vec::new();
        loop {
            let last = tags.last().cloned();
            let page: Vec<String> = self
                .retry(|| async {
                    let mut path = format!("/v2/{repository}/tags/list?n={PAGE}");
                    if let Some(l) = &last {
                        path.push_str(&format!("&last={l}"));
                    }
                    let resp = self
                        .send(registry, repository, &Self::pull(repository), |c, base| {
                            c.get(format!("{base}{path}"))
                        })
                        .await?;
                    let status = resp.status();
                    if status == StatusCode::NOT_FOUND {
                        return Ok(Vec::new());
                    }
                    if !status.is_success() {
                        let body = error_body(resp).await;
                        return Err(status_error(&Method::GET, &path, status, &body));
                    }
                    let what = format!("the tags of {registry}/{repository}");
                    let bytes = read_capped(resp, MAX_MANIFEST, &what, registry).await?;
                    let list: serde_json::Value = serde_json::from_slice(&bytes)
                        .map_err(|e| RegistryError::Protocol(format!("{what}: {e}")))?;
                    Ok(list["tags"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|t| t.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default())
                })
                .await?;
            let full = page.len() >= PAGE;
            tags.extend(page);
            if !full || tags.len() >= 100 * PAGE {
                return Ok(tags);
            }
        }
    }

    /// Stores a manifest under `reference` (a tag, or its digest). Returns
    /// whether the registry said it indexed the manifest's `subject`
    /// (the `OCI-Subject` header of a registry with the referrers API).
    pub async fn put_manifest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<bool, RegistryError> {
        self.retry(|| async {
            let path = format!("/v2/{repository}/manifests/{reference}");
            let resp = self
                .send(registry, repository, &Self::push(repository), |c, base| {
                    c.put(format!("{base}{path}"))
                        .header(CONTENT_TYPE, &manifest.media_type)
                        .body(manifest.bytes.clone())
                })
                .await?;
            let status = resp.status();
            if !status.is_success() {
                let body = error_body(resp).await;
                return Err(status_error(&Method::PUT, &path, status, &body));
            }
            if let Some(d) = resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<Digest>().ok())
                && d != manifest.digest
            {
                return Err(RegistryError::DigestMismatch {
                    what: format!("manifest stored at {registry}/{repository}:{reference}"),
                    expected: manifest.digest.clone(),
                    actual: d,
                });
            }
            Ok(resp.headers().contains_key("oci-subject"))
        })
        .await
    }

    /// Whether `repository` already has the blob.
    pub async fn blob_exists(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        self.retry(|| async {
            let path = format!("/v2/{repository}/blobs/{digest}");
            let resp = self
                .send(registry, repository, &Self::pull(repository), |c, base| {
                    c.head(format!("{base}{path}"))
                })
                .await?;
            match resp.status() {
                StatusCode::NOT_FOUND => Ok(false),
                s if s.is_success() => Ok(true),
                s => Err(status_error(&Method::HEAD, &path, s, "")),
            }
        })
        .await
    }

    /// Starts a blob download. The caller checks the digest of what it
    /// reads, and retries the whole download (this does not retry: a retry
    /// here could not resume a body that broke off midway).
    pub async fn get_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
    ) -> Result<Response, RegistryError> {
        let path = format!("/v2/{repository}/blobs/{digest}");
        let resp = self
            .send(registry, repository, &Self::pull(repository), |c, base| {
                c.get(format!("{base}{path}"))
            })
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Err(RegistryError::NotFound {
                registry: registry.to_string(),
                repository: repository.to_string(),
                what: format!("blob {digest}"),
            }),
            s if s.is_success() => Ok(resp),
            s => {
                let body = error_body(resp).await;
                Err(status_error(&Method::GET, &path, s, &body))
            }
        }
    }

    /// Opens an upload session, or mounts the blob from `from` when given.
    async fn start_upload(
        &self,
        registry: &str,
        repository: &str,
        mount: Option<(&Digest, &str)>,
    ) -> Result<Mount, RegistryError> {
        let mut path = format!("/v2/{repository}/blobs/uploads/");
        let mut scopes = Self::push(repository);
        if let Some((digest, from)) = mount {
            path.push_str(&format!("?mount={digest}&from={from}"));
            scopes.push(format!("repository:{from}:pull"));
        }
        let host = self.host(registry).await?;
        let resp = self
            .send(registry, repository, &scopes, |c, base| {
                c.post(format!("{base}{path}")).header(CONTENT_LENGTH, 0)
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED if mount.is_some() => Ok(Mount::Mounted),
            StatusCode::ACCEPTED => {
                let location = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        RegistryError::Protocol(format!(
                            "{registry} opened an upload without a Location"
                        ))
                    })?;
                Ok(Mount::Upload(
                    self.upload_location(registry, &host, location)?,
                ))
            }
            s => {
                let body = error_body(resp).await;
                Err(status_error(&Method::POST, &path, s, &body))
            }
        }
    }

    /// Mounts a blob from another repository of the same registry; false when
    /// the registry would not (the upload session it opened instead is
    /// abandoned).
    pub async fn mount_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<bool, RegistryError> {
        self.retry(|| async {
            Ok(matches!(
                self.start_upload(registry, repository, Some((digest, from)))
                    .await?,
                Mount::Mounted
            ))
        })
        .await
    }

    /// Uploads a small blob held in memory in one request, unless the
    /// repository has it already.
    pub async fn put_blob_bytes(
        &self,
        registry: &str,
        repository: &str,
        data: &Bytes,
    ) -> Result<Digest, RegistryError> {
        let digest = Digest::of(data);
        if self.blob_exists(registry, repository, &digest).await? {
            return Ok(digest);
        }
        self.retry(|| async {
            let Mount::Upload(location) = self.start_upload(registry, repository, None).await?
            else {
                return Ok(());
            };
            let url = with_digest(location, &digest);
            let resp = self
                .send(registry, repository, &Self::push(repository), |c, _| {
                    c.put(url.clone())
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_LENGTH, data.len())
                        .body(data.clone())
                })
                .await?;
            expect_created(resp, "PUT", url.as_str()).await
        })
        .await?;
        Ok(digest)
    }

    /// A small blob read whole (at most `max` bytes), its digest checked.
    pub async fn get_blob_bytes(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        max: u64,
    ) -> Result<Bytes, RegistryError> {
        self.retry(|| async {
            let resp = self.get_blob(registry, repository, digest).await?;
            let what = format!("blob {digest}");
            let bytes = read_capped(resp, max, &what, registry).await?;
            let actual = Digest::of(&bytes);
            if actual != *digest {
                return Err(RegistryError::DigestMismatch {
                    what,
                    expected: digest.clone(),
                    actual,
                });
            }
            Ok(bytes)
        })
        .await
    }

    /// Uploads a blob, trying a mount from `upload.mount_from` first.
    /// Returns whether it was mounted. Retries restart the upload in a new
    /// session.
    pub async fn push_blob(
        &self,
        registry: &str,
        repository: &str,
        upload: &BlobUpload<'_>,
    ) -> Result<bool, RegistryError> {
        let BlobUpload {
            digest,
            size,
            source,
            mount_from,
            chunk_size,
        } = *upload;
        self.retry(|| async {
            let location = match self
                .start_upload(registry, repository, mount_from.map(|from| (digest, from)))
                .await?
            {
                Mount::Mounted => return Ok(true),
                Mount::Upload(url) => url,
            };
            if size > chunk_size {
                self.upload_chunked(registry, repository, location, upload)
                    .await?;
            } else {
                let body = source.body(0, size)?;
                let url = with_digest(location, digest);
                let resp = self
                    .send(registry, repository, &Self::push(repository), |c, _| {
                        c.put(url.clone())
                            .header(CONTENT_TYPE, "application/octet-stream")
                            .header(CONTENT_LENGTH, size)
                            .body(body.make())
                    })
                    .await?;
                expect_created(resp, "PUT", url.as_str()).await?;
            }
            Ok(false)
        })
        .await
    }

    async fn upload_chunked(
        &self,
        registry: &str,
        repository: &str,
        mut location: reqwest::Url,
        upload: &BlobUpload<'_>,
    ) -> Result<(), RegistryError> {
        let BlobUpload {
            digest,
            size,
            source,
            chunk_size,
            ..
        } = *upload;
        let host = self.host(registry).await?;
        let mut offset = 0;
        while offset < size {
            let len = chunk_size.min(size - offset);
            let body = source.body(offset, len)?;
            let url = location.clone();
            let resp = self
                .send(registry, repository, &Self::push(repository), |c, _| {
                    c.patch(url.clone())
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_LENGTH, len)
                        .header(CONTENT_RANGE, format!("{}-{}", offset, offset + len - 1))
                        .body(body.make())
                })
                .await?;
            if resp.status() != StatusCode::ACCEPTED {
                let status = resp.status();
                let text = error_body(resp).await;
                return Err(status_error(&Method::PATCH, url.as_str(), status, &text));
            }
            let next = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    RegistryError::Protocol(format!(
                        "{registry} answered a chunk without a Location"
                    ))
                })?;
            location = self.upload_location(registry, &host, next)?;
            offset += len;
        }
        let url = with_digest(location, digest);
        let resp = self
            .send(registry, repository, &Self::push(repository), |c, _| {
                c.put(url.clone()).header(CONTENT_LENGTH, 0)
            })
            .await?;
        expect_created(resp, "PUT", url.as_str()).await
    }
}

async fn expect_created(resp: Response, method: &str, url: &str) -> Result<(), RegistryError> {
    let status = resp.status();
    if status == StatusCode::CREATED || status.is_success() {
        return Ok(());
    }
    let body = error_body(resp).await;
    let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::PUT);
    Err(status_error(&method, url, status, &body))
}

fn resolve(base: &str, location: &str) -> Result<reqwest::Url, RegistryError> {
    let base = reqwest::Url::parse(&format!("{base}/"))
        .map_err(|e| RegistryError::Protocol(format!("bad registry base URL: {e}")))?;
    let url = base.join(location).map_err(|e| {
        RegistryError::Protocol(format!(
            "bad upload Location '{}': {e}",
            airgate_core::text::shown(&redact(location), 200)
        ))
    })?;
    Ok(url)
}

fn with_digest(mut url: reqwest::Url, digest: &Digest) -> reqwest::Url {
    url.query_pairs_mut().append_pair("digest", digest.as_str());
    url
}

/// One blob to upload.
#[derive(Clone, Copy, Debug)]
pub struct BlobUpload<'a> {
    pub digest: &'a Digest,
    pub size: u64,
    pub source: &'a BlobSource,
    /// A repository of the same registry that has the blob: mount from it.
    pub mount_from: Option<&'a str>,
    /// Blobs larger than this go up in PATCH chunks of this size.
    pub chunk_size: u64,
}

/// Where the bytes of a blob to upload come from: a region of a file (a
/// blob inside a bundle).
#[derive(Clone, Debug)]
pub struct BlobSource {
    pub path: PathBuf,
    pub offset: u64,
}

/// A request body that can be made again for a retry.
#[derive(Debug)]
struct BodyMaker {
    source: BlobSource,
    offset: u64,
    len: u64,
}

impl BlobSource {
    fn body(&self, offset: u64, len: u64) -> Result<BodyMaker, RegistryError> {
        if !self.path.exists() {
            return Err(RegistryError::Io {
                path: self.path.display().to_string(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        Ok(BodyMaker {
            source: self.clone(),
            offset,
            len,
        })
    }
}

impl BodyMaker {
    fn make(&self) -> reqwest::Body {
        file_region_body(
            &self.source.path,
            self.source.offset + self.offset,
            self.len,
        )
    }
}

/// Streams `len` bytes of `path` from `offset`.
fn file_region_body(path: &Path, offset: u64, len: u64) -> reqwest::Body {
    use futures_util::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let path = path.to_path_buf();
    let stream = futures_util::stream::once(async move {
        let mut f = tokio::fs::File::open(&path).await?;
        f.seek(std::io::SeekFrom::Start(offset)).await?;
        Ok::<_, std::io::Error>(tokio_util::io::ReaderStream::with_capacity(
            f.take(len),
            1 << 20,
        ))
    })
    .map(|r| match r {
        Ok(s) => s.left_stream(),
        Err(e) => futures_util::stream::once(async move { Err(e) }).right_stream(),
    })
    .flatten();
    reqwest::Body::wrap_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_recognised() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.internal:5000"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }

    #[test]
    fn docker_hub_is_reached_at_its_api_host() {
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("quay.io"), "quay.io");
    }

    #[test]
    fn upload_locations_resolve_and_carry_the_digest() -> Result<(), RegistryError> {
        let d = Digest::of(b"x");
        let url = resolve("https://r:5000", "/v2/a/blobs/uploads/123?_state=abc")?;
        assert_eq!(
            url.as_str(),
            "https://r:5000/v2/a/blobs/uploads/123?_state=abc"
        );
        let url = with_digest(url, &d);
        assert!(
            url.as_str()
                .ends_with(&format!("&digest={}", d.as_str().replace(':', "%3A"))),
            "{url}"
        );
        let abs = resolve("https://r:5000", "https://other:1/v2/up")?;
        assert_eq!(abs.as_str(), "https://other:1/v2/up");
        assert_eq!(redact("https://r/x?_state=secret"), "https://r/x");
        Ok(())
    }

    #[test]
    fn transient_errors_are_the_retryable_ones() {
        let s = |status| RegistryError::Status {
            method: "GET".into(),
            url: "u".into(),
            status,
            body: String::new(),
        };
        assert!(s(503).is_transient());
        assert!(s(429).is_transient());
        assert!(!s(501).is_transient());
        assert!(!s(404).is_transient());
    }
}
