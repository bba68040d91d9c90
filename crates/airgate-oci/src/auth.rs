//! Registry credentials and challenges.
//!
//! Credentials come from the Docker config file (`$REGISTRY_AUTH_FILE`, else
//! `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`), read by the
//! `docker_credential` crate as Docker reads it (`auths`, `credHelpers`,
//! `credsStore`), so no password ever appears in argv. A registry answers an anonymous request with
//! a `WWW-Authenticate` challenge: `Basic` (send the credentials) or `Bearer`
//! (trade them for a token at the realm it names).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credential {
    /// The value of an `Authorization: Basic` header.
    pub fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

/// Credentials by registry host, from a Docker config file: `auths`
/// entries, and `credHelpers` and `credsStore`, whose helper programs
/// (`docker-credential-NAME` on `PATH`) are run as Docker runs them. The
/// file is read once; each registry is looked up (and a helper run) once.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// The config file's text.
    config: Option<Arc<str>>,
    /// The file they came from, for messages.
    pub source: Option<PathBuf>,
    /// Credentials given directly (tests), before the file.
    given: BTreeMap<String, Credential>,
    looked_up: Arc<Mutex<BTreeMap<String, Option<Credential>>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid Docker config file: {message}")]
    Parse { path: String, message: String },
    #[error("credentials for {registry} from {path}: {message}")]
    Lookup {
        registry: String,
        path: String,
        message: String,
    },
}

/// Where the Docker config file is looked for: `$REGISTRY_AUTH_FILE`
/// (podman, skopeo), else `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`. It may not exist.
pub fn config_path() -> Option<PathBuf> {
    if let Some(file) = std::env::var_os("REGISTRY_AUTH_FILE") {
        return Some(PathBuf::from(file));
    }
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")),
    }
}

impl Credentials {
    /// Reads `$REGISTRY_AUTH_FILE` (podman, skopeo) if set, else
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; no file
    /// means no credentials.
    pub fn from_environment() -> Result<Credentials, CredentialsError> {
        match config_path() {
            Some(path) if path.exists() => Credentials::from_file(&path),
            _ => Ok(Credentials::default()),
        }
    }

    pub fn from_file(path: &Path) -> Result<Credentials, CredentialsError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Io {
            path: shown.clone(),
            source,
        })?;
        let mut creds = Credentials::parse(&text).map_err(|message| CredentialsError::Parse {
            path: shown,
            message,
        })?;
        creds.source = Some(path.to_path_buf());
        Ok(creds)
    }

    pub fn parse(text: &str) -> Result<Credentials, String> {
        serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| e.to_string())?
            .as_object()
            .ok_or("it is not a JSON object")?;
        Ok(Credentials {
            config: Some(Arc::from(text)),
            ..Credentials::default()
        })
    }

    /// Credentials for `registry` (`host[:port]`, Docker Hub as `docker.io`),
    /// running a credential helper if the file names one for it.
    pub fn get(&self, registry: &str) -> Result<Option<Credential>, CredentialsError> {
        let key = normalise_key(registry);
        if let Some(c) = self.given.get(&key) {
            return Ok(Some(c.clone()));
        }
        let Some(config) = &self.config else {
            return Ok(None);
        };
        let mut looked_up = self.looked_up.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = looked_up.get(&key) {
            return Ok(found.clone());
        }
        // Docker's own name for Docker Hub in config files and helpers.
        let server = if key == "docker.io" {
            "https://index.docker.io/v1/"
        } else {
            key.as_str()
        };
        let fail = |message: String| CredentialsError::Lookup {
            registry: registry.to_string(),
            path: self.source.as_ref().map_or_else(
                || "the Docker config".to_string(),
                |p| p.display().to_string(),
            ),
            message,
        };
        use docker_credential::{CredentialRetrievalError as E, DockerCredential};
        let found = match docker_credential::get_credential_from_reader(config.as_bytes(), server) {
            Ok(DockerCredential::UsernamePassword(username, password)) => {
                Some(Credential { username, password })
            }
            Ok(DockerCredential::IdentityToken(_)) => {
                return Err(fail(
                    "it is an identity token, which airgate does not use; log in with a user name and password".to_string(),
                ));
            }
            Err(E::NoCredentialConfigured) => None,
            Err(E::HelperFailure { helper, stderr, .. }) => {
                return Err(fail(format!(
                    "{helper} failed: {}",
                    airgate_core::text::shown(stderr.trim(), 300)
                )));
            }
            Err(E::HelperCommunicationError) => {
                return Err(fail(
                    "cannot run its credential helper (docker-credential-NAME on PATH)".to_string(),
                ));
            }
            Err(e) => return Err(fail(e.to_string())),
        };
        looked_up.insert(key, found.clone());
        Ok(found)
    }

    pub fn insert(&mut self, registry: &str, cred: Credential) {
        self.given.insert(normalise_key(registry), cred);
    }
}

/// `https://index.docker.io/v1/` -> `docker.io`; `https://h:5000/` -> `h:5000`.
fn normalise_key(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let k = k.split('/').next().unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

/// A parsed `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Parses `Basic realm="x"` or `Bearer realm="https://auth",service="registry",scope="..."`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let params = parse_params(params);
            Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
            })
        }
        _ => None,
    }
}

fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.insert(key, value.to_string());
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_config_auth_and_username_password_forms() -> Result<(), String> {
        let text = r#"{"auths": {
            "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNzOndpdGg6Y29sb25z"},
            "127.0.0.1:5000": {"username": "a", "password": "b"},
            "helper.example": {}}}"#;
        let c = Credentials::parse(text)?;
        let get = |r: &str| c.get(r).map_err(|e| e.to_string());
        let hub = get("docker.io")?.ok_or("no docker.io")?;
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("user", "pass:with:colons")
        );
        assert_eq!(get("127.0.0.1:5000")?.map(|c| c.username), Some("a".into()));
        assert!(get("helper.example")?.is_none());
        assert!(!format!("{hub:?}").contains("with:colons"));
        Ok(())
    }

    #[test]
    fn parses_basic_and_bearer_challenges() {
        assert_eq!(
            parse_challenge(r#"Basic realm="airgate-internal""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into())
            })
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }
}
