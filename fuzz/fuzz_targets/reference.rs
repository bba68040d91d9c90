//! Image references: never a panic; what parses prints back to itself.
#![no_main]

use airgate_core::ImageRef;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    if let Ok(r) = ImageRef::parse(input) {
        let again = ImageRef::parse(&r.to_string());
        assert_eq!(again.as_ref(), Ok(&r), "{input:?} does not round-trip");
    } else if let Err(e) = ImageRef::parse(input) {
        // Messages are bounded and never carry control characters.
        let message = e.to_string();
        assert!(message.len() < 4096);
        assert!(!message.chars().any(|c| c.is_control()));
    }
});
