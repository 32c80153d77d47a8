//! Which protocol a stream speaks, from its first bytes: each protocol answers with its
//! own small probe. The outermost layer of a connection is HTTP/1.x unless another
//! protocol is recognised (HTTP/1.x finds its way into a stream joined midway, and gives
//! up on one that is not HTTP); a layer opened by a handoff needs a probe that says yes.

use apitap_core::{Direction, Handoff, Probe, UpgradeTo};

/// A protocol a layer of a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.0 and 1.1 (parsed).
    Http1,
    /// TLS (handshake metadata).
    Tls,
    /// WebSocket after an HTTP/1.1 upgrade (not parsed).
    WebSocket,
    /// HTTP/2 after an `Upgrade: h2c`.
    H2c,
    /// HTTP/2: the client preface (prior knowledge), ALPN `h2` inside decrypted TLS, or
    /// frames on a connection joined midway.
    Http2,
    /// A SOCKS 4, 4a or 5 handshake (followed into the stream it opens).
    Socks,
    /// No parser recognises it.
    Unknown,
}

impl Protocol {
    /// Stable snake_case name, as in the counters.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::Tls => "tls",
            Protocol::WebSocket => "websocket",
            Protocol::H2c => "h2c",
            Protocol::Http2 => "http2",
            Protocol::Socks => "socks",
            Protocol::Unknown => "unknown",
        }
    }
}

/// The protocol of a connection's outermost layer, from its first bytes.
pub(crate) fn outermost(first: &[u8]) -> Protocol {
    if let Probe::Yes(_) = apitap_tls::probe(first) {
        return Protocol::Tls;
    }
    if is_preface(first) {
        return Protocol::Http2;
    }
    if let Probe::Yes(_) = crate::socks::probe(first) {
        return Protocol::Socks;
    }
    Protocol::Http1
}

/// The HTTP/2 client preface, or as much of it as `first` has (at least `PRI `), or a
/// server's preface (a server may speak first).
fn is_preface(first: &[u8]) -> bool {
    (first.len() >= 4 && apitap_http::h2::probe(first) != Probe::No)
        || apitap_http::h2::probe_server_preface(first)
}

/// The protocol of a layer that `handoff` opened, from its first bytes.
pub(crate) fn after(handoff: Handoff, first: &[u8]) -> Protocol {
    match handoff {
        Handoff::Upgrade(UpgradeTo::WebSocket) => Protocol::WebSocket,
        Handoff::Upgrade(UpgradeTo::H2c) => Protocol::H2c,
        Handoff::Upgrade(UpgradeTo::Other) | Handoff::Tunnel => {
            if let Probe::Yes(_) = apitap_tls::probe(first) {
                Protocol::Tls
            } else if is_preface(first) {
                Protocol::Http2
            } else if let Probe::Yes(_) = crate::socks::probe(first) {
                Protocol::Socks
            } else if apitap_http::probe(first) != Probe::No {
                Protocol::Http1
            } else {
                Protocol::Unknown
            }
        }
    }
}

/// The protocol inside a decrypted TLS connection: what ALPN chose, else what its first
/// plaintext bytes say.
pub(crate) fn decrypted(alpn: Option<&str>, first: &[u8]) -> Protocol {
    if alpn == Some("h2") || is_preface(first) {
        Protocol::Http2
    } else if apitap_http::probe(first) != Probe::No {
        Protocol::Http1
    } else {
        Protocol::Unknown
    }
}

/// Which way the first bytes of a stream go, when a protocol can tell.
pub(crate) fn direction_of(first: &[u8]) -> Option<Direction> {
    crate::role::probe_direction(apitap_http::h2::probe(first))
        .or_else(|| crate::role::probe_direction(crate::socks::probe(first)))
        .or_else(|| crate::role::probe_direction(apitap_http::probe(first)))
        .or_else(|| crate::role::probe_direction(apitap_tls::probe(first)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outermost_is_http1_unless_tls() {
        assert_eq!(outermost(b"GET / HTTP/1.1\r\n"), Protocol::Http1);
        assert_eq!(
            outermost(b"garbage in the middle of a body"),
            Protocol::Http1
        );
        assert_eq!(outermost(&[0x16, 3, 1, 2, 0, 1]), Protocol::Tls);
        assert_eq!(outermost(&[0x15, 3, 3, 0, 2]), Protocol::Tls);
        // Joined midway: an application-data record.
        assert_eq!(outermost(&[0x17, 3, 3, 0, 40]), Protocol::Tls);
        assert_eq!(outermost(&[0x17, 3, 3, 0x50, 0]), Protocol::Http1);
    }

    #[test]
    fn after_a_handoff_a_probe_must_say_yes() {
        let tunnel = Handoff::Tunnel;
        assert_eq!(after(tunnel, b"GET /x HTTP/1.1\r\n"), Protocol::Http1);
        assert_eq!(after(tunnel, &[0x16, 3, 1, 2, 0, 1]), Protocol::Tls);
        assert_eq!(after(tunnel, b"\x00\x00\x12\x04"), Protocol::Unknown);
        let ws = Handoff::Upgrade(UpgradeTo::WebSocket);
        assert_eq!(after(ws, b"GET / HTTP/1.1\r\n"), Protocol::WebSocket);
        let h2c = Handoff::Upgrade(UpgradeTo::H2c);
        assert_eq!(after(h2c, b"PRI * HTTP/2.0"), Protocol::H2c);
    }
}
