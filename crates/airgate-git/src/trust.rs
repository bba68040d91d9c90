//! Signatures on commits and annotated tags, checked in-process: SSH
//! signatures (SSHSIG, namespace `git`) with `ssh-key`, OpenPGP signatures
//! with `pgp` (rPGP). No `gpg` or `ssh-keygen` runs: the controller's image
//! has neither, and a verdict must not depend on a keyring's state.
//!
//! The rules about *who* may sign are in [`airgate_core::trust`]; this
//! module only finds each signature, the bytes it covers and the key that
//! made it, and reports a [`CommitTrust`].
//!
//! Guarantees:
//! - a commit's signature covers the commit object without its `gpgsig`
//!   header, a tag's covers the tag object up to its signature, exactly
//!   the bytes git hands to gpg or ssh-keygen;
//! - an OpenPGP signature counts only if made by a key (or a subkey with
//!   the signing flag, bound to its primary key both ways) that is neither
//!   revoked nor expired now, and one of whose user IDs is the committer's
//!   email;
//! - a range is walked in the repository's own object database; a range
//!   longer than [`MAX_RANGE`] commits is refused rather than cut short.

use airgate_core::trust::{
    AllowedSigners, CommitTrust, Signer, TrustPolicy, TrustResult, VerifyMode, recorded_trailers,
};
use pgp::composed::{Deserializable, SignedPublicKey};
use sha2::{Digest as _, Sha256};

mod openpgp;
mod ssh;

use crate::GitError;

/// The most commits one range may hold.
pub const MAX_RANGE: usize = 100_000;

/// The SSH signature namespace git signs in.
const NAMESPACE: &str = "git";

/// Who may sign: git's SSH allowed-signers lines and OpenPGP public keys.
#[derive(Clone, Debug, Default)]
pub struct Signers {
    pub ssh: AllowedSigners,
    pub pgp: Vec<SignedPublicKey>,
    /// A digest of every entry read, so a change is noticed.
    pub digest: String,
}

impl Signers {
    /// From named entries (a ConfigMap's keys, or a directory's files):
    /// `allowed_signers` holds SSH lines, any name ending in `.asc` armored
    /// OpenPGP public keys; other names are refused, so a typo cannot leave
    /// a signer out unnoticed.
    pub fn from_entries<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Signers, String> {
        let mut entries: Vec<(&str, &[u8])> = entries.into_iter().collect();
        entries.sort();
        let mut signers = Signers::default();
        let mut digest = Sha256::new();
        for (name, bytes) in entries {
            digest.update((name.len() as u64).to_be_bytes());
            digest.update(name.as_bytes());
            digest.update((bytes.len() as u64).to_be_bytes());
            digest.update(bytes);
            if name == "allowed_signers" {
                let text =
                    std::str::from_utf8(bytes).map_err(|_| format!("{name}: not UTF-8 text"))?;
                let parsed = AllowedSigners::parse(text).map_err(|e| e.to_string())?;
                signers.ssh.lines.extend(parsed.lines);
            } else if name.ends_with(".asc") {
                let keys = SignedPublicKey::from_armor_many(bytes)
                    .map_err(|e| format!("{name}: not an armored OpenPGP public key: {e}"))?
                    .0
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("{name}: not an armored OpenPGP public key: {e}"))?;
                if keys.is_empty() {
                    return Err(format!("{name}: holds no OpenPGP public key"));
                }
                signers.pgp.extend(keys);
            } else {
                return Err(format!(
                    "'{}' is neither allowed_signers nor an OpenPGP key (*.asc)",
                    airgate_core::text::shown(name, 100)
                ));
            }
        }
        signers.digest = format!("{:x}", digest.finalize());
        Ok(signers)
    }

    pub fn is_empty(&self) -> bool {
        self.ssh.lines.is_empty() && self.pgp.is_empty()
    }
}

/// A signed object as git reads it: the signature, the bytes it covers,
/// and who claims to have made it, when.
#[derive(Debug)]
pub struct Signed<'a> {
    pub signature: Option<&'a [u8]>,
    pub payload: &'a [u8],
    pub email: &'a str,
    pub time: i64,
}

/// The verdict on one signed object, and who signed it.
pub fn check(
    signers: &Signers,
    signed: &Signed<'_>,
    now: i64,
) -> (TrustResult, Option<Signer>, String) {
    let Some(signature) = signed.signature else {
        return (TrustResult::Unsigned, None, String::new());
    };
    if signature.starts_with(b"-----BEGIN SSH SIGNATURE-----") {
        ssh::check_ssh(&signers.ssh, signature, signed)
    } else if signature.starts_with(b"-----BEGIN PGP SIGNATURE-----") {
        openpgp::check_pgp(&signers.pgp, signature, signed, now)
    } else {
        (
            TrustResult::Unsupported,
            None,
            "only SSH and OpenPGP signatures are read (not X.509)".into(),
        )
    }
}

