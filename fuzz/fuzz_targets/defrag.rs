//! Fuzz target: IPv4/IPv6 fragment reassembly driven by an arbitrary sequence of fragments
//! (mostly well-formed headers with fuzzed offsets, flags, ids, lengths and times, some raw
//! bytes), under small limits; every reassembled datagram is decoded too.
#![no_main]

use apitap_core::{PacketRef, Timestamp};
use apitap_wire::{
    decode_reassembled, Decap, DecodeStats, Defrag, DefragLimits, DefragStats, UdpTunnels,
};
use libfuzzer_sys::fuzz_target;

/// A fragment: IPv4 (protocol 6) or IPv6 with a fragment header, 10.0.0.x addresses.
fn fragment(v6: bool, id: u8, offset_units: u16, more: bool, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(48 + data.len());
    if v6 {
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[44, 64]);
        f.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        f.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[6, 0]);
        f.extend_from_slice(&((offset_units << 3) | u16::from(more)).to_be_bytes());
        f.extend_from_slice(&u32::from(id).to_be_bytes());
    } else {
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&((20 + data.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, id]);
        let fo = (offset_units & 0x1fff) | if more { 0x2000 } else { 0 };
        f.extend_from_slice(&fo.to_be_bytes());
        f.extend_from_slice(&[64, 6, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1]);
    }
    f.extend_from_slice(data);
    f
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let limits = DefragLimits {
        timeout_ms: 1 + u64::from(mode & 0x0f) * 100,
        max_datagrams: 1 + usize::from(mode >> 4 & 3) * 4,
        max_fragments: 1 + usize::from(mode >> 6) * 8,
        max_bytes: 4096,
    };
    let mut defrag = Defrag::new(limits);
    let mut stats = DefragStats::default();
    let mut decode_stats = DecodeStats::default();
    let mut out = Vec::new();
    let mut now = Timestamp(0);
    // Each record: control byte, offset (2 bytes), length byte, then that many bytes.
    while rest.len() >= 4 {
        let (hdr, tail) = rest.split_at(4);
        let control = hdr[0];
        let offset_units = u16::from_be_bytes([hdr[1], hdr[2]]) % 64;
        let len = usize::from(hdr[3]).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        now = now.plus_millis(u64::from(control >> 5) * 50);
        let frame = if control & 0x10 != 0 {
            payload.to_vec()
        } else {
            fragment(
                control & 1 != 0,
                control >> 1 & 3,
                offset_units,
                control & 8 != 0,
                payload,
            )
        };
        if defrag.push(&frame, Decap::default(), now, &mut stats, &mut out) {
            assert!(out.len() <= 65_535 + 40);
            let at = PacketRef { index: 1, ts: now };
            let tunnels = UdpTunnels::default();
            let _ = decode_reassembled(&out, Decap::default(), at, &tunnels, &mut decode_stats);
        }
        assert!(defrag.bytes_held() <= limits.max_bytes);
        assert!(defrag.in_progress() <= limits.max_datagrams);
        defrag.expire(now, &mut stats);
    }
});
