//! Commit trust: who may sign what the controller applies, and what a
//! range of commits must carry before any of it reaches the cluster.
//!
//! In a closed perimeter whoever can push to the Git server can change
//! production; signatures and a two-person rule are how security teams
//! answer that. This module holds the rules, free of I/O and of
//! cryptography: git's SSH allowed-signers format ([`AllowedSigners`]),
//! commit trailers ([`trailers`]), and the verdict over a verified range
//! ([`judge`]). Checking a signature's mathematics is the Git adapter's
//! job (`airgate_git::trust`); it reports each commit as a [`CommitTrust`].
//!
//! Guarantees:
//! - a principal matches only the committer's (or tagger's) email, with
//!   the patterns and negations `ssh-keygen` accepts; a key listed for
//!   other people does not vouch for this one;
//! - `namespaces`, `valid-after` and `valid-before` are honoured as git
//!   does (against the commit's time); `cert-authority` lines are refused
//!   with a message, never silently skipped;
//! - [`judge`] refuses unless every commit of the range is [`TrustResult::Good`]
//!   (in history mode), the applied commit is signed by an allowed signer,
//!   enough distinct signers signed the range, and the applied commit
//!   carries every required trailer.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Which commits a sync verifies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// Every commit between the last applied revision and the new one.
    #[default]
    History,
    /// Only the commit applied.
    Head,
}

/// What an App (or `airgate verify-commits`) requires of a revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustPolicy {
    pub mode: VerifyMode,
    /// At least this many distinct signers over the range (1 when unset).
    pub min_distinct_signers: u32,
    /// Trailers the applied commit's message must carry.
    pub require_trailers: Vec<String>,
}

/// The trailers every record keeps, besides the required ones.
pub const RECORDED_TRAILERS: &[&str] = &["Ticket", "Reviewed-by", "Approved-by", "Change-Id"];

/// Why one commit's signature was or was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrustResult {
    /// A valid signature by an allowed signer whose principal is the committer.
    Good,
    /// No signature at all.
    Unsigned,
    /// The signature does not verify over the commit (tampered, or garbage).
    BadSignature,
    /// The key is in no allowed-signers line or OpenPGP key given.
    UnknownKey,
    /// The key is listed, but for other principals than the committer's email.
    PrincipalMismatch,
    /// An SSH signature made for another namespace than `git`, or a line whose `namespaces` exclude `git`.
    WrongNamespace,
    /// The commit's time is outside the line's `valid-after`/`valid-before`.
    OutsideValidity,
    /// The OpenPGP key (or subkey) has expired.
    ExpiredKey,
    /// The OpenPGP key (or subkey) is revoked.
    RevokedKey,
    /// The OpenPGP (sub)key that signed may not sign.
    NotASigningKey,
    /// A signature format airgate does not read (X.509, say).
    Unsupported,
}

impl TrustResult {
    pub fn as_str(self) -> &'static str {
        match self {
            TrustResult::Good => "good",
            TrustResult::Unsigned => "unsigned",
            TrustResult::BadSignature => "bad-signature",
            TrustResult::UnknownKey => "unknown-key",
            TrustResult::PrincipalMismatch => "principal-mismatch",
            TrustResult::WrongNamespace => "wrong-namespace",
            TrustResult::OutsideValidity => "outside-validity",
            TrustResult::ExpiredKey => "expired-key",
            TrustResult::RevokedKey => "revoked-key",
            TrustResult::NotASigningKey => "not-a-signing-key",
            TrustResult::Unsupported => "unsupported",
        }
    }
}

impl fmt::Display for TrustResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who signed: the principal (an email), the key's type and fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signer {
    pub principal: String,
    /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, `openpgp-rsa`, ...
    #[serde(rename = "keyType")]
    pub key_type: String,
    /// `SHA256:...` for SSH keys; the hex fingerprint for OpenPGP keys.
    pub fingerprint: String,
}

/// One commit (or annotated tag) as verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitTrust {
    pub commit: String,
    /// Set when the object verified is an annotated tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub result: TrustResult,
    /// Who signed, as far as the signature says (also when it is refused:
    /// the key's fingerprint names who to ask).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<Signer>,
    /// The committer's (tagger's) email, which the principal must match.
    pub committer: String,
    /// What else the checker said, for the message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The recorded trailers ([`RECORDED_TRAILERS`] and the required ones).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub trailers: BTreeMap<String, Vec<String>>,
}

impl CommitTrust {
    fn describe(&self) -> String {
        let what = match &self.tag {
            Some(t) => format!("tag {t} (commit {})", short(&self.commit)),
            None => format!("commit {}", short(&self.commit)),
        };
        let who = match &self.signer {
            Some(s) => format!(" signed with {} key {}", s.key_type, s.fingerprint),
            None => String::new(),
        };
        let detail = if self.detail.is_empty() {
            String::new()
        } else {
            format!(": {}", self.detail)
        };
        format!("{what} by {}{who}: {}{detail}", self.committer, self.result)
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// What [`judge`] accepted: the distinct signers over the range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub signers: BTreeSet<String>,
}

/// Why a revision is refused; the message names each commit and what is missing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct Refusal {
    pub problems: Vec<String>,
}

