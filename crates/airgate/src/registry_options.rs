//! Registry flags to the OCI adapter's options.

use airgate_oci::RegistryOptions;
use airgate_oci::auth::Credentials;
use anyhow::Result;

use crate::cli::RegistryArgs;

pub fn options(args: &RegistryArgs) -> Result<RegistryOptions> {
    Ok(RegistryOptions {
        insecure: args.insecure_registries.clone(),
        ca_files: args.ca_files.clone(),
        credentials: Credentials::from_environment()?,
        attempts: 8,
        ..RegistryOptions::default()
    })
}
