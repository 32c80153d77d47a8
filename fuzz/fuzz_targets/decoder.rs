//! Fuzz target: the reader's whole path, `Decoder::frame`, over a sequence of arbitrary
//! frames of one link type: decoding, the duplicate filter, fragment reassembly and the
//! nested-fragment loop. Every segment's payload lies inside the bytes returned with it,
//! and every frame is counted once.
#![no_main]

use apitap_core::{PacketRef, Timestamp};
use apitap_wire::{Decoder, DefragLimits, LinkType, UdpTunnels};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let link = LinkType::ALL[usize::from(selector) % LinkType::ALL.len()];
    let limits = DefragLimits {
        timeout_ms: 100,
        max_datagrams: 4,
        max_fragments: 8,
        max_bytes: 8192,
    };
    let dedup_window_us = if selector & 0x80 != 0 { 1000 } else { 0 };
    let mut decoder = Decoder::new(UdpTunnels::default(), dedup_window_us, Some(limits));
    let mut index = 0u64;
    // Each frame: a time step byte, a length byte, then that many bytes.
    while rest.len() >= 2 {
        let step = u64::from(rest[0]);
        let len = usize::from(rest[1]).min(rest.len() - 2);
        let frame = &rest[2..2 + len];
        rest = &rest[2 + len..];
        index += 1;
        let at = PacketRef {
            index,
            ts: Timestamp(i64::try_from(index * 1_000_000 + step * 10_000_000).unwrap_or(0)),
        };
        if let Some((meta, bytes)) = decoder.frame(link, frame, at) {
            let end = meta.payload_offset as usize + meta.payload_len as usize;
            assert!(end <= bytes.len());
        }
        let s = decoder.stats();
        assert_eq!(s.packets, index);
    }
});