/// The verdict over a verified range: `head` is the applied commit (or the
/// tag naming it), `range` every other commit verified (empty in head mode).
pub fn judge(
    policy: &TrustPolicy,
    head: &CommitTrust,
    range: &[CommitTrust],
) -> Result<Verdict, Refusal> {
    let mut problems = Vec::new();
    if head.result != TrustResult::Good {
        problems.push(head.describe());
    }
    if policy.mode == VerifyMode::History {
        for c in range.iter().filter(|c| c.result != TrustResult::Good) {
            problems.push(c.describe());
        }
    }
    let signers: BTreeSet<String> = std::iter::once(head)
        .chain(range)
        .filter(|c| c.result == TrustResult::Good)
        .filter_map(|c| c.signer.as_ref())
        .map(|s| s.principal.to_ascii_lowercase())
        .collect();
    let needed = policy.min_distinct_signers.max(1) as usize;
    if signers.len() < needed && head.result == TrustResult::Good {
        problems.push(format!(
            "{} distinct allowed signer(s) over the range ({}), {needed} needed",
            signers.len(),
            signers.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let missing: Vec<&str> = policy
        .require_trailers
        .iter()
        .filter(|t| !head.trailers.keys().any(|k| k.eq_ignore_ascii_case(t)))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "commit {} lacks the required trailer(s) {}",
            short(&head.commit),
            missing.join(", ")
        ));
    }
    if problems.is_empty() {
        Ok(Verdict { signers })
    } else {
        Err(Refusal { problems })
    }
}

/// The trailers of a commit message, as `git interpret-trailers --parse`
/// finds them: the last paragraph (not the subject), when every line of it
/// is `Token: value` (or continues the line before with whitespace).
/// Tokens keep their spelling; values are trimmed.
pub fn trailers(message: &str) -> Vec<(String, String)> {
    let body = message.trim_end();
    // A signature or patch divider ends the message for git.
    let body = body.split("\n---\n").next().unwrap_or(body);
    let paragraphs: Vec<&str> = body.split("\n\n").collect();
    if paragraphs.len() < 2 {
        return Vec::new();
    }
    let Some(last) = paragraphs.last() else {
        return Vec::new();
    };
    let mut found: Vec<(String, String)> = Vec::new();
    for line in last.lines().filter(|l| !l.starts_with('#')) {
        if line.starts_with([' ', '\t']) {
            match found.last_mut() {
                Some((_, v)) => {
                    v.push(' ');
                    v.push_str(line.trim());
                }
                None => return Vec::new(),
            }
            continue;
        }
        let Some((token, value)) = line.split_once(':') else {
            return Vec::new();
        };
        let token = token.trim_end();
        if token.is_empty()
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Vec::new();
        }
        found.push((token.to_string(), value.trim().to_string()));
    }
    found
}

/// The trailers a record keeps: [`RECORDED_TRAILERS`] and `required`.
pub fn recorded_trailers(message: &str, required: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut kept: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (token, value) in trailers(message) {
        let wanted = RECORDED_TRAILERS
            .iter()
            .map(|t| t.to_string())
            .chain(required.iter().cloned())
            .find(|t| t.eq_ignore_ascii_case(&token));
        if let Some(name) = wanted {
            kept.entry(name).or_default().push(value);
        }
    }
    kept
}

/// One line of an allowed-signers file (`ssh-keygen(1)`, ALLOWED SIGNERS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedSigner {
    /// 1-based, for messages.
    pub line: usize,
    /// Comma-separated patterns (`*`, `?`, `!` negation).
    pub principals: String,
    /// `namespaces="..."`: patterns; `None` allows every namespace.
    pub namespaces: Option<String>,
    /// Seconds since the epoch (UTC).
    pub valid_after: Option<i64>,
    pub valid_before: Option<i64>,
    pub key_type: String,
    /// The key in SSH wire encoding (the base64 field, decoded).
    pub key: Vec<u8>,
}

/// A parsed allowed-signers file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedSigners {
    pub lines: Vec<AllowedSigner>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("allowed_signers line {line}: {message}")]
pub struct SignersError {
    pub line: usize,
    pub message: String,
}

/// Key types an allowed-signers line may name.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Why a listed key does not vouch for a signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineMismatch {
    Principal,
    Namespace,
    Validity,
}

