//! `install --lock FILE --to HOST[/PREFIX]`: the controller's image where
//! `bundle push` put it, pinned by digest, without typing either.
//!
//! airgate's image cannot name its own digest (the binary is inside it),
//! so the binary carries no default image. The lock of the bundle that
//! carried it across does: its `airgate/airgate` entry of this version,
//! at the digest locked; and the push's `--to` and `--layout` say which
//! repository it went to, as `bundle push` itself computes it. Nothing is
//! read from a registry: the reference exists because the push kept
//! every digest.

use std::path::Path;

use airgate_core::reference::ImageRef;
use anyhow::{Result, anyhow, bail};

use crate::cli::LayoutArg;

/// airgate's image of `version`: a repository ending in `airgate/airgate`,
/// tagged with the version.
fn is_airgate(reference: &ImageRef, version: &str) -> bool {
    let repository = reference.repository();
    (repository == "airgate/airgate" || repository.ends_with("/airgate/airgate"))
        && reference.tag() == Some(version)
}

/// The internal, digest-pinned reference of this version's image.
pub fn from_lock(lock: &Path, to: &str, layout: LayoutArg) -> Result<String> {
    let parsed = crate::commands::bundle_create::read_lock(lock)?;
    from_images(&parsed.images, env!("CARGO_PKG_VERSION"), to, layout)
        .map_err(|e| anyhow!("{}: {e}", lock.display()))
}

fn from_images(
    images: &[airgate_core::lock::LockedImage],
    version: &str,
    to: &str,
    layout: LayoutArg,
) -> Result<String> {
    let found: Vec<_> = images
        .iter()
        .filter(|i| is_airgate(&i.reference, version))
        .collect();
    let image = match found[..] {
        [one] => one,
        [] => bail!(
            "no airgate/airgate:{version} in it\nhint: lock and carry the image `dev/image` builds (the demo does), or pass --image"
        ),
        _ => bail!(
            "{} entries are airgate/airgate:{version} ({}); pass --image to choose",
            found.len(),
            found
                .iter()
                .map(|i| i.reference.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let target =
        airgate_oci::push::Target::parse(to, layout.into(), None).map_err(|e| anyhow!(e))?;
    let repository = target
        .repository_for(&image.reference)
        .map_err(|e| anyhow!(e))?;
    Ok(format!("{}/{repository}@{}", target.registry, image.digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(text: &str) -> Vec<airgate_core::lock::LockedImage> {
        serde_saphyr::from_str::<airgate_core::lock::ImageLock>(text)
            .unwrap_or_else(|e| panic!("{e}"))
            .images
    }

    #[test]
    fn the_image_is_where_bundle_push_put_it() {
        let entry = |reference: &str, hex: char| {
            format!(
                "  - reference: {reference}\n    digest: sha256:{}\n    mediaType: application/vnd.oci.image.manifest.v1+json\n",
                hex.to_string().repeat(64)
            )
        };
        let images = lock(&format!(
            "apiVersion: airgate.dev/v1alpha1\nkind: ImageLock\nimages:\n{}{}{}",
            entry("127.0.0.1:5000/airgate/airgate:0.1.0", 'a'),
            entry("127.0.0.1:5000/airgate/airgate:0.0.9", 'b'),
            entry("127.0.0.1:5000/shop/web:1", 'c'),
        ));
        let a = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let cases = [
            (
                "0.1.0",
                "registry.internal:5000/mirror",
                LayoutArg::ByRegistry,
                Ok(format!(
                    "registry.internal:5000/mirror/127.0.0.1_5000/airgate/airgate@{a}"
                )),
            ),
            (
                "0.1.0",
                "registry.internal:5000",
                LayoutArg::Flat,
                Ok(format!("registry.internal:5000/airgate/airgate@{a}")),
            ),
            (
                "0.2.0",
                "registry.internal:5000",
                LayoutArg::Flat,
                Err("no airgate/airgate:0.2.0"),
            ),
            ("0.1.0", "not a registry", LayoutArg::Flat, Err("--to")),
        ];
        for (version, to, layout, want) in cases {
            let got = from_images(&images, version, to, layout).map_err(|e| e.to_string());
            match (&got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, &w),
                (Err(g), Err(w)) => assert!(g.contains(w), "{g}"),
                _ => panic!("{version} {to}: {got:?}"),
            }
        }
    }
}
