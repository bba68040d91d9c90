//! Image references, parsed and normalised the way container runtimes do it.
//!
//! A manifest says `nginx`; containerd pulls `docker.io/library/nginx:latest`.
//! airgate must agree with the runtime on what a reference means, or it would
//! carry one image and the node would ask for another. [`ImageRef::parse`]
//! applies the same rules as Docker's `ParseNormalizedNamed`: a first path
//! component with a `.` or `:`, or `localhost`, is a registry; otherwise the
//! registry is `docker.io`, and a one-component Docker Hub path gets
//! `library/`. A reference with neither tag nor digest gets `:latest`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;

/// The registry Docker Hub references normalise to.
pub const DOCKER_HUB: &str = "docker.io";

/// A normalised image reference: `registry/repository[:tag][@digest]`.
///
/// Guarantees: `registry` is a valid `host[:port]`; `repository` is one or
/// more lowercase path components; at least one of `tag` and `digest` is set.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "'{}' is not an image reference: {}",
    crate::text::shown(.input, 200),
    crate::text::shown(.reason, 300)
)]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

impl ImageRef {
    /// Parses and normalises `input` (see the module documentation).
    pub fn parse(input: &str) -> Result<ImageRef, ReferenceError> {
        let fail = |reason: &str| ReferenceError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(fail("it is empty"));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(fail("it contains white space"));
        }
        if input.len() == 64
            && input
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(fail(
                "a 64-character hexadecimal string is an image ID, not a name",
            ));
        }
        let (name_tag, digest) = match input.split_once('@') {
            Some((n, d)) => (
                n,
                Some(d.parse::<Digest>().map_err(|e| fail(&e.to_string()))?),
            ),
            None => (input, None),
        };
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_tag[..last_slash + i],
                Some(&name_tag[last_slash + i + 1..]),
            ),
            None => (name_tag, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag).map_err(|r| fail(&r))?;
        }
        let (registry, remainder) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.to_ascii_lowercase() != first =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        validate_registry(&registry).map_err(|r| fail(&r))?;
        let repository = if registry == DOCKER_HUB && !remainder.contains('/') {
            format!("library/{remainder}")
        } else {
            remainder
        };
        validate_repository(&repository).map_err(|r| fail(&r))?;
        if registry.len() + 1 + repository.len() > 255 {
            return Err(fail("the name is longer than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `docker.io`, `quay.io`, `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// `library/nginx`: the path inside the registry.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn manifest_reference(&self) -> &str {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.as_str(),
            (None, Some(t)) => t,
            (None, None) => "latest",
        }
    }

    /// The same image pinned to `digest`, keeping the tag for readers.
    pub fn with_digest(&self, digest: Digest) -> ImageRef {
        ImageRef {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same repository and tag (and digest) in another registry and
    /// repository.
    pub fn moved_to(&self, registry: &str, repository: &str) -> Result<ImageRef, ReferenceError> {
        let moved = ImageRef {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: self.tag.clone(),
            digest: self.digest.clone(),
        };
        // Re-parse to hold the same guarantees as any other reference.
        ImageRef::parse(&moved.to_string())
    }
}

fn validate_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag '{tag}' must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
        ))
    }
}

fn validate_registry(registry: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return Err(format!("registry '{registry}' has an unclosed '['"));
        };
        if v6.is_empty() || !v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(format!("registry '{registry}' has an invalid IPv6 address"));
        }
        (None, after.strip_prefix(':'))
    } else {
        match registry.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if host.is_empty() || !host.split('.').all(label_ok) {
            return Err(format!(
                "registry host '{host}' is not a valid host name or address"
            ));
        }
    }
    if let Some(port) = port
        && (port.is_empty()
            || !port.chars().all(|c| c.is_ascii_digit())
            || port.parse::<u16>().is_err())
    {
        return Err(format!("registry port '{port}' is not a port number"));
    }
    Ok(())
}

