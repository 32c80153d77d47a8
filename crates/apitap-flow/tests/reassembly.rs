//! Reassembly behaviour, rule by rule, plus properties over random segmentations.
#![allow(clippy::unwrap_used, missing_docs)]

use apitap_core::{Merge, Side, TcpFlags};
use apitap_flow::{ReassemblyConfig, ReassemblyStats, Segment, StreamEvent, TcpConn};
use proptest::prelude::*;

#[derive(Debug, PartialEq, Eq, Clone)]
enum Ev {
    Data(Side, Vec<u8>),
    Gap(Side, u64),
    Fin(Side),
    Reset(Side),
    Conflict(Side),
}

struct Harness {
    conn: TcpConn,
    cfg: ReassemblyConfig,
    stats: ReassemblyStats,
    events: Vec<Ev>,
}

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const FIN: u8 = TcpFlags::FIN;
const RST: u8 = TcpFlags::RST;

impl Harness {
    fn new() -> Self {
        Self::with(ReassemblyConfig::default())
    }
    fn with(cfg: ReassemblyConfig) -> Self {
        Harness {
            conn: TcpConn::new(),
            cfg,
            stats: ReassemblyStats::default(),
            events: Vec::new(),
        }
    }
    fn seg(&mut self, from: Side, seq: u32, ack: u32, flags: u8, payload: &[u8]) {
        self.seg_wire(from, seq, ack, flags, payload, payload.len() as u32)
    }
    fn seg_wire(&mut self, from: Side, seq: u32, ack: u32, flags: u8, payload: &[u8], wire: u32) {
        let s = Segment {
            from,
            seq,
            ack,
            flags: TcpFlags(flags),
            wire_len: wire,
        };
        let events = &mut self.events;
        self.conn
            .on_segment(&s, payload, &self.cfg, &mut self.stats, &mut |e| {
                events.push(conv(e))
            });
    }
    fn flush(&mut self) {
        let events = &mut self.events;
        self.conn
            .flush(&self.cfg, &mut self.stats, &mut |e| events.push(conv(e)));
    }
    /// Data of one side merged into runs, gaps as markers.
    fn stream(&self, side: Side) -> Vec<Ev> {
        let mut out: Vec<Ev> = Vec::new();
        for e in &self.events {
            match e {
                Ev::Data(s, d) if *s == side => {
                    if let Some(Ev::Data(_, last)) = out.last_mut() {
                        last.extend_from_slice(d);
                    } else {
                        out.push(e.clone());
                    }
                }
                Ev::Gap(s, n) if *s == side => {
                    if let Some(Ev::Gap(_, last)) = out.last_mut() {
                        *last += n;
                    } else {
                        out.push(Ev::Gap(*s, *n));
                    }
                }
                _ => {}
            }
        }
        out
    }
}

fn conv(e: StreamEvent<'_>) -> Ev {
    match e {
        StreamEvent::Data { side, bytes } => Ev::Data(side, bytes.to_vec()),
        StreamEvent::Gap { side, len } => Ev::Gap(side, len),
        StreamEvent::Fin { side } => Ev::Fin(side),
        StreamEvent::Reset { side } => Ev::Reset(side),
        StreamEvent::OverlapConflict { side } => Ev::Conflict(side),
    }
}

use Side::{Hi as S, Lo as C};

#[test]
fn in_order_is_zero_copy() {
    let mut conn = TcpConn::new();
    let cfg = ReassemblyConfig::default();
    let mut stats = ReassemblyStats::default();
    let payload = b"GET / HTTP/1.1\r\n\r\n".to_vec();
    let syn = Segment {
        from: C,
        seq: 99,
        ack: 0,
        flags: TcpFlags(SYN),
        wire_len: 0,
    };
    conn.on_segment(&syn, &[], &cfg, &mut stats, &mut |_| {});
    let seg = Segment {
        from: C,
        seq: 100,
        ack: 0,
        flags: TcpFlags(ACK),
        wire_len: payload.len() as u32,
    };
    let mut ptr = None;
    conn.on_segment(&seg, &payload, &cfg, &mut stats, &mut |e| {
        if let StreamEvent::Data { bytes, .. } = e {
            ptr = Some(bytes.as_ptr());
        }
    });
    assert_eq!(ptr, Some(payload.as_ptr()));
    assert_eq!(stats.in_order_segments, 1);
    assert_eq!(conn.buffered_bytes(), 0);
}

#[test]
fn reorder_is_buffered_then_delivered() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 4, 0, ACK, b"defgh");
    assert_eq!(h.conn.buffered_bytes(), 5);
    assert!(h.events.is_empty());
    h.seg(C, 1, 0, ACK, b"abc");
    assert_eq!(h.stream(C), vec![Ev::Data(C, b"abcdefgh".to_vec())]);
    assert_eq!(h.stats.ooo_segments_buffered, 1);
    assert_eq!(h.conn.buffered_bytes(), 0);
}

#[test]
fn retransmission_is_dropped() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 1, 0, ACK, b"abc");
    h.seg(C, 1, 0, ACK, b"abc");
    h.seg(C, 1, 0, ACK, b"");
    assert_eq!(h.stream(C), vec![Ev::Data(C, b"abc".to_vec())]);
    assert_eq!(h.stats.retransmitted_segments, 1);
}

