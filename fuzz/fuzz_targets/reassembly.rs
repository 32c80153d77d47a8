//! Fuzz target: TCP reassembly driven by an arbitrary sequence of segments.
#![no_main]

use apitap_core::{Side, TcpFlags};
use apitap_flow::{ReassemblyConfig, ReassemblyStats, Segment, TcpConn};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = ReassemblyConfig {
        max_ooo_bytes_per_direction: 4096,
        max_ooo_segments_per_direction: 16,
        ..ReassemblyConfig::default()
    };
    let mut stats = ReassemblyStats::default();
    let mut conn = TcpConn::new();
    let mut delivered = 0usize;
    // Each record: side/flags byte, seq (2 bytes, small space so segments overlap), ack
    // (2 bytes), length byte, then payload.
    let mut rest = data;
    while rest.len() >= 6 {
        let (hdr, tail) = rest.split_at(6);
        let from = if hdr[0] & 1 == 0 { Side::Lo } else { Side::Hi };
        let flags = TcpFlags(hdr[0] >> 1 & 0x1f);
        let seq = u32::from(u16::from_be_bytes([hdr[1], hdr[2]])).wrapping_add(u32::MAX - 1000);
        let ack = u32::from(u16::from_be_bytes([hdr[3], hdr[4]])).wrapping_add(u32::MAX - 1000);
        let len = usize::from(hdr[5]).min(tail.len());
        let (payload, next) = tail.split_at(len);
        let seg = Segment { from, seq, ack, flags, wire_len: len as u32 + u32::from(hdr[5] & 3) };
        conn.on_segment(&seg, payload, &cfg, &mut stats, &mut |ev| {
            if let apitap_flow::StreamEvent::Data { bytes, .. } = ev {
                delivered += bytes.len();
            }
        });
        assert!(conn.buffered_bytes() <= 2 * cfg.max_ooo_bytes_per_direction);
        rest = next;
    }
    conn.flush(&cfg, &mut stats, &mut |_| {});
    assert_eq!(conn.buffered_bytes(), 0);
    let _ = delivered;
});
