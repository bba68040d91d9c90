//! The bundle file: an OCI image layout inside a tar, with a signed inventory
//! first (see `airgate_core::bundle` for the format).

pub mod create;
mod entries;
pub mod extract;
mod output;
pub mod read;

pub use create::{
    CarriedFile, CreateError, CreateRequest, CreateSummary, Packaged, create, partial_path,
};
pub use read::{
    InventoryEntry, MAX_INVENTORY, MAX_MANIFEST, MAX_SIGNATURE, Span, Trust, Unpack, Verified,
    VerifyError, read_inventory, read_inventory_or_bundle, verify_into, verify_parallel,
    verify_stream,
};