#[test]
fn partial_overlap_is_trimmed() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 1, 0, ACK, b"abc");
    h.seg(C, 2, 0, ACK, b"bcdef");
    assert_eq!(h.stream(C), vec![Ev::Data(C, b"abcdef".to_vec())]);
    assert_eq!(h.stats.partial_overlaps, 1);
}

#[test]
fn conflicting_overlap_first_copy_wins_and_is_counted() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 5, 0, ACK, b"EFGH"); // buffered first
    h.seg(C, 5, 0, ACK, b"xxxx"); // conflicting copy
    h.seg(C, 1, 0, ACK, b"abcdzz"); // in order, overlaps the buffered EF with zz
    assert_eq!(h.stream(C), vec![Ev::Data(C, b"abcdEFGH".to_vec())]);
    assert_eq!(h.stats.overlap_conflicts, 2);
    let conflicts = h.events.iter().filter(|e| **e == Ev::Conflict(C)).count();
    assert_eq!(conflicts, 2, "one event per conflicting segment");
}

#[test]
fn buffer_overflow_declares_gap_and_delivers() {
    let mut h = Harness::with(ReassemblyConfig {
        max_ooo_bytes_per_direction: 8,
        max_ooo_segments_per_direction: 100,
        ..ReassemblyConfig::default()
    });
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 11, 0, ACK, b"12345"); // hole of 10 bytes before it
    h.seg(C, 16, 0, ACK, b"6789"); // would exceed 8 buffered bytes
    assert_eq!(
        h.stream(C),
        vec![Ev::Gap(C, 10), Ev::Data(C, b"123456789".to_vec())]
    );
    assert_eq!(h.stats.ooo_overflow_flushes, 1);
    assert_eq!(h.conn.buffered_bytes(), 0);
}

#[test]
fn single_segment_larger_than_buffer_is_not_lost() {
    let mut h = Harness::with(ReassemblyConfig {
        max_ooo_bytes_per_direction: 2,
        max_ooo_segments_per_direction: 1,
        ..ReassemblyConfig::default()
    });
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 4, 0, ACK, b"defgh");
    assert_eq!(
        h.stream(C),
        vec![Ev::Gap(C, 3), Ev::Data(C, b"defgh".to_vec())]
    );
}

#[test]
fn flush_buffered_gives_up_holes_but_keeps_the_connection() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 1, 0, ACK, b"ab");
    h.seg(C, 6, 0, ACK, b"fg");
    assert_eq!(h.conn.buffered_bytes(), 2);
    let events = &mut h.events;
    h.conn
        .flush_buffered(&mut h.stats, &mut |e| events.push(conv(e)));
    assert_eq!(h.conn.buffered_bytes(), 0);
    h.seg(C, 8, 0, ACK, b"hi");
    h.seg(C, 3, 0, ACK, b"cde"); // the hole's bytes arrive late: already given up
    assert_eq!(
        h.stream(C),
        vec![
            Ev::Data(C, b"ab".to_vec()),
            Ev::Gap(C, 3),
            Ev::Data(C, b"fghi".to_vec())
        ]
    );
    assert!(!h.conn.is_finished());
}

#[test]
fn ack_past_hole_declares_gap_before_peer_data() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg(S, 500, 1, SYN | ACK, b"");
    h.seg(C, 1, 501, ACK, b"abc");
    h.seg(C, 9, 501, ACK, b"xyz"); // 5 bytes (4..9) lost
                                   // Server acknowledges everything and answers.
    h.seg(S, 501, 12, ACK, b"resp");
    assert_eq!(
        h.events,
        vec![
            Ev::Data(C, b"abc".to_vec()),
            Ev::Gap(C, 5),
            Ev::Data(C, b"xyz".to_vec()),
            Ev::Data(S, b"resp".to_vec()),
        ]
    );
}

#[test]
fn ack_not_covering_hole_keeps_waiting() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 9, 0, ACK, b"xyz");
    h.seg(S, 500, 5, ACK, b"");
    assert!(h.stream(C).is_empty());
    h.seg(C, 1, 0, ACK, b"abcdefgh");
    assert_eq!(h.stream(C), vec![Ev::Data(C, b"abcdefghxyz".to_vec())]);
}

#[test]
fn snaplen_truncation_becomes_gap() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg_wire(C, 1, 0, ACK, b"abc", 10);
    h.seg(C, 11, 0, ACK, b"next");
    assert_eq!(
        h.stream(C),
        vec![
            Ev::Data(C, b"abc".to_vec()),
            Ev::Gap(C, 7),
            Ev::Data(C, b"next".to_vec())
        ]
    );
    assert_eq!(h.stats.truncated_payload_bytes, 7);
}

#[test]
fn fin_fires_after_data_even_out_of_order() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 4, 0, ACK | FIN, b"def");
    assert!(h.events.is_empty());
    h.seg(C, 1, 0, ACK, b"abc");
    assert_eq!(
        h.events,
        vec![
            Ev::Data(C, b"abc".to_vec()),
            Ev::Data(C, b"def".to_vec()),
            Ev::Fin(C)
        ]
    );
    h.seg(S, 0, 0, SYN | ACK, b"");
    h.seg(S, 1, 0, ACK | FIN, b"");
    assert_eq!(h.events.last(), Some(&Ev::Fin(S)));
    assert!(h.conn.is_finished());
    h.seg(C, 7, 0, ACK, b"late");
    assert_eq!(h.stats.data_after_close, 4);
}

