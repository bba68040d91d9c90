//! `airgate images`: the images a set of manifests (or a running cluster) uses.

use std::collections::BTreeMap;
use std::process::ExitCode;

use airgate_core::discover::{Document, Found, images_in};
use airgate_core::rule::Rule;
use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::{ImagesArgs, Output};
use crate::{kube_client, manifests};

/// Where one image was found.
#[derive(Debug, Serialize)]
struct Place {
    source: String,
    document: usize,
    object: String,
    field: String,
    written: String,
    /// In a pod spec or where a rule points; else a possible image.
    certain: bool,
}

#[derive(Debug, Serialize)]
struct ImagesOutput {
    images: Vec<Image>,
}

#[derive(Debug, Serialize)]
struct Image {
    image: String,
    /// Found somewhere for certain (else only as a possible image).
    certain: bool,
    found: Vec<Place>,
}

pub fn run(args: ImagesArgs) -> Result<ExitCode> {
    let found = if args.cluster {
        let rules = manifests::rules(&args.discover)?;
        manifests::Discovered {
            certain: cluster_images(&args, &rules)?,
            possible: Vec::new(),
        }
    } else {
        manifests::images(&args.discover)?
    };
    let mut by_image: BTreeMap<String, Vec<Place>> = BTreeMap::new();
    let tagged = found
        .certain
        .into_iter()
        .map(|f| (f, true))
        .chain(found.possible.into_iter().map(|f| (f, false)));
    for (f, certain) in tagged {
        by_image
            .entry(f.image.to_string())
            .or_default()
            .push(Place {
                source: f.source,
                document: f.document,
                object: f.object,
                field: f.field,
                written: f.written,
                certain,
            });
    }
    let certain = |places: &[Place]| places.iter().any(|p| p.certain);
    match args.output {
        Output::Text => {
            let mut left_out = 0;
            for (image, places) in &by_image {
                if certain(places) || args.discover.possible {
                    crate::out!("{image}")?;
                } else {
                    left_out += 1;
                }
            }
            if left_out > 0 {
                eprintln!(
                    "note: {left_out} possible images outside pod specs (arguments, env values, custom resource fields, ConfigMap data) are not listed\nhint: --possible lists them; -o json says where each was found; --rule KIND:PATH makes a place certain"
                );
            }
        }
        Output::Json => {
            let images: Vec<Image> = by_image
                .into_iter()
                .map(|(image, found)| Image {
                    image,
                    certain: certain(&found),
                    found,
                })
                .collect();
            crate::out!(
                "{}",
                serde_json::to_string_pretty(&ImagesOutput { images })?
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The images of the pods in phase Running, across all namespaces the
/// kubeconfig's identity may list.
fn cluster_images(args: &ImagesArgs, rules: &[Rule]) -> Result<Vec<Found>> {
    crate::block_on(async {
        let (client, context) =
            kube_client::from_kubeconfig(args.kubeconfig.as_deref(), args.context.as_deref())
                .await?;
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::all(client);
        let mut found = Vec::new();
        let mut params = kube::api::ListParams::default()
            .fields("status.phase=Running")
            .limit(500);
        loop {
            let list = pods
                .list(&params)
                .await
                .with_context(|| format!("listing the running pods of {context}"))?;
            for pod in &list.items {
                let mut value = serde_json::to_value(pod)?;
                if let Some(obj) = value.as_object_mut() {
                    obj.insert("kind".into(), "Pod".into());
                }
                let doc = Document {
                    source: &context,
                    index: 1,
                    value: &value,
                };
                found.extend(images_in(doc, rules)?);
            }
            match list.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        Ok(found)
    })
}
