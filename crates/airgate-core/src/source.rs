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

impl std::fmt::Display for GitRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitRef::Branch(b) => write!(f, "branch {b}"),
            GitRef::Tag(t) => write!(f, "tag {t}"),
            GitRef::Commit(c) => write!(f, "commit {c}"),
        }
    }
}
