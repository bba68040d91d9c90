//! The tar header decoder: never a panic, and whatever it accepts is
//! exactly the header airgate would write for that name and size.
#![no_main]

use airgate_core::archive::{self, Block};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut block = [0u8; archive::BLOCK];
    let n = data.len().min(archive::BLOCK);
    block[..n].copy_from_slice(&data[..n]);
    if let Ok(Block::Entry { name, size }) = archive::parse_header(&block) {
        assert_eq!(archive::header(&name, size).ok(), Some(block));
    }
});
