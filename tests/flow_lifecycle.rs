//! How a tracked flow ends before a packet of its 5-tuple is fed on: a new SYN on a
//! 5-tuple still in the table (port reuse) closes the old connection, and a packet after
//! more than `flow.idle_timeout_ms` of silence closes the idle one first. Both are counted,
//! and the transactions on either side of the cut are all written, under their own flows.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use apitap::config::Config;
use common::*;
use std::path::PathBuf;

const CLIENT: [u8; 4] = [10, 2, 0, 2];
const SERVER: [u8; 4] = [10, 2, 0, 1];
const CPORT: u16 = 40555;
const SPORT: u16 = 8080;

/// A classic pcap being written, with packet times in microseconds.
struct Capture {
    out: Vec<u8>,
}

impl Capture {
    fn new() -> Capture {
        Capture {
            out: pcap_header().to_vec(),
        }
    }

    /// A frame at `at_us`; `flags` as for [`tcp_frame`].
    fn frame(
        &mut self,
        at_us: u64,
        from_client: bool,
        seq: u32,
        ack: u32,
        flags: &str,
        payload: &[u8],
    ) {
        let f = tcp_frame(
            (CLIENT, CPORT),
            (SERVER, SPORT),
            from_client,
            seq,
            ack,
            flags,
            payload,
        );
        self.out
            .extend_from_slice(&pcap_record_header(at_us, f.len()));
        self.out.extend_from_slice(&f);
    }

    /// A handshake with initial sequence numbers `isn` (client, server) at `at_us`; returns
    /// the next sequence numbers.
    fn handshake(&mut self, at_us: u64, isn: (u32, u32)) -> (u32, u32) {
        let (c, s) = (isn.0.wrapping_add(1), isn.1.wrapping_add(1));
        self.frame(at_us, true, isn.0, 0, "S", b"");
        self.frame(at_us + 100, false, isn.1, c, "SA", b"");
        self.frame(at_us + 200, true, c, s, "A", b"");
        (c, s)
    }

    /// One GET of `path` and its answer at `at_us`, from sequence numbers `seq` (client,
    /// server); no FIN, so the connection stays open. Returns the next sequence numbers.
    fn exchange(&mut self, at_us: u64, seq: (u32, u32), path: &str) -> (u32, u32) {
        let (c, s) = seq;
        let req = format!("GET {path} HTTP/1.1\r\nHost: api.test\r\n\r\n");
        let resp =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        let c_next = c.wrapping_add(req.len() as u32);
        self.frame(at_us, true, c, s, "A", req.as_bytes());
        self.frame(at_us + 100, false, s, c_next, "A", resp);
        (c_next, s.wrapping_add(resp.len() as u32))
    }

    fn write(self, name: &str) -> PathBuf {
        let path = scratch(name).join("capture.pcap");
        std::fs::write(&path, self.out).unwrap();
        path
    }
}

fn flow_ids(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| field(e, "apitap.flow_id").as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_new_syn_on_a_tracked_5_tuple_closes_the_old_connection() {
    let mut cap = Capture::new();
    let seq = cap.handshake(0, (1_000, 50_000));
    cap.exchange(300, seq, "/first");
    // One second later the client reuses its port: a new handshake, other sequence numbers.
    let seq = cap.handshake(1_000_000, (900_000, 7_000_000));
    cap.exchange(1_000_300, seq, "/second");
    let pcap = cap.write("flow-reuse");
    for workers in [1, 2] {
        let (out, summary) = run_replay(std::slice::from_ref(&pcap), workers);
        let events = parse_lines(&out);
        let paths: Vec<&str> = events
            .iter()
            .map(|e| field(e, "url.path").as_str().unwrap())
            .collect();
        assert_eq!(paths, ["/first", "/second"], "{workers} workers");
        let ids = flow_ids(&events);
        assert_ne!(ids[0], ids[1], "the reused port is a new flow");
        assert_eq!(summary.workers.flows.reused, 1);
        assert_eq!(summary.workers.flows.idle_expired, 0);
        assert_eq!(summary.workers.flows.created, 2);
        assert!(events
            .iter()
            .all(|e| field(e, "apitap.complete") == &serde_json::Value::Bool(true)));
    }
}

#[test]
fn a_packet_after_the_idle_timeout_closes_the_idle_flow_first() {
    let mut cap = Capture::new();
    let seq = cap.handshake(0, (1_000, 50_000));
    let seq = cap.exchange(300, seq, "/before");
    // Three seconds of silence, then the same connection carries on (no SYN).
    cap.exchange(3_000_000, seq, "/after");
    let pcap = cap.write("flow-idle");

    let mut cfg = Config::default();
    cfg.flow.idle_timeout_ms = 1_000;
    let (out, summary) = run_replay_with(std::slice::from_ref(&pcap), &cfg);
    let events = parse_lines(&out);
    let paths: Vec<&str> = events
        .iter()
        .map(|e| field(e, "url.path").as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/before", "/after"]);
    let ids = flow_ids(&events);
    assert_ne!(ids[0], ids[1], "picked up again as a new flow");
    assert_eq!(summary.workers.flows.idle_expired, 1);
    assert_eq!(summary.workers.flows.reused, 0);
    assert_eq!(summary.workers.flows.created, 2);

    // Within the timeout it is one flow carrying both exchanges.
    cfg.flow.idle_timeout_ms = 10_000;
    let (out, summary) = run_replay_with(std::slice::from_ref(&pcap), &cfg);
    let ids = flow_ids(&parse_lines(&out));
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1]);
    assert_eq!(summary.workers.flows.idle_expired, 0);
    assert_eq!(summary.workers.flows.created, 1);
}

