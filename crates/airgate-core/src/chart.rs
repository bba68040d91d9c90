//! Helm charts as the controller meets them: where an App's chart comes
//! from (`spec.source.helm`), the key its renders are cached under, the
//! templates whose output is not a function of the chart and its values
//! (`lookup`, `rand*`), and Helm's hook annotations mapped onto the staged
//! apply.
//!
//! Why here: each is a decision over data a tenant controls (a chart
//! reference, a template's text, an annotation), made the same way
//! wherever it is made, and tested alone.

use crate::digest::Digest;
use crate::reference::ImageRef;

/// The media type of a chart's content layer in an OCI registry.
pub const CHART_LAYER: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
/// The content layer's media type in charts pushed by early Helm 3 releases.
pub const CHART_LAYER_LEGACY: &str = "application/tar+gzip";

/// The registry name charts packaged by airgate from a directory are
/// carried under (`airgate.local/charts/NAME:VERSION`): never reached,
/// since their content travels in the bundle.
pub const PACKAGED_REGISTRY: &str = "airgate.local";

/// A packaged chart (`.tgz`) as Helm's OCI artifact: its manifest, made
/// the same way every time from the same package and config (no
/// timestamp), so a lock can name its digest before the bundle is made.
pub fn oci_manifest(config: &[u8], package: &[u8], name: &str, version: &str) -> Vec<u8> {
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::oci::OCI_MANIFEST,
        "config": {
            "mediaType": crate::lock::HELM_CONFIG,
            "digest": Digest::of(config).to_string(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": CHART_LAYER,
            "digest": Digest::of(package).to_string(),
            "size": package.len(),
        }],
        "annotations": {
            "org.opencontainers.image.title": name,
            "org.opencontainers.image.version": version,
        },
    });
    // serde_json's maps are ordered: the same value gives the same bytes.
    manifest.to_string().into_bytes()
}

/// In a classic chart repository's `index.yaml` (as JSON), the package of
/// `name` at exactly `version`: its URL (relative ones joined to `repo`)
/// and, when the index gives it, its SHA-256.
pub fn index_entry(
    index: &serde_json::Value,
    repo: &str,
    name: &str,
    version: &str,
) -> Result<(String, Option<Digest>), String> {
    let versions = index["entries"][name]
        .as_array()
        .ok_or_else(|| format!("{repo}/index.yaml has no chart named '{name}'"))?;
    let entry = versions
        .iter()
        .find(|e| e["version"].as_str() == Some(version))
        .ok_or_else(|| {
            let known: Vec<&str> = versions
                .iter()
                .filter_map(|e| e["version"].as_str())
                .take(10)
                .collect();
            format!(
                "{repo}/index.yaml has no version {version} of '{name}' (it has {})",
                known.join(", ")
            )
        })?;
    let url = entry["urls"][0]
        .as_str()
        .ok_or_else(|| format!("{repo}/index.yaml: {name} {version} has no URL"))?;
    let url = if url.starts_with("https://") || url.starts_with("http://") {
        url.to_string()
    } else if url.contains("://") {
        return Err(format!(
            "{repo}/index.yaml: {name} {version} is at '{}', which is not HTTP(S)",
            crate::text::shown(url, 200)
        ));
    } else {
        format!(
            "{}/{}",
            repo.trim_end_matches('/'),
            url.trim_start_matches('/')
        )
    };
    let digest = match entry["digest"].as_str() {
        Some(hex) => Some(
            format!("sha256:{}", hex.trim_start_matches("sha256:"))
                .parse()
                .map_err(|_| {
                    format!("{repo}/index.yaml: {name} {version} has a digest that is not SHA-256")
                })?,
        ),
        None => None,
    };
    Ok((url, digest))
}

