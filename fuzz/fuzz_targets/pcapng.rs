//! Fuzz target: the pcapng reader over arbitrary bytes (after a valid section header, so
//! that the fuzzer reaches the interface and packet blocks). Every packet lies within the
//! input, and reading ends.
#![no_main]

use apitap_wire::pcapng::{NgNext, PcapNgFile};
use libfuzzer_sys::fuzz_target;

/// A little-endian section header block with no options.
const SHB: [u8; 28] = [
    0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 28, 0, 0, 0,
];

fuzz_target!(|data: &[u8]| {
    let bytes: Vec<u8> = SHB.iter().chain(data).copied().collect();
    // A small buffer, so that blocks larger than it take the growing path.
    let Ok((mut file, _)) = PcapNgFile::with_buffer(bytes.as_slice(), 256) else {
        return;
    };
    let mut total = 0usize;
    // A packet block is at least 16 bytes (a simple packet block with no data).
    for _ in 0..=bytes.len() / 16 {
        match file.next_record() {
            NgNext::Record(r, _) => {
                total += r.data.len();
                assert!(total <= bytes.len());
            }
            NgNext::End | NgNext::Truncated | NgNext::Error(_) => return,
        }
    }
    panic!("more packets than the input can hold");
});
