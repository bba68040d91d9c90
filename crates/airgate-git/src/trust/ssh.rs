//! SSH signatures (SSHSIG, as `git commit -S` with `gpg.format=ssh` makes
//! them) checked with `ssh-key`, and their keys looked up in git's
//! allowed-signers lines ([`AllowedSigners`]).

use airgate_core::trust::{AllowedSigners, LineMismatch, Signer, TrustResult};

use super::{NAMESPACE, Signed};

pub(super) fn check_ssh(
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