#[test]
fn rst_finishes_and_ignores_later_data() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 1, 0, ACK, b"ab");
    h.seg(S, 77, 0, RST, b"rst payload");
    assert_eq!(h.events, vec![Ev::Data(C, b"ab".to_vec()), Ev::Reset(S)]);
    assert!(h.conn.is_finished());
    h.seg(C, 3, 0, ACK, b"cd");
    h.seg(C, 5, 0, ACK | FIN, b"");
    h.flush();
    assert_eq!(h.events.len(), 2, "nothing after Reset: {:?}", h.events);
    assert_eq!(h.stats.data_after_close, 2);
}

#[test]
fn rst_delivers_buffered_data_before_reset() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 1, 0, ACK, b"ab");
    h.seg(C, 6, 0, ACK, b"fg");
    h.seg(S, 900, 0, SYN | ACK, b"");
    h.seg(S, 903, 0, ACK, b"zz");
    h.seg(C, 8, 0, RST, b"");
    assert_eq!(
        h.events,
        vec![
            Ev::Data(C, b"ab".to_vec()),
            Ev::Gap(C, 3),
            Ev::Data(C, b"fg".to_vec()),
            Ev::Gap(S, 2),
            Ev::Data(S, b"zz".to_vec()),
            Ev::Reset(C),
        ]
    );
    assert_eq!(h.conn.buffered_bytes(), 0);
    h.flush();
    assert_eq!(h.events.len(), 6);
}

#[test]
fn syn_with_payload_is_data() {
    let mut h = Harness::new();
    h.seg(C, 1000, 0, SYN, b"GET /");
    h.seg(C, 1006, 0, ACK, b" HTTP");
    assert_eq!(h.stream(C), vec![Ev::Data(C, b"GET / HTTP".to_vec())]);
    assert_eq!(h.conn.client_side(), Some(C));
}

#[test]
fn port_reuse_is_a_new_connection_but_a_retransmitted_syn_is_not() {
    let mut h = Harness::new();
    let syn = |seq| Segment {
        from: C,
        seq,
        ack: 0,
        flags: TcpFlags(SYN),
        wire_len: 0,
    };
    assert!(!h.conn.is_new_connection(&syn(100)));
    h.seg(C, 100, 0, SYN, b"");
    assert!(!h.conn.is_new_connection(&syn(100)), "retransmitted SYN");
    assert!(h.conn.is_new_connection(&syn(5000)), "new ISN");
    let mut m = Harness::new();
    m.seg(C, 7, 0, ACK, b"midstream data");
    assert!(m.conn.is_new_connection(&syn(1)));
    let mut f = Harness::new();
    f.seg(C, 100, 0, SYN, b"");
    f.seg(C, 101, 0, ACK | FIN, b"");
    assert!(f.conn.is_new_connection(&syn(100)), "SYN after FIN");
}

#[test]
fn client_side_from_syn_ack() {
    let mut h = Harness::new();
    h.seg(S, 5, 0, SYN | ACK, b"");
    assert_eq!(h.conn.client_side(), Some(C));
    assert!(h.conn.saw_syn());
}

#[test]
fn midstream_pickup() {
    let mut h = Harness::new();
    h.seg(S, 12345, 0, ACK, b"HTTP/1.1 200 OK\r\n");
    h.seg(S, 12345 + 17, 0, ACK, b"\r\n");
    h.seg(S, 12000, 0, ACK, b"old");
    assert_eq!(
        h.stream(S),
        vec![Ev::Data(S, b"HTTP/1.1 200 OK\r\n\r\n".to_vec())]
    );
    assert_eq!(h.conn.client_side(), None);
}

#[test]
fn sequence_wraparound() {
    let mut h = Harness::new();
    let isn = u32::MAX - 3;
    h.seg(C, isn, 0, SYN, b"");
    h.seg(C, isn.wrapping_add(6), 0, ACK, b"fgh"); // after the wrap, out of order
    h.seg(C, isn.wrapping_add(1), 0, ACK, b"abcde"); // crosses 0
    assert_eq!(h.stream(C), vec![Ev::Data(C, b"abcdefgh".to_vec())]);
}

#[test]
fn flush_reports_holes_and_is_idempotent() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 1, 0, ACK, b"ab");
    h.seg(C, 6, 0, ACK | FIN, b"fg");
    h.flush();
    let n = h.events.len();
    h.flush();
    assert_eq!(h.events.len(), n);
    assert_eq!(
        h.events,
        vec![
            Ev::Data(C, b"ab".to_vec()),
            Ev::Gap(C, 3),
            Ev::Data(C, b"fg".to_vec()),
            Ev::Fin(C)
        ]
    );
}

#[test]
fn flush_reports_acked_but_unseen_tail() {
    let mut h = Harness::new();
    h.seg(S, 0, 0, SYN | ACK, b"");
    h.seg(S, 1, 0, ACK, b"abc");
    // The client acknowledged 10 bytes; 7 were never captured.
    h.seg(C, 50, 11, ACK, b"");
    h.flush();
    assert_eq!(
        h.stream(S),
        vec![Ev::Data(S, b"abc".to_vec()), Ev::Gap(S, 7)]
    );
}

