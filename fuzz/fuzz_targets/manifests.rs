//! The manifest loader (YAML and JSON, as `kustomize build` output goes
//! through it too) and image discovery: never a panic.
#![no_main]

use airgate_core::discover::{Document, images_in};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(docs) = airgate_render::parse_documents("fuzz.yaml", text) {
        for d in &docs {
            let doc = Document {
                source: &d.source,
                index: d.index,
                value: &d.value,
            };
            let _ = images_in(doc, &[]);
        }
    }
});
