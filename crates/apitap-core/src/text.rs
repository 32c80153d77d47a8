//! Small text helpers shared by the encoder and the analytics: lossy UTF-8, ASCII
//! lower-casing that borrows when it can, a byte-loop split and percent-decoding.

use std::borrow::Cow;

/// `bytes` as text, invalid UTF-8 replaced by U+FFFD. `from_utf8` first: its ASCII fast
/// path is several times quicker than `from_utf8_lossy`'s chunk iterator on the valid
/// text that nearly every header is.
pub fn utf8_lossy(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// `s` in ASCII lower case; borrowed when it has no upper-case letter.
pub fn lower_ascii(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// `s` split at every `sep` (an ASCII byte), as `str::split` does. A plain byte loop: on
/// the few bytes of a path segment or a query pair, the std searcher costs more to set up
/// than to run.
pub fn split_ascii(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    debug_assert!(sep.is_ascii());
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.bytes().position(|b| b == sep) {
            Some(i) => {
                // An ASCII byte is a character of its own: both sides are whole text.
                rest = r.get(i + 1..);
                r.get(..i)
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Percent-decoding (`+` as space, as in form data and query strings); invalid escapes
/// are kept as they are, invalid UTF-8 in the result becomes U+FFFD. Borrows when there
/// is nothing to decode.
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = |at: usize| b.get(at).and_then(|&c| (c as char).to_digit(16));
        match c {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(h), Some(l)) => {
                    // Two hex digits make at most 0xff.
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lossy_and_lower() {
        assert_eq!(utf8_lossy(b"a\xffb"), "a\u{fffd}b");
        assert!(matches!(utf8_lossy(b"ab"), Cow::Borrowed("ab")));
        assert!(matches!(lower_ascii("abc"), Cow::Borrowed("abc")));
        assert_eq!(lower_ascii("AbC"), "abc");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb+c"), "a/b c");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%+f"), "% f", "a sign is not a hex digit");
        assert_eq!(percent_decode("%41%42"), "AB");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        assert!(matches!(percent_decode("plain"), Cow::Borrowed("plain")));
    }

    proptest! {
        #[test]
        fn split_ascii_equals_str_split(s in "[a-c/&=%é]{0,24}", sep in prop::sample::select(vec![b'/', b'&', b'='])) {
            let ours: Vec<&str> = split_ascii(&s, sep).collect();
            let std: Vec<&str> = s.split(sep as char).collect();
            prop_assert_eq!(ours, std);
        }
    }
}
