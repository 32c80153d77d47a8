//! Fuzz target: the HTTP/2 connection parser (preface, frames, padding, header blocks
//! across CONTINUATION, HPACK with its dynamic tables, streams, gRPC message framing) fed
//! arbitrary bytes, splits, gaps and sheds in both directions. A control bit wraps a
//! chunk in a frame header (type, flags and stream from its first bytes), so the fuzzer
//! reaches HEADERS and HPACK without having to find framing.
#![no_main]

use apitap_core::{AppParser, Direction, FinishCause, PacketRef, ParserEnv, Timestamp};
use apitap_http::{H2Conn, HttpConfig, HttpStats};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let cfg = HttpConfig {
        max_head_bytes: 4096,
        max_headers: 32,
        max_hpack_table_bytes: 4096,
        max_concurrent_streams: 8,
        include_body_for: vec!["application/".into()],
        max_body_bytes: 512,
        ..HttpConfig::default()
    };
    let mut env: ParserEnv<HttpConfig, HttpStats> = ParserEnv::new(cfg.clone());
    let mut conn = match mode % 3 {
        0 => H2Conn::new(&cfg, &mut env.stats),
        1 => H2Conn::midstream(&cfg, &mut env.stats),
        _ => H2Conn::upgraded(&cfg, &mut env.stats),
    };
    let mut at = PacketRef::default();
    let mut wrapped = Vec::new();
    let mut rest = data;
    let mut preface_sent = mode & 4 != 0;
    while rest.len() >= 2 {
        let (ctl, len) = (rest[0], usize::from(rest[1]));
        let body = &rest[2..];
        let n = len.min(body.len());
        let chunk = &body[..n];
        let dir = if ctl & 1 == 0 { Direction::ToServer } else { Direction::ToClient };
        at.index += 1;
        at.ts = Timestamp(at.ts.0 + i64::from(ctl >> 5) * 1_000_000_000);
        if ctl & 2 != 0 {
            conn.on_gap(dir, n as u64 + 1, &mut env.cx(at));
        } else if ctl & 16 != 0 && n >= 3 {
            // A frame: type chunk[0], flags chunk[1], stream chunk[2] & 7, payload the rest.
            wrapped.clear();
            if dir == Direction::ToServer && !preface_sent {
                wrapped.extend_from_slice(apitap_http::h2::PREFACE);
                preface_sent = true;
            }
            wrapped.extend_from_slice(&((n - 3) as u32).to_be_bytes()[1..]);
            wrapped.extend_from_slice(&[chunk[0] % 11, chunk[1], 0, 0, 0, chunk[2] & 7]);
            wrapped.extend_from_slice(&chunk[3..]);
            assert_eq!(conn.on_data(dir, &wrapped, &mut env.cx(at)), wrapped.len());
        } else {
            assert_eq!(conn.on_data(dir, chunk, &mut env.cx(at)), n);
        }
        let held = conn.buffered_bytes();
        let bound = 2 * (2 * (cfg.max_head_bytes + 1024) + 2 * cfg.max_head_bytes)
            + 2 * cfg.max_hpack_table_bytes;
        assert!(held <= bound, "{held} > {bound}");
        if ctl & 8 != 0 {
            conn.shed(&mut env.cx(at));
        }
        if ctl & 4 != 0 {
            conn.on_fin(dir, &mut env.cx(at));
            conn.expire(&mut env.cx(at));
        }
        rest = &body[n..];
    }
    conn.finish(FinishCause::EndOfCapture, &mut env.cx(at));
    let mut open = Vec::new();
    conn.open_transactions(&mut open);
    assert!(open.is_empty());
    // Every stream is handed out once: no two transactions share a key.
    let mut keys: Vec<_> = env.out.iter().map(|t| t.key).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), env.out.len());
});
