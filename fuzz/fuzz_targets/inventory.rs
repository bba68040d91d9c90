//! The bundle inventory and OCI manifest parsers: never a panic, sizes never
//! overflow.
#![no_main]

use airgate_core::bundle::BundleInventory;
use airgate_core::oci;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(inv) = serde_json::from_slice::<BundleInventory>(data)
        && inv.validate().is_ok()
    {
        let _ = inv.carried_bytes();
        let _ = inv.check_children(&Default::default());
    }
    for media_type in oci::MANIFEST_TYPES {
        if let Ok(parsed) = oci::parse_manifest(data, media_type) {
            let _ = parsed.children().len();
        }
    }
});