#[test]
fn heads_cut_at_their_timeout_give_their_memory_back_to_the_head_memcap() {
    // 100 connections each leave a 4 KB request head unfinished (400 KB against a 256 KiB
    // head memcap); after the transaction timeout they are cut. A head split over two
    // segments afterwards must parse whole: the memory the cut heads held is free again.
    let mut out = pcap_header().to_vec();
    let mut frame = |at_us: u64,
                     port: u16,
                     from_client: bool,
                     seq: u32,
                     ack: u32,
                     flags: &str,
                     payload: &[u8]| {
        let f = tcp_frame(
            (CLIENT, port),
            (SERVER, SPORT),
            from_client,
            seq,
            ack,
            flags,
            payload,
        );
        out.extend_from_slice(&pcap_record_header(at_us, f.len()));
        out.extend_from_slice(&f);
    };
    let filler = "a".repeat(4000);
    for i in 0..100u16 {
        let at = u64::from(i) * 1000;
        frame(at, 20_000 + i, true, 0, 0, "S", b"");
        frame(at + 10, 20_000 + i, false, 0, 1, "SA", b"");
        let head = format!("GET /stuck/{i} HTTP/1.1\r\nX-Filler: {filler}\r\n");
        frame(at + 20, 20_000 + i, true, 1, 1, "A", head.as_bytes());
    }
    let at = 5_000_000;
    // The first part of the split head (8 KB) alone would take the count over the memcap
    // if the cut heads were still counted.
    let first = format!("GET /fine HTTP/1.1\r\nX-Filler: {}\r\n", "b".repeat(8000));
    let (first, second) = (first.as_bytes(), b"\r\n".as_slice());
    let resp = b"HTTP/1.1 204 No Content\r\n\r\n";
    frame(at, 30_000, true, 0, 0, "S", b"");
    frame(at + 10, 30_000, false, 0, 1, "SA", b"");
    frame(at + 20, 30_000, true, 1, 1, "A", first);
    frame(
        at + 30,
        30_000,
        true,
        1 + first.len() as u32,
        1,
        "A",
        second,
    );
    let sent = 1 + (first.len() + second.len()) as u32;
    frame(at + 40, 30_000, false, 1, sent, "A", resp);
    let path = scratch("head-timeout-memcap").join("capture.pcap");
    std::fs::write(&path, out).unwrap();

    let mut cfg = Config::default();
    cfg.pipeline.workers = 1;
    cfg.pipeline.tick_packets = 1;
    cfg.http.max_head_bytes = 16_384;
    cfg.http.head_memcap_bytes = 256 * 1024;
    cfg.http.transaction_timeout_ms = 1000;
    let (bytes, summary) = run_replay_with(&[path], &cfg);
    let events = parse_lines(&bytes);
    let fine: Vec<_> = events
        .iter()
        .filter(|e| field(e, "url.path") == "/fine")
        .collect();
    assert_eq!(fine.len(), 1, "{events:?}");
    assert_eq!(field(fine[0], "apitap.complete"), true, "{}", fine[0]);
    assert_eq!(
        field(fine[0], "apitap.anomalies"),
        &serde_json::json!([]),
        "{}",
        fine[0]
    );
    let stuck = events
        .iter()
        .filter(|e| {
            field(e, "url.path")
                .as_str()
                .is_some_and(|p| p.starts_with("/stuck/"))
        })
        .count();
    assert_eq!(stuck, 100, "every unfinished head is an event");
    assert!(
        summary.workers.session.http.heads_shed > 0,
        "the memcap acted at first"
    );
}
