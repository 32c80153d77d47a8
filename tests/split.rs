//! Every conversation of every fixture capture, split at every byte boundary, gives the same
//! HTTP transactions as delivered whole.
//!
//! The conversations are the fixtures' own TCP streams, rebuilt by the reassembler; each
//! direction is then fed to a fresh HTTP parser in two pieces, cut at each offset in turn.
//! Each direction is cut at every byte of its first 8 KiB; longer streams (large bodies,
//! long keep-alive runs) are checked on that prefix, whole and split alike, which keeps the
//! quadratic cost affordable. Conversations with holes or resets are skipped (their delivery
//! is not a plain byte stream) and counted.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use apitap_core::{AppParser, FinishCause, ParserEnv};
use apitap_core::{Direction, FlowKey, HttpTransaction, PacketRef, Side, Timestamp, TlsConnection};
use apitap_flow::{ReassemblyConfig, ReassemblyStats, Segment, StreamEvent, TcpConn};
use apitap_http::{HttpConfig, HttpConn, HttpStats};
use apitap_tls::{TlsConfig, TlsConn, TlsStats};
use apitap_wire::{decode, DecodeStats, FileSource};
use common::*;
use std::collections::BTreeMap;
use std::path::Path;

/// What a client sent and what the server sent on one connection.
type Conversation = (Vec<u8>, Vec<u8>);

/// Every TCP connection's two streams, and how many connections were skipped because they
/// had a gap or a reset.
fn conversations(pcap: &Path) -> (Vec<Conversation>, usize) {
    struct Conv {
        tcp: TcpConn,
        bytes: [Vec<u8>; 2],
        first: [Option<usize>; 2],
        broken: bool,
    }
    let mut source = FileSource::open(&[pcap.to_path_buf()]).unwrap();
    let mut dstats = DecodeStats::default();
    let tunnels = apitap_wire::UdpTunnels::default();
    let mut rstats = ReassemblyStats::default();
    let cfg = ReassemblyConfig::default();
    let mut convs: BTreeMap<(FlowKey, u64), Conv> = BTreeMap::new();
    let mut current: BTreeMap<FlowKey, u64> = BTreeMap::new();
    let mut index = 0u64;
    let mut order = 0usize;
    while let Ok(Some(raw)) = source.next_packet() {
        index += 1;
        let at = PacketRef { index, ts: raw.ts };
        let Some(meta) = decode(raw.link, raw.data, at, &tunnels, &mut dstats) else {
            continue;
        };
        let start = meta.payload_offset as usize;
        let payload = raw
            .data
            .get(start..start + meta.payload_len as usize)
            .unwrap_or(&[]);
        let seg = Segment {
            from: meta.from,
            seq: meta.seq,
            ack: meta.ack,
            flags: meta.flags,
            wire_len: meta.payload_wire_len,
        };
        let gen = *current.entry(meta.key).or_insert(index);
        let reused = convs
            .get(&(meta.key, gen))
            .is_some_and(|c| c.tcp.is_new_connection(&seg));
        let gen = if reused {
            current.insert(meta.key, index);
            index
        } else {
            gen
        };
        let conv = convs.entry((meta.key, gen)).or_insert_with(|| Conv {
            tcp: TcpConn::new(),
            bytes: [Vec::new(), Vec::new()],
            first: [None, None],
            broken: false,
        });
        let Conv {
            tcp,
            bytes,
            first,
            broken,
        } = conv;
        tcp.on_segment(&seg, payload, &cfg, &mut rstats, &mut |ev| match ev {
            StreamEvent::Data { side, bytes: b } => {
                let i = side_index(side);
                if first[i].is_none() {
                    order += 1;
                    first[i] = Some(order);
                }
                bytes[i].extend_from_slice(b);
            }
            StreamEvent::Gap { .. } | StreamEvent::Reset { .. } => *broken = true,
            _ => {}
        });
    }
    let mut out = Vec::new();
    let mut skipped = 0;
    for (_, mut c) in convs {
        c.tcp.flush(&cfg, &mut rstats, &mut |ev| {
            if let StreamEvent::Data { side, bytes } = ev {
                c.bytes[side_index(side)].extend_from_slice(bytes);
            }
        });
        if c.broken {
            skipped += 1;
            continue;
        }
        // The client is the side whose first byte came first (requests come first).
        let [a, b] = c.bytes;
        let (req, resp) = match (c.first[0], c.first[1]) {
            (Some(x), Some(y)) if y < x => (b, a),
            (None, Some(_)) => (b, a),
            _ => (a, b),
        };
        if !req.is_empty() {
            out.push((req, resp));
        }
    }
    (out, skipped)
}

