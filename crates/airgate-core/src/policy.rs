//! The policy gate: what must hold for every image before anything is
//! applied. Images come only from allowed registries (optionally under a
//! path), and are pinned by digest. One violation blocks the whole sync; each
//! is named by object, field and image, so the fix is obvious.

use serde::{Deserialize, Serialize};

use crate::discover::Found;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// `host[:port]` or `host[:port]/path`; empty allows every registry.
    #[serde(default)]
    pub allowed_registries: Vec<String>,
    #[serde(default)]
    pub require_digests: bool,
    /// Bundle key ids; see [`crate::provenance`]. Checked by the sync,
    /// which reads the registry, not by [`Policy::check`].
    #[serde(default)]
    pub require_imported_by: Vec<crate::Digest>,
}

/// One image that breaks the policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub object: String,
    pub field: String,
    pub image: String,
    pub reason: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {} {}",
            self.object, self.field, self.image, self.reason
        )
    }
}

impl Policy {
    /// Whether `allowedRegistries` names the image's registry (and path):
    /// where the controller may read imports from.
    pub fn lists(&self, found: &Found) -> bool {
        !self.allowed_registries.is_empty() && self.allowed(found)
    }

    fn allowed(&self, found: &Found) -> bool {
        if self.allowed_registries.is_empty() {
            return true;
        }
        let registry = found.image.registry();
        let repository = found.image.repository();
        self.allowed_registries.iter().any(|entry| {
            let entry = entry.trim_end_matches('/');
            match entry.split_once('/') {
                Some((host, path)) => {
                    host == registry
                        && (repository == path || repository.starts_with(&format!("{path}/")))
                }
                None => entry == registry,
            }
        })
    }

    /// Every violation among `found`, in order.
    pub fn check(&self, found: &[Found]) -> Vec<Violation> {
        let mut out = Vec::new();
        for f in found {
            if !self.allowed(f) {
                out.push(Violation {
                    object: f.object.clone(),
                    field: f.field.clone(),
                    image: f.image.to_string(),
                    reason: format!(
                        "is not from an allowed registry ({})",
                        self.allowed_registries.join(", ")
                    ),
                });
            }
            if self.require_digests && f.image.digest().is_none() {
                out.push(Violation {
                    object: f.object.clone(),
                    field: f.field.clone(),
                    image: f.image.to_string(),
                    reason: "is not pinned by digest".to_string(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::{Document, images_in};
    use serde_json::json;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn found(images: &[&str]) -> Vec<Found> {
        let containers: Vec<_> = images
            .iter()
            .enumerate()
            .map(|(i, im)| json!({"name": format!("c{i}"), "image": im}))
            .collect();
        let pod = json!({"kind": "Pod", "metadata": {"name": "p", "namespace": "shop"}, "spec": {"containers": containers}});
        images_in(
            Document {
                source: "x",
                index: 1,
                value: &pod,
            },
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn allows_only_listed_registries_and_paths() {
        let p = Policy {
            allowed_registries: vec![
                "registry.internal:5000/mirror".into(),
                "harbor.internal".into(),
            ],
            require_digests: false,
            ..Policy::default()
        };
        let v = p.check(&found(&[
            "registry.internal:5000/mirror/library/nginx:1",
            "registry.internal:5000/mirrorx/app:1",
            "harbor.internal/team/app:2",
            "nginx:1.27",
        ]));
        let bad: Vec<_> = v.iter().map(|v| v.image.as_str()).collect();
        assert_eq!(
            bad,
            [
                "registry.internal:5000/mirrorx/app:1",
                "docker.io/library/nginx:1.27"
            ]
        );
        assert_eq!(v[1].object, "Pod/shop/p");
        assert_eq!(v[1].field, "spec.containers[3].image");
    }

    #[test]
    fn requires_digests_when_asked() {
        let p = Policy {
            allowed_registries: vec![],
            require_digests: true,
            ..Policy::default()
        };
        let v = p.check(&found(&[
            "r.internal/app:1",
            &format!("r.internal/app:1@{D}"),
        ]));
        assert_eq!(v.len(), 1);
        assert_eq!(
            v[0].to_string(),
            "Pod/shop/p spec.containers[0].image: r.internal/app:1 is not pinned by digest"
        );
    }
}