/// `https://HOST[:PORT]/PATH/NAME:VERSION`, a chart in a classic
/// repository: the repository URL, the name, the version, and the
/// reference it is carried under (`HOST[:PORT]/PATH/NAME:VERSION`).
pub fn repository_chart(text: &str) -> Result<(String, String, String, ImageRef), String> {
    let shown = crate::text::shown(text, 200);
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or_else(|| format!("'{shown}' is not an http(s):// chart URL"))?;
    let (repo_path, last) = rest
        .rsplit_once('/')
        .ok_or_else(|| format!("'{shown}' names no chart: use https://HOST/PATH/NAME:VERSION"))?;
    let (name, version) = last
        .split_once(':')
        .filter(|(n, v)| !n.is_empty() && !v.is_empty())
        .ok_or_else(|| format!("'{shown}' names no version: use https://HOST/PATH/NAME:VERSION"))?;
    let scheme = &text[..text.len() - rest.len()];
    let reference = ImageRef::parse(&format!("{repo_path}/{name}:{}", version.replace('+', "_")))
        .map_err(|e| format!("'{shown}': {e}"))?;
    Ok((
        format!("{scheme}{repo_path}"),
        name.to_string(),
        version.to_string(),
        reference,
    ))
}

/// The bundle file name a remote schema `url` is carried under:
/// `schemas/HOST/PATH`, each part reduced to the characters file names in
/// a bundle may have; `None` for a URL that leaves nothing to name.
pub fn schema_file(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let parts: Vec<String> = rest
        .split('/')
        .map(|p| {
            p.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "._-+".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        })
        .filter(|p| !p.is_empty() && p != "." && p != "..")
        .collect();
    (parts.len() >= 2).then(|| format!("schemas/{}", parts.join("/")))
}

/// Where an App's chart comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChartSource {
    /// `oci://REGISTRY/REPOSITORY`, at a version (a tag) or a digest: as an
    /// image reference, so the image policy applies to it unchanged.
    Registry(ImageRef),
    /// A directory of the App's Git source (its dependencies vendored
    /// under `charts/`).
    Git { path: String },
}

impl ChartSource {
    /// `spec.source.helm`'s `chart` (a string `oci://...` or `{path: DIR}`),
    /// `version` and `digest`, checked. Errors name the field.
    pub fn parse(
        chart: &serde_json::Value,
        version: Option<&str>,
        digest: Option<&str>,
    ) -> Result<ChartSource, String> {
        const F: &str = "spec.source.helm";
        if let Some(path) = chart.get("path").and_then(|p| p.as_str()) {
            if version.is_some() || digest.is_some() {
                return Err(format!(
                    "{F}: version and digest are for a chart in a registry; a chart in Git is at the revision synced"
                ));
            }
            return Ok(ChartSource::Git {
                path: git_path(path)?,
            });
        }
        let Some(text) = chart.as_str() else {
            return Err(format!(
                "{F}.chart must be oci://REGISTRY/REPOSITORY or {{path: DIR}} (a chart directory in the Git source)"
            ));
        };
        let Some(rest) = text.strip_prefix("oci://") else {
            return Err(format!(
                "{F}.chart '{}' is not oci://REGISTRY/REPOSITORY\nhint: carry the chart with `airgate bundle create --chart` and `bundle push`, then name it in the internal registry",
                crate::text::shown(text, 200)
            ));
        };
        let at = match (version, digest) {
            (Some(_), Some(_)) => {
                return Err(format!("{F}: give version or digest, not both"));
            }
            (None, None) => {
                return Err(format!(
                    "{F}: a chart in a registry needs a version (1.4.2) or a digest (sha256:...)"
                ));
            }
            (Some(v), None) => {
                if v.is_empty() || v.contains(['^', '~', '>', '<', '*', ' ', '|']) {
                    return Err(format!(
                        "{F}.version '{}' is not one exact version: ranges would make the chart deployed change without a commit",
                        crate::text::shown(v, 100)
                    ));
                }
                // Helm stores SemVer build metadata ('+') as '_' in tags.
                format!(":{}", v.replace('+', "_"))
            }
            (None, Some(d)) => {
                let d: Digest = d.parse().map_err(|_| {
                    format!(
                        "{F}.digest '{}' is not sha256:<64 hex>",
                        crate::text::shown(d, 100)
                    )
                })?;
                format!("@{d}")
            }
        };
        let reference = ImageRef::parse(&format!("{rest}{at}"))
            .map_err(|e| format!("{F}.chart '{}': {e}", crate::text::shown(text, 200)))?;
        if !rest.starts_with(reference.registry()) {
            return Err(format!(
                "{F}.chart '{}' names no registry host (oci://HOST[:PORT]/REPOSITORY)",
                crate::text::shown(text, 200)
            ));
        }
        Ok(ChartSource::Registry(reference))
    }