fn validate_repository(repository: &str) -> Result<(), String> {
    for component in repository.split('/') {
        if component.is_empty() {
            return Err("the repository path has an empty component".to_string());
        }
        if component.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!(
                "repository component '{component}' must be lowercase"
            ));
        }
        if !valid_component(component) {
            return Err(format!(
                "repository component '{component}' must be lowercase letters and digits, \
                 separated by '.', '_', '__' or dashes"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !b.first().copied().is_some_and(alnum) || !b.last().copied().is_some_and(alnum) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

impl Serialize for ImageRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ImageRef::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        match ImageRef::parse(s) {
            Ok(r) => r.to_string(),
            Err(e) => format!("ERR {e}"),
        }
    }

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// The cases of `github.com/distribution/reference`'s own tests
    /// (`normalize_test.go`, `reference_test.go`), as `ParseNormalizedNamed`
    /// decides them: the grammar containerd and Docker use. `Some((name,
    /// tag, digest))` for a reference it accepts, `None` for one it refuses.
    /// One deliberate difference: digests other than sha256 are refused
    /// (airgate pins by sha256 only), marked below.
    #[test]
    fn references_parse_as_the_runtimes_reference_grammar_parses_them() {
        let f64 = "f".repeat(64);
        let hex64 = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";
        let long_ns = format!(
            "{}/docker",
            "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_".repeat(4)
        );
        let accepted: Vec<(String, &str, Option<&str>)> = vec![
            ("docker/docker".into(), "docker.io/docker/docker", None),
            ("library/debian".into(), "docker.io/library/debian", None),
            ("debian".into(), "docker.io/library/debian", None),
            (
                "docker.io/docker/docker".into(),
                "docker.io/docker/docker",
                None,
            ),
            ("docker.io/debian".into(), "docker.io/library/debian", None),
            (
                "index.docker.io/docker/docker".into(),
                "docker.io/docker/docker",
                None,
            ),
            (
                "index.docker.io/debian".into(),
                "docker.io/library/debian",
                None,
            ),
            (
                "127.0.0.1:5000/docker/docker".into(),
                "127.0.0.1:5000/docker/docker",
                None,
            ),
            (
                "127.0.0.1:5000/debian".into(),
                "127.0.0.1:5000/debian",
                None,
            ),
            ("192.168.0.1".into(), "docker.io/library/192.168.0.1", None),
            (
                "192.168.0.1:80".into(),
                "docker.io/library/192.168.0.1",
                Some("80"),
            ),
            ("192.168.0.1:8/debian".into(), "192.168.0.1:8/debian", None),
            (
                "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev".into(),
                "docker.io/library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
                None,
            ),
            (
                "[fc00::1]:5000/docker".into(),
                "[fc00::1]:5000/docker",
                None,
            ),
            (
                "[fc00:1:2:3:4:5:6:7]:5000/library/debian".into(),
                "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
                None,
            ),
            (format!("docker.io/{hex64}"), "", None),
            ("Docker/docker".into(), "Docker/docker", None),
            ("DOCKER/docker".into(), "DOCKER/docker", None),
            (
                "docker-rules/docker".into(),
                "docker.io/docker-rules/docker",
                None,
            ),
            (
                "docker---rules/docker".into(),
                "docker.io/docker---rules/docker",
                None,
            ),
            ("d/docker".into(), "docker.io/d/docker", None),
            ("jess/t".into(), "docker.io/jess/t", None),
            ("dock__er/docker".into(), "docker.io/dock__er/docker", None),
            ("test_com/foo".into(), "docker.io/test_com/foo", None),
            ("test.com:8080/foo".into(), "test.com:8080/foo", None),
            ("test-com:8080/foo".into(), "test-com:8080/foo", None),
            (
                "xn--n3h.com:18080/foo".into(),
                "xn--n3h.com:18080/foo",
                None,
            ),
            (
                "docker.io/library/foo/bar".into(),
                "docker.io/library/foo/bar",
                None,
            ),
            (
                "test.com:tag".into(),
                "docker.io/library/test.com",
                Some("tag"),
            ),
            (
                "test.com:5000".into(),
                "docker.io/library/test.com",
                Some("5000"),
            ),
            ("test:5000/repo:tag".into(), "test:5000/repo", Some("tag")),
            (
                format!("test:5000/repo:tag@sha256:{f64}"),
                "test:5000/repo",
                Some("tag"),
            ),
            (
                "lowercase:Uppercase".into(),
                "docker.io/library/lowercase",
                Some("Uppercase"),
            ),
            (
                "sub-dom1.foo.com/bar/baz/quux:some-long-tag".into(),
                "sub-dom1.foo.com/bar/baz/quux",
                Some("some-long-tag"),
            ),
            (
                "b.gcr.io/test.example.com/my-app:test.example.com".into(),
                "b.gcr.io/test.example.com/my-app",
                Some("test.example.com"),
            ),
            (
                "xn--n3h.com/myimage:xn--n3h.com".into(),
                "xn--n3h.com/myimage",
                Some("xn--n3h.com"),
            ),
            (
                "foo_bar.com:8080".into(),
                "docker.io/library/foo_bar.com",
                Some("8080"),
            ),
            (
                "foo/foo_bar.com:8080".into(),
                "docker.io/foo/foo_bar.com",
                Some("8080"),
            ),
            ("192.168.1.1/repo".into(), "192.168.1.1/repo", None),
            (
                "192.168.1.1:5000/repo:5050".into(),
                "192.168.1.1:5000/repo",
                Some("5050"),
            ),
            ("[2001:db8::1]/repo".into(), "[2001:db8::1]/repo", None),
            (
                "[2001:db8:1:2:3:4:5:6]/repo:tag".into(),
                "[2001:db8:1:2:3:4:5:6]/repo",
                Some("tag"),
            ),
            (
                "[2001:db8::]:5000/repo".into(),
                "[2001:db8::]:5000/repo",
                None,
            ),
            ("[::1]:5000/repo".into(), "[::1]:5000/repo", None),
            (
                format!("busybox:latest@sha256:{f64}"),
                "docker.io/library/busybox",
                Some("latest"),
            ),
            ("dbcc1".into(), "docker.io/library/dbcc1", None),
            (format!("{}9", &hex64[..62]), "", None),
        ];
        for (input, name, tag) in &accepted {
            match ImageRef::parse(input) {
                Ok(r) => {
                    if !name.is_empty() {
                        assert_eq!(&r.name(), name, "{input}");
                    }
                    if tag.is_some() {
                        assert_eq!(r.tag(), *tag, "{input}");
                    }
                }
                Err(e) => panic!("{input} was refused: {e}"),
            }
        }
        let refused: Vec<String> = vec![
            "https://github.com/docker/docker".into(),
            "docker/Docker".into(),
            "-docker".into(),
            "-docker/docker".into(),
            "-docker.io/docker/docker".into(),
            "docker///docker".into(),
            "docker.io/docker/Docker".into(),
            "docker.io/docker///docker".into(),
            "[fc00::1]".into(),
            "[fc00::1]:5000".into(),
            "fc00::1:5000/debian".into(),
            "[fe80::1%eth0]:5000/debian".into(),
            "[2001:db8:3:4::192.0.2.33]:5000/debian".into(),
            hex64.into(),
            "docker-/docker".into(),
            "-docker-/docker".into(),
            "____/____".into(),
            "_docker/_docker".into(),
            "dock..er/docker".into(),
            "dock_.er/docker".into(),
            "dock-.er/docker".into(),
            "docker/".into(),
            long_ns,
            String::new(),
            ":justtag".into(),
            format!("@sha256:{f64}"),
            "repo@sha256:ffffffffffffffffffffffffffffffffff".into(),
            format!("validname@invaliddigest:{f64}"),
            "Uppercase:tag".into(),
            "test:5000/Uppercase/lowercase:tag".into(),
            format!("{}a:tag", "a/".repeat(128)),
            // The name is 255 characters as written, 265 once normalised.
            format!("{}a:tag-puts-this-over-max", "a/".repeat(127)),
            "aa/asdf$$^/aa".into(),
            "[2001:db8::1]".into(),
            "[2001:db8::1]:5000".into(),
            "[2001:db8::1]:tag".into(),
            "[fe80::1%@invalidzone]:5000/repo".into(),
            // Accepted by the runtimes, refused by airgate: sha256 only.
            format!(
                "xn--7o8h.com/myimage:xn--7o8h.com@sha512:{}",
                "f".repeat(128)
            ),
        ];
        for input in &refused {
            assert!(ImageRef::parse(input).is_err(), "{input} was accepted");
        }
    }

    #[test]
    fn normalises_like_container_runtimes() {
        assert_eq!(norm("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(norm("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(norm("bitnami/redis:7"), "docker.io/bitnami/redis:7");
        assert_eq!(
            norm("index.docker.io/library/nginx"),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(norm("docker.io/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(
            norm("quay.io/prometheus/node-exporter:v1.8.2"),
            "quay.io/prometheus/node-exporter:v1.8.2"
        );
        assert_eq!(
            norm("registry.k8s.io/pause:3.10"),
            "registry.k8s.io/pause:3.10"
        );
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(
            norm("localhost:5000/team/app:v1"),
            "localhost:5000/team/app:v1"
        );
        assert_eq!(norm("127.0.0.1:5000/app"), "127.0.0.1:5000/app:latest");
        assert_eq!(norm("[::1]:5000/app:v2"), "[::1]:5000/app:v2");
    }

    #[test]
    fn keeps_digests_and_adds_no_tag_to_them() {
        assert_eq!(
            norm(&format!("nginx@{D}")),
            format!("docker.io/library/nginx@{D}")
        );
        assert_eq!(
            norm(&format!("nginx:1.27@{D}")),
            format!("docker.io/library/nginx:1.27@{D}")
        );
        let r =
            ImageRef::parse(&format!("ghcr.io/org/app:v1@{D}")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.registry(), "ghcr.io");
        assert_eq!(r.repository(), "org/app");
        assert_eq!(r.tag(), Some("v1"));
    }

    #[test]
    fn registry_ports_are_not_mistaken_for_tags() {
        let r = ImageRef::parse("registry.internal:5000/app").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.registry(), "registry.internal:5000");
        assert_eq!(r.tag(), Some("latest"));
    }

    #[test]
    fn refuses_malformed_references_with_a_reason() {
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "nginx:-bad",
            "nginx@sha256:123",
            "docker.io/library//nginx",
            "nginx latest",
            "registry:99999/app",
            "app/../etc",
            "a..b/c",
        ] {
            let e = ImageRef::parse(bad);
            assert!(
                e.is_err(),
                "{bad:?} was accepted as {:?}",
                e.map(|r| r.to_string())
            );
        }
        let e = ImageRef::parse("docker.io/Library/nginx")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("lowercase"), "{e}");
    }

    #[test]
    fn moved_to_keeps_tag_and_digest() {
        let r = ImageRef::parse(&format!("nginx:1.27@{D}")).unwrap_or_else(|e| panic!("{e}"));
        let m = r
            .moved_to("127.0.0.1:5000", "mirror/library/nginx")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            m.to_string(),
            format!("127.0.0.1:5000/mirror/library/nginx:1.27@{D}")
        );
    }
}
