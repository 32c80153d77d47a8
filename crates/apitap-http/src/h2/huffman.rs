//! The HPACK Huffman code (RFC 7541, Appendix B), decoded canonically: the code is a
//! canonical Huffman code (symbols sorted by code length, then by value, take consecutive
//! codes), so the 257 code lengths are all the table there is.

/// Code length in bits of each symbol 0..=255 and of EOS (256), from RFC 7541 Appendix B.
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

/// Shortest and longest code.
const MIN_LEN: usize = 5;
const MAX_LEN: usize = 30;
/// The EOS symbol.
const EOS: u16 = 256;

/// The canonical decoding tables: per length, the first code, how many codes, and where
/// their symbols start in `symbols`.
struct Canonical {
    first: [u32; MAX_LEN + 1],
    count: [u32; MAX_LEN + 1],
    offset: [u16; MAX_LEN + 1],
    symbols: [u16; 257],
}

const TABLE: Canonical = build();

const fn build() -> Canonical {
    let mut t = Canonical {
        first: [0; MAX_LEN + 1],
        count: [0; MAX_LEN + 1],
        offset: [0; MAX_LEN + 1],
        symbols: [0; 257],
    };
    let mut s = 0;
    while s < 257 {
        t.count[LENGTHS[s] as usize] += 1;
        s += 1;
    }
    let mut code = 0u32;
    let mut offset = 0u16;
    let mut len = 1;
    while len <= MAX_LEN {
        code <<= 1;
        t.first[len] = code;
        t.offset[len] = offset;
        code += t.count[len];
        offset += t.count[len] as u16;
        len += 1;
    }
    // Symbols in (length, value) order.
    let mut next = t.offset;
    let mut s = 0;
    while s < 257 {
        let l = LENGTHS[s] as usize;
        t.symbols[next[l] as usize] = s as u16;
        next[l] += 1;
        s += 1;
    }
    t
}

/// Why a Huffman string does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HuffmanError {
    /// The EOS symbol inside the string, or a bit pattern no code has.
    InvalidCode,
    /// Padding longer than 7 bits or not all ones.
    InvalidPadding,
}

/// Appends the decoding of `src` to `out`.
pub(crate) fn decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    out.reserve(src.len() + src.len() / 2);
    // Bits not yet decoded, right-aligned in `acc`; `bits` of them.
    let mut acc: u64 = 0;
    let mut bits: usize = 0;
    let mut input = src.iter();
    loop {
        // Keep at least MAX_LEN bits when the input has them.
        while bits <= 56 - 8 {
            match input.next() {
                Some(&b) => {
                    acc = (acc << 8) | u64::from(b);
                    bits += 8;
                }
                None => break,
            }
        }
        if bits < MIN_LEN {
            break;
        }
        match next_symbol(acc, bits) {
            Some((sym, len)) if sym != EOS => {
                out.push(sym as u8);
                bits -= len;
                acc &= mask(bits);
            }
            Some(_) => return Err(HuffmanError::InvalidCode),
            None => break,
        }
    }
    // What is left must be fewer than 8 bits, all ones (a prefix of EOS).
    if bits > 7 || acc & mask(bits) != mask(bits) {
        return Err(HuffmanError::InvalidPadding);
    }
    Ok(())
}

/// The symbol whose code starts the `bits` low bits of `acc`, and its length; None when
/// no code fits in those bits.
#[inline]
fn next_symbol(acc: u64, bits: usize) -> Option<(u16, usize)> {
    let mut len = MIN_LEN;
    while len <= MAX_LEN.min(bits) {
        let code = (acc >> (bits - len)) as u32;
        let first = TABLE.first[len];
        let n = TABLE.count[len];
        if code.wrapping_sub(first) < n {
            let at = usize::from(TABLE.offset[len]) + (code - first) as usize;
            return TABLE.symbols.get(at).map(|&s| (s, len));
        }
        len += 1;
    }
    None
}

#[inline]
fn mask(bits: usize) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// Encodes `src` (tests, the capture generator's encoder lives elsewhere).
#[cfg(test)]
pub(crate) fn encode(src: &[u8]) -> Vec<u8> {
    // The code of each symbol, from the canonical tables.
    let code_of = |s: u16| -> (u32, usize) {
        let l = LENGTHS[usize::from(s)] as usize;
        let base = usize::from(TABLE.offset[l]);
        let rank = TABLE.symbols[base..base + TABLE.count[l] as usize]
            .iter()
            .position(|&x| x == s)
            .unwrap_or(0);
        (TABLE.first[l] + rank as u32, l)
    };
    let mut out = Vec::new();
    let mut acc: u64 = 0;
    let mut bits = 0;
    for &b in src {
        let (code, len) = code_of(u16::from(b));
        acc = (acc << len) | u64::from(code);
        bits += len;
        while bits >= 8 {
            out.push((acc >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    if bits > 0 {
        out.push(((acc << (8 - bits)) as u8) | (0xff >> bits));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn rfc7541_examples_decode() {
        // RFC 7541 C.4.1 and C.6.1.
        let cases = [
            ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"),
            ("a8eb 1064 9cbf", "no-cache"),
            ("25a8 49e9 5ba9 7d7f", "custom-key"),
            ("6402", "302"),
            ("aec3 771a 4b", "private"),
            (
                "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
                "Mon, 21 Oct 2013 20:13:21 GMT",
            ),
            (
                "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
                "https://www.example.com",
            ),
        ];
        for (wire, text) in cases {
            let mut out = Vec::new();
            decode(&hex(wire), &mut out).unwrap();
            assert_eq!(out, text.as_bytes(), "{wire}");
            assert_eq!(encode(text.as_bytes()), hex(wire), "{text}");
        }
    }

    #[test]
    fn bad_padding_and_eos_are_errors() {
        let mut out = Vec::new();
        // A whole byte of padding.
        assert_eq!(decode(&[0xff], &mut out), Err(HuffmanError::InvalidPadding));
        // Padding of zeros: '0' is 00000, then 3 bits 000.
        assert_eq!(decode(&[0x00], &mut out), Err(HuffmanError::InvalidPadding));
        // EOS (30 ones) inside the string.
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xfc, 0x00], &mut out),
            Err(HuffmanError::InvalidCode)
        );
        assert_eq!(decode(&[], &mut out), Ok(()));
    }

    proptest! {
        #[test]
        fn every_byte_string_round_trips(s in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut out = Vec::new();
            decode(&encode(&s), &mut out).unwrap();
            prop_assert_eq!(out, s);
        }

        #[test]
        fn garbage_never_panics(s in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut out = Vec::new();
            let _ = decode(&s, &mut out);
            prop_assert!(out.len() <= s.len() * 8 / 5);
        }
    }
}
