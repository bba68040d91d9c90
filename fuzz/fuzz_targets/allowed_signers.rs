//! Commit trust's text inputs: an allowed-signers file (from a ConfigMap a
//! tenant may be able to edit) and commit messages (from anyone who can
//! push). Never a panic; a parsed line's principal patterns match in time
//! linear-ish in their length (no backtracking blow-up on `*` runs).
#![no_main]

use airgate_core::trust::{AllowedSigners, match_list, trailers};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = trailers(text);
    if let Ok(signers) = AllowedSigners::parse(text) {
        for line in &signers.lines {
            let _ = signers.principal_for(&line.key, "a@corp.example", "git", 1_700_000_000);
            let _ = match_list(&line.principals, &line.principals);
        }
    }
    let mid = (0..=text.len() / 2)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let (left, right) = text.split_at(mid);
    let _ = match_list(left, right);
});
