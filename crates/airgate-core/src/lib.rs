//! airgate's domain core.
//!
//! Everything here is pure: no files, no network, no clock. Adapters (OCI,
//! rendering, Kubernetes, Git, storage) feed it parsed data and act on what it
//! returns, so the rules that decide what airgate does can be tested alone.

pub mod archive;
pub mod bundle;
pub mod chart;
pub mod check;
pub mod cosign;
pub mod digest;
pub mod discover;
pub mod drift;
pub mod fields;
pub mod freeze;
pub mod health;
pub mod hidden;
pub mod inventory;
pub mod lock;
pub mod mirror;
pub mod object;
pub mod oci;
pub mod ownership;
pub mod policy;
pub mod provenance;
pub mod reference;
pub mod rule;
pub mod schema;
pub mod signing;
pub mod source;
pub mod status;
pub mod text;
pub mod trust;

pub use digest::Digest;
pub use reference::ImageRef;
