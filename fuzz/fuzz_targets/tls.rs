//! Fuzz target: the TLS connection parser (records, handshake messages across records,
//! hellos, extensions, certificates) fed arbitrary bytes, splits, gaps and sheds in both
//! directions. A control bit wraps a chunk in a handshake record and message header, so
//! the fuzzer reaches the hello and certificate parsers without having to find framing.
#![no_main]

use apitap_core::{AppParser, Direction, FinishCause, PacketRef, ParserEnv, Timestamp, TlsConnection};
use apitap_tls::keylog::{KeyLog, KeyLogHandle};
use apitap_tls::{TlsConfig, TlsConn, TlsStats};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A key log with secrets for an all-zero client random, so decryption (waiting,
    // key derivation, failing records) is reached too.
    let keys = KeyLogHandle::new(KeyLog::new());
    let zero = "00".repeat(32);
    keys.add_text(&format!(
        "CLIENT_RANDOM {zero} {m}\nCLIENT_HANDSHAKE_TRAFFIC_SECRET {zero} {s}\n\
         SERVER_HANDSHAKE_TRAFFIC_SECRET {zero} {s}\nCLIENT_TRAFFIC_SECRET_0 {zero} {s}\n\
         SERVER_TRAFFIC_SECRET_0 {zero} {s}\n",
        m = "11".repeat(48),
        s = "22".repeat(32)
    ));
    let cfg = TlsConfig {
        max_handshake_bytes: 2048,
        max_pending_bytes: 1024,
        keys,
        ..TlsConfig::default()
    };
    let mut env: ParserEnv<TlsConfig, TlsStats, TlsConnection> = ParserEnv::new(cfg.clone());
    let mut conn = TlsConn::new();
    let mut at = PacketRef::default();
    // Records: control byte (direction, gap, shed, wrap, time step), length byte, bytes.
    let mut rest = data;
    let mut wrapped = Vec::new();
    while rest.len() >= 2 {
        let (ctl, len) = (rest[0], usize::from(rest[1]));
        let body = &rest[2..];
        let n = len.min(body.len());
        let chunk = &body[..n];
        let dir = if ctl & 1 == 0 { Direction::ToServer } else { Direction::ToClient };
        at.index += 1;
        at.ts = Timestamp(at.ts.0 + i64::from(ctl >> 5) * 100_000_000);
        if ctl & 2 != 0 {
            conn.on_gap(dir, n as u64 + 1, &mut env.cx(at));
        } else if ctl & 16 != 0 && !chunk.is_empty() {
            // A handshake record holding one message: type chunk[0], body the rest.
            let msg_len = (n - 1) as u32;
            let rec_len = (n + 3) as u16;
            wrapped.clear();
            wrapped.extend_from_slice(&[22, 3, 3]);
            wrapped.extend_from_slice(&rec_len.to_be_bytes());
            wrapped.push(chunk[0]);
            wrapped.extend_from_slice(&msg_len.to_be_bytes()[1..]);
            wrapped.extend_from_slice(&chunk[1..]);
            assert_eq!(conn.on_data(dir, &wrapped, &mut env.cx(at)), wrapped.len());
        } else {
            assert_eq!(conn.on_data(dir, chunk, &mut env.cx(at)), n);
        }
        let _ = conn.take_plaintext();
        let held = conn.buffered_bytes();
        // Handshake buffers (plain and decrypted) within their bound plus one record each,
        // waiting records within theirs plus one.
        let bound = 4 * (cfg.max_handshake_bytes + 4 + apitap_tls::conn::MAX_RECORD_BODY)
            + cfg.max_pending_bytes
            + apitap_tls::conn::MAX_RECORD_BODY;
        assert!(held <= bound, "{held} > {bound}");
        if ctl & 8 != 0 {
            conn.shed(&mut env.cx(at));
        }
        if ctl & 4 != 0 {
            conn.on_fin(dir, &mut env.cx(at));
        }
        rest = &body[n..];
    }
    conn.finish(FinishCause::EndOfCapture, &mut env.cx(at));
    conn.finish(FinishCause::EndOfCapture, &mut env.cx(at));
    assert!(env.out.len() <= 1);
});
