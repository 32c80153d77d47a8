//! Reassembly behaviour, rule by rule, plus properties over random segmentations.
#![allow(clippy::unwrap_used, missing_docs)]

use apitap_core::{Side, TcpFlags};
use apitap_flow::{ReassemblyConfig, ReassemblyStats, Segment, StreamEvent, TcpConn};
use proptest::prelude::*;

#[derive(Debug, PartialEq, Eq, Clone)]
enum Ev {
    Data(Side, Vec<u8>),
    Gap(Side, u64),
    Fin(Side),
    Reset(Side),
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
    h.seg(S, 77, 0, RST, b"");
    assert_eq!(h.events.last(), Some(&Ev::Reset(S)));
    assert!(h.conn.is_finished());
    h.seg(C, 3, 0, ACK, b"cd");
    assert_eq!(h.stream(C), vec![Ev::Data(C, b"ab".to_vec())]);
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any segmentation, order, duplication and same-byte overlap yields the exact stream.
    #[test]
    fn any_order_duplication_and_overlap_gives_the_stream(
        data in proptest::collection::vec(any::<u8>(), 1..3000),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
        order in proptest::collection::vec(any::<u32>(), 0..80),
        dups in proptest::collection::vec((any::<usize>(), any::<usize>(), 1usize..200), 0..10),
        isn in prop_oneof![any::<u32>(), Just(u32::MAX - 10), Just(u32::MAX)],
    ) {
        let mut segs = segments(&data, &cuts);
        // Extra copies: duplicates and overlapping re-segmentations with the same bytes.
        for (a, b, len) in &dups {
            let start = a % data.len();
            let end = (start + len).min(data.len());
            segs.push((start, data[start..end].to_vec()));
            let s2 = b % data.len();
            segs.push((s2, data[s2..].iter().take(*len).copied().collect()));
        }
        // Shuffle deterministically from `order`.
        for (i, r) in order.iter().enumerate() {
            let n = segs.len();
            segs.swap(i % n, (*r as usize) % n);
        }
        let mut h = Harness::with(ReassemblyConfig {
            max_ooo_bytes_per_direction: 1 << 20,
            max_ooo_segments_per_direction: 10_000,
            ..ReassemblyConfig::default()
        });
        h.seg(C, isn, 0, SYN, b"");
        for (off, bytes) in &segs {
            h.seg(C, isn.wrapping_add(1).wrapping_add(*off as u32), 0, ACK, bytes);
        }
        h.flush();
        prop_assert_eq!(h.stream(C), vec![Ev::Data(C, data.clone())]);
        prop_assert_eq!(h.stats.gaps, 0);
        prop_assert_eq!(h.stats.overlap_conflicts, 0);
    }

    /// A lost segment becomes a gap of exactly its size at the right place.
    #[test]
    fn lost_segment_becomes_exact_gap(
        data in proptest::collection::vec(any::<u8>(), 2..2000),
        cuts in proptest::collection::vec(any::<usize>(), 1..20),
        lose in any::<usize>(),
        reverse in any::<bool>(),
    ) {
        let mut segs = segments(&data, &cuts);
        prop_assume!(segs.len() >= 2);
        let lost_index = lose % segs.len();
        let (lost_off, lost) = segs.remove(lost_index);
        if reverse {
            segs.reverse();
        }
        let mut h = Harness::new();
        h.seg(C, 0, 0, SYN, b"");
        for (off, bytes) in &segs {
            h.seg(C, 1 + *off as u32, 0, ACK, bytes);
        }
        h.flush();
        let mut expected = Vec::new();
        if lost_off > 0 {
            expected.push(Ev::Data(C, data[..lost_off].to_vec()));
        }
        let after = lost_off + lost.len();
        if after < data.len() {
            expected.push(Ev::Gap(C, lost.len() as u64));
            expected.push(Ev::Data(C, data[after..].to_vec()));
        }
        // A lost final segment is only known if someone says how long the stream was.
        prop_assert_eq!(h.stream(C), expected);
    }
}
