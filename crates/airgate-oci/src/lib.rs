//! Where images live and how they move between places.
//!
//! Two places hold images: a registry ([`registry`]) and a bundle file, an
//! OCI image layout inside a tar ([`bundle`]). Copying is one direction each:
//! registry to bundle (`bundle::create`) and bundle to registry (`push`);
//! `lock` pins what a registry serves now (with its signatures and other
//! referrers) before anything is copied.

pub mod auth;
pub mod bundle;
pub mod chart;
pub mod cosign;
pub mod files;
pub mod imports;
pub mod lock;
pub mod progress;
pub mod push;
pub mod registry;

pub use registry::{RegistryClient, RegistryError, RegistryOptions};
