//! A small JSON writer for the event hot path: objects with static keys, strings escaped
//! eight bytes at a time. Its output is byte-for-byte what `serde_json` writes for the same
//! values (tested against it), without serde's per-byte escaping loop and per-field calls.

/// Escape class of each byte, as serde_json escapes: 0 = as is, otherwise the letter after
/// the backslash (`u` = `\u00XX`).
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `w` that needs escaping (a control byte, `"` or `\`).
/// There are no false negatives, and the lowest flagged byte is always a true one: the
/// borrows of the subtractions can only flag bytes above a true one.
#[inline]
fn escape_mask(w: u64) -> u64 {
    // Bytes below 0x20 (high bit clear: non-ASCII bytes are not controls).
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    let q = w ^ (ONES * u64::from(b'"'));
    let quote = q.wrapping_sub(ONES) & !q;
    let b = w ^ (ONES * u64::from(b'\\'));
    let backslash = b.wrapping_sub(ONES) & !b;
    (control | quote | backslash) & HIGHS
}

/// Appends `s` as a JSON string (quoted, escaped).
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    escape_contents(out, s.as_bytes());
    out.push(b'"');
}

/// Appends the escaped contents of UTF-8 text (no quotes). Eight bytes at a time: a clean
/// word is skipped; otherwise the clean run up to the word's first byte to escape is copied,
/// that byte is escaped, and the scan goes on right after it (JSON bodies have a quote every
/// few bytes). The last one to seven bytes go byte by byte: for them a padded word measured
/// slower.
fn escape_contents(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0;
    let mut i = 0;
    while let Some(word) = bytes.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let mask = escape_mask(u64::from_le_bytes(w));
        if mask == 0 {
            i += 8;
            continue;
        }
        let at = i + (mask.trailing_zeros() / 8) as usize;
        out.extend_from_slice(&bytes[start..at]);
        escape_byte(out, bytes[at]);
        i = at + 1;
        start = i;
    }
    for (at, &b) in bytes.iter().enumerate().skip(i) {
        if ESCAPE[usize::from(b)] != 0 {
            out.extend_from_slice(&bytes[start..at]);
            escape_byte(out, b);
            start = at + 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends the escape sequence of `b`, a byte that needs one.
#[inline]
fn escape_byte(out: &mut Vec<u8>, b: u8) {
    match ESCAPE[usize::from(b)] {
        b'u' => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        }
        letter => {
            out.push(b'\\');
            out.push(letter);
        }
    }
}

/// Whether `bytes` can be written inside a JSON string as they are: visible ASCII other than
/// `"` and `\`.
pub(crate) fn is_plain(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// Appends an unsigned integer.
pub(crate) fn uint(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends `true` or `false`.
pub(crate) fn boolean(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// Appends an IP address as a JSON string.
pub(crate) fn ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            out.push(b'"');
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                uint(out, u64::from(octet));
            }
            out.push(b'"');
        }
        std::net::IpAddr::V6(v6) => {
            use std::io::Write;
            // Writing into a Vec cannot fail.
            let _ = write!(out, "\"{v6}\"");
        }
    }
}

