//! Where desired state comes from: a Git ref.

/// What to fetch: a branch or tag (whatever commit it names now), or one
/// pinned commit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GitRef {
    Branch(String),
    Tag(String),
    /// A full commit id.
    Commit(String),
}

impl GitRef {
    /// A pinned commit, when `id` is a full commit id (40 hex digits),
    /// lowercased as Git names it.
    pub fn commit(id: &str) -> Option<GitRef> {
        (id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| GitRef::Commit(id.to_ascii_lowercase()))
    }
}

impl std::fmt::Display for GitRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitRef::Branch(b) => write!(f, "branch {b}"),
            GitRef::Tag(t) => write!(f, "tag {t}"),
            GitRef::Commit(c) => write!(f, "commit {c}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_full_commit_id_pins_a_commit() {
        let full = "0123456789ABCDEF0123456789abcdef01234567";
        assert_eq!(
            GitRef::commit(full),
            Some(GitRef::Commit(full.to_ascii_lowercase()))
        );
        for bad in [
            "0123456",
            "",
            "g123456789abcdef0123456789abcdef01234567",
            &format!("{full}0"),
        ] {
            assert_eq!(GitRef::commit(bad), None, "{bad}");
        }
    }
}
