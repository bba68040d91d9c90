//! The bundle reader, from a stream and from a file: never a panic, and the
//! two readers (verify's and push's) always give the same verdict.
#![no_main]

use std::io::Write;

use airgate_oci::bundle::{self, Trust};
use airgate_oci::progress::Progress;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let progress = Progress::default();
    let streamed = bundle::verify_stream(data, "fuzz", &Trust::Unsigned, &progress);
    let Ok(mut file) = tempfile::NamedTempFile::new() else {
        return;
    };
    if file.write_all(data).is_err() {
        return;
    }
    let parallel = bundle::verify_parallel(file.path(), &Trust::Unsigned, 2, &progress);
    assert_eq!(
        streamed.is_ok(),
        parallel.is_ok(),
        "verify and push disagree: {:?} / {:?}",
        streamed.err().map(|e| e.to_string()),
        parallel.err().map(|e| e.to_string())
    );
    let _ = bundle::read_inventory(file.path());
});
