//! From the manifest paths and rules on the command line to the images they
//! use: rendering (plain YAML, kustomize, Helm charts) and discovery,
//! certain and possible (`airgate_core::hidden`), shared by `images` and
//! `lock`.

use airgate_core::ImageRef;
use airgate_core::discover::{Document, Found, images_in};
use airgate_core::hidden::{builtin_rules, possible_in};
use airgate_core::rule::Rule;
use airgate_render::Renderer;
use airgate_render::helm::HelmOptions;
use anyhow::Result;

use crate::cli::DiscoverArgs;

/// The `--rule`s given, after the built-in ones.
pub fn rules(args: &DiscoverArgs) -> Result<Vec<Rule>> {
    let mut rules = builtin_rules();
    for r in &args.rules {
        rules.push(r.parse::<Rule>()?);
    }
    Ok(rules)
}

/// Images found under the paths, with where each was found.
#[derive(Debug, Default)]
pub struct Discovered {
    /// In pod specs, and where a rule points.
    pub certain: Vec<Found>,
    /// Strings elsewhere that name an image (see `airgate_core::hidden`).
    pub possible: Vec<Found>,
}

/// Every image found under the paths.
pub fn images(args: &DiscoverArgs) -> Result<Discovered> {
    if args.paths.is_empty() {
        anyhow::bail!("name at least one manifest file, directory or chart");
    }
    let rules = rules(args)?;
    let chart = &args.chart;
    let renderer = Renderer::new(args.kustomize.clone()).with_helm(
        chart.helm.clone(),
        HelmOptions {
            values: chart.values.clone(),
            set: chart.set.clone(),
            release_name: chart.release_name.clone(),
            namespace: chart.namespace.clone(),
            kube_version: chart.kube_version.clone(),
            api_versions: Vec::new(),
            version: chart.chart_version.clone(),
            registry_config: airgate_oci::auth::config_path(),
            // Images are in workloads, not in CustomResourceDefinitions.
            include_crds: false,
        },
    );
    for path in args.paths.iter().filter(|p| p.join("Chart.yaml").is_file()) {
        for (file, url) in airgate_render::helm::remote_schema_refs(path) {
            eprintln!(
                "warning: {}: $ref {url} is fetched by helm when it checks values, and cannot be reached inside the perimeter\nhint: put the schema in the chart and refer to it by a relative path",
                file.display()
            );
        }
    }
    let manifests = renderer.render(&args.paths)?;
    let mut found = Discovered::default();
    for m in &manifests {
        let doc = Document {
            source: &m.source,
            index: m.index,
            value: &m.value,
        };
        let certain = images_in(doc, &rules)?;
        found.possible.extend(possible_in(doc, &certain));
        found.certain.extend(certain);
    }
    Ok(found)
}

/// The distinct images under the paths (possible ones with `--possible`),
/// sorted; says on stderr how many possible ones it left out.
pub fn distinct_images(args: &DiscoverArgs) -> Result<Vec<ImageRef>> {
    let found = images(args)?;
    let mut refs: Vec<ImageRef> = found.certain.into_iter().map(|f| f.image).collect();
    let mut possible: Vec<ImageRef> = found.possible.into_iter().map(|f| f.image).collect();
    possible.sort();
    possible.dedup();
    if args.possible {
        refs.extend(possible);
    } else {
        let left_out = possible.iter().filter(|p| !refs.contains(p)).count();
        if left_out > 0 {
            eprintln!(
                "note: {left_out} possible images outside pod specs are left out\nhint: --possible takes them; `airgate images -o json` says where each was found"
            );
        }
    }
    refs.sort();
    refs.dedup();
    Ok(refs)
}
