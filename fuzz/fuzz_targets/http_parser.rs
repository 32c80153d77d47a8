//! Fuzz target: the HTTP/1.x connection parser fed arbitrary bytes, splits, gaps and
//! FINs in both directions, with heads shed as a worker over its head memcap sheds them.
#![no_main]

use apitap_core::{AppParser, Direction, FinishCause, PacketRef, ParserEnv, Timestamp};
use apitap_http::{HttpConfig, HttpConn, HttpStats};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = HttpConfig {
        max_head_bytes: 512,
        max_headers: 16,
        head_memcap_bytes: 1024,
        max_pending_requests: 8,
        transaction_timeout_ms: 1000,
        max_non_http_bytes: 4096,
        // Bodies captured and decoded (gzip, deflate, br) with small limits, so the
        // fuzzer reaches the decoders and their bomb limits.
        include_body_for: vec!["application/json".into(), "text/".into()],
        max_body_bytes: 256,
        max_decoded_body_bytes: 4096,
        max_decompression_ratio: 20,
        ..HttpConfig::default()
    };
    let mut env: ParserEnv<HttpConfig, HttpStats> = ParserEnv::new(cfg.clone());
    let mut conn = HttpConn::new();
    let mut at = PacketRef::default();
    // Records: control byte (direction, gap flag, time step), length byte, bytes.
    let mut rest = data;
    while rest.len() >= 2 {
        let (ctl, len) = (rest[0], usize::from(rest[1]));
        let body = &rest[2..];
        let n = len.min(body.len());
        let dir = if ctl & 1 == 0 { Direction::ToServer } else { Direction::ToClient };
        at.index += 1;
        at.ts = Timestamp(at.ts.0 + i64::from(ctl >> 4) * 100_000_000);
        if ctl & 2 != 0 {
            conn.on_gap(dir, n as u64 + 1, &mut env.cx(at));
        } else if ctl & 4 != 0 {
            conn.on_fin(dir, &mut env.cx(at));
        } else {
            let used = conn.on_data(dir, &body[..n], &mut env.cx(at));
            assert!(used <= n);
            assert!(used == n || conn.handoff().is_some());
        }
        // What a worker over its head memcap does.
        // (A chunk-size or trailer line in progress is kept: the body's framing needs it.)
        let held = conn.buffered_bytes();
        if ctl & 8 != 0 && held > 256 {
            conn.shed(&mut env.cx(at));
            assert!(conn.buffered_bytes() <= held);
        }
        rest = &body[n..];
    }
    conn.finish(FinishCause::EndOfCapture, &mut env.cx(at));
    assert!(conn.oldest_open().is_none());
    for tx in &env.out {
        assert!(tx.request.is_some() || tx.response.is_some());
        if let Some(r) = &tx.request {
            assert!(r.head.buf.len() <= cfg.max_head_bytes);
        }
    }
});
