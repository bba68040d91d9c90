//! Registry credentials and challenges.
//!
//! Credentials come from the Docker config file (`$DOCKER_CONFIG/config.json`,
//! else `~/.docker/config.json`), as every registry tool reads them, so no
//! password ever appears in argv. A registry answers an anonymous request with
//! a `WWW-Authenticate` challenge: `Basic` (send the credentials) or `Bearer`
//! (trade them for a token at the realm it names).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

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

/// Credentials by registry host, as read from a Docker config file.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    by_host: BTreeMap<String, Credential>,
    /// The file they came from, for messages.
    pub source: Option<PathBuf>,
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
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
}

impl Credentials {
    /// Reads `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; no
    /// file means no credentials.
    pub fn from_environment() -> Result<Credentials, CredentialsError> {
        let path = match std::env::var_os("DOCKER_CONFIG") {
            Some(dir) => PathBuf::from(dir).join("config.json"),
            None => match std::env::var_os("HOME") {
                Some(home) => PathBuf::from(home).join(".docker/config.json"),
                None => return Ok(Credentials::default()),
            },
        };
        if !path.exists() {
            return Ok(Credentials::default());
        }
        Credentials::from_file(&path)
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
        let config: DockerConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut by_host = BTreeMap::new();
        for (key, entry) in config.auths {
            let cred = match (entry.username, entry.password, entry.auth) {
                (Some(username), Some(password), _) => Credential { username, password },
                (_, _, Some(auth)) => {
                    let decoded = STANDARD
                        .decode(auth.trim())
                        .map_err(|_| format!("the auth of '{key}' is not base64"))?;
                    let decoded = String::from_utf8(decoded)
                        .map_err(|_| format!("the auth of '{key}' is not UTF-8"))?;
                    let Some((u, p)) = decoded.split_once(':') else {
                        return Err(format!("the auth of '{key}' is not user:password"));
                    };
                    Credential {
                        username: u.to_string(),
                        password: p.to_string(),
                    }
                }
                _ => continue,
            };
            by_host.insert(normalise_key(&key), cred);
        }
        Ok(Credentials {
            by_host,
            source: None,
        })
    }

    /// Credentials for `registry` (`host[:port]`, Docker Hub as `docker.io`).
    pub fn get(&self, registry: &str) -> Option<&Credential> {
        self.by_host.get(&normalise_key(registry))
    }

    pub fn insert(&mut self, registry: &str, cred: Credential) {
        self.by_host.insert(normalise_key(registry), cred);
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
        let hub = c.get("docker.io").ok_or("no docker.io")?;
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("user", "pass:with:colons")
        );
        assert_eq!(
            c.get("127.0.0.1:5000").map(|c| c.username.as_str()),
            Some("a")
        );
        assert!(c.get("helper.example").is_none());
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
