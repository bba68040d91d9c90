//! Witnesses: a second party's cosignature on the log's checkpoints.
//!
//! Why: the controller's key signs every checkpoint, so whoever holds that
//! key (or the controller's disk) can rewrite the history and sign the
//! rewrite. A witness, run by a security team on its own machine, keeps the
//! last checkpoint it saw and cosigns a new one only once it has proved
//! from the published tiles that the new tree extends the old. A rewrite
//! then fails at the witness, and `audit verify --witness-key` fails on
//! any log that does not extend what the witness cosigned.
//!
//! The format is C2SP `tlog-cosignature` v1 with Ed25519: a note signature
//! line whose key id is `SHA-256(name || "\n" || 0x04 || public key)[:4]`
//! and whose signature is an 8-byte big-endian timestamp and the Ed25519
//! signature of `"cosignature/v1\ntime <timestamp>\n"` followed by the
//! checkpoint's text. Witness keys are encoded like note keys, with
//! algorithm byte 0x04: `PRIVATE+KEY+<name>+<id>+<base64(0x04 || seed)>`
//! and `<name>+<id>+<base64(0x04 || public key)>`.

use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use signed_note::{Note, Signer, Verifier, VerifierList};
use tlog_tiles::Checkpoint;

use crate::StoreError;
use crate::tiles::{Source, check_consistency};
use crate::tlog::{decode_key, encode_keys, open_checkpoint};

const ALG_COSIGNATURE: u8 = 4;

fn bad(message: impl Into<String>) -> StoreError {
    StoreError::Log(message.into())
}

fn message(time: u64, text: &[u8]) -> Vec<u8> {
    [format!("cosignature/v1\ntime {time}\n").as_bytes(), text].concat()
}

/// A witness signing key and its verifier key, from a 32-byte seed.
pub fn witness_keys(name: &str, seed: [u8; 32]) -> (String, String) {
    encode_keys(name, seed, ALG_COSIGNATURE)
}

/// `name`, key id and key bytes of an encoded witness key, checked.
fn decode(key: &str, private: bool) -> Result<(String, u32, [u8; 32]), StoreError> {
    match decode_key(key, private) {
        Some((name, id, ALG_COSIGNATURE, bytes)) => Ok((name, id, bytes)),
        Some(_) => Err(bad(
            "not a witness key: its algorithm is not cosignature/v1 (0x04); hint: a witness key comes from `airgate key generate --type witness`",
        )),
        None => Err(bad("not a witness key (`key generate --type witness`)")),
    }
}

/// Signs cosignatures at a fixed time.
pub struct Cosigner {
    name: String,
    id: u32,
    key: SigningKey,
    /// The verifier key, `name+id+base64(0x04 || public key)`.
    vkey: String,
    time: u64,
}

impl std::fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cosigner({}+{:08x})", self.name, self.id)
    }
}

impl Cosigner {
    /// A cosigner from a witness signing key, signing at `time` (seconds
    /// since the epoch).
    pub fn new(skey: &str, time: u64) -> Result<Cosigner, StoreError> {
        let (name, _, seed) = decode(skey, true)?;
        let vkey = witness_keys(&name, seed).1;
        let (_, id, _) = decode(&vkey, false)?;
        Ok(Cosigner {
            name,
            id,
            key: SigningKey::from_bytes(&seed),
            vkey,
            time,
        })
    }

    /// The verifier key of this cosigner.
    pub fn vkey(&self) -> &str {
        &self.vkey
    }
}
impl Signer for Cosigner {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        let sig = self.key.sign(&message(self.time, msg));
        Ok([&self.time.to_be_bytes()[..], &sig.to_bytes()[..]].concat())
    }
}

/// Checks cosignatures of one witness.
pub struct CosignatureVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl std::fmt::Debug for CosignatureVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CosignatureVerifier({}+{:08x})", self.name, self.id)
    }
}

impl CosignatureVerifier {
    pub fn new(vkey: &str) -> Result<CosignatureVerifier, StoreError> {
        let (name, id, bytes) = decode(vkey, false)?;
        let public = [&[ALG_COSIGNATURE][..], &bytes[..]].concat();
        if signed_note::key_id(&name, &public) != id {
            return Err(bad("a witness key's id does not match its name and key"));
        }
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad("not an Ed25519 key"))?;
        Ok(CosignatureVerifier { name, id, key })
    }

    /// Where the cosigned checkpoint of this witness is published:
    /// `witness/<key id>`.
    pub fn path(&self) -> String {
        format!("witness/{:08x}", self.id)
    }
}

impl Verifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some((time, sig)) = sig.split_first_chunk::<8>() else {
            return false;
        };
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
            return false;
        };
        let time = u64::from_be_bytes(*time);
        time < 1 << 63 && self.key.verify(&message(time, msg), &sig).is_ok()
    }
}

/// The checkpoint `text` carries a valid cosignature of the witness
/// `vkey` (and, being a checkpoint, the log's signature by `log_vkey`).
pub fn check_cosigned(text: &[u8], vkey: &str, log_vkey: &str) -> Result<Checkpoint, StoreError> {
    let checkpoint = open_checkpoint(text, log_vkey)?;
    let verifier = CosignatureVerifier::new(vkey)?;
    let name = verifier.name.clone();
    let note = Note::from_bytes(text).map_err(|e| bad(format!("cosigned checkpoint: {e}")))?;
    note.verify(&VerifierList::new(vec![Box::new(verifier)]))
        .map_err(|e| bad(format!("no valid cosignature of witness {name}: {e}")))?;
    Ok(checkpoint)
}

/// One witness step: checks the log's signature on `new`, proves from the
/// tiles at `source` that it extends the last checkpoint the witness
/// cosigned (`state`, none the first time, then only the same log), and
/// returns `new` with the witness's cosignature added: the next state.
pub fn witness(
    source: &dyn Source,
    state: Option<&[u8]>,
    new: &[u8],
    log_vkey: &str,
    cosigner: &Cosigner,
) -> Result<Vec<u8>, StoreError> {
    let checkpoint = open_checkpoint(new, log_vkey)?;
    if let Some(old) = state {
        let old = check_cosigned(old, cosigner.vkey(), log_vkey)
            .map_err(|e| bad(format!("the witness's state: {e}")))?;
        if old.origin() != checkpoint.origin() {
            return Err(bad(format!(
                "the witness's state is of log {}, this checkpoint of {}",
                old.origin(),
                checkpoint.origin()
            )));
        }
        check_consistency(source, &old, &checkpoint)?;
    }
    let mut note = Note::from_bytes(new).map_err(|e| bad(format!("checkpoint: {e}")))?;
    note.add_sigs(&[cosigner])
        .map_err(|e| bad(format!("cosigning: {e}")))?;
    Ok(note.to_bytes())
}