/// One commit or tag object, read for verification.
#[derive(Debug)]
pub struct Object {
    pub tag: Option<String>,
    pub commit: String,
    pub signature: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub email: String,
    pub time: i64,
    pub message: String,
}

fn fail(what: &str, e: impl std::fmt::Display) -> GitError {
    GitError::Repository {
        url: String::new(),
        message: format!("{what}: {e}"),
    }
}

/// Reads commit `id` of `repo` for verification.
pub fn read_commit(repo: &gix::Repository, id: gix::ObjectId) -> Result<Object, GitError> {
    let object = repo
        .find_object(id)
        .map_err(|e| fail(&format!("commit {id}"), e))?;
    if object.kind != gix::object::Kind::Commit {
        return Err(fail(&format!("object {id}"), "is not a commit"));
    }
    let data = object.data.clone();
    let signed = gix::objs::CommitRefIter::signature(&data, gix::hash::Kind::Sha1)
        .map_err(|e| fail(&format!("commit {id}"), e))?;
    let (signature, payload) = match signed {
        Some((sig, rest)) => (Some(unfold(sig.as_ref())), rest.to_bstring().to_vec()),
        None => (None, data.clone()),
    };
    let commit = gix::objs::CommitRef::from_bytes(&data, gix::hash::Kind::Sha1)
        .map_err(|e| fail(&format!("commit {id}"), e))?;
    let committer = commit
        .committer()
        .map_err(|e| fail(&format!("commit {id}"), e))?;
    let time = committer
        .time()
        .map_err(|e| fail(&format!("commit {id}"), e))?
        .seconds;
    Ok(Object {
        tag: None,
        commit: id.to_string(),
        signature,
        payload,
        email: committer.email.to_string(),
        time,
        message: commit.message.to_string(),
    })
}

/// Reads annotated tag `id` of `repo` (its signature, tagger and the commit it names).
pub fn read_tag(repo: &gix::Repository, id: gix::ObjectId) -> Result<Object, GitError> {
    let object = repo
        .find_object(id)
        .map_err(|e| fail(&format!("tag {id}"), e))?;
    if object.kind != gix::object::Kind::Tag {
        return Err(fail(&format!("object {id}"), "is not an annotated tag"));
    }
    let data = object.data.clone();
    let tag = gix::objs::TagRef::from_bytes(&data, gix::hash::Kind::Sha1)
        .map_err(|e| fail(&format!("tag {id}"), e))?;
    let (email, time) = match tag.tagger().map_err(|e| fail(&format!("tag {id}"), e))? {
        Some(t) => (
            t.email.to_string(),
            t.time().map_err(|e| fail(&format!("tag {id}"), e))?.seconds,
        ),
        None => (String::new(), 0),
    };
    let (signature, payload) = match gix::objs::TagRefIter::signature(&data) {
        Some((sig, rest)) => (Some(sig.data.to_vec()), rest.to_bstring().to_vec()),
        None => (None, data.clone()),
    };
    let target = repo
        .find_object(tag.target())
        .map_err(|e| fail(&format!("tag {id}"), e))?
        .peel_to_commit()
        .map_err(|e| fail(&format!("tag {id}"), e))?
        .id;
    Ok(Object {
        tag: Some(tag.name.to_string()),
        commit: target.to_string(),
        signature,
        payload,
        email,
        time,
        message: tag.message.to_string(),
    })
}

/// A header value as git stores it: continuation lines start with a space.
fn unfold(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for (i, line) in value.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        out.extend_from_slice(line.strip_prefix(b" ").unwrap_or(line));
    }
    out
}

/// The verdict on one object, as a record keeps it.
pub fn verify_object(
    signers: &Signers,
    object: &Object,
    required: &[String],
    now: i64,
) -> CommitTrust {
    let signed = Signed {
        signature: object.signature.as_deref(),
        payload: &object.payload,
        email: &object.email,
        time: object.time,
    };
    let (result, signer, detail) = check(signers, &signed, now);
    CommitTrust {
        commit: object.commit.clone(),
        tag: object.tag.clone(),
        result,
        signer,
        committer: object.email.clone(),
        detail,
        trailers: recorded_trailers(&object.message, required),
    }
}