impl AllowedSigners {
    pub fn parse(text: &str) -> Result<AllowedSigners, SignersError> {
        let mut lines = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            lines.push(parse_line(i + 1, line)?);
        }
        Ok(AllowedSigners { lines })
    }

    /// Whether any line lists `key` (SSH wire encoding).
    pub fn lists(&self, key: &[u8]) -> bool {
        self.lines.iter().any(|l| l.key == key)
    }

    /// The principal `email` gets for a signature by `key` in `namespace`
    /// at `time`; otherwise why the listed lines refuse it (the mismatch
    /// of the line that got furthest), or `None` if no line lists the key.
    pub fn principal_for(
        &self,
        key: &[u8],
        email: &str,
        namespace: &str,
        time: i64,
    ) -> Option<Result<String, LineMismatch>> {
        let mut best: Option<LineMismatch> = None;
        for l in self.lines.iter().filter(|l| l.key == key) {
            let why = if !match_list(email, &l.principals) {
                LineMismatch::Principal
            } else if l
                .namespaces
                .as_deref()
                .is_some_and(|n| !match_list(namespace, n))
            {
                LineMismatch::Namespace
            } else if l.valid_after.is_some_and(|t| time < t)
                || l.valid_before.is_some_and(|t| time > t)
            {
                LineMismatch::Validity
            } else {
                return Some(Ok(email.to_string()));
            };
            best = Some(match best {
                Some(b) if rank(b) >= rank(why) => b,
                _ => why,
            });
        }
        best.map(Err)
    }
}

fn rank(m: LineMismatch) -> u8 {
    match m {
        LineMismatch::Principal => 0,
        LineMismatch::Namespace => 1,
        LineMismatch::Validity => 2,
    }
}

/// Splits off the first field of `s`: up to whitespace, but a `"..."`
/// keeps its whitespace (ssh's `strdelimw` rules, as used for principals
/// and options).
fn field(s: &str) -> (&str, &str) {
    let bytes = s.as_bytes();
    let mut quoted = false;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b' ' | b'\t' if !quoted => return (&s[..i], s[i..].trim_start()),
            _ => {}
        }
    }
    (s, "")
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

fn parse_line(line: usize, text: &str) -> Result<AllowedSigner, SignersError> {
    let fail = |message: String| SignersError { line, message };
    let (principals, rest) = field(text);
    let principals = unquote(principals).to_string();
    let (second, rest) = field(rest);
    // Options hold `name=value` pairs or the word cert-authority; anything
    // else in the second field is the key type.
    let is_options = second.contains('=') || second.to_ascii_lowercase().contains("cert-authority");
    let (options, key_type, rest) = if !is_options {
        ("", second, rest)
    } else {
        let (key_type, rest) = field(rest);
        (second, key_type, rest)
    };
    if !KEY_TYPES.contains(&key_type) {
        return Err(fail(format!(
            "'{}' is not a key type airgate reads (one of {})",
            crate::text::shown(key_type, 60),
            KEY_TYPES.join(", ")
        )));
    }
    let (blob, _comment) = field(rest);
    let key = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|e| fail(format!("the key is not base64: {e}")))?;
    let mut signer = AllowedSigner {
        line,
        principals,
        namespaces: None,
        valid_after: None,
        valid_before: None,
        key_type: key_type.to_string(),
        key,
    };
    for option in split_options(options) {
        let (name, value) = match option.split_once('=') {
            Some((n, v)) => (n.to_ascii_lowercase(), Some(unquote(v))),
            None => (option.to_ascii_lowercase(), None),
        };
        match (name.as_str(), value) {
            ("cert-authority", None) => {
                return Err(fail(
                    "cert-authority is not supported: airgate verifies signatures by plain keys\nhint: list each signer's own key".into(),
                ));
            }
            ("namespaces", Some(v)) => signer.namespaces = Some(v.to_string()),
            ("valid-after", Some(v)) => signer.valid_after = Some(parse_time(v).map_err(fail)?),
            ("valid-before", Some(v)) => signer.valid_before = Some(parse_time(v).map_err(fail)?),
            _ => {
                return Err(fail(format!(
                    "unknown option '{}'",
                    crate::text::shown(option, 60)
                )));
            }
        }
    }
    Ok(signer)
}

fn split_options(options: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, b) in options.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                out.push(&options[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < options.len() {
        out.push(&options[start..]);
    }
    out.into_iter().filter(|o| !o.is_empty()).collect()
}

/// `YYYYMMDD[HHMM[SS]][Z]`, as seconds since the epoch. Without `Z`
/// ssh-keygen reads the system's local time; airgate reads UTC (the
/// controller's image has no time zone), so write `Z` to mean the same to both.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let digits = s.strip_suffix(['Z', 'z']).unwrap_or(s);
    let bad = || {
        format!(
            "'{}' is not a time (YYYYMMDD[HHMM[SS]][Z])",
            crate::text::shown(s, 40)
        )
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) || ![8, 12, 14].contains(&digits.len()) {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> i64 {
        digits.get(r).and_then(|d| d.parse().ok()).unwrap_or(0)
    };
    let (y, m, d) = (num(0..4), num(4..6), num(6..8));
    let (hh, mm, ss) = (num(8..10), num(10..12), num(12..14));
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return Err(bad());
    }
    Ok(days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// ssh's `match_pattern_list`: comma-separated patterns, `!` negates; a
/// negated match refuses outright, else any positive match accepts.
pub fn match_list(s: &str, patterns: &str) -> bool {
    let mut matched = false;
    for p in patterns.split(',') {
        let (negated, p) = match p.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, p),
        };
        if glob(s.as_bytes(), p.as_bytes()) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// `*` and `?` wildcards, byte for byte (ssh's `match_pattern`).
fn glob(s: &[u8], p: &[u8]) -> bool {
    let (mut si, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            si += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests;
