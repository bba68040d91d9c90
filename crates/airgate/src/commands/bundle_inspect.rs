//! `airgate bundle inspect`: what a bundle holds, from its inventory.

use std::process::ExitCode;

use airgate_oci::bundle;
use anyhow::Result;

use crate::cli::{BundleInspectArgs, Output};
use crate::progress_bar::human_bytes;

pub fn run(args: BundleInspectArgs) -> Result<ExitCode> {
    let (inventory, digest, signature) = bundle::read_inventory(&args.bundle)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.bundle.display()))?;
    match args.output {
        Output::Json => {
            let out = serde_json::json!({
                "inventoryDigest": digest,
                "signedBy": signature.as_ref().map(|s| &s.key_id),
                "inventory": inventory,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Output::Text => {
            let carried = inventory.blobs.iter().filter(|b| b.carried).count();
            println!("bundle     {}", args.bundle.display());
            println!("inventory  {digest}");
            println!(
                "signed by  {}",
                signature.map_or("(unsigned)".to_string(), |s| s.key_id.to_string())
            );
            if let Some(since) = &inventory.since {
                println!(
                    "delta of   {since} ({} blobs carried before)",
                    inventory.blobs.len() - carried
                );
            }
            println!("created by {}", inventory.created_by);
            println!(
                "blobs      {carried} carried, {}",
                human_bytes(inventory.carried_bytes())
            );
            println!("images     {}", inventory.images.len());
            for i in &inventory.images {
                let platforms = if i.platforms.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", i.platforms.join(", "))
                };
                println!("  {}@{}{platforms}", i.reference, i.digest);
            }
            println!("files      {}", inventory.files.len());
            for f in &inventory.files {
                println!("  {}  {}  {}", f.name, human_bytes(f.size), f.digest);
            }
            eprintln!(
                "hint: inspect reads the inventory only; `airgate bundle verify` checks the whole bundle"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