#[test]
fn far_future_segment_is_out_of_window() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 1 << 30, 0, ACK, b"bogus");
    assert_eq!(h.stats.out_of_window, 1);
    assert_eq!(h.conn.buffered_bytes(), 0);
}

#[test]
fn keepalive_and_pure_acks_are_not_retransmissions() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 1, 0, ACK, b"abc");
    h.seg(C, 3, 0, ACK, b""); // keep-alive: seq = next - 1, no payload
    h.seg(C, 4, 0, ACK, b""); // pure ACK
    assert_eq!(h.stats.retransmitted_segments, 0);
    assert_eq!(h.stats.segments, 4);
    assert_eq!(h.stream(C), vec![Ev::Data(C, b"abc".to_vec())]);
}

#[test]
fn duplicate_of_buffered_segment_is_a_retransmission() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 5, 0, ACK, b"efg");
    h.seg(C, 5, 0, ACK, b"efg");
    h.seg(C, 6, 0, ACK, b"fg");
    assert_eq!(h.stats.retransmitted_segments, 2);
    assert_eq!(h.stats.ooo_segments_buffered, 1);
    assert_eq!(h.conn.buffered_bytes(), 3);
    assert_eq!(h.stats.overlap_conflicts, 0);
}

#[test]
fn segment_covering_several_buffered_ones_fills_the_holes_first_wins() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 3, 0, ACK, b"CD"); // 3..5
    h.seg(C, 7, 0, ACK, b"GH"); // 7..9
    h.seg(C, 2, 0, ACK, b"bxxefxxij"); // 2..11, conflicts with both buffered runs
    assert_eq!(h.conn.buffered_bytes(), 9);
    assert_eq!(h.stats.partial_overlaps, 1);
    assert_eq!(h.stats.overlap_conflicts, 2);
    h.seg(C, 1, 0, ACK, b"a");
    assert_eq!(h.stream(C), vec![Ev::Data(C, b"abCDefGHij".to_vec())]);
    assert_eq!(h.conn.buffered_bytes(), 0);
}

#[test]
fn in_order_segment_overlapping_buffer_is_a_partial_overlap() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 4, 0, ACK, b"de");
    h.seg(C, 1, 0, ACK, b"abcdefg");
    assert_eq!(h.stream(C), vec![Ev::Data(C, b"abcdefg".to_vec())]);
    assert_eq!(h.stats.partial_overlaps, 1);
    assert_eq!(h.stats.overlap_conflicts, 0);
    assert_eq!(h.stats.in_order_segments, 1);
}

#[test]
fn in_order_after_trim_is_still_zero_copy() {
    let mut conn = TcpConn::new();
    let cfg = ReassemblyConfig::default();
    let mut stats = ReassemblyStats::default();
    let seg = |seq: u32, len: usize| Segment {
        from: C,
        seq,
        ack: 0,
        flags: TcpFlags(ACK),
        wire_len: len as u32,
    };
    let first = b"0123456789".to_vec();
    conn.on_segment(
        &seg(u32::MAX - 4, 10),
        &first,
        &cfg,
        &mut stats,
        &mut |_| {},
    );
    let second = b"56789abcdef".to_vec();
    let mut got = Vec::new();
    conn.on_segment(&seg(0, 11), &second, &cfg, &mut stats, &mut |e| {
        if let StreamEvent::Data { bytes, .. } = e {
            got.push((bytes.as_ptr(), bytes.to_vec()));
        }
    });
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, second[5..].as_ptr());
    assert_eq!(got[0].1, b"abcdef");
    assert_eq!(stats.partial_overlaps, 1);
}

#[test]
fn segment_count_bound_declares_gaps() {
    let mut h = Harness::with(ReassemblyConfig {
        max_ooo_bytes_per_direction: 1 << 20,
        max_ooo_segments_per_direction: 2,
        ..ReassemblyConfig::default()
    });
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 3, 0, ACK, b"c"); // hole 1..3
    h.seg(C, 5, 0, ACK, b"e"); // hole 4..5
    assert!(h.events.is_empty());
    h.seg(C, 7, 0, ACK, b"g"); // third segment: the first hole gives way
    assert_eq!(h.stream(C), vec![Ev::Gap(C, 2), Ev::Data(C, b"c".to_vec())]);
    assert_eq!(h.stats.ooo_overflow_flushes, 1);
    assert_eq!(h.conn.buffered_bytes(), 2);
    // A segment filling two holes at once adds two pieces: over the bound again.
    h.seg(C, 6, 0, ACK, b"fgh"); // 6 and 8 are new, 7 is buffered
    assert_eq!(
        h.stream(C),
        vec![
            Ev::Gap(C, 2),
            Ev::Data(C, b"c".to_vec()),
            Ev::Gap(C, 1),
            Ev::Data(C, b"efgh".to_vec())
        ]
    );
    assert_eq!(h.stats.ooo_overflow_flushes, 2);
    assert_eq!(h.conn.buffered_bytes(), 0);
}

#[test]
fn overflow_with_new_segment_in_front_makes_it_in_order() {
    let mut h = Harness::with(ReassemblyConfig {
        max_ooo_bytes_per_direction: 4,
        max_ooo_segments_per_direction: 100,
        ..ReassemblyConfig::default()
    });
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 10, 0, ACK, b"jkl");
    h.seg(C, 5, 0, ACK, b"efg"); // in front of the buffered run; 6 bytes > 4
    assert_eq!(
        h.stream(C),
        vec![Ev::Gap(C, 4), Ev::Data(C, b"efg".to_vec())]
    );
    assert_eq!(h.conn.buffered_bytes(), 3);
    h.seg(C, 8, 0, ACK, b"hi");
    assert_eq!(
        h.stream(C),
        vec![Ev::Gap(C, 4), Ev::Data(C, b"efghijkl".to_vec())]
    );
    assert_eq!(h.stats.gaps, 1);
}

