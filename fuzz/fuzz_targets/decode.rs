//! Fuzz target: link/IP/TCP decoding of arbitrary frames for every link type.
#![no_main]

use apitap_core::PacketRef;
use apitap_wire::{decode, DecodeStats, LinkType};
use libfuzzer_sys::fuzz_target;

const LINKS: [LinkType; 8] = [
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::Raw,
    LinkType::Ipv4,
    LinkType::Ipv6,
    LinkType::Null,
    LinkType::Loop,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let link = LINKS[usize::from(selector) % LINKS.len()];
    let mut stats = DecodeStats::default();
    if let Some(m) = decode(link, frame, PacketRef::default(), &mut stats) {
        let end = m.payload_offset as usize + m.payload_len as usize;
        assert!(end <= frame.len());
    }
});