/// Writes the members of one JSON object; keys are static ASCII names that need no
/// escaping. Call [`Object::end`] to close it.
pub(crate) struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    /// Opens an object.
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Object<'a> {
        out.push(b'{');
        Object { out, first: true }
    }

    /// The comma before every member but the first.
    #[inline(always)]
    fn separate(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    /// Writes `"key":` (with the comma before it when needed) and returns the buffer for
    /// the value. Inlined so that the copy of a literal key is a few fixed-size stores, not
    /// a `memcpy` call.
    #[inline(always)]
    pub(crate) fn key(&mut self, key: &str) -> &mut Vec<u8> {
        self.out.reserve(key.len() + 4);
        self.separate();
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    /// Writes a key whose name is not known to be clean (escaped like a string value).
    pub(crate) fn escaped_key(&mut self, key: &str) -> &mut Vec<u8> {
        self.separate();
        string(self.out, key);
        self.out.push(b':');
        self.out
    }

    /// Writes a key given as bytes that need no escaping (visible ASCII other than `"` and
    /// `\`, as every header name httparse accepts), lower-cased.
    pub(crate) fn lower_plain_key(&mut self, key: &[u8]) -> &mut Vec<u8> {
        self.out.reserve(key.len() + 4);
        self.separate();
        self.out.push(b'"');
        let start = self.out.len();
        self.out.extend_from_slice(key);
        if let Some(name) = self.out.get_mut(start..) {
            name.make_ascii_lowercase();
        }
        self.out.extend_from_slice(b"\":");
        self.out
    }

    /// `"key":"value"`.
    #[inline(always)]
    pub(crate) fn str(&mut self, key: &str, value: &str) {
        string(self.key(key), value);
    }

    /// `"key":n`.
    #[inline(always)]
    pub(crate) fn uint(&mut self, key: &str, n: u64) {
        uint(self.key(key), n);
    }

    /// `"key":true|false`.
    #[inline(always)]
    pub(crate) fn bool(&mut self, key: &str, b: bool) {
        boolean(self.key(key), b);
    }

    /// Closes the object.
    pub(crate) fn end(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn serde(s: &str) -> Vec<u8> {
        serde_json::to_vec(s).unwrap_or_default()
    }

    fn ours(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        string(&mut out, s);
        out
    }

    #[test]
    fn escapes_like_serde_json() {
        for s in [
            "",
            "plain ascii text that is longer than one word",
            "quote \" backslash \\ slash / tab \t nl \n cr \r ff \x0c bs \x08",
            "\x00\x01\x1f\x7f",
            "ünïcödé ✓ 😀 and \u{2028}",
            "\"",
            "1234567\"",
            "12345678\\",
            "abcdefgh\x1fijklmnop",
        ] {
            assert_eq!(ours(s), serde(s), "{s:?}");
        }
    }

    #[test]
    fn every_single_byte_and_position() {
        // Each ASCII byte at each position of a 17-byte string (three word alignments).
        for b in 0u8..0x80 {
            for pos in 0..17 {
                let mut v = vec![b'a'; 17];
                v[pos] = b;
                let s = String::from_utf8(v).unwrap_or_default();
                assert_eq!(ours(&s), serde(&s), "byte {b:#x} at {pos}");
            }
        }
    }

    #[test]
    fn numbers_bools_ips_and_objects() {
        let mut out = Vec::new();
        let mut o = Object::new(&mut out);
        o.uint("n", u64::MAX);
        o.bool("t", true);
        o.bool("f", false);
        ip(
            o.key("v4"),
            "10.0.0.255"
                .parse()
                .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
        );
        ip(
            o.key("v6"),
            "2001:db8::1"
                .parse()
                .unwrap_or(std::net::Ipv6Addr::LOCALHOST.into()),
        );
        o.str("s", "x\"y");
        string(o.escaped_key("k\"ey"), "v");
        o.end();
        let want = serde_json::json!({
            "n": u64::MAX, "t": true, "f": false, "v4": "10.0.0.255",
            "v6": "2001:db8::1", "s": "x\"y", "k\"ey": "v"
        });
        assert_eq!(out, serde_json::to_vec(&want).unwrap_or_default());
    }

    proptest! {
        #[test]
        fn any_string_escapes_like_serde_json(s in any::<String>()) {
            prop_assert_eq!(ours(&s), serde(&s));
        }

        #[test]
        fn any_ascii_with_controls_escapes_like_serde_json(
            v in proptest::collection::vec(0u8..0x80, 0..64)
        ) {
            let s = String::from_utf8(v).unwrap_or_default();
            prop_assert_eq!(ours(&s), serde(&s));
        }

        /// Several bytes to escape in one word, next to multi-byte characters: the
        /// shape of a JSON body written as a string.
        #[test]
        fn dense_escapes_escape_like_serde_json(
            v in proptest::collection::vec(
                proptest::sample::select(vec!['"', '\\', 'a', '\n', '\u{1f}', 'é', '€']),
                0..80,
            )
        ) {
            let s: String = v.into_iter().collect();
            prop_assert_eq!(ours(&s), serde(&s));
        }
    }
}