#[test]
fn ack_driven_gap_exact_length_and_order_with_fin() {
    let mut h = Harness::new();
    h.seg(C, 100, 0, SYN, b"");
    h.seg(S, 700, 101, SYN | ACK, b"");
    h.seg(C, 101, 701, ACK, b"GET ");
    h.seg(C, 117, 701, ACK | FIN, b"tail"); // 105..117 lost (12 bytes), FIN at 121
    assert_eq!(h.conn.buffered_bytes(), 4);
    // The server acknowledges the FIN and answers in the same segment.
    h.seg(S, 701, 122, ACK, b"HTTP");
    assert_eq!(
        h.events,
        vec![
            Ev::Data(C, b"GET ".to_vec()),
            Ev::Gap(C, 12),
            Ev::Data(C, b"tail".to_vec()),
            Ev::Fin(C),
            Ev::Data(S, b"HTTP".to_vec()),
        ]
    );
    assert_eq!(h.stats.gap_bytes, 12);
}

#[test]
fn acknowledged_fin_with_missing_data_fires_after_gap() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 1, 0, ACK, b"ab");
    h.seg(C, 9, 0, ACK | FIN, b""); // 3..9 lost
    assert!(!h.events.contains(&Ev::Fin(C)));
    h.seg(S, 50, 9, ACK, b""); // acknowledges the data, not the FIN
    assert!(!h.events.contains(&Ev::Fin(C)));
    h.seg(S, 50, 10, ACK, b"");
    assert_eq!(
        h.events,
        vec![Ev::Data(C, b"ab".to_vec()), Ev::Gap(C, 6), Ev::Fin(C)]
    );
}

#[test]
fn implausible_ack_does_not_declare_gaps() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 5, 0, ACK, b"xyz");
    h.seg(S, 0, 0x9000_0000, ACK, b"");
    h.seg(S, 0, 0x7000_0000, ACK, b"");
    assert!(h.stream(C).is_empty());
    assert_eq!(h.conn.buffered_bytes(), 3);
}

#[test]
fn snaplen_truncated_segment_out_of_order() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg_wire(C, 4, 0, ACK, b"de", 6); // 4..10 on the wire, 4..6 captured
    h.seg(C, 10, 0, ACK, b"jk");
    h.seg(C, 1, 0, ACK, b"abc");
    h.flush();
    assert_eq!(
        h.stream(C),
        vec![
            Ev::Data(C, b"abcde".to_vec()),
            Ev::Gap(C, 4),
            Ev::Data(C, b"jk".to_vec())
        ]
    );
    assert_eq!(h.stats.truncated_payload_bytes, 4);
}

#[test]
fn snaplen_tail_partly_covered_by_buffer() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 6, 0, ACK, b"FGHIJK"); // 6..12 buffered
    h.seg_wire(C, 1, 0, ACK, b"abc", 10); // 1..11 on the wire, 1..4 captured
    assert_eq!(
        h.stream(C),
        vec![
            Ev::Data(C, b"abc".to_vec()),
            Ev::Gap(C, 7),
            Ev::Data(C, b"K".to_vec())
        ]
    );
    assert_eq!(h.conn.buffered_bytes(), 0);
}

#[test]
fn huge_claimed_wire_len_is_capped() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg_wire(C, 1, 0, ACK, b"ab", u32::MAX);
    assert_eq!(
        h.stream(C),
        vec![Ev::Data(C, b"ab".to_vec()), Ev::Gap(C, (1 << 20) - 2)]
    );
    h.seg(C, 1 + (1 << 20), 0, ACK, b"next");
    assert_eq!(h.stream(C).last(), Some(&Ev::Data(C, b"next".to_vec())));
}

#[test]
fn data_beyond_a_known_fin_is_dropped() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 8, 0, ACK, b"hijk"); // buffered 8..12
    h.seg(C, 4, 0, ACK | FIN, b"def"); // FIN at 7: the buffered run lies beyond it
    assert_eq!(h.conn.buffered_bytes(), 3);
    h.seg(C, 5, 0, ACK, b"efghij"); // 5..7 already buffered, 7..11 beyond the FIN
    assert_eq!(h.conn.buffered_bytes(), 3);
    assert_eq!(h.stats.retransmitted_segments, 1);
    h.seg(C, 1, 0, ACK, b"abc");
    assert_eq!(
        h.events,
        vec![
            Ev::Data(C, b"abc".to_vec()),
            Ev::Data(C, b"def".to_vec()),
            Ev::Fin(C)
        ]
    );
    assert_eq!(h.stats.data_after_close, 4 + 4);
    h.seg(C, 7, 0, ACK, b"xy");
    h.seg(C, 1, 0, ACK, b"abc"); // retransmission after FIN: not data after close
    assert_eq!(h.stats.data_after_close, 10);
    assert_eq!(h.stats.retransmitted_segments, 2);
}

