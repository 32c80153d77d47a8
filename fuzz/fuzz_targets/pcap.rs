//! Fuzz target: the pcap file reader over arbitrary records (after a valid file header in
//! the byte order and resolution the first byte picks, so that the fuzzer reaches the
//! records). Every packet lies within the input, and reading ends.
#![no_main]

use apitap_wire::pcapfile::{Next, PcapFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, records)) = data.split_first() else {
        return;
    };
    let magic: u32 = if pick & 1 == 0 { 0xa1b2_c3d4 } else { 0xa1b2_3c4d };
    let big = pick & 2 != 0;
    let word = |v: u32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut bytes = word(magic).to_vec();
    // Version 2.4.
    bytes.extend_from_slice(if big { &[0, 2, 0, 4] } else { &[2, 0, 4, 0] });
    // Time zone, accuracy, snapshot length (0: the maximum), Ethernet.
    for v in [0, 0, u32::from(pick >> 2) * 1024, 1] {
        bytes.extend_from_slice(&word(v));
    }
    bytes.extend_from_slice(records);
    let Ok(mut file) = PcapFile::open(bytes.as_slice()) else {
        return;
    };
    let mut total = 0usize;
    // A record is at least its 16-byte header.
    for _ in 0..=bytes.len() / 16 {
        match file.next_record() {
            Next::Record(r) => {
                total += r.data.len() + 16;
                assert!(total <= bytes.len());
            }
            Next::End | Next::Truncated | Next::Error(_) => return,
        }
    }
    panic!("more records than the input can hold");
});