    /// For messages and records: `oci://HOST/REPO:VERSION` or the Git path.
    pub fn shown(&self) -> String {
        match self {
            ChartSource::Registry(r) => format!("oci://{r}"),
            ChartSource::Git { path } => format!("{path} (in the Git source)"),
        }
    }
}

/// A path in the repository: relative, plain names, no `..`.
fn git_path(path: &str) -> Result<String, String> {
    let clean = path.trim_matches('/');
    if path.starts_with('/')
        || clean.is_empty()
        || clean
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == ".." || p.contains('\\'))
    {
        return Err(format!(
            "spec.source.helm.chart.path '{}' must be a directory of the repository, relative, without '..'",
            crate::text::shown(path, 200)
        ));
    }
    Ok(clean.to_string())
}

/// What a render of a chart depends on; equal keys render equal objects
/// (except for what [`nondeterministic`] finds, which is reported).
#[derive(Clone, Debug, Default)]
pub struct RenderInputs<'a> {
    /// The chart: its manifest digest, or the digest of its files.
    pub chart: &'a str,
    /// Each values file's bytes, in order.
    pub values_files: Vec<&'a [u8]>,
    /// The inline values, as JSON.
    pub values: &'a [u8],
    pub release_name: &'a str,
    pub namespace: &'a str,
    pub kube_version: &'a str,
    pub api_versions: &'a [String],
}

impl RenderInputs<'_> {
    /// The cache key: a digest over every input, each framed by its length
    /// so no two different inputs run together into the same bytes.
    pub fn key(&self) -> Digest {
        let mut bytes = Vec::new();
        let mut put = |b: &[u8]| {
            bytes.extend_from_slice(&(b.len() as u64).to_be_bytes());
            bytes.extend_from_slice(b);
        };
        put(self.chart.as_bytes());
        put(&(self.values_files.len() as u64).to_be_bytes());
        for f in &self.values_files {
            put(f);
        }
        put(self.values);
        put(self.release_name.as_bytes());
        put(self.namespace.as_bytes());
        put(self.kube_version.as_bytes());
        for a in self.api_versions {
            put(a.as_bytes());
        }
        Digest::of(&bytes)
    }
}

/// Template functions whose output `helm template` cannot make a function
/// of the chart and its values: `lookup` renders nothing without a
/// cluster (argo-cd#5202), the random and key generators change with
/// every render, `now` with every second.
const NONDETERMINISTIC: [&str; 14] = [
    "lookup",
    "randAlphaNum",
    "randAlpha",
    "randNumeric",
    "randAscii",
    "randBytes",
    "randInt",
    "uuidv4",
    "genPrivateKey",
    "genCA",
    "genCAWithKey",
    "genSelfSignedCert",
    "genSelfSignedCertWithKey",
    "genSignedCert",
];

/// The functions of [`NONDETERMINISTIC`] (and `now`) a template's actions
/// call, in order of first use. Comments and string literals are skipped.
pub fn nondeterministic(template: &str) -> Vec<&'static str> {
    let mut found: Vec<&'static str> = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let action = &rest[start + 2..];
        let end = action.find("}}").unwrap_or(action.len());
        let body = &action[..end];
        rest = &action[end.min(action.len())..];
        let body = body.trim_start_matches('-').trim_start();
        if body.starts_with("/*") {
            continue;
        }
        for word in identifiers(body) {
            let hit = NONDETERMINISTIC
                .iter()
                .chain(["now"].iter())
                .find(|f| **f == word);
            if let Some(f) = hit
                && !found.contains(f)
            {
                found.push(f);
            }
        }
    }
    found
}

