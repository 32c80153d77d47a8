//! Fuzz target: record decryption (TLS 1.2 explicit-nonce and XOR framing, TLS 1.3) fed
//! arbitrary headers, bodies, sequence seeks and key updates, with keys from fixed
//! secrets: no panic, and a record that opens shrinks by at least its tag.
#![no_main]

use apitap_tls::crypto::{RecordKeys, Suite};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let suites = [0x1301u16, 0x1302, 0x1303, 0xc02f, 0xc030, 0xcca8];
    let id = suites[usize::from(choice) % suites.len()];
    let Some(suite) = Suite::from_id(id) else {
        return;
    };
    let mut keys = if id >> 8 == 0x13 {
        match RecordKeys::tls13(suite, &[0x42; 48][..if id == 0x1302 { 48 } else { 32 }]) {
            Some(k) => k,
            None => return,
        }
    } else {
        match RecordKeys::tls12(suite, &[7; 48], &[1; 32], &[2; 32]) {
            Some((c, s)) => if choice & 0x80 == 0 { c } else { s },
            None => return,
        }
    };
    // Records: control byte (seek, update), 5-byte header, length byte, body.
    let mut rest = rest;
    while rest.len() >= 7 {
        let ctl = rest[0];
        let mut header = [0u8; 5];
        header.copy_from_slice(&rest[1..6]);
        let len = usize::from(rest[6]).min(rest.len() - 7);
        let mut body = rest[7..7 + len].to_vec();
        if ctl & 0x40 != 0 {
            keys.update();
        }
        let before = body.len();
        if keys.open(&header, &mut body, u64::from(ctl & 0x0f)).is_ok() {
            assert!(body.len() + 16 <= before);
        } else {
            keys.skip();
        }
        rest = &rest[7 + len..];
    }
});
