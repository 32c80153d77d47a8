//! Cheap checks on the first bytes of a message: does this look like a request line or a
//! status line? [`probe`] is HTTP/1.x's answer to protocol detection.

use apitap_core::{Direction, Probe};

/// Answer of a prefix check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Looks {
    /// It is a plausible start line.
    Yes,
    /// It cannot be one.
    No,
    /// Too few bytes to tell.
    NeedMore,
}

const MAX_METHOD: usize = 20;

/// Does `data` start like a request line: a method token (A-Z, '-', '_') then one or more
/// spaces and a request-target character?
pub(crate) fn looks_like_request(data: &[u8]) -> Looks {
    for (i, &b) in data.iter().enumerate() {
        if b == b' ' {
            if i == 0 {
                return Looks::No;
            }
            // The head parser accepts several spaces before the target: so does this.
            let rest = data.get(i..).unwrap_or(&[]);
            return match rest.iter().find(|&&c| c != b' ') {
                None => Looks::NeedMore,
                Some(c) if c.is_ascii_graphic() => Looks::Yes,
                Some(_) => Looks::No,
            };
        }
        if i >= MAX_METHOD || !(b.is_ascii_uppercase() || b == b'-' || b == b'_') {
            return Looks::No;
        }
    }
    Looks::NeedMore
}

/// Does `data` start like a status line (`HTTP/1.`)?
pub(crate) fn looks_like_response(data: &[u8]) -> Looks {
    const PREFIX: &[u8] = b"HTTP/1.";
    let n = data.len().min(PREFIX.len());
    if data.get(..n) != PREFIX.get(..n) {
        Looks::No
    } else if n < PREFIX.len() {
        Looks::NeedMore
    } else {
        Looks::Yes
    }
}

/// Is this the start of HTTP/1.x, and which way does it go? A status line goes to the
/// client, a request line to the server.
pub fn probe(data: &[u8]) -> Probe {
    match (looks_like_response(data), looks_like_request(data)) {
        (Looks::Yes, _) => Probe::Yes(Some(Direction::ToClient)),
        (_, Looks::Yes) => Probe::Yes(Some(Direction::ToServer)),
        (Looks::No, Looks::No) => Probe::No,
        _ => Probe::NeedMore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(looks_like_request(b"GET / HTTP/1.1"), Looks::Yes);
        assert_eq!(looks_like_request(b"M-SEARCH * HTTP/1.1"), Looks::Yes);
        assert_eq!(looks_like_request(b"GE"), Looks::NeedMore);
        assert_eq!(looks_like_request(b"GET "), Looks::NeedMore);
        assert_eq!(looks_like_request(b"GET      "), Looks::NeedMore);
        assert_eq!(looks_like_request(b"GET      /x"), Looks::Yes);
        assert_eq!(looks_like_request(b"GET   \x01"), Looks::No);
        assert_eq!(looks_like_request(b"get / HTTP/1.1"), Looks::No);
        assert_eq!(looks_like_request(b" GET"), Looks::No);
        assert_eq!(looks_like_request(b"\x16\x03\x01"), Looks::No);
        assert_eq!(
            looks_like_request(b"AAAAAAAAAAAAAAAAAAAAAAAAAAAA /"),
            Looks::No
        );
    }

    #[test]
    fn status_lines() {
        assert_eq!(looks_like_response(b"HTTP/1.1 200 OK"), Looks::Yes);
        assert_eq!(looks_like_response(b"HTT"), Looks::NeedMore);
        assert_eq!(looks_like_response(b"HTTP/2 200"), Looks::No);
        assert_eq!(
            probe(b"HTTP/1.0 404"),
            Probe::Yes(Some(Direction::ToClient))
        );
        assert_eq!(
            probe(b"POST /x HTTP/1.1"),
            Probe::Yes(Some(Direction::ToServer))
        );
        assert_eq!(probe(b"GE"), Probe::NeedMore);
        assert_eq!(probe(b"HT"), Probe::NeedMore);
        assert_eq!(probe(b"\x00\x01"), Probe::No);
        assert_eq!(probe(b"\x16\x03\x01"), Probe::No);
    }
}
