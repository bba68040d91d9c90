//! OpenPGP signatures checked with rPGP (`pgp`): the issuing key (or
//! signing subkey) found among the keys given, then everything gpg would
//! hold against it: revocation, expiry, flags, the subkey's binding both
//! ways, and (stricter than gpg) a user ID that is the committer's email.

use airgate_core::trust::{Signer, TrustResult};
use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::{Signature as PgpSignature, SignatureType};
use pgp::types::KeyDetails;

use super::Signed;

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

pub(super) fn check_pgp(
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
    if let Err(refused) = key_may_sign(key, issuer, now) {
        return refused;
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

/// Whether the key (or subkey) that signed may sign now: not revoked, not
/// expired, with the signing flag (keys that state no flags at all may).
fn key_may_sign(
    key: &SignedPublicKey,
    issuer: &Issuer<'_>,
    now: i64,
) -> Result<(), (TrustResult, String)> {
    let primary = &key.primary_key;
    if key
        .details
        .revocation_signatures
        .iter()
        .any(|r| r.verify_key(primary).is_ok())
    {
        return Err((TrustResult::RevokedKey, "the primary key is revoked".into()));
    }
    let Some(self_sig) = newest_self_signature(key) else {
        return Err((
            TrustResult::BadSignature,
            "the key has no valid self-signature".into(),
        ));
    };
    if expired(primary.created_at().as_secs(), self_sig, now) {
        return Err((
            TrustResult::ExpiredKey,
            "the primary key has expired".into(),
        ));
    }
    let flags_sig = match issuer {
        Issuer::Primary => self_sig,
        Issuer::Subkey(s) => match subkey_binding(key, s) {
            Err(verdict) => return Err(verdict),
            Ok(binding) => {
                if expired(s.key.created_at().as_secs(), binding, now) {
                    return Err((
                        TrustResult::ExpiredKey,
                        "the signing subkey has expired".into(),
                    ));
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
        return Err((
            TrustResult::NotASigningKey,
            "the key that signed has no signing flag".into(),
        ));
    }
    Ok(())
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