/// The bare identifiers of a template action: not in string literals, not
/// after a `.` or `$` (fields and variables named like a function).
fn identifiers(body: &str) -> Vec<&str> {
    let bytes = body.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' || b == b'`' {
            let close = b;
            i += 1;
            while i < bytes.len() && bytes[i] != close {
                i += if bytes[i] == b'\\' && close == b'"' {
                    2
                } else {
                    1
                };
            }
            i += 1;
            continue;
        }
        if b.is_ascii_alphabetic() || b == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let prev = start.checked_sub(1).map(|p| bytes[p]);
            if !matches!(prev, Some(b'.' | b'$')) {
                out.push(&body[start..i]);
            }
            continue;
        }
        i += 1;
    }
    out
}

/// When, relative to the staged apply, a Helm hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookStage {
    /// Not a hook: applied with the rest.
    None,
    /// `pre-install` / `pre-upgrade` (as the sync is an install or an
    /// upgrade): after the cluster definitions, before anything else.
    Before,
    /// `post-install` / `post-upgrade`: after the applied objects are healthy.
    After,
    /// A hook for another event (test, delete, rollback): not applied.
    Skipped,
}

/// What a hook's `helm.sh/hook-delete-policy` asks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookDelete {
    /// `before-hook-creation` (Helm's default when no policy is given).
    pub before_creation: bool,
    pub on_success: bool,
    pub on_failure: bool,
}

/// The hook annotation of an object (`helm.sh/hook`), for an install
/// (`install`: the App has applied nothing yet) or an upgrade.
pub fn hook_stage(hook: Option<&str>, install: bool) -> HookStage {
    let Some(hook) = hook else {
        return HookStage::None;
    };
    let events: Vec<&str> = hook.split(',').map(str::trim).collect();
    let (pre, post) = if install {
        ("pre-install", "post-install")
    } else {
        ("pre-upgrade", "post-upgrade")
    };
    if events.contains(&pre) {
        HookStage::Before
    } else if events.contains(&post) {
        HookStage::After
    } else {
        HookStage::Skipped
    }
}

/// `helm.sh/hook-delete-policy`, read.
pub fn hook_delete(policy: Option<&str>) -> HookDelete {
    let Some(policy) = policy else {
        return HookDelete {
            before_creation: true,
            ..HookDelete::default()
        };
    };
    let mut out = HookDelete::default();
    for p in policy.split(',').map(str::trim) {
        match p {
            "before-hook-creation" => out.before_creation = true,
            "hook-succeeded" => out.on_success = true,
            "hook-failed" => out.on_failure = true,
            _ => {}
        }
    }
    out
}

/// `helm.sh/hook-weight`: hooks run in ascending weight (then name).
pub fn hook_weight(weight: Option<&str>) -> i64 {
    weight.and_then(|w| w.trim().parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chart_sources_are_checked_field_by_field() {
        type Case<'a> = (
            serde_json::Value,
            Option<&'a str>,
            Option<&'a str>,
            Result<&'a str, &'a str>,
        );
        let table: [Case; 11] = [
            (
                json!("oci://registry.internal:5000/charts/shop"),
                Some("1.4.2"),
                None,
                Ok("oci://registry.internal:5000/charts/shop:1.4.2"),
            ),
            (
                json!("oci://r.internal/charts/shop"),
                Some("1.0.0+build.1"),
                None,
                Ok("oci://r.internal/charts/shop:1.0.0_build.1"),
            ),
            (
                json!("oci://r.internal/charts/shop"),
                None,
                Some("sha256:0000000000000000000000000000000000000000000000000000000000000000"),
                Ok(
                    "oci://r.internal/charts/shop@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                ),
            ),
            (
                json!({"path": "charts/shop/"}),
                None,
                None,
                Ok("charts/shop (in the Git source)"),
            ),
            (json!({"path": "../other"}), None, None, Err("without '..'")),
            (json!({"path": "/etc"}), None, None, Err("relative")),
            (
                json!({"path": "charts/shop"}),
                Some("1.0.0"),
                None,
                Err("a chart in Git is at the revision"),
            ),
            (
                json!("oci://r.internal/charts/shop"),
                None,
                None,
                Err("needs a version"),
            ),
            (
                json!("oci://r.internal/charts/shop"),
                Some("^1.2"),
                None,
                Err("not one exact version"),
            ),
            (
                json!("https://charts.example.com/shop"),
                Some("1.0.0"),
                None,
                Err("hint: carry the chart"),
            ),
            (
                json!("oci://shop"),
                Some("1.0.0"),
                None,
                Err("names no registry host"),
            ),
        ];
        for (chart, version, digest, want) in table {
            let got = ChartSource::parse(&chart, version, digest).map(|c| c.shown());
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w),
                (Err(g), Err(w)) => assert!(g.contains(w), "{chart}: {g}"),
                (g, w) => panic!("{chart}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn classic_repositories_are_read_by_name_and_exact_version() {
        let index = json!({"entries": {"shop": [
            {"version": "1.4.2", "urls": ["shop-1.4.2.tgz"], "digest": "ab".repeat(32)},
            {"version": "1.4.1", "urls": ["https://cdn.example.com/shop-1.4.1.tgz"]},
            {"version": "1.0.0", "urls": ["file:///etc/passwd"]},
        ]}});
        let repo = "https://charts.example.com/stable";
        let (url, digest) = index_entry(&index, repo, "shop", "1.4.2").unwrap_or_default();
        assert_eq!(url, "https://charts.example.com/stable/shop-1.4.2.tgz");
        assert_eq!(
            digest.map(|d| d.to_string()),
            Some(format!("sha256:{}", "ab".repeat(32)))
        );
        let (url, digest) = index_entry(&index, repo, "shop", "1.4.1").unwrap_or_default();
        assert_eq!(
            (url.as_str(), digest),
            ("https://cdn.example.com/shop-1.4.1.tgz", None)
        );
        for (name, version, want) in [
            ("shop", "1.0.0", "not HTTP(S)"),
            (
                "shop",
                "9.9.9",
                "has no version 9.9.9 of 'shop' (it has 1.4.2, 1.4.1, 1.0.0)",
            ),
            ("cart", "1.0.0", "no chart named 'cart'"),
        ] {
            let got = index_entry(&index, repo, name, version)
                .err()
                .unwrap_or_default();
            assert!(got.contains(want), "{got}");
        }
        let (repo, name, version, reference) =
            repository_chart("http://127.0.0.1:8080/charts/sub:0.3.0+x")
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (
                repo.as_str(),
                name.as_str(),
                version.as_str(),
                reference.to_string().as_str()
            ),
            (
                "http://127.0.0.1:8080/charts",
                "sub",
                "0.3.0+x",
                "127.0.0.1:8080/charts/sub:0.3.0_x"
            )
        );
        assert!(repository_chart("https://charts.example.com/shop").is_err());
        assert!(repository_chart("oci://r/shop:1").is_err());
    }

    #[test]
    fn remote_schemas_are_carried_under_names_a_bundle_takes() {
        let table = [
            (
                "https://json.schemastore.org/chart.json",
                Some("schemas/json.schemastore.org/chart.json"),
            ),
            (
                "http://127.0.0.1:8080/a/../b.json?x=1#/defs",
                Some("schemas/127.0.0.1_8080/a/b.json"),
            ),
            ("https://host.example/", None),
        ];
        for (url, want) in table {
            let got = schema_file(url);
            assert_eq!(got.as_deref(), want, "{url}");
            if let Some(name) = got {
                assert!(crate::bundle::validate_file_name(&name).is_ok(), "{name}");
            }
        }
    }

    #[test]
    fn a_packaged_chart_has_one_manifest_whatever_the_day() {
        let a = oci_manifest(b"{\"name\":\"shop\"}", b"tgz", "shop", "1.0.0");
        assert_eq!(
            a,
            oci_manifest(b"{\"name\":\"shop\"}", b"tgz", "shop", "1.0.0")
        );
        let parsed = crate::oci::parse_manifest(&a, crate::oci::OCI_MANIFEST);
        assert!(parsed.is_ok(), "{parsed:?}");
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains(CHART_LAYER) && text.contains(crate::lock::HELM_CONFIG));
    }

    #[test]
    fn render_keys_change_with_every_input_and_nothing_else() {
        let apis = ["apps/v1".to_string()];
        let base = RenderInputs {
            chart: "sha256:aa",
            values_files: vec![b"a: 1"],
            values: b"{}",
            release_name: "shop",
            namespace: "shop",
            kube_version: "v1.34.1",
            api_versions: &apis,
        };
        let other_apis = ["apps/v1".to_string(), "x/v1".to_string()];
        let variants = [
            RenderInputs {
                chart: "sha256:ab",
                ..base.clone()
            },
            RenderInputs {
                values_files: vec![b"a: 2"],
                ..base.clone()
            },
            RenderInputs {
                values_files: vec![b"a: ", b"1"],
                ..base.clone()
            },
            RenderInputs {
                values: b"{\"a\":1}",
                ..base.clone()
            },
            RenderInputs {
                release_name: "shop2",
                ..base.clone()
            },
            RenderInputs {
                namespace: "other",
                ..base.clone()
            },
            RenderInputs {
                kube_version: "v1.35.0",
                ..base.clone()
            },
            RenderInputs {
                api_versions: &other_apis,
                ..base.clone()
            },
        ];
        assert_eq!(base.key(), base.clone().key());
        for v in &variants {
            assert_ne!(v.key(), base.key(), "{v:?}");
        }
    }

    #[test]
    fn nondeterministic_functions_are_found_in_actions_only() {
        let table = [
            (
                "password: {{ randAlphaNum 16 | b64enc }}",
                vec!["randAlphaNum"],
            ),
            (
                "{{- $s := lookup \"v1\" \"Secret\" .Release.Namespace \"x\" -}}",
                vec!["lookup"],
            ),
            (
                "{{ uuidv4 }} {{ now | date \"2006\" }} {{ genCA \"x\" 365 }}",
                vec!["uuidv4", "now", "genCA"],
            ),
            ("# lookup randAlphaNum outside actions", vec![]),
            ("{{/* lookup is not called here */}}", vec![]),
            ("{{ \"lookup\" }} {{ `randInt` }}", vec![]),
            ("{{ .Values.lookup }} {{ $now }}", vec![]),
            (
                "{{ lookup \"v1\" \"A\" \"\" \"\" }}{{ lookup \"v1\" \"B\" \"\" \"\" }}",
                vec!["lookup"],
            ),
            ("{{ include \"x\" . }} {{ randInt 1 2", vec!["randInt"]),
        ];
        for (text, want) in table {
            assert_eq!(nondeterministic(text), want, "{text}");
        }
    }

    #[test]
    fn hooks_map_onto_the_staged_apply() {
        use HookStage::{After, Before, Skipped};
        let table = [
            (None, true, HookStage::None),
            (Some("pre-install"), true, Before),
            (Some("pre-install"), false, Skipped),
            (Some("pre-install,pre-upgrade"), false, Before),
            (Some("post-install, post-upgrade"), false, After),
            (Some("post-upgrade"), true, Skipped),
            (Some("test"), true, Skipped),
            (Some("pre-delete"), false, Skipped),
            (Some("pre-rollback"), false, Skipped),
        ];
        for (hook, install, want) in table {
            assert_eq!(
                hook_stage(hook, install),
                want,
                "{hook:?} install={install}"
            );
        }
        assert_eq!(
            hook_delete(None),
            HookDelete {
                before_creation: true,
                ..HookDelete::default()
            }
        );
        assert_eq!(
            hook_delete(Some("hook-succeeded,hook-failed")),
            HookDelete {
                before_creation: false,
                on_success: true,
                on_failure: true
            }
        );
        assert_eq!(hook_weight(Some("-5")), -5);
        assert_eq!(hook_weight(Some("x")), 0);
    }
}
