//! Desired state comes from Git, read-only.
//!
//! A [`Mirror`] keeps one bare repository per URL in a cache directory and
//! fetches into it: for a branch or tag, only the commit it points at
//! (depth 1); for a pinned commit, the branches and tags that contain it.
//! Files are read straight from the object database at a commit (no work
//! tree), together with who made the commit and why. airgate never pushes.
//!
//! Credentials and an extra CA come from the caller (the App's Secret); the
//! password is handed to the transport through a callback, never put in the
//! URL or the repository's configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

pub use airgate_core::source::GitRef;

pub mod trust;

/// How to reach the server.
#[derive(Clone, Default)]
pub struct Access {
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM certificates to trust (instead of the system's) for HTTPS.
    pub ca_pem: Option<Vec<u8>>,
}

impl Access {
    /// A digest of these credentials and CA: two fetches may share a result
    /// only when they would have been made with the same access, so no App
    /// gets content through another App's credentials.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.username.as_deref().map(str::as_bytes),
            self.password.as_deref().map(str::as_bytes),
            self.ca_pem.as_deref(),
        ] {
            match part {
                Some(bytes) => {
                    h.update([1u8]);
                    h.update((bytes.len() as u64).to_be_bytes());
                    h.update(bytes);
                }
                None => h.update([0u8]),
            }
        }
        format!("{:x}", h.finalize())
    }
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_pem", &self.ca_pem.as_ref().map(|c| c.len()))
            .finish()
    }
}

/// Who made or committed a commit, and when (seconds since the epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub name: String,
    pub email: String,
    pub time: i64,
}

/// A commit and what it says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub id: String,
    pub author: Signature,
    pub committer: Signature,
    pub message: String,
    /// The annotated tag object the ref named, when it was a tag (its
    /// signature is what commit trust checks).
    pub tag: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("fetching {git_ref} of {url}: {message}")]
    Fetch {
        url: String,
        git_ref: String,
        message: String,
    },
    #[error("{url} has no {git_ref}")]
    NoSuchRef { url: String, git_ref: String },
    #[error("{url}: {message}")]
    Repository { url: String, message: String },
    #[error("commit {commit} has no directory '{path}'")]
    NoSuchPath { commit: String, path: String },
    #[error(
        "commit {commit} has a tree entry named '{name}' (in '{dir}'); refusing it: a name must be a plain file or directory name (not empty, '.', '..', '.git', nor with '/', '\\' or NUL)"
    )]
    UnsafeName {
        commit: String,
        dir: String,
        name: String,
    },
    #[error(
        "commit {commit}: '{path}' is {size} bytes; airgate reads at most {MAX_FILE} bytes a file and {MAX_TREE} bytes a tree for one App\nhint: keep large files out of configuration repositories"
    )]
    TooLarge {
        commit: String,
        path: String,
        size: u64,
    },
}

/// The largest file read from a tree.
pub const MAX_FILE: u64 = 64 << 20;
/// The most read from one tree for one render.
pub const MAX_TREE: u64 = 256 << 20;

/// Whether a Git tree entry's name is one a checkout could write safely:
/// Git itself refuses the others on checkout, but a server stores whatever
/// a tree made with `git hash-object --literally` says, and airgate writes
/// the tree out for kustomize.
pub fn is_safe_tree_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name != b"."
        && name != b".."
        && !name.eq_ignore_ascii_case(b".git")
        && !name.iter().any(|&b| b == b'/' || b == b'\\' || b == 0)
}

/// Local bare mirrors of remote repositories, one per URL.
#[derive(Clone, Debug)]
pub struct Mirror {
    dir: PathBuf,
    /// Fetch whole histories (commit trust walks them), in mirrors of
    /// their own: a shallow fetch never cuts a history another App walks.
    history: bool,
}

/// The reference a fetch writes, so the result can be found again.
const FETCHED: &str = "refs/airgate/fetched";