fn side_index(s: Side) -> usize {
    usize::from(s == Side::Hi)
}

/// Parses a conversation, each direction cut at `cut` (None: whole), requests first.
fn parse(
    req: &[u8],
    resp: &[u8],
    cut: [Option<usize>; 2],
    cfg: &HttpConfig,
) -> Vec<HttpTransaction> {
    let mut env: ParserEnv<HttpConfig, HttpStats> = ParserEnv::new(cfg.clone());
    let mut conn = HttpConn::new();
    let at = PacketRef {
        index: 1,
        ts: Timestamp(0),
    };
    for (i, (dir, data)) in [(Direction::ToServer, req), (Direction::ToClient, resp)]
        .into_iter()
        .enumerate()
    {
        let c = cut[i].unwrap_or(0).min(data.len());
        conn.on_data(dir, &data[..c], &mut env.cx(at));
        conn.on_data(dir, &data[c..], &mut env.cx(at));
    }
    conn.on_fin(Direction::ToClient, &mut env.cx(at));
    conn.finish(FinishCause::ConnectionClosed, &mut env.cx(at));
    let mut out: Vec<HttpTransaction> = env.out;
    out.sort_by_key(|t| t.key);
    // Keys number transactions by delivery (a split adds one); everything else must match.
    for t in &mut out {
        t.key = Default::default();
    }
    out
}

/// Bytes of each direction that are checked.
const PREFIX: usize = 8 * 1024;

#[test]
fn every_fixture_conversation_split_at_every_byte_gives_the_same_transactions() {
    let cfg = HttpConfig {
        include_body_for: vec![
            "application/json".into(),
            "application/x-www-form-urlencoded".into(),
            "text/".into(),
        ],
        ..HttpConfig::default()
    };
    let mut checked = 0;
    let mut parses = 0usize;
    let mut skipped = 0;
    for pcap in fixture_captures() {
        let (convs, broken) = conversations(&pcap);
        skipped += broken;
        for (mut req, mut resp) in convs {
            // A SOCKS connection is not HTTP/1 at its start: the session never gives its
            // handshake to this parser (the handshake's own split test is in
            // apitap-session's socks module).
            if matches!(req.first(), Some(4 | 5)) {
                continue;
            }
            req.truncate(PREFIX);
            resp.truncate(PREFIX);
            let whole = parse(&req, &resp, [None, None], &cfg);
            for (d, len) in [(0, req.len()), (1, resp.len())] {
                for c in 0..=len {
                    let mut cut = [None, None];
                    cut[d] = Some(c);
                    let split = parse(&req, &resp, cut, &cfg);
                    assert!(
                        split == whole,
                        "{}: conversation starting {:?}: direction {d} cut at {c} changes the transactions",
                        pcap.display(),
                        String::from_utf8_lossy(&req[..req.len().min(60)])
                    );
                    parses += 1;
                }
            }
            checked += 1;
        }
    }
    eprintln!("{checked} conversations, {parses} split parses, {skipped} with holes skipped");
    assert!(checked >= 150, "only {checked} conversations");
}

