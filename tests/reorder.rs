//! The whole pipeline under hostile TCP delivery: an HTTP conversation written as a clean
//! capture and as captures whose segments are re-cut, duplicated, overlapped (same bytes)
//! and shuffled yields exactly the same events (timestamps aside: they are the times of the
//! packets that delivered the bytes). Overlaps with different bytes are flagged.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::*;
use proptest::prelude::*;
use serde_json::Value;
use std::path::PathBuf;

const CLIENT: [u8; 4] = [10, 1, 0, 2];
const SERVER: [u8; 4] = [10, 1, 0, 1];
const CPORT: u16 = 40123;
const SPORT: u16 = 8080;
const C_ISN: u32 = 0xfff0_0000; // close to wraparound on purpose
const S_ISN: u32 = 0x7000_0000;

/// The conversation: request/response pairs on one keep-alive connection.
fn exchanges() -> Vec<(Vec<u8>, Vec<u8>)> {
    let body =
        br#"{"items":[{"id":1},{"id":2},{"id":3}],"note":"fixed content for the reorder test"}"#;
    vec![
        (
            b"GET /api/users/17 HTTP/1.1\r\nHost: api.test\r\nUser-Agent: t/1\r\n\r\n".to_vec(),
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes()
            .into_iter()
            .chain(body.iter().copied())
            .collect(),
        ),
        (
            b"POST /api/items HTTP/1.1\r\nHost: api.test\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"name\":\"widget\",\"qty\":3}\n".to_vec(),
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec(),
        ),
        (
            b"DELETE /api/items/9 HTTP/1.1\r\nHost: api.test\r\n\r\n".to_vec(),
            b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        ),
    ]
}

/// One TCP segment to write: direction, offset in that direction's stream, bytes.
#[derive(Clone, Debug)]
struct Seg {
    from_client: bool,
    offset: u32,
    data: Vec<u8>,
}

/// Writes a capture: handshake, the segments in the given order, FINs.
fn write_pcap(path: &PathBuf, segs: &[Seg], c_len: u32, s_len: u32) {
    let mut out = pcap_header().to_vec();
    let mut usec = 0u64;
    let mut frame = |from_client: bool, seq: u32, ack: u32, flags: &str, payload: &[u8]| {
        let f = tcp_frame(
            (CLIENT, CPORT),
            (SERVER, SPORT),
            from_client,
            seq,
            ack,
            flags,
            payload,
        );
        usec += 100;
        out.extend_from_slice(&pcap_record_header(usec, f.len()));
        out.extend_from_slice(&f);
    };
    let c0 = C_ISN.wrapping_add(1);
    let s0 = S_ISN.wrapping_add(1);
    frame(true, C_ISN, 0, "S", b"");
    frame(false, S_ISN, c0, "SA", b"");
    frame(true, c0, s0, "A", b"");
    for s in segs {
        if s.from_client {
            frame(true, c0.wrapping_add(s.offset), s0, "A", &s.data);
        } else {
            frame(false, s0.wrapping_add(s.offset), c0, "A", &s.data);
        }
    }
    frame(
        true,
        c0.wrapping_add(c_len),
        s0.wrapping_add(s_len),
        "FA",
        b"",
    );
    frame(
        false,
        s0.wrapping_add(s_len),
        c0.wrapping_add(c_len + 1),
        "FA",
        b"",
    );
    frame(
        true,
        c0.wrapping_add(c_len + 1),
        s0.wrapping_add(s_len + 1),
        "A",
        b"",
    );
    std::fs::write(path, out).unwrap();
}

/// Each message as one segment per direction, in conversation order.
fn clean_segments() -> (Vec<Seg>, u32, u32) {
    let (mut c, mut s) = (0u32, 0u32);
    let mut segs = Vec::new();
    for (req, resp) in exchanges() {
        segs.push(Seg {
            from_client: true,
            offset: c,
            data: req.clone(),
        });
        c += req.len() as u32;
        segs.push(Seg {
            from_client: false,
            offset: s,
            data: resp.clone(),
        });
        s += resp.len() as u32;
    }
    (segs, c, s)
}

/// Events with the packet-time fields removed.
fn events_without_times(path: &PathBuf) -> Vec<Value> {
    let (out, _) = run_replay(std::slice::from_ref(path), 1);
    parse_lines(&out)
        .into_iter()
        .map(|mut e| {
            let o = e.as_object_mut().unwrap();
            o.remove("@timestamp");
            if let Some(ev) = o.get_mut("event").and_then(Value::as_object_mut) {
                ev.remove("duration");
            }
            e
        })
        .collect()
}