impl Mirror {
    pub fn new(dir: impl Into<PathBuf>) -> Mirror {
        Mirror {
            dir: dir.into(),
            history: false,
        }
    }

    /// Mirrors in the same directory that fetch whole histories.
    pub fn with_history(&self) -> Mirror {
        Mirror {
            dir: self.dir.clone(),
            history: true,
        }
    }

    /// The bare repository that mirrors `url`.
    pub fn path_for(&self, url: &str) -> PathBuf {
        let hash = format!("{:x}", Sha256::digest(url.as_bytes()));
        let suffix = if self.history { ".history" } else { "" };
        self.dir.join(format!("{}{suffix}.git", &hash[..16]))
    }

    /// Opens the mirror of `url` (for [`trust::verify_range`]).
    pub fn open(&self, url: &str) -> Result<gix::Repository, GitError> {
        self.open_or_init(url)
    }

    /// Commit trust over the mirror of `url`: see [`trust::verify_range`].
    /// `head` and `from` are object ids; a `from` the mirror no longer has
    /// (history rewritten) counts as none: the range is then what a first
    /// sync verifies, and the head must still pass on its own.
    pub fn verify(
        &self,
        url: &str,
        head: &str,
        from: Option<&str>,
        policy: &airgate_core::trust::TrustPolicy,
        signers: &trust::Signers,
        now: i64,
    ) -> Result<trust::Verified, GitError> {
        let repo = self.open_or_init(url)?;
        let id = |s: &str| {
            gix::ObjectId::from_hex(s.as_bytes()).map_err(|_| GitError::Repository {
                url: url.to_string(),
                message: format!("'{s}' is not an object id"),
            })
        };
        let from = match from {
            Some(f) => Some(id(f)?).filter(|f| repo.find_object(*f).is_ok()),
            None => None,
        };
        trust::verify_range(&repo, id(head)?, from, policy, signers, now)
    }

    /// The annotated tag object the last fetch of a tag stored, if the tag
    /// is annotated. Call it right after [`Mirror::fetch`], under the same
    /// lock: the next fetch of `url` moves the reference.
    pub fn fetched_tag(&self, url: &str) -> Result<Option<String>, GitError> {
        let repo = self.open_or_init(url)?;
        let fail = |e: &dyn std::fmt::Display| GitError::Repository {
            url: url.to_string(),
            message: e.to_string(),
        };
        let mut reference = repo.find_reference(FETCHED).map_err(|e| fail(&e))?;
        let id = reference.follow_to_object().map_err(|e| fail(&e))?;
        let kind = repo.find_object(id).map_err(|e| fail(&e))?.kind;
        Ok((kind == gix::object::Kind::Tag).then(|| id.to_string()))
    }

    fn open_or_init(&self, url: &str) -> Result<gix::Repository, GitError> {
        let path = self.path_for(url);
        let err = |e: &dyn std::fmt::Display| GitError::Repository {
            url: url.to_string(),
            message: format!("{}: {e}", path.display()),
        };
        // Isolated: no system, global or user configuration (a `url.<x>.insteadOf`
        // there would send this App's credentials elsewhere), no includes;
        // only the mirror's own configuration, which airgate wrote.
        if !path.join("HEAD").exists() {
            std::fs::create_dir_all(&path).map_err(|e| err(&e))?;
            gix::init_bare(&path).map_err(|e| err(&e))?;
        }
        gix::open_opts(&path, gix::open::Options::isolated()).map_err(|e| err(&e))
    }