/// What a range verification found: the applied revision's verdict and
/// every other commit's, newest first.
#[derive(Clone, Debug)]
pub struct Verified {
    pub head: CommitTrust,
    pub range: Vec<CommitTrust>,
}

impl Verified {
    /// Every verdict, the applied revision first.
    pub fn all(&self) -> impl Iterator<Item = &CommitTrust> {
        std::iter::once(&self.head).chain(&self.range)
    }
}

/// Verifies `head` (a commit, or an annotated tag whose signature then
/// counts for the commit it names) and, in history mode, every commit
/// reachable from it but not from `from`. Without `from` (the first
/// sync), a merge brings in what it merged: the range is `head^1..head`.
pub fn verify_range(
    repo: &gix::Repository,
    head: gix::ObjectId,
    from: Option<gix::ObjectId>,
    policy: &TrustPolicy,
    signers: &Signers,
    now: i64,
) -> Result<Verified, GitError> {
    let kind = repo
        .find_object(head)
        .map_err(|e| fail(&format!("object {head}"), e))?
        .kind;
    let top = if kind == gix::object::Kind::Tag {
        read_tag(repo, head)?
    } else {
        read_commit(repo, head)?
    };
    let commit =
        gix::ObjectId::from_hex(top.commit.as_bytes()).map_err(|e| fail("commit id", e))?;
    let mut head_trust = verify_object(signers, &top, &policy.require_trailers, now);
    if top.tag.is_some() {
        // A tag's trailers, or else the tagged commit's, count for the revision.
        let tagged = read_commit(repo, commit)?;
        for (name, values) in recorded_trailers(&tagged.message, &policy.require_trailers) {
            head_trust.trailers.entry(name).or_insert(values);
        }
    }
    let mut range = Vec::new();
    if policy.mode == VerifyMode::History {
        let hidden: Vec<gix::ObjectId> = match from {
            Some(f) => vec![f],
            None => first_parent(repo, commit)?.into_iter().collect(),
        };
        // The head's verdict (the tag's, for a tag) stands for its commit.
        let skip = Some(commit);
        for info in repo
            .rev_walk([commit])
            .with_hidden(hidden)
            .all()
            .map_err(|e| fail("walking the history", e))?
        {
            let info = info.map_err(|e| fail("walking the history", e))?;
            if Some(info.id) == skip {
                continue;
            }
            if range.len() >= MAX_RANGE {
                return Err(fail(
                    "walking the history",
                    format!(
                        "more than {MAX_RANGE} commits to verify; the last applied revision is not an ancestor of the new one, or the history is too long\nhint: verify a shorter range with mode: head, or apply an intermediate revision first"
                    ),
                ));
            }
            let object = read_commit(repo, info.id)?;
            range.push(verify_object(signers, &object, &[], now));
        }
    }
    Ok(Verified {
        head: head_trust,
        range,
    })
}

fn first_parent(
    repo: &gix::Repository,
    commit: gix::ObjectId,
) -> Result<Option<gix::ObjectId>, GitError> {
    let c = repo
        .find_commit(commit)
        .map_err(|e| fail(&format!("commit {commit}"), e))?;
    Ok(c.parent_ids().next().map(|p| p.detach()))
}

/// Now, in seconds since the epoch: what key expiry is checked against.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Opens a local clone to verify (objects only: its configuration, hooks
/// and work tree are not read).
pub fn open_clone(path: &std::path::Path) -> Result<gix::Repository, GitError> {
    gix::open_opts(path, gix::open::Options::isolated()).map_err(|e| GitError::Repository {
        url: path.display().to_string(),
        message: e.to_string(),
    })
}

/// A revision of a clone: a full commit id, `HEAD`, or a branch or tag
/// name. An annotated tag stays the tag (its signature is what counts).
pub fn resolve(repo: &gix::Repository, rev: &str) -> Result<gix::ObjectId, GitError> {
    let missing = || GitError::Repository {
        url: repo.path().display().to_string(),
        message: format!(
            "'{}' names no commit or tag here\nhint: give a full commit id, HEAD, or a branch or tag name",
            airgate_core::text::shown(rev, 80)
        ),
    };
    if rev.len() == 40
        && let Ok(id) = gix::ObjectId::from_hex(rev.as_bytes())
    {
        return repo.find_object(id).map(|o| o.id).map_err(|_| missing());
    }
    let mut reference = repo.find_reference(rev).map_err(|_| missing())?;
    reference
        .follow_to_object()
        .map(|id| id.detach())
        .map_err(|_| missing())
}
