//! Untrusted text made safe to print.
//!
//! Why this exists: names, image strings, registry error bodies and YAML come
//! from whoever wrote the input. Printed raw, an escape sequence in an entry
//! name rewrites the reader's terminal, and a 1 MiB name makes a 1 MiB error.
//! Everything airgate quotes from input goes through [`shown`]; everything it
//! shortens goes through [`cut`], which never splits a character (cutting at
//! a byte offset once panicked on a registry's error body).

/// At most `max` characters of `s`, cut on a character boundary, with `…`
/// appended when something was cut.
pub fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_string(),
    }
}

/// `s` with control characters (terminal escapes, newlines, NUL, bidi
/// overrides) written as `\u{..}` escapes, then [`cut`] to `max` characters.
pub fn shown(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (count, c) in s.chars().enumerate() {
        if count == max {
            out.push('…');
            break;
        }
        if c.is_control() || is_bidi_control(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` with each of `secrets` (of 3 characters or more; the longest
/// first, so a value holding another goes whole) replaced by `<redacted>`:
/// for messages that may quote a Secret's value back.
pub fn redact(text: String, mut secrets: Vec<String>) -> String {
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text;
    for s in secrets.iter().filter(|s| s.chars().count() >= 3) {
        out = out.replace(s.as_str(), "<redacted>");
    }
    out
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_never_splits_a_character() {
        let body = format!("{}é{}", "a".repeat(299), "b".repeat(10));
        assert_eq!(cut(&body, 300), format!("{}é…", "a".repeat(299)));
        assert_eq!(cut("short", 300), "short");
        assert_eq!(cut("ééé", 2), "éé…");
        assert_eq!(cut("", 0), "");
    }

    #[test]
    fn redact_replaces_the_longest_secret_first_and_leaves_short_ones() {
        let secrets = vec!["pw".to_string(), "hunter".into(), "hunter2".into()];
        assert_eq!(
            redact("pw=hunter2 hunter".into(), secrets),
            "pw=<redacted> <redacted>"
        );
    }

    #[test]
    fn shown_escapes_terminal_controls_and_bounds_length() {
        assert_eq!(shown("a\x1b]0;x\x07b", 100), "a\\u{1b}]0;x\\u{7}b");
        assert_eq!(shown("line\nnext", 100), "line\\u{a}next");
        assert_eq!(shown("\u{202e}txt", 100), "\\u{202e}txt");
        assert_eq!(shown(&"n".repeat(1 << 20), 200).chars().count(), 201);
        assert_eq!(shown("plain-name_1.0", 200), "plain-name_1.0");
    }
}