/// Parses a TLS conversation with each direction delivered in pieces of `piece` bytes
/// after a first piece of `cut` bytes.
fn parse_tls(req: &[u8], resp: &[u8], cut: [usize; 2], piece: usize) -> Vec<TlsConnection> {
    let mut env: ParserEnv<TlsConfig, TlsStats, TlsConnection> =
        ParserEnv::new(TlsConfig::default());
    let mut conn = TlsConn::new();
    let at = PacketRef {
        index: 1,
        ts: Timestamp(0),
    };
    for (i, (dir, data)) in [(Direction::ToServer, req), (Direction::ToClient, resp)]
        .into_iter()
        .enumerate()
    {
        let c = cut[i].min(data.len());
        conn.on_data(dir, &data[..c], &mut env.cx(at));
        for chunk in data[c..].chunks(piece.max(1)) {
            conn.on_data(dir, chunk, &mut env.cx(at));
        }
    }
    conn.finish(FinishCause::ConnectionClosed, &mut env.cx(at));
    env.out
}

/// The TLS fixtures' handshakes cut at every byte, and delivered a byte at a time (records
/// spanning segments, handshake messages spanning records): the same connection record.
#[test]
fn every_tls_conversation_split_at_every_byte_gives_the_same_record() {
    let mut checked = 0;
    for pcap in fixture_captures()
        .into_iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "tls"))
    {
        let (convs, _) = conversations(&pcap);
        for (req, resp) in convs {
            let whole = parse_tls(&req, &resp, [usize::MAX, usize::MAX], usize::MAX);
            assert_eq!(whole.len(), 1);
            assert!(
                whole[0].handshake.ja3.is_some(),
                "{}: no ClientHello read",
                pcap.display()
            );
            assert_eq!(
                parse_tls(&req, &resp, [0, 0], 1),
                whole,
                "{}: byte at a time",
                pcap.display()
            );
            for (d, len) in [(0, req.len()), (1, resp.len())] {
                for c in 0..=len.min(PREFIX) {
                    let mut cut = [usize::MAX, usize::MAX];
                    cut[d] = c;
                    assert_eq!(
                        parse_tls(&req, &resp, cut, usize::MAX),
                        whole,
                        "{}: direction {d} cut at {c}",
                        pcap.display()
                    );
                }
            }
            checked += 1;
        }
    }
    // Connections a client ended with a reset are left out by `conversations`.
    assert!(checked >= 8, "only {checked} TLS conversations");
}

/// Keys that reach the key log only after the handshake (a live key log followed as it
/// grows): the records that came first waited, and everything is decrypted; past
/// `max_pending_bytes` of waiting, the connection is given up as `keys_too_late`.
#[test]
fn keys_that_arrive_late_still_decrypt_within_the_pending_bound() {
    use apitap_tls::keylog::{KeyLog, KeyLogHandle};
    let pcap = root().join("fixtures/tls/tls-mixed.pcap");
    let text = std::fs::read_to_string(root().join("fixtures/tls/tls-mixed.keys")).unwrap();
    let (convs, _) = conversations(&pcap);
    let at = PacketRef {
        index: 1,
        ts: Timestamp(0),
    };
    let mut decrypted = 0;
    for (req, resp) in &convs {
        for max_pending in [1 << 20, 16] {
            let keys = KeyLogHandle::new(KeyLog::new());
            let cfg = TlsConfig {
                keys: keys.clone(),
                max_pending_bytes: max_pending,
                ..TlsConfig::default()
            };
            let mut env: ParserEnv<TlsConfig, TlsStats, TlsConnection> = ParserEnv::new(cfg);
            let mut conn = TlsConn::new();
            // The ClientHello, everything the server sent, the rest of what the client
            // sent (its protected records after the ServerHello, as on the wire), with no
            // key yet; then the keys.
            let hello = 5 + usize::from(u16::from_be_bytes([req[3], req[4]]));
            conn.on_data(Direction::ToServer, &req[..hello], &mut env.cx(at));
            conn.on_data(Direction::ToClient, resp, &mut env.cx(at));
            conn.on_data(Direction::ToServer, &req[hello..], &mut env.cx(at));
            keys.add_text(&text);
            // The connection ends before another record came: the session's last look at
            // the key log finds them.
            conn.settle_pending(&mut env.cx(at));
            conn.finish(FinishCause::ConnectionClosed, &mut env.cx(at));
            let plain: usize = conn
                .take_plaintext()
                .iter()
                .map(|p| match p {
                    apitap_tls::Plaintext::Data(_, b) => b.len(),
                    apitap_tls::Plaintext::Lost(..) => 0,
                })
                .sum();
            let outcome = env.out[0].decryption;
            match outcome {
                Some(apitap_core::Decryption::Decrypted) => {
                    assert_eq!(max_pending, 1 << 20);
                    assert!(plain > 0);
                    decrypted += 1;
                }
                Some(apitap_core::Decryption::KeysTooLate) => {
                    assert_eq!(max_pending, 16);
                    assert_eq!(plain, 0);
                    assert!(env.stats.pending_bytes_dropped > 16);
                }
                Some(apitap_core::Decryption::UnsupportedCipher) => {}
                other => panic!("{other:?}"),
            }
        }
    }
    assert!(decrypted >= 7, "{decrypted}");
}

