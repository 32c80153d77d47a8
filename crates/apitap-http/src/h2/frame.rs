//! HTTP/2 frame headers (RFC 9113 section 4) and the checks each frame type's header must
//! pass before its payload is read.

/// The client connection preface.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Bytes in a frame header.
pub(crate) const HEADER_LEN: usize = 9;

/// Frame types apitap reads (others are skipped, as RFC 9113 requires).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Data,
    Headers,
    Priority,
    RstStream,
    Settings,
    PushPromise,
    Ping,
    GoAway,
    WindowUpdate,
    Continuation,
    Unknown,
}

/// Frame flags.
pub(crate) const END_STREAM: u8 = 0x1;
pub(crate) const ACK: u8 = 0x1;
pub(crate) const END_HEADERS: u8 = 0x4;
pub(crate) const PADDED: u8 = 0x8;
pub(crate) const PRIORITY: u8 = 0x20;

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub len: u32,
    pub kind: Kind,
    pub flags: u8,
    pub stream: u32,
}

impl FrameHeader {
    /// Reads the 9 header bytes.
    pub(crate) fn parse(b: &[u8; HEADER_LEN]) -> FrameHeader {
        let len = u32::from_be_bytes([0, b[0], b[1], b[2]]);
        let kind = match b[3] {
            0 => Kind::Data,
            1 => Kind::Headers,
            2 => Kind::Priority,
            3 => Kind::RstStream,
            4 => Kind::Settings,
            5 => Kind::PushPromise,
            6 => Kind::Ping,
            7 => Kind::GoAway,
            8 => Kind::WindowUpdate,
            9 => Kind::Continuation,
            _ => Kind::Unknown,
        };
        FrameHeader {
            len,
            kind,
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    /// Whether the header is one a peer may send: the stream rules and fixed lengths of
    /// its type, and at most `max_len` bytes of payload.
    pub(crate) fn is_valid(&self, max_len: u32) -> bool {
        if self.len > max_len {
            return false;
        }
        let on_stream = self.stream != 0;
        match self.kind {
            Kind::Data | Kind::Headers | Kind::Continuation => on_stream,
            Kind::Priority => on_stream && self.len == 5,
            Kind::RstStream => on_stream && self.len == 4,
            Kind::PushPromise => on_stream && self.len >= 4,
            Kind::Settings => {
                !on_stream && self.len % 6 == 0 && (self.flags & ACK == 0 || self.len == 0)
            }
            Kind::Ping => !on_stream && self.len == 8,
            Kind::GoAway => !on_stream && self.len >= 8,
            Kind::WindowUpdate => self.len == 4,
            Kind::Unknown => true,
        }
    }
}

/// Whether `bytes`, the first a stream joined midway delivered, are HTTP/2 frames: valid
/// frame headers of known types chain to exactly their end (one 24-bit length landing
/// exactly on the end of a segment is already a 1 in 2^24 chance for other bytes).
/// Conservative: a stream that merely might be HTTP/2 is not taken for it.
pub fn probe_midstream(bytes: &[u8]) -> bool {
    let mut at = 0;
    let mut frames = 0;
    while at < bytes.len() {
        let Some(h) = bytes.get(at..at + HEADER_LEN) else {
            return false;
        };
        let mut raw = [0u8; HEADER_LEN];
        raw.copy_from_slice(h);
        let header = FrameHeader::parse(&raw);
        if header.kind == Kind::Unknown || !header.is_valid(1 << 14) || raw[5] & 0x80 != 0 {
            return false;
        }
        at += HEADER_LEN + header.len as usize;
        frames += 1;
    }
    at == bytes.len() && frames >= 1
}

/// Whether `bytes` start with a server's connection preface: a whole SETTINGS frame
/// header (not an ACK) on stream 0. A server may speak first, so a connection seen from
/// its start can open with this instead of the client preface.
pub fn probe_server_preface(bytes: &[u8]) -> bool {
    let Some(h) = bytes.get(..HEADER_LEN) else {
        return false;
    };
    let mut raw = [0u8; HEADER_LEN];
    raw.copy_from_slice(h);
    let h = FrameHeader::parse(&raw);
    h.kind == Kind::Settings && h.flags == 0 && h.is_valid(1 << 14) && raw[5..] == [0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u32, kind: u8, flags: u8, stream: u32) -> Vec<u8> {
        let mut v = len.to_be_bytes()[1..].to_vec();
        v.push(kind);
        v.push(flags);
        v.extend_from_slice(&stream.to_be_bytes());
        v
    }

    #[test]
    fn headers_parse_and_check_their_type_rules() {
        let raw: [u8; 9] = header(5, 2, 0, 0x8000_0003).try_into().unwrap();
        let h = FrameHeader::parse(&raw);
        assert_eq!((h.len, h.kind, h.stream), (5, Kind::Priority, 3));
        assert!(h.is_valid(16384));
        let check = |len, kind, flags, stream| {
            let raw: [u8; 9] = header(len, kind, flags, stream).try_into().unwrap();
            FrameHeader::parse(&raw).is_valid(16384)
        };
        assert!(!check(0, 0, 0, 0), "DATA on stream 0");
        assert!(!check(4, 1, 0, 0), "HEADERS on stream 0");
        assert!(!check(6, 4, 0, 1), "SETTINGS on a stream");
        assert!(!check(7, 4, 0, 0), "SETTINGS not a multiple of 6");
        assert!(!check(6, 4, ACK, 0), "SETTINGS ACK with a payload");
        assert!(!check(7, 6, 0, 0), "PING of 7 bytes");
        assert!(!check(4, 3, 0, 0), "RST_STREAM on stream 0");
        assert!(!check(3, 5, 0, 1), "PUSH_PROMISE too short");
        assert!(!check(20000, 0, 0, 1), "past the frame size limit");
        assert!(check(100, 0xfa, 0, 0), "unknown types are allowed");
    }

    #[test]
    fn midstream_probe_needs_a_chain_of_frames() {
        let mut two = header(4, 8, 0, 0);
        two.extend_from_slice(&[0, 0, 1, 0]);
        two.extend_from_slice(&header(3, 0, END_STREAM, 5));
        two.extend_from_slice(b"abc");
        assert!(probe_midstream(&two));
        assert!(!probe_midstream(&two[..two.len() - 1]));
        assert!(probe_midstream(&two[..13]));
        assert!(!probe_midstream(&two[..12]));
        assert!(!probe_midstream(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!probe_midstream(b""));
    }

    #[test]
    fn a_server_preface_is_a_settings_frame() {
        let mut settings = header(6, 4, 0, 0);
        settings.extend_from_slice(&[0, 3, 0, 0, 0, 100]);
        assert!(probe_server_preface(&settings));
        assert!(probe_server_preface(&settings[..9]));
        assert!(!probe_server_preface(&settings[..8]));
        assert!(!probe_server_preface(&header(0, 4, ACK, 0)));
        assert!(!probe_server_preface(&header(6, 4, 0, 1)));
        assert!(!probe_server_preface(b"HTTP/1.1 200 OK\r\n"));
    }
}
