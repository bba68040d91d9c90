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
    AllowedSigners, CommitTrust, LineMismatch, Signer, TrustPolicy, TrustResult, VerifyMode,
    recorded_trailers,
};
use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::{Signature as PgpSignature, SignatureType};
use pgp::types::KeyDetails;
use sha2::{Digest as _, Sha256};

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
        check_ssh(&signers.ssh, signature, signed)
    } else if signature.starts_with(b"-----BEGIN PGP SIGNATURE-----") {
        check_pgp(&signers.pgp, signature, signed, now)
    } else {
        (
            TrustResult::Unsupported,
            None,
            "only SSH and OpenPGP signatures are read (not X.509)".into(),
        )
    }
}

fn check_ssh(
    allowed: &AllowedSigners,
    armored: &[u8],
    signed: &Signed<'_>,
) -> (TrustResult, Option<Signer>, String) {
    let sig = match ssh_key::SshSig::from_pem(armored) {
        Ok(s) => s,
        Err(e) => {
            return (
                TrustResult::BadSignature,
                None,
                format!("unreadable SSH signature: {e}"),
            );
        }
    };
    let key = ssh_key::PublicKey::from(sig.public_key().clone());
    let signer = Signer {
        principal: signed.email.to_string(),
        key_type: key.algorithm().to_string(),
        fingerprint: key.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
    };
    if sig.namespace() != NAMESPACE {
        let detail = format!(
            "signed for namespace '{}', not 'git'",
            airgate_core::text::shown(sig.namespace(), 40)
        );
        return (TrustResult::WrongNamespace, Some(signer), detail);
    }
    if let Err(e) = key.verify(NAMESPACE, signed.payload, &sig) {
        return (TrustResult::BadSignature, Some(signer), e.to_string());
    }
    let wire = match key.to_bytes() {
        Ok(w) => w,
        Err(e) => return (TrustResult::BadSignature, Some(signer), e.to_string()),
    };
    match allowed.principal_for(&wire, signed.email, NAMESPACE, signed.time) {
        None => (
            TrustResult::UnknownKey,
            Some(signer),
            "the key is in no allowed_signers line".into(),
        ),
        Some(Ok(_)) => (TrustResult::Good, Some(signer), String::new()),
        Some(Err(why)) => {
            let (result, detail) = match why {
                LineMismatch::Principal => (
                    TrustResult::PrincipalMismatch,
                    "the key's allowed_signers lines name other principals than the committer's email",
                ),
                LineMismatch::Namespace => (
                    TrustResult::WrongNamespace,
                    "the key's allowed_signers lines exclude the 'git' namespace",
                ),
                LineMismatch::Validity => (
                    TrustResult::OutsideValidity,
                    "the commit's time is outside the key's valid-after/valid-before",
                ),
            };
            (result, Some(signer), detail.into())
        }
    }
}

/// The signing key a signature names, within one public key (primary or subkey).
enum Issuer<'k> {
    Primary,
    Subkey(&'k pgp::composed::SignedPublicSubKey),
}

fn issued_by(sig: &PgpSignature, key: &impl KeyDetails) -> bool {
    let fp = key.fingerprint();
    let id = key.legacy_key_id();
    sig.issuer_fingerprint().into_iter().any(|f| *f == fp)
        || sig.issuer_key_id().into_iter().any(|k| *k == id)
}