/// One message re-cut: pieces at `cuts`, each piece possibly duplicated and/or extended
/// backwards over the previous piece (same bytes), then the pieces shuffled.
fn perturb(
    from_client: bool,
    base: u32,
    msg: &[u8],
    cuts: &[usize],
    dup: &[bool],
    back: &[usize],
    order: &[usize],
) -> Vec<Seg> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % msg.len()).collect();
    points.push(0);
    points.push(msg.len());
    points.sort_unstable();
    points.dedup();
    let mut pieces = Vec::new();
    for (i, w) in points.windows(2).enumerate() {
        let extend = back.get(i).copied().unwrap_or(0).min(w[0]);
        let start = w[0] - extend;
        let seg = Seg {
            from_client,
            offset: base + start as u32,
            data: msg[start..w[1]].to_vec(),
        };
        if dup.get(i).copied().unwrap_or(false) {
            pieces.push(seg.clone());
        }
        pieces.push(seg);
    }
    // Shuffle by the given keys (a permutation drawn by proptest).
    let mut keyed: Vec<(usize, Seg)> = pieces
        .into_iter()
        .enumerate()
        .map(|(i, s)| (order.get(i).copied().unwrap_or(i), s))
        .collect();
    keyed.sort_by_key(|(k, _)| *k);
    keyed.into_iter().map(|(_, s)| s).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn resegmented_duplicated_overlapped_shuffled_delivery_gives_the_clean_events(
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        dup in proptest::collection::vec(any::<bool>(), 0..14),
        back in proptest::collection::vec(0usize..20, 0..14),
        order in proptest::collection::vec(0usize..1000, 0..30),
    ) {
        let dir = scratch("reorder");
        let clean = dir.join("clean.pcap");
        let (segs, c_len, s_len) = clean_segments();
        write_pcap(&clean, &segs, c_len, s_len);
        let want = events_without_times(&clean);
        prop_assert_eq!(want.len(), 3);

        let mut messy = Vec::new();
        let (mut c, mut s) = (0u32, 0u32);
        for (req, resp) in exchanges() {
            messy.extend(perturb(true, c, &req, &cuts, &dup, &back, &order));
            c += req.len() as u32;
            messy.extend(perturb(false, s, &resp, &cuts, &dup, &back, &order));
            s += resp.len() as u32;
        }
        let path = dir.join("messy.pcap");
        write_pcap(&path, &messy, c_len, s_len);
        let got = events_without_times(&path);
        prop_assert_eq!(got, want);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn an_overlap_with_different_bytes_is_flagged_and_the_first_copy_wins() {
    let dir = scratch("conflict");
    let (req, resp) = exchanges().remove(0);
    // The request: its tail arrives first (buffered), then a forged copy of that tail,
    // then the head that fills the hole.
    let cut = 20;
    let mut forged = req[cut..].to_vec();
    forged[0..4].copy_from_slice(b"EVIL");
    let segs = vec![
        Seg {
            from_client: true,
            offset: cut as u32,
            data: req[cut..].to_vec(),
        },
        Seg {
            from_client: true,
            offset: cut as u32,
            data: forged,
        },
        Seg {
            from_client: true,
            offset: 0,
            data: req[..cut].to_vec(),
        },
        Seg {
            from_client: false,
            offset: 0,
            data: resp.clone(),
        },
    ];
    let path = dir.join("conflict.pcap");
    write_pcap(&path, &segs, req.len() as u32, resp.len() as u32);
    let (out, summary) = run_replay(&[path], 1);
    let events = parse_lines(&out);
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        field(e, "apitap.anomalies"),
        &serde_json::json!(["overlap_conflict"])
    );
    assert_eq!(field(e, "http.request.headers.host"), "api.test");
    assert!(!String::from_utf8_lossy(&out).contains("EVIL"));
    assert_eq!(summary.to_json()["reassembly"]["overlap_conflicts"], 1);
    assert_eq!(
        summary.to_json()["transactions"]["anomalies"]["overlap_conflict"],
        1
    );
}

/// A SPAN port mirroring both directions delivers every frame twice, microseconds apart:
/// the copies are dropped and counted, and the events are those of the single capture.
#[test]
fn span_duplicates_are_dropped_and_counted() {
    let original = root().join("fixtures/nginx/nginx-mixed.pcap");
    let bytes = std::fs::read(&original).unwrap();
    assert_eq!(
        &bytes[..4],
        &0xa1b2_c3d4u32.to_le_bytes(),
        "microsecond LE pcap"
    );
    let mut out = bytes[..24].to_vec();
    let mut off = 24;
    let mut frames = 0u64;
    while off + 16 <= bytes.len() {
        let caplen = u32::from_le_bytes(bytes[off + 8..off + 12].try_into().unwrap()) as usize;
        let record = &bytes[off..off + 16 + caplen];
        out.extend_from_slice(record);
        // The copy, 3 microseconds later.
        let mut copy = record.to_vec();
        let usec = u32::from_le_bytes(copy[4..8].try_into().unwrap());
        copy[4..8].copy_from_slice(&(usec + 3).min(999_999).to_le_bytes());
        out.extend_from_slice(&copy);
        off += 16 + caplen;
        frames += 1;
    }
    let dir = scratch("span");
    let doubled = dir.join("doubled.pcap");
    std::fs::write(&doubled, out).unwrap();
    let (want, _) = run_replay(&[original], 2);
    let (got, summary) = run_replay(std::slice::from_ref(&doubled), 2);
    let s = summary.to_json();
    assert_eq!(s["input"]["duplicates_dropped"], frames);
    // Events are equal except packet positions (ids and timestamps are per packet index).
    let strip = |b: &[u8]| -> Vec<Value> {
        parse_lines(b)
            .into_iter()
            .map(|mut e| {
                let o = e.as_object_mut().unwrap();
                o.remove("@timestamp");
                o.get_mut("event").and_then(Value::as_object_mut).map(|ev| {
                    ev.remove("id");
                    ev.remove("duration")
                });
                o.get_mut("apitap")
                    .and_then(Value::as_object_mut)
                    .map(|a| a.remove("flow_id"));
                e
            })
            .collect()
    };
    assert_eq!(strip(&got), strip(&want));

    // With the filter off every frame counts twice: retransmissions, not new events.
    let mut cfg = apitap::Config::parse("[pipeline]\ndedup_window_us = 0\n").unwrap();
    cfg.pipeline.workers = 1;
    let (_, off_summary) = run_replay_with(&[doubled], &cfg);
    let o = off_summary.to_json();
    assert_eq!(o["input"]["duplicates_dropped"], 0);
    assert!(o["reassembly"]["retransmitted_segments"].as_u64().unwrap() > 0);
}
