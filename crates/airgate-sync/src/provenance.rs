//! Which import brought each image a sync deploys, and the
//! `requireImportedBy` gate.
//!
//! Why here: the gate must hold before anything is written, like policy,
//! so it runs in the sync between policy and dry-run. Imports are found
//! beside each image in its registry ([`airgate_oci::imports`]) and
//! believed only when [`airgate_core::provenance::verify`] says so.
//!
//! Only registries the App's `allowedRegistries` names are read: what a
//! manifest names is not a reason to reach a host.
//!
//! Assumptions: an import never becomes untrue, so what was found for a
//! digest is kept for [`KEPT`]; what was not found is asked again after
//! [`KEPT`] too (an import pushed since is then seen).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airgate_core::discover::Found;
use airgate_core::policy::Policy;
use airgate_core::provenance::{self, VerifiedImport};
use airgate_core::{Digest, ImageRef};
use airgate_oci::RegistryClient;

/// How long a digest's imports are kept before they are asked again.
pub const KEPT: Duration = Duration::from_secs(60);

/// One deployed image and the import named for it.
#[derive(Clone, Debug)]
pub struct ImageImport {
    pub image: String,
    pub import: VerifiedImport,
}

type Cache = HashMap<(String, String, Digest), (Instant, Arc<Vec<VerifiedImport>>)>;

/// Reads imports from the registries images live in.
#[derive(Debug)]
pub struct Imports {
    client: RegistryClient,
    cache: Mutex<Cache>,
}

impl Imports {
    pub fn new(client: RegistryClient) -> Imports {
        Imports {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The imports of `image` (pinned by `digest`) that verify.
    async fn of(
        &self,
        image: &ImageRef,
        digest: &Digest,
    ) -> Result<Arc<Vec<VerifiedImport>>, String> {
        let key = (
            image.registry().to_string(),
            image.repository().to_string(),
            digest.clone(),
        );
        if let Ok(cache) = self.cache.lock()
            && let Some((at, found)) = cache.get(&key)
            && at.elapsed() < KEPT
        {
            return Ok(found.clone());
        }
        let evidence = airgate_oci::imports::find(&self.client, &key.0, &key.1, digest)
            .await
            .map_err(|e| e.to_string())?;
        let found: Arc<Vec<VerifiedImport>> = Arc::new(
            evidence
                .iter()
                .filter_map(|e| provenance::verify(e, digest).ok())
                .collect(),
        );
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, (at, _)| at.elapsed() < KEPT);
            cache.insert(key, (Instant::now(), found.clone()));
        }
        Ok(found)
    }

    /// For each digest-pinned image among `found`, the import to name, and
    /// every refusal under `policy.requireImportedBy` (empty: nothing is
    /// refused, and an image whose imports cannot be read is named with
    /// none).
    ///
    /// Guarantees: only registries `policy.allowedRegistries` names are
    /// read, so a manifest cannot make the controller reach a host its
    /// App's spec does not name.
    pub async fn check(&self, policy: &Policy, found: &[Found]) -> (Vec<ImageImport>, Vec<String>) {
        let required = &policy.require_imported_by;
        let (mut named, mut refused) = (Vec::new(), Vec::new());
        let mut seen = std::collections::BTreeSet::new();
        for f in found {
            let image = f.image.to_string();
            if !seen.insert(image.clone()) {
                continue;
            }
            if !policy.lists(f) {
                if !required.is_empty() {
                    refused.push(format!(
                        "{} {}: image {image} is from a registry allowedRegistries does not list; requireImportedBy reads imports only from those",
                        f.object, f.field
                    ));
                }
                continue;
            }
            let Some(digest) = f.image.digest() else {
                if !required.is_empty() {
                    refused.push(format!(
                        "{} {}: image {image} is not pinned by digest; requireImportedBy needs one",
                        f.object, f.field
                    ));
                }
                continue;
            };
            let imports = match self.of(&f.image, digest).await {
                Ok(i) => i,
                Err(e) if !required.is_empty() => {
                    refused.push(format!(
                        "{} {}: the imports of {image} could not be read: {e}",
                        f.object, f.field
                    ));
                    continue;
                }
                Err(_) => continue,
            };
            match provenance::choose(required, &image, &imports) {
                Ok(Some(i)) => named.push(ImageImport {
                    image,
                    import: i.clone(),
                }),
                Ok(None) => {}
                Err(refusal) => refused.push(format!("{} {}: {refusal}", f.object, f.field)),
            }
        }
        (named, refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airgate_core::discover::{Document, images_in};

    /// A manifest naming a registry the App does not list must not make the
    /// controller reach it: refused (under requireImportedBy) or named with
    /// no import, without a request. The host does not resolve, so a lookup
    /// would fail with another message.
    #[tokio::test]
    async fn imports_are_read_only_from_listed_registries() -> Result<(), String> {
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a",
                "image": format!("evil.invalid:5000/x@{}", Digest::of(b"x"))}]}});
        let doc = Document {
            source: "p.yaml",
            index: 1,
            value: &pod,
        };
        let found = images_in(doc, &[]).map_err(|e| e.to_string())?;
        let client = RegistryClient::new(Default::default()).map_err(|e| e.to_string())?;
        let imports = Imports::new(client);
        let key = Digest::of(b"key");
        for (listed, required, refusal) in [
            (
                vec![],
                vec![key.clone()],
                Some("allowedRegistries does not list"),
            ),
            (
                vec!["registry.internal:5000".to_string()],
                vec![key.clone()],
                Some("does not list"),
            ),
            (vec![], vec![], None),
        ] {
            let policy = Policy {
                allowed_registries: listed,
                require_imported_by: required,
                ..Policy::default()
            };
            let (named, refused) = imports.check(&policy, &found).await;
            assert!(named.is_empty());
            match refusal {
                Some(r) => assert!(refused.len() == 1 && refused[0].contains(r), "{refused:?}"),
                None => assert!(refused.is_empty(), "{refused:?}"),
            }
        }
        Ok(())
    }
}
