//! Fuzz target: the SOCKS 4/4a/5 handshake parser fed arbitrary bytes in both directions
//! and any split; after a granted CONNECT the rest of the bytes must all be accounted for
//! (used by the handshake, or handed to the inner layer), and memory stays bounded.
#![no_main]

use apitap_core::Direction;
use apitap_session::socks::{SocksConn, SocksStats};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first_len, rest)) = data.split_first() else {
        return;
    };
    let first = &rest[..usize::from(first_len).min(rest.len())];
    let mut conn = SocksConn::new(first);
    let mut stats = SocksStats::default();
    let mut rest = rest;
    while rest.len() >= 2 {
        let (ctl, len) = (rest[0], usize::from(rest[1]));
        let body = &rest[2..];
        let n = len.min(body.len());
        let dir = if ctl & 1 == 0 { Direction::ToServer } else { Direction::ToClient };
        let used = conn.on_data(dir, &body[..n], &mut stats);
        assert!(used <= n);
        if conn.handoff().is_none() {
            assert_eq!(used, n, "bytes left over without a handoff");
        }
        assert!(conn.buffered_bytes() <= 3 * 1024 + 64 * 1024 * 2);
        let _ = conn.take_early();
        rest = &body[n..];
    }
});