/// Parses an HTTP/2 conversation with each direction delivered in pieces of `piece` bytes
/// after a first piece of `cut` bytes, requests first.
fn parse_h2(req: &[u8], resp: &[u8], cut: [usize; 2], piece: usize) -> Vec<HttpTransaction> {
    let cfg = HttpConfig {
        include_body_for: vec!["application/json".into()],
        ..HttpConfig::default()
    };
    let mut env: ParserEnv<HttpConfig, HttpStats> = ParserEnv::new(cfg.clone());
    let mut conn = apitap_http::H2Conn::new(&cfg, &mut env.stats);
    let at = PacketRef {
        index: 1,
        ts: Timestamp(0),
    };
    for (i, (dir, data)) in [(Direction::ToServer, req), (Direction::ToClient, resp)]
        .into_iter()
        .enumerate()
    {
        let c = cut[i].min(data.len());
        conn.on_data(dir, &data[..c], &mut env.cx(at));
        for chunk in data[c..].chunks(piece.max(1)) {
            conn.on_data(dir, chunk, &mut env.cx(at));
        }
    }
    conn.finish(FinishCause::ConnectionClosed, &mut env.cx(at));
    let mut out = env.out;
    out.sort_by_key(|t| t.key);
    out
}

/// The HTTP/2 fixtures' conversations (nginx, grpcio, h2load, floods) cut at every byte
/// of their first 8 KiB, and delivered a byte at a time (frame headers, padding, header
/// blocks and gRPC prefixes spanning segments): the same transactions.
#[test]
fn every_http2_conversation_split_at_every_byte_gives_the_same_transactions() {
    let mut checked = 0;
    let mut streams = 0;
    for pcap in fixture_captures()
        .into_iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "h2"))
    {
        let (convs, _) = conversations(&pcap);
        for (mut req, mut resp) in convs {
            if !req.starts_with(apitap_http::h2::PREFACE) {
                continue;
            }
            req.truncate(PREFIX);
            resp.truncate(PREFIX);
            let whole = parse_h2(&req, &resp, [usize::MAX, usize::MAX], usize::MAX);
            // The SETTINGS and PING floods carry no stream: their framing is checked.
            streams += whole.len();
            assert!(
                parse_h2(&req, &resp, [0, 0], 1) == whole,
                "{}: byte at a time",
                pcap.display()
            );
            for (d, len) in [(0, req.len()), (1, resp.len())] {
                for c in 0..=len {
                    let mut cut = [usize::MAX, usize::MAX];
                    cut[d] = c;
                    assert!(
                        parse_h2(&req, &resp, cut, usize::MAX) == whole,
                        "{}: direction {d} cut at {c}",
                        pcap.display()
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} HTTP/2 conversations");
    assert!(streams >= 100, "only {streams} streams");
}
