//! `airgate bundle inspect`: what a bundle holds, from its inventory.

use std::process::ExitCode;

use airgate_core::signing;
use airgate_oci::bundle;
use anyhow::Result;

use crate::cli::{BundleInspectArgs, Output};
use crate::commands::key;
use crate::progress_bar::human_bytes;

pub fn run(args: BundleInspectArgs) -> Result<ExitCode> {
    let entry = bundle::read_inventory(&args.bundle)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.bundle.display()))?;
    // A signature file only *claims* a signer until a key checks it.
    let checked = match (&args.key, &entry.signature) {
        (Some(path), Some(sig)) => {
            signing::verify(&entry.bytes, sig, &key::read_public(path)?)
                .map_err(|e| anyhow::anyhow!("{}: signature: {e}", args.bundle.display()))?;
            true
        }
        (Some(_), None) => anyhow::bail!(
            "{}: the bundle is not signed, but a key was given to check it with",
            args.bundle.display()
        ),
        (None, _) => false,
    };
    let (inventory, digest, signature) = (entry.inventory, entry.digest, entry.signature);
    match args.output {
        Output::Json => {
            let key_id = signature.as_ref().map(|s| &s.key_id);
            let out = serde_json::json!({
                "inventoryDigest": digest,
                "signedBy": if checked { key_id } else { None },
                "claimsSignedBy": if checked { None } else { key_id },
                "inventory": inventory,
            });
            crate::out!("{}", serde_json::to_string_pretty(&out)?)?;
        }
        Output::Text => {
            let carried = inventory.blobs.iter().filter(|b| b.carried).count();
            crate::out!("bundle     {}", args.bundle.display())?;
            crate::out!("inventory  {digest}")?;
            match (signature, checked) {
                (Some(s), true) => crate::out!("signed by  {} (checked with --key)", s.key_id)?,
                (Some(s), false) => crate::out!(
                    "signature  claims to be signed by {} (not checked: give --key)",
                    s.key_id
                )?,
                (None, _) => crate::out!("signed by  (unsigned)")?,
            }
            if let Some(since) = &inventory.since {
                crate::out!(
                    "delta of   {since} ({} blobs carried before)",
                    inventory.blobs.len() - carried
                )?;
            }
            crate::out!("created by {}", inventory.created_by)?;
            crate::out!(
                "blobs      {carried} carried, {}",
                human_bytes(inventory.carried_bytes())
            )?;
            crate::out!("images     {}", inventory.images.len())?;
            for i in &inventory.images {
                let platforms = if i.platforms.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", i.platforms.join(", "))
                };
                let refers = i
                    .subject
                    .as_ref()
                    .map(|d| format!("  (signature or attestation of {d})"))
                    .unwrap_or_default();
                crate::out!("  {}@{}{platforms}{refers}", i.reference, i.digest)?;
            }
            crate::out!("files      {}", inventory.files.len())?;
            for f in &inventory.files {
                crate::out!("  {}  {}  {}", f.name, human_bytes(f.size), f.digest)?;
            }
            eprintln!(
                "hint: inspect reads the inventory only; `airgate bundle verify` checks the whole bundle"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