#[test]
fn fin_before_delivered_data_is_ignored() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg(C, 1, 0, ACK, b"abcdef");
    h.seg(C, 2, 0, ACK | FIN, b""); // claims the stream ended at 2: forged
    h.seg(C, 7, 0, ACK | FIN, b"g");
    assert_eq!(
        h.events,
        vec![
            Ev::Data(C, b"abcdef".to_vec()),
            Ev::Data(C, b"g".to_vec()),
            Ev::Fin(C)
        ]
    );
}

#[test]
fn fin_only_once_and_duplicate_syn_ignored() {
    let mut h = Harness::new();
    h.seg(C, 10, 0, SYN, b"");
    h.seg(C, 10, 0, SYN, b"");
    h.seg(C, 11, 0, ACK | FIN, b"x");
    h.seg(C, 11, 0, ACK | FIN, b"x");
    h.seg(C, 12, 0, ACK | FIN, b"");
    h.flush();
    assert_eq!(h.events, vec![Ev::Data(C, b"x".to_vec()), Ev::Fin(C)]);
    assert!(!h.conn.is_finished(), "only one side finished");
}

#[test]
fn midstream_side_has_no_client_and_old_data_is_retransmission() {
    let mut h = Harness::new();
    h.seg(C, 5000, 9, ACK, b"");
    assert!(h.events.is_empty());
    h.seg(C, 5000, 9, ACK, b"abc");
    h.seg(C, 4990, 9, ACK, b"0123456789");
    h.seg(C, 4999, 9, ACK, b"zab");
    assert_eq!(h.stream(C), vec![Ev::Data(C, b"abc".to_vec())]);
    assert_eq!(h.stats.retransmitted_segments, 2);
    assert_eq!(h.conn.client_side(), None);
    assert!(!h.conn.saw_syn());
}

#[test]
fn client_side_from_syn() {
    let mut h = Harness::new();
    assert_eq!(h.conn.client_side(), None);
    h.seg(S, 5, 0, SYN, b"");
    assert_eq!(h.conn.client_side(), Some(S));
    h.seg(C, 9, 6, SYN | ACK, b"");
    assert_eq!(h.conn.client_side(), Some(S));
}

#[test]
fn wraparound_in_order_and_fin_across_zero() {
    let mut h = Harness::new();
    let isn = u32::MAX - 1;
    h.seg(C, isn, 0, SYN, b""); // data starts at u32::MAX
    h.seg(C, 2, 0, ACK | FIN, b"cd"); // after the wrap, FIN at 4
    h.seg(C, u32::MAX, 0, ACK, b"xab"); // u32::MAX, 0, 1
    h.seg(S, 0, 5, ACK, b"");
    assert_eq!(
        h.events,
        vec![
            Ev::Data(C, b"xab".to_vec()),
            Ev::Data(C, b"cd".to_vec()),
            Ev::Fin(C)
        ]
    );
}

#[test]
fn both_fins_finish_the_connection() {
    let mut h = Harness::new();
    h.seg(C, 0, 0, SYN, b"");
    h.seg(S, 0, 1, SYN | ACK, b"");
    h.seg(C, 1, 1, ACK | FIN, b"q");
    assert!(!h.conn.is_finished());
    h.seg(S, 1, 3, ACK | FIN, b"r");
    assert!(h.conn.is_finished());
    assert_eq!(
        h.events,
        vec![
            Ev::Data(C, b"q".to_vec()),
            Ev::Fin(C),
            Ev::Data(S, b"r".to_vec()),
            Ev::Fin(S)
        ]
    );
}

#[test]
fn flush_orders_lo_then_hi_and_is_idempotent() {
    let mut h = Harness::new();
    h.seg(S, 0, 0, SYN | ACK, b"");
    h.seg(C, 0, 0, SYN, b"");
    h.seg(S, 3, 0, ACK | FIN, b"s");
    h.seg(C, 3, 0, ACK, b"c");
    h.flush();
    let expected = vec![
        Ev::Gap(C, 2),
        Ev::Data(C, b"c".to_vec()),
        Ev::Gap(S, 2),
        Ev::Data(S, b"s".to_vec()),
        Ev::Fin(S),
    ];
    assert_eq!(h.events, expected);
    let stats = h.stats.clone();
    h.flush();
    assert_eq!(h.events, expected);
    assert_eq!(h.stats, stats);
}

#[test]
fn stats_add_sums_every_counter() {
    let mut a = ReassemblyStats {
        segments: 1,
        in_order_segments: 2,
        ooo_segments_buffered: 3,
        retransmitted_segments: 4,
        partial_overlaps: 5,
        overlap_conflicts: 6,
        ooo_overflow_flushes: 7,
        out_of_window: 8,
        gaps: 9,
        gap_bytes: 10,
        truncated_payload_bytes: 11,
        data_after_close: 12,
    };
    let b = a.clone();
    a.merge(&b);
    assert_eq!(
        a,
        ReassemblyStats {
            segments: 2,
            in_order_segments: 4,
            ooo_segments_buffered: 6,
            retransmitted_segments: 8,
            partial_overlaps: 10,
            overlap_conflicts: 12,
            ooo_overflow_flushes: 14,
            out_of_window: 16,
            gaps: 18,
            gap_bytes: 20,
            truncated_payload_bytes: 22,
            data_after_close: 24,
        }
    );
}

