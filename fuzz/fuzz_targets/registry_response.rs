//! What a registry sends back: authentication challenges, manifest bodies
//! and their declared media types. Never a panic.
#![no_main]

use airgate_core::oci;
use airgate_oci::auth::parse_challenge;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = std::str::from_utf8(data) {
        let _ = parse_challenge(header);
        let _ = airgate_core::text::shown(header, 300);
        let _ = airgate_core::text::cut(header, 300);
    }
    if let Some(media_type) = oci::declared_media_type(data) {
        let _ = oci::parse_manifest(data, &media_type);
    }
});