    /// Fetches `git_ref` of `url` and returns the commit it names now.
    pub fn fetch(&self, url: &str, git_ref: &GitRef, access: &Access) -> Result<String, GitError> {
        let repo = self.open_or_init(url)?;
        let fail = |message: String| GitError::Fetch {
            url: url.to_string(),
            git_ref: git_ref.to_string(),
            message,
        };
        let (specs, shallow): (Vec<String>, bool) = match git_ref {
            GitRef::Branch(b) => (vec![format!("+refs/heads/{b}:{FETCHED}")], !self.history),
            GitRef::Tag(t) => (vec![format!("+refs/tags/{t}:{FETCHED}")], !self.history),
            GitRef::Commit(_) => (
                vec![
                    "+refs/heads/*:refs/airgate/heads/*".to_string(),
                    "+refs/tags/*:refs/airgate/tags/*".to_string(),
                ],
                false,
            ),
        };
        let remote = repo
            .remote_at(url)
            .map_err(|e| fail(e.to_string()))?
            .with_refspecs(
                specs.iter().map(String::as_str),
                gix::remote::Direction::Fetch,
            )
            .map_err(|e| fail(e.to_string()))?;
        let mut connection = remote
            .connect(gix::remote::Direction::Fetch)
            .map_err(|e| fail(chain(&e)))?;
        configure(&mut connection, access);
        // gix says so in words only: no ref on the remote matched.
        let classify = |e: String| {
            if e.contains("matched any of") {
                GitError::NoSuchRef {
                    url: url.to_string(),
                    git_ref: git_ref.to_string(),
                }
            } else {
                fail(e)
            }
        };
        let mut prepare = connection
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| classify(chain(&e)))?;
        if shallow && let Some(one) = std::num::NonZeroU32::new(1) {
            prepare = prepare.with_shallow(gix::remote::fetch::Shallow::DepthAtRemote(one));
        }
        let outcome = prepare
            .receive(gix::progress::Discard, &AtomicBool::new(false))
            .map_err(|e| classify(chain(&e)))?;
        match git_ref {
            GitRef::Branch(_) | GitRef::Tag(_) => {
                if outcome.ref_map.mappings.is_empty() {
                    return Err(GitError::NoSuchRef {
                        url: url.to_string(),
                        git_ref: git_ref.to_string(),
                    });
                }
                let reference = repo
                    .find_reference(FETCHED)
                    .map_err(|e| fail(e.to_string()))?;
                let id = reference
                    .into_fully_peeled_id()
                    .map_err(|e| fail(e.to_string()))?
                    .object()
                    .map_err(|e| fail(e.to_string()))?
                    .peel_to_commit()
                    .map_err(|e| fail(e.to_string()))?
                    .id;
                Ok(id.to_string())
            }
            GitRef::Commit(c) => {
                let id = gix::ObjectId::from_hex(c.as_bytes())
                    .map_err(|_| fail(format!("'{c}' is not a commit id")))?;
                match repo.find_object(id) {
                    Ok(o) if o.kind == gix::object::Kind::Commit => Ok(id.to_string()),
                    _ => Err(GitError::NoSuchRef {
                        url: url.to_string(),
                        git_ref: git_ref.to_string(),
                    }),
                }
            }
        }
    }

    /// Who made `commit` of the mirror of `url`, and its message.
    pub fn commit(&self, url: &str, commit: &str) -> Result<Commit, GitError> {
        let repo = self.open_or_init(url)?;
        let c = find_commit(&repo, url, commit)?;
        let fail = |e: &dyn std::fmt::Display| GitError::Repository {
            url: url.to_string(),
            message: format!("commit {commit}: {e}"),
        };
        let person = |s: gix::actor::SignatureRef<'_>| -> Result<Signature, GitError> {
            Ok(Signature {
                name: s.name.to_string(),
                email: s.email.to_string(),
                time: s.time().map_err(|e| fail(&e))?.seconds,
            })
        };
        let decoded = c.decode().map_err(|e| fail(&e))?;
        Ok(Commit {
            id: commit.to_string(),
            author: person(decoded.author().map_err(|e| fail(&e))?)?,
            committer: person(decoded.committer().map_err(|e| fail(&e))?)?,
            message: decoded.message.to_string(),
            tag: None,
        })
    }

    /// Every file under `path` (`""` or `.` for the whole tree) at `commit`,
    /// by path relative to it. Symbolic links and submodules are left out.
    /// At most [`MAX_FILE`] bytes a file and [`MAX_TREE`] in all.
    pub fn read_dir(
        &self,
        url: &str,
        commit: &str,
        path: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, GitError> {
        let mut budget = MAX_TREE;
        let clean = path.trim_matches('/');
        let clean = if clean == "." { "" } else { clean };
        let files = self
            .read_paths(url, commit, &[clean.to_string()], &mut budget)?
            .ok_or_else(|| GitError::NoSuchPath {
                commit: commit.to_string(),
                path: clean.to_string(),
            })?;
        let prefix = if clean.is_empty() {
            String::new()
        } else {
            format!("{clean}/")
        };
        Ok(files
            .into_iter()
            .filter_map(|(name, bytes)| Some((name.strip_prefix(&prefix)?.to_string(), bytes)))
            .collect())
    }

    /// The files of `paths` at `commit` (each a directory, read whole, or a
    /// file; `""` is the whole tree), by path from the repository's root:
    /// what one App's render needs and nothing else. `None` when none of
    /// `paths` exists. `budget` is what may still be read, in bytes, shared
    /// by the caller's successive calls for one render; each file is at
    /// most [`MAX_FILE`], judged from the object header before the content
    /// is loaded. Symbolic links and submodules are left out.
    pub fn read_paths(
        &self,
        url: &str,
        commit: &str,
        paths: &[String],
        budget: &mut u64,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, GitError> {
        let repo = self.open_or_init(url)?;
        let fail = |e: &dyn std::fmt::Display| GitError::Repository {
            url: url.to_string(),
            message: format!("commit {commit}: {e}"),
        };
        let root = find_commit(&repo, url, commit)?
            .tree()
            .map_err(|e| fail(&e))?;
        let mut files = BTreeMap::new();
        let mut found = false;
        let mut stack = Vec::new();
        for path in paths {
            let clean = path.trim_matches('/');
            if clean.is_empty() || clean == "." {
                stack.push((String::new(), root.clone()));
                found = true;
                continue;
            }
            let Some(entry) = root
                .lookup_entry_by_path(Path::new(clean))
                .map_err(|e| fail(&e))?
            else {
                continue;
            };
            found = true;
            if entry.mode().is_tree() {
                let tree = entry.object().map_err(|e| fail(&e))?.into_tree();
                stack.push((format!("{clean}/"), tree));
            } else if entry.mode().is_blob() {
                let blob = read_blob(&repo, entry.oid(), commit, clean, budget)?;
                files.insert(clean.to_string(), blob);
            }
        }
        while let Some((prefix, tree)) = stack.pop() {
            for entry in tree.iter() {
                let entry = entry.map_err(|e| fail(&e))?;
                let raw: &[u8] = entry.filename().as_ref();
                if !is_safe_tree_name(raw) {
                    return Err(GitError::UnsafeName {
                        commit: commit.to_string(),
                        dir: if prefix.is_empty() {
                            ".".to_string()
                        } else {
                            prefix.clone()
                        },
                        name: airgate_core::text::shown(&String::from_utf8_lossy(raw), 200),
                    });
                }
                let name = format!("{prefix}{}", entry.filename());
                let mode = entry.mode();
                if mode.is_tree() {
                    let sub = repo.find_tree(entry.oid()).map_err(|e| fail(&e))?;
                    stack.push((format!("{name}/"), sub));
                } else if mode.is_blob() && !files.contains_key(&name) {
                    let blob = read_blob(&repo, entry.oid(), commit, &name, budget)?;
                    files.insert(name, blob);
                }
            }
        }
        Ok(found.then_some(files))
    }
}

/// The blob `oid` (at `path` of `commit`), if it fits in a file's bound and
/// in `budget`, which it is taken from. Sizes come from the object header,
/// before the content is loaded: one tenant's huge file must fail its own
/// App, not take the controller's memory from every App.
fn read_blob(
    repo: &gix::Repository,
    oid: &gix::oid,
    commit: &str,
    path: &str,
    budget: &mut u64,
) -> Result<Vec<u8>, GitError> {
    let fail = |e: &dyn std::fmt::Display| GitError::Repository {
        url: repo.git_dir().display().to_string(),
        message: format!("commit {commit}: {path}: {e}"),
    };
    let size = repo.find_header(oid).map_err(|e| fail(&e))?.size();
    if size > MAX_FILE || size > *budget {
        return Err(GitError::TooLarge {
            commit: commit.to_string(),
            path: path.to_string(),
            size,
        });
    }
    *budget -= size;
    Ok(repo.find_blob(oid).map_err(|e| fail(&e))?.data.clone())
}

/// An error with its causes: gix says "Transport handshake failed" and
/// keeps "Connection refused" or the HTTP status in its sources.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn find_commit<'r>(
    repo: &'r gix::Repository,
    url: &str,
    commit: &str,
) -> Result<gix::Commit<'r>, GitError> {
    let fail = |e: &dyn std::fmt::Display| GitError::Repository {
        url: url.to_string(),
        message: format!("commit {commit}: {e}"),
    };
    let id = gix::ObjectId::from_hex(commit.as_bytes()).map_err(|e| fail(&e))?;
    repo.find_commit(id).map_err(|e| fail(&e))
}