/// Cuts `data` into segments at `cuts` (sorted offsets).
fn segments(data: &[u8], cuts: &[usize]) -> Vec<(usize, Vec<u8>)> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    points.push(0);
    points.push(data.len());
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| (w[0], data[w[0]..w[1]].to_vec()))
        .collect()
}

/// Checks events of one side against the original stream: Data at the right offsets,
/// Gaps skipping, returns the final offset. Fails on anything after Fin or Reset.
fn replay(events: &[Ev], side: Side, data: &[u8]) -> Result<(usize, bool), TestCaseError> {
    let mut cursor = 0usize;
    let mut fin = false;
    for e in events {
        match e {
            Ev::Data(s, d) if *s == side => {
                prop_assert!(!fin, "data after Fin");
                prop_assert!(!d.is_empty());
                prop_assert_eq!(Some(&d[..]), data.get(cursor..cursor + d.len()));
                cursor += d.len();
            }
            Ev::Gap(s, n) if *s == side => {
                prop_assert!(!fin, "gap after Fin");
                prop_assert!(*n > 0);
                cursor += *n as usize;
                prop_assert!(cursor <= data.len());
            }
            Ev::Fin(s) if *s == side => {
                prop_assert!(!fin, "second Fin");
                fin = true;
            }
            _ => {}
        }
    }
    Ok((cursor, fin))
}

/// Shuffles `v` deterministically from `order`.
fn shuffle<T>(v: &mut [T], order: &[u32]) {
    let n = v.len();
    if n == 0 {
        return;
    }
    for (i, r) in order.iter().enumerate() {
        v.swap(i % n, (*r as usize) % n);
    }
}