fn check_pgp(
    keys: &[SignedPublicKey],
    armored: &[u8],
    signed: &Signed<'_>,
    now: i64,
) -> (TrustResult, Option<Signer>, String) {
    let sig = match DetachedSignature::from_armor_single(armored) {
        Ok((s, _)) => s.signature,
        Err(e) => {
            return (
                TrustResult::BadSignature,
                None,
                format!("unreadable OpenPGP signature: {e}"),
            );
        }
    };
    let found = keys.iter().find_map(|k| {
        if issued_by(&sig, &k.primary_key) {
            return Some((k, Issuer::Primary));
        }
        k.public_subkeys
            .iter()
            .find(|s| issued_by(&sig, &s.key))
            .map(|s| (k, Issuer::Subkey(s)))
    });
    let Some((key, issuer)) = found else {
        let named = sig
            .issuer_fingerprint()
            .first()
            .map(|f| format!("{f:X}"))
            .or_else(|| sig.issuer_key_id().first().map(|k| hex_of(k.as_ref())))
            .unwrap_or_else(|| "no issuer".into());
        return (
            TrustResult::UnknownKey,
            Some(Signer {
                principal: signed.email.to_string(),
                key_type: "openpgp".into(),
                fingerprint: named,
            }),
            "the key is not among the OpenPGP keys given".into(),
        );
    };
    let signer = Signer {
        principal: signed.email.to_string(),
        key_type: format!("openpgp-{}", algorithm_name(key)),
        fingerprint: format!("{:X}", key.primary_key.fingerprint()),
    };
    let (result, detail) = pgp_verdict(key, &issuer, &sig, signed, now);
    (result, Some(signer), detail)
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn algorithm_name(key: &SignedPublicKey) -> String {
    format!("{:?}", key.primary_key.algorithm()).to_ascii_lowercase()
}

fn pgp_verdict(
    key: &SignedPublicKey,
    issuer: &Issuer<'_>,
    sig: &PgpSignature,
    signed: &Signed<'_>,
    now: i64,
) -> (TrustResult, String) {
    if !matches!(sig.typ(), Some(SignatureType::Binary | SignatureType::Text)) {
        return (
            TrustResult::BadSignature,
            "not a signature over data".into(),
        );
    }
    let verified = match issuer {
        Issuer::Primary => sig.verify(&key.primary_key, signed.payload),
        Issuer::Subkey(s) => sig.verify(&s.key, signed.payload),
    };
    if let Err(e) = verified {
        return (TrustResult::BadSignature, e.to_string());
    }
    if let Some(expires) = sig.signature_expiration_time().filter(|d| d.as_secs() != 0)
        && let Some(created) = sig.created()
        && i64::from(created.as_secs()) + i64::from(expires.as_secs()) <= now
    {
        return (
            TrustResult::BadSignature,
            "the signature has expired".into(),
        );
    }
    let primary = &key.primary_key;
    if key
        .details
        .revocation_signatures
        .iter()
        .any(|r| r.verify_key(primary).is_ok())
    {
        return (TrustResult::RevokedKey, "the primary key is revoked".into());
    }
    let Some(self_sig) = newest_self_signature(key) else {
        return (
            TrustResult::BadSignature,
            "the key has no valid self-signature".into(),
        );
    };
    if expired(primary.created_at().as_secs(), self_sig, now) {
        return (
            TrustResult::ExpiredKey,
            "the primary key has expired".into(),
        );
    }
    let flags_sig = match issuer {
        Issuer::Primary => self_sig,
        Issuer::Subkey(s) => match subkey_binding(key, s) {
            Err(verdict) => return verdict,
            Ok(binding) => {
                if expired(s.key.created_at().as_secs(), binding, now) {
                    return (
                        TrustResult::ExpiredKey,
                        "the signing subkey has expired".into(),
                    );
                }
                binding
            }
        },
    };
    let flags = flags_sig.key_flags();
    let any_flag = flags.certify()
        || flags.sign()
        || flags.encrypt_comms()
        || flags.encrypt_storage()
        || flags.authentication();
    if any_flag && !flags.sign() {
        return (
            TrustResult::NotASigningKey,
            "the key that signed has no signing flag".into(),
        );
    }
    if !user_emails(key)
        .iter()
        .any(|e| e.eq_ignore_ascii_case(signed.email))
    {
        return (
            TrustResult::PrincipalMismatch,
            format!("no user ID of the key is <{}>", signed.email),
        );
    }
    (TrustResult::Good, String::new())
}

fn expired(created: u32, sig: &PgpSignature, now: i64) -> bool {
    sig.key_expiration_time()
        .filter(|d| d.as_secs() != 0)
        .is_some_and(|d| i64::from(created) + i64::from(d.as_secs()) <= now)
}

/// The newest self-certification of a user ID (or direct-key signature)
/// that verifies: it carries the primary key's flags and expiry.
fn newest_self_signature(key: &SignedPublicKey) -> Option<&PgpSignature> {
    let primary = &key.primary_key;
    let on_users = key.details.users.iter().flat_map(|u| {
        u.signatures.iter().filter(move |s| {
            s.verify_certification(primary, pgp::types::Tag::UserId, &u.id)
                .is_ok()
        })
    });
    let direct = key
        .details
        .direct_signatures
        .iter()
        .filter(|s| s.verify_key(primary).is_ok());
    on_users
        .chain(direct)
        .max_by_key(|s| s.created().map(|c| c.as_secs()).unwrap_or(0))
}

/// The subkey's newest valid binding (with its back-signature, as gpg
/// requires of signing subkeys), or why there is none.
fn subkey_binding<'k>(
    key: &'k SignedPublicKey,
    sub: &'k pgp::composed::SignedPublicSubKey,
) -> Result<&'k PgpSignature, (TrustResult, String)> {
    let primary = &key.primary_key;
    let valid: Vec<&PgpSignature> = sub
        .signatures
        .iter()
        .filter(|s| s.verify_subkey_binding(primary, &sub.key).is_ok())
        .collect();
    if valid
        .iter()
        .any(|s| s.typ() == Some(SignatureType::SubkeyRevocation))
    {
        return Err((
            TrustResult::RevokedKey,
            "the signing subkey is revoked".into(),
        ));
    }
    let binding = valid
        .into_iter()
        .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding))
        .max_by_key(|s| s.created().map(|c| c.as_secs()).unwrap_or(0))
        .ok_or((
            TrustResult::BadSignature,
            "the subkey is not bound to its primary key".into(),
        ))?;
    let backed = binding
        .embedded_signature()
        .is_some_and(|b| b.verify_primary_key_binding(&sub.key, primary).is_ok());
    if !backed {
        return Err((
            TrustResult::NotASigningKey,
            "the subkey carries no back-signature, so it may not sign".into(),
        ));
    }
    Ok(binding)
}

/// The emails of the key's user IDs that carry a valid self-signature.
fn user_emails(key: &SignedPublicKey) -> Vec<String> {
    let primary = &key.primary_key;
    key.details
        .users
        .iter()
        .filter(|u| {
            u.signatures.iter().any(|s| {
                s.verify_certification(primary, pgp::types::Tag::UserId, &u.id)
                    .is_ok()
            })
        })
        .filter_map(|u| u.id.as_str().map(email_of))
        .collect()
}

/// The address inside `Name <address>`, or the whole user ID.
fn email_of(user_id: &str) -> String {
    match (user_id.rfind('<'), user_id.rfind('>')) {
        (Some(a), Some(b)) if a < b => user_id[a + 1..b].to_string(),
        _ => user_id.trim().to_string(),
    }
}

/// One commit or tag object, read for verification.
#[derive(Debug)]
pub struct Object {
    pub id: String,
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
        id: id.to_string(),
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
        id: id.to_string(),
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
