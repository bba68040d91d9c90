//! `airgate-seed`: fills a registry with a benchmark workload of synthetic
//! images that share base layers, pushed by skopeo, and prints their
//! references (one per line) on stdout.
//!
//! Usage: airgate-seed REGISTRY PREFIX IMAGES SHARED_LAYERS SHARED_MIB UNIQUE_MIB

use anyhow::{Context, Result, bail};

use airgate_testkit::images::{ImageSpec, LayerSpec, seed_image_via};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 6 {
        bail!("usage: airgate-seed REGISTRY PREFIX IMAGES SHARED_LAYERS SHARED_MIB UNIQUE_MIB");
    }
    let num = |i: usize| -> Result<usize> {
        args[i]
            .parse()
            .with_context(|| format!("'{}' is not a number", args[i]))
    };
    let (registry, prefix) = (&args[0], &args[1]);
    let (images, shared_layers, shared_mib, unique_mib) = (num(2)?, num(3)?, num(4)?, num(5)?);
    let layout = tempfile::tempdir()?;
    let shared: Vec<LayerSpec> = (0..shared_layers)
        .map(|i| LayerSpec {
            seed: 1_000 + i as u64,
            size: shared_mib << 20,
        })
        .collect();
    for i in 0..images {
        let mut layers = shared.clone();
        layers.push(LayerSpec {
            seed: 2_000 + i as u64,
            size: unique_mib << 20,
        });
        let image = seed_image_via(
            layout.path(),
            registry,
            &format!("{prefix}/app-{i:02}"),
            "v1",
            &ImageSpec::single(&layers),
        )?;
        println!("{}", image.reference);
        eprintln!("seeded {} ({} MiB)", image.reference, image.size >> 20);
    }
    Ok(())
}