fn isn_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![
        any::<u32>(),
        (0u32..5000).prop_map(|d| u32::MAX - d),
        Just(u32::MAX),
        Just(0),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any segmentation, order, duplication and same-byte overlap yields the exact stream,
    /// then one Fin.
    #[test]
    fn any_order_duplication_and_overlap_gives_the_stream(
        data in proptest::collection::vec(any::<u8>(), 0..4000),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
        order in proptest::collection::vec(any::<u32>(), 0..80),
        dups in proptest::collection::vec((any::<usize>(), any::<usize>(), 1usize..200), 0..10),
        isn in isn_strategy(),
    ) {
        let mut segs: Vec<(usize, Vec<u8>, u8)> = segments(&data, &cuts)
            .into_iter()
            .map(|(o, b)| (o, b, ACK))
            .collect();
        // Extra copies: duplicates and overlapping re-segmentations with the same bytes.
        if !data.is_empty() {
            for (a, b, len) in &dups {
                let start = a % data.len();
                let end = (start + len).min(data.len());
                segs.push((start, data[start..end].to_vec(), ACK));
                let s2 = b % data.len();
                segs.push((s2, data[s2..].iter().take(*len).copied().collect(), ACK));
            }
        }
        segs.push((data.len(), Vec::new(), ACK | FIN));
        shuffle(&mut segs, &order);
        let mut h = Harness::new();
        h.seg(C, isn, 0, SYN, b"");
        for (off, bytes, flags) in &segs {
            h.seg(C, isn.wrapping_add(1).wrapping_add(*off as u32), 0, *flags, bytes);
        }
        h.flush();
        let mut expected = Vec::new();
        if !data.is_empty() {
            expected.push(Ev::Data(C, data.clone()));
        }
        prop_assert_eq!(h.stream(C), expected);
        prop_assert_eq!(h.events.last(), Some(&Ev::Fin(C)));
        prop_assert!(!h.events.iter().any(|e| matches!(e, Ev::Gap(..))));
        prop_assert_eq!(h.stats.gaps, 0);
        prop_assert_eq!(h.stats.overlap_conflicts, 0);
        prop_assert_eq!(h.conn.buffered_bytes(), 0);
    }

    /// Lost segments (never resent) become gaps of exactly their size at the right place,
    /// in any arrival order; adjacent losses merge into one run.
    #[test]
    fn lost_segments_become_exact_gaps(
        data in proptest::collection::vec(any::<u8>(), 1..4000),
        cuts in proptest::collection::vec(any::<usize>(), 1..30),
        lose in proptest::collection::vec(any::<bool>(), 30),
        one in any::<usize>(),
        order in proptest::collection::vec(any::<u32>(), 0..60),
        isn in isn_strategy(),
    ) {
        let all = segments(&data, &cuts);
        // At least one loss: segment `one`, plus any marked in `lose`.
        let lost_index = one % all.len();
        let lost: Vec<bool> = (0..all.len())
            .map(|i| i == lost_index || lose.get(i).copied().unwrap_or(false))
            .collect();
        let mut expected: Vec<Ev> = Vec::new();
        for ((_, bytes), gone) in all.iter().zip(&lost) {
            match (expected.last_mut(), gone) {
                (Some(Ev::Gap(_, n)), true) => *n += bytes.len() as u64,
                (Some(Ev::Data(_, d)), false) => d.extend_from_slice(bytes),
                (_, true) => expected.push(Ev::Gap(C, bytes.len() as u64)),
                (_, false) => expected.push(Ev::Data(C, bytes.clone())),
            }
        }
        let mut segs: Vec<(usize, Vec<u8>, u8)> = all
            .into_iter()
            .zip(&lost)
            .filter(|(_, gone)| !**gone)
            .map(|((o, b), _)| (o, b, ACK))
            .collect();
        segs.push((data.len(), Vec::new(), ACK | FIN));
        shuffle(&mut segs, &order);
        let mut h = Harness::new();
        h.seg(C, isn, 0, SYN, b"");
        for (off, bytes, flags) in &segs {
            h.seg(C, isn.wrapping_add(1).wrapping_add(*off as u32), 0, *flags, bytes);
        }
        h.flush();
        prop_assert_eq!(h.stream(C), expected);
        prop_assert_eq!(h.events.last(), Some(&Ev::Fin(C)));
        let lost_bytes: u64 = h.stream(C).iter().map(|e| match e {
            Ev::Gap(_, n) => *n,
            _ => 0,
        }).sum();
        prop_assert_eq!(h.stats.gap_bytes, lost_bytes);
    }

    /// With tiny buffer bounds, whatever arrives: the buffer never exceeds its byte bound,
    /// Data events carry the right bytes at the right offsets, and Data + Gap cover the
    /// whole stream exactly once by the end.
    #[test]
    fn bounded_buffer_stays_consistent(
        data in proptest::collection::vec(any::<u8>(), 1..2000),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
        order in proptest::collection::vec(any::<u32>(), 0..80),
        dups in proptest::collection::vec((any::<usize>(), 1usize..300), 0..10),
        max_bytes in 0usize..400,
        max_segs in 0usize..6,
        isn in isn_strategy(),
    ) {
        let mut segs = segments(&data, &cuts);
        for (a, len) in &dups {
            let start = a % data.len();
            let end = (start + len).min(data.len());
            segs.push((start, data[start..end].to_vec()));
        }
        shuffle(&mut segs, &order);
        let mut h = Harness::with(ReassemblyConfig {
            max_ooo_bytes_per_direction: max_bytes,
            max_ooo_segments_per_direction: max_segs,
            ..ReassemblyConfig::default()
        });
        h.seg(C, isn, 0, SYN, b"");
        for (off, bytes) in &segs {
            h.seg(C, isn.wrapping_add(1).wrapping_add(*off as u32), 0, ACK, bytes);
            prop_assert!(h.conn.buffered_bytes() <= max_bytes);
        }
        h.seg(C, isn.wrapping_add(1).wrapping_add(data.len() as u32), 0, ACK | FIN, b"");
        h.flush();
        let (end, fin) = replay(&h.events, C, &data)?;
        prop_assert_eq!(end, data.len());
        prop_assert!(fin);
        prop_assert_eq!(h.conn.buffered_bytes(), 0);
    }

    /// Arbitrary segments from both sides (random flags, sequence and ack numbers near each
    /// other, lengths, truncation, tiny bounds): no panic, per-side event grammar holds,
    /// nothing follows Reset, the buffer stays bounded, flush empties it, a second flush
    /// emits nothing.
    #[test]
    fn hostile_segments_keep_invariants(
        segs in proptest::collection::vec(
            (any::<bool>(), 0u32..3000, 0u32..3000, any::<u8>(), 0u32..400, 0usize..300),
            0..80,
        ),
        base in isn_strategy(),
        max_bytes in 0usize..1000,
        max_segs in 0usize..8,
    ) {
        let mut h = Harness::with(ReassemblyConfig {
            max_ooo_bytes_per_direction: max_bytes,
            max_ooo_segments_per_direction: max_segs,
            ..ReassemblyConfig::default()
        });
        let bytes: Vec<u8> = (0..400u32).map(|i| (i % 7) as u8).collect();
        for (lo, seq, ack, flags, wire, cap) in &segs {
            let side = if *lo { C } else { S };
            let payload = &bytes[..(*cap).min(bytes.len())];
            h.seg_wire(
                side,
                base.wrapping_add(*seq),
                base.wrapping_add(*ack),
                *flags,
                payload,
                *wire,
            );
            prop_assert!(h.conn.buffered_bytes() <= 2 * max_bytes);
        }
        h.flush();
        prop_assert_eq!(h.conn.buffered_bytes(), 0);
        let n = h.events.len();
        let stats = h.stats.clone();
        h.flush();
        prop_assert_eq!(h.events.len(), n);
        prop_assert_eq!(&h.stats, &stats);
        // Grammar: per side nothing after Fin, at most one Fin; nothing after Reset.
        let mut fin = [false, false];
        let mut reset = false;
        for e in &h.events {
            prop_assert!(!reset, "event after Reset: {:?}", e);
            match e {
                Ev::Data(s, d) => {
                    prop_assert!(!fin[s.index()]);
                    prop_assert!(!d.is_empty());
                }
                Ev::Gap(s, g) => {
                    prop_assert!(!fin[s.index()]);
                    prop_assert!(*g > 0);
                }
                Ev::Fin(s) => {
                    prop_assert!(!fin[s.index()]);
                    fin[s.index()] = true;
                }
                Ev::Reset(_) => reset = true,
                Ev::Conflict(s) => prop_assert!(!fin[s.index()]),
            }
        }
        if reset || (fin[0] && fin[1]) {
            prop_assert!(h.conn.is_finished());
        }
        let gap_events = h.events.iter().filter(|e| matches!(e, Ev::Gap(..))).count() as u64;
        prop_assert_eq!(h.stats.gaps, gap_events);
        prop_assert_eq!(stats.segments, segs.len() as u64);
    }
}
