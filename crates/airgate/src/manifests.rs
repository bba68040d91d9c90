//! From the manifest paths and rules on the command line to the images they
//! use: rendering (plain YAML, kustomize) and discovery, shared by `images`
//! and `lock`.

use airgate_core::ImageRef;
use airgate_core::discover::{Document, Found, images_in};
use airgate_core::rule::Rule;
use airgate_render::Renderer;
use anyhow::Result;

use crate::cli::DiscoverArgs;

pub fn rules(args: &DiscoverArgs) -> Result<Vec<Rule>> {
    Ok(args
        .rules
        .iter()
        .map(|r| r.parse::<Rule>())
        .collect::<Result<Vec<_>, _>>()?)
}

/// Every image found under the paths, with where it was found.
pub fn images(args: &DiscoverArgs) -> Result<Vec<Found>> {
    if args.paths.is_empty() {
        anyhow::bail!("name at least one manifest file or directory");
    }
    let rules = rules(args)?;
    let manifests = Renderer::new(args.kustomize.clone()).render(&args.paths)?;
    let mut found = Vec::new();
    for m in &manifests {
        let doc = Document {
            source: &m.source,
            index: m.index,
            value: &m.value,
        };
        found.extend(images_in(doc, &rules)?);
    }
    Ok(found)
}

/// The distinct images under the paths, sorted.
pub fn distinct_images(args: &DiscoverArgs) -> Result<Vec<ImageRef>> {
    let mut refs: Vec<ImageRef> = images(args)?.into_iter().map(|f| f.image).collect();
    refs.sort();
    refs.dedup();
    Ok(refs)
}