/// Credentials through a callback, and for HTTPS a client trusting `ca_pem`.
/// How long to wait for a Git server to accept a connection.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long one request (a whole pack included) may take.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

fn configure<T: gix::protocol::transport::client::blocking_io::Transport>(
    connection: &mut gix::remote::Connection<'_, '_, '_, T>,
    access: &Access,
) {
    use gix::protocol::transport::client::blocking_io::http;
    // A server that stops answering must fail the fetch, not hang it.
    let pem = access.ca_pem.clone();
    let backend = http::reqwest::Options {
        configure_client: Some(Box::new(move |builder| {
            let builder = builder
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(REQUEST_TIMEOUT);
            Ok(match &pem {
                Some(pem) => builder.tls_certs_only(
                    reqwest::Certificate::from_pem_bundle(pem).map_err(gix::Error::from_error)?,
                ),
                None => builder,
            })
        })),
        configure_request: None,
    };
    let options = http::Options {
        backend: Some(Arc::new(Mutex::new(backend))),
        connect_timeout: Some(CONNECT_TIMEOUT),
        ..Default::default()
    };
    connection.set_transport_options(Box::new(options));
    if let (Some(user), Some(password)) = (access.username.clone(), access.password.clone()) {
        connection.set_credentials(move |action| match action {
            gix::credentials::helper::Action::Get(ctx) => {
                Ok(Some(gix::credentials::protocol::Outcome {
                    identity: gix::sec::identity::Account {
                        username: user.clone(),
                        password: password.clone(),
                        oauth_refresh_token: None,
                    },
                    next: ctx.into(),
                }))
            }
            _ => Ok(None),
        });
    }
}

#[cfg(test)]
mod access_tests {
    use super::*;

    #[test]
    fn fetches_are_shared_only_between_identical_credentials() {
        let a = Access {
            username: Some("team-a".into()),
            password: Some("right".into()),
            ca_pem: None,
        };
        let wrong = Access {
            password: Some("wrong".into()),
            ..a.clone()
        };
        let none = Access::default();
        // A username with a ':' must not collide with the fields shifted.
        let shifted = Access {
            username: Some("team-a".into()),
            password: None,
            ca_pem: Some(b"right".to_vec()),
        };
        let prints = [&a, &wrong, &none, &shifted].map(Access::fingerprint);
        for (i, x) in prints.iter().enumerate() {
            for y in &prints[i + 1..] {
                assert_ne!(x, y);
            }
        }
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
    }
}
