//! Fuzz target: one connection's session (role and protocol detection, HTTP/1.x, CONNECT
//! tunnels and upgrades opening inner layers, the depth bound) fed arbitrary stream events
//! of both sides: data, gaps, ends, overlap conflicts. Seeded with start lines that open
//! layers so the fuzzer reaches the handoffs.
#![no_main]

use apitap_core::{Endpoint, FinishCause, FlowKey, PacketRef, Side, Timestamp};
use apitap_flow::StreamEvent;
use apitap_http::HttpConfig;
use apitap_session::{Session, SessionConfig, SessionCx, SessionStats};
use libfuzzer_sys::fuzz_target;

const SEEDS: [&[u8]; 6] = [
    b"CONNECT h:80 HTTP/1.1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\n",
    b"GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
    b"HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\n\r\n",
    b"\x16\x03\x01\x00\x05\x01",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
];

fuzz_target!(|data: &[u8]| {
    let ip = "10.0.0.1".parse().unwrap_or(std::net::IpAddr::from([10, 0, 0, 1]));
    let (key, _) = FlowKey::from_packet(
        Endpoint { ip, port: 40000 },
        Endpoint { ip, port: 3128 },
        6,
    );
    let cfg = SessionConfig {
        http: HttpConfig {
            max_head_bytes: 256,
            max_headers: 8,
            max_pending_requests: 4,
            ..HttpConfig::default()
        },
        tls: apitap_tls::TlsConfig {
            max_handshake_bytes: 2048,
            ..Default::default()
        },
        max_depth: 3,
    };
    let mut stats = SessionStats::default();
    let mut out = Vec::new();
    let mut tls = Vec::new();
    let mut http2 = Vec::new();
    let mut session = Session::new();
    let mut at = PacketRef {
        index: 0,
        ts: Timestamp(0),
    };
    // Records: control byte (side, kind, time step), length byte, then that many bytes.
    let mut rest = data;
    while rest.len() >= 2 {
        let (ctl, len) = (rest[0], usize::from(rest[1]));
        let body = &rest[2..];
        let n = len.min(body.len());
        rest = &body[n..];
        let side = if ctl & 1 == 0 { Side::Lo } else { Side::Hi };
        at.index += 1;
        at.ts = Timestamp(at.ts.0 + i64::from(ctl >> 5) * 1_000_000_000);
        let seed;
        let ev = match (ctl >> 1) & 7 {
            0 => StreamEvent::Gap {
                side,
                len: n as u64 + 1,
            },
            1 => StreamEvent::Fin { side },
            2 => StreamEvent::OverlapConflict { side },
            3 => {
                seed = SEEDS[n % SEEDS.len()];
                StreamEvent::Data { side, bytes: seed }
            }
            _ => StreamEvent::Data {
                side,
                bytes: &body[..n],
            },
        };
        let mut cx = SessionCx {
            key: &key,
            at,
            cfg: &cfg,
            stats: &mut stats,
            out: &mut out,
            tls: &mut tls,
            http2: &mut http2,
        };
        session.on_stream(ev, &mut cx);
        if ctl & 0x10 != 0 {
            session.expire(&mut cx);
        }
        if rest.len() < 2 {
            session.finish(FinishCause::EndOfCapture, &mut cx);
        }
    }
    let mut open = Vec::new();
    session.open_transactions(&mut open);
    assert!(open.is_empty(), "finish hands out every transaction");
    assert!(stats.handoffs + stats.depth_exceeded <= stats.http.upgrades);
    let mut ordinals: Vec<u32> = out.iter().map(|t| t.key.ordinal).collect();
    ordinals.sort_unstable();
    ordinals.dedup();
    assert_eq!(ordinals.len(), out.len(), "ordinals are unique on a connection");
});
