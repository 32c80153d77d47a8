//! Fuzz target: link/IP/TCP decoding of arbitrary frames for every link type.
#![no_main]

use apitap_core::PacketRef;
use apitap_wire::{decode, DecodeStats, LinkType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let link = LinkType::ALL[usize::from(selector) % LinkType::ALL.len()];
    let mut stats = DecodeStats::default();
    if let Some(m) = decode(link, frame, PacketRef::default(), &mut stats) {
        let end = m.payload_offset as usize + m.payload_len as usize;
        assert!(end <= frame.len());
    }
});
