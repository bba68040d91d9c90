//! Who is looking at the web UI, and what they may see.
//!
//! Guarantees:
//! - every request but the login page and the assets carries a bearer
//!   token (the `Authorization` header, or the session cookie the login
//!   form sets, which names a token kept here and never sent back); the
//!   apiserver says whose it is (TokenReview), at most a minute ago;
//! - a page shows an App, its records and its Events only when that user
//!   may `get` `apps.airgate.dev` in the App's namespace
//!   (SubjectAccessReview, at most 30 seconds old); the audit log's full
//!   list and the imports only when they may do so in every namespace;
//! - the controller's own account reads the data; what the user may see
//!   is decided before anything is shown.
//!
//! Assumptions: the controller's account may create `tokenreviews` and
//! `subjectaccessreviews` (`airgate install` grants both).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use sha2::{Digest as _, Sha256};

/// How long the apiserver's word on a token holds.
const REVIEW_TTL: Duration = Duration::from_secs(60);
/// How long a refused token stays refused without asking again.
const REFUSED_TTL: Duration = Duration::from_secs(10);
/// How long the word on one user and namespace holds.
const ACCESS_TTL: Duration = Duration::from_secs(30);
/// How long a login lasts.
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Caches past this size are emptied (a flood of tokens cannot grow them).
const CACHE_MAX: usize = 10_000;

/// The session cookie's name.
pub const COOKIE: &str = "airgate_session";

/// Who a token belongs to, as the apiserver said.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct User {
    pub name: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

type Review = (Instant, Option<User>);
/// Who asks, and where (`None`: every namespace).
type AccessKey = (User, Option<String>);

struct Session {
    token: String,
    since: Instant,
}

/// Token and access reviews, with their caches, and the logins.
pub struct Auth {
    client: Client,
    sessions: Mutex<HashMap<String, Session>>,
    /// By the token's SHA-256: when the apiserver answered, and whose it is.
    reviews: Mutex<HashMap<[u8; 32], Review>>,
    /// By the whole identity (two tokens of one name may carry different
    /// groups) and namespace (`None`: every namespace).
    access: Mutex<HashMap<AccessKey, (Instant, bool)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// A bearer token from an `Authorization` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The session id in a `Cookie` header value.
pub fn session_cookie(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the sessions: they hold tokens.
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

impl Auth {
    pub fn new(client: Client) -> Auth {
        Auth {
            client,
            sessions: Mutex::new(HashMap::new()),
            reviews: Mutex::new(HashMap::new()),
            access: Mutex::new(HashMap::new()),
        }
    }

    /// Checks `token` and opens a session for it: the new session id.
    pub async fn login(&self, token: &str) -> Result<(String, User), String> {
        let user = self
            .review(token)
            .await?
            .ok_or("the apiserver does not accept this token")?;
        let mut id = [0u8; 32];
        getrandom::fill(&mut id).map_err(|e| format!("no randomness for a session: {e}"))?;
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id);
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| s.since.elapsed() < SESSION_TTL);
        if sessions.len() >= CACHE_MAX {
            return Err("too many open sessions; try again later".into());
        }
        sessions.insert(
            id.clone(),
            Session {
                token: token.to_string(),
                since: Instant::now(),
            },
        );
        Ok((id, user))
    }

    pub fn logout(&self, session: &str) {
        lock(&self.sessions).remove(session);
    }

    /// The user behind a request: its bearer token, else its session.
    /// `None` when there is neither, or the apiserver refuses the token.
    pub async fn user(&self, bearer: Option<&str>, session: Option<&str>) -> Option<User> {
        let token = match (bearer, session) {
            (Some(token), _) => token.to_string(),
            (None, Some(id)) => {
                let sessions = lock(&self.sessions);
                let s = sessions.get(id)?;
                if s.since.elapsed() >= SESSION_TTL {
                    return None;
                }
                s.token.clone()
            }
            (None, None) => return None,
        };
        match self.review(&token).await {
            Ok(user) => user,
            Err(e) => {
                super::super::log::warn("token review failed", serde_json::json!({"error": e}));
                None
            }
        }
    }

    /// TokenReview, cached by the token's hash (never the token).
    async fn review(&self, token: &str) -> Result<Option<User>, String> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((at, user)) = lock(&self.reviews).get(&key) {
            let ttl = if user.is_some() {
                REVIEW_TTL
            } else {
                REFUSED_TTL
            };
            if at.elapsed() < ttl {
                return Ok(user.clone());
            }
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| format!("TokenReview: {e}"))?;
        let user = answer
            .status
            .filter(|s| s.authenticated == Some(true))
            .and_then(|s| s.user)
            .and_then(|u| {
                Some(User {
                    name: u.username?,
                    uid: u.uid,
                    groups: u.groups.unwrap_or_default(),
                    extra: u.extra.unwrap_or_default().into_iter().collect(),
                })
            });
        let mut reviews = lock(&self.reviews);
        if reviews.len() >= CACHE_MAX {
            reviews.clear();
        }
        reviews.insert(key, (Instant::now(), user.clone()));
        Ok(user)
    }

    /// Whether `user` may `get` Apps in `namespace` (`None`: in every
    /// namespace). A review that fails answers no.
    pub async fn may_get_apps(&self, user: &User, namespace: Option<&str>) -> bool {
        let key = (user.clone(), namespace.map(String::from));
        if let Some((at, allowed)) = lock(&self.access).get(&key)
            && at.elapsed() < ACCESS_TTL
        {
            return *allowed;
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: user.uid.clone(),
                groups: Some(user.groups.clone()),
                extra: Some(user.extra.clone().into_iter().collect()),
                resource_attributes: Some(ResourceAttributes {
                    group: Some("airgate.dev".into()),
                    resource: Some("apps".into()),
                    verb: Some("get".into()),
                    namespace: namespace.map(String::from),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let allowed = match Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
        {
            Ok(answer) => answer.status.is_some_and(|s| s.allowed),
            Err(e) => {
                super::super::log::warn(
                    "access review failed",
                    serde_json::json!({"user": user.name, "error": e.to_string()}),
                );
                return false;
            }
        };
        let mut access = lock(&self.access);
        if access.len() >= CACHE_MAX {
            access.clear();
        }
        access.insert(key, (Instant::now(), allowed));
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_cookie_parsing() {
        let cases = [
            ("Bearer abc", Some("abc")),
            ("bearer  abc ", Some("abc")),
            ("Basic abc", None),
            ("Bearer ", None),
            ("Bearer", None),
        ];
        for (header, want) in cases {
            assert_eq!(bearer(header), want, "{header}");
        }
        let cases = [
            ("airgate_session=xyz", Some("xyz")),
            ("a=1; airgate_session=xyz; b=2", Some("xyz")),
            ("airgate_sessionx=xyz", None),
            ("", None),
        ];
        for (header, want) in cases {
            assert_eq!(session_cookie(header), want, "{header}");
        }
    }
}
