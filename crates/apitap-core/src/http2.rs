//! What an HTTP/2 stream adds to its transaction: the stream, how it ended, and the gRPC
//! messages its bodies carried.

use crate::flow::Direction;
use crate::time::{PacketRef, SortKey};

/// The HTTP/2 stream a transaction was carried on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Http2Stream {
    /// The stream identifier.
    pub stream_id: u32,
    /// Set when the stream was reset.
    pub reset: Option<StreamReset>,
    /// For a pushed response: the stream whose PUSH_PROMISE announced it.
    pub promised_by: Option<u32>,
    /// A GOAWAY's error code, when one arrived while the stream was open.
    pub goaway: Option<u32>,
    /// The stream answers an HTTP/1.1 request that upgraded the connection (`h2c`).
    pub upgrade: bool,
}

/// An RST_STREAM: who sent it and its error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamReset {
    /// The direction the RST_STREAM travelled (`ToServer`: the client reset it).
    pub by: Direction,
    /// The error code (RFC 9113 section 7).
    pub error_code: u32,
}

/// The RFC 9113 name of an HTTP/2 error code, if it has one.
pub fn error_code_name(code: u32) -> Option<&'static str> {
    const NAMES: [&str; 14] = [
        "NO_ERROR",
        "PROTOCOL_ERROR",
        "INTERNAL_ERROR",
        "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT",
        "STREAM_CLOSED",
        "FRAME_SIZE_ERROR",
        "REFUSED_STREAM",
        "CANCEL",
        "COMPRESSION_ERROR",
        "CONNECT_ERROR",
        "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY",
        "HTTP_1_1_REQUIRED",
    ];
    NAMES.get(code as usize).copied()
}

/// gRPC messages of one call, per direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrpcMessages {
    /// Client to server.
    pub request: MessageCount,
    /// Server to client.
    pub response: MessageCount,
}

/// Length-prefixed gRPC messages in one direction of a call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageCount {
    /// Messages whose prefix was seen.
    pub messages: u32,
    /// Sum of their lengths (as the prefixes say).
    pub bytes: u64,
    /// Messages with the compressed flag set.
    pub compressed: u32,
    /// Message framing was lost (a gap in the body, or a bad prefix): the counts are
    /// those before it.
    pub framing_lost: bool,
}

/// Frames of one direction of an HTTP/2 connection, by type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FrameCounts {
    /// DATA.
    pub data: u32,
    /// HEADERS.
    pub headers: u32,
    /// CONTINUATION.
    pub continuation: u32,
    /// PRIORITY.
    pub priority: u32,
    /// RST_STREAM.
    pub rst_stream: u32,
    /// SETTINGS (acknowledgements included).
    pub settings: u32,
    /// PUSH_PROMISE.
    pub push_promise: u32,
    /// PING (acknowledgements included).
    pub ping: u32,
    /// GOAWAY.
    pub goaway: u32,
    /// WINDOW_UPDATE.
    pub window_update: u32,
    /// Types RFC 9113 does not define (skipped).
    pub unknown: u32,
    /// Frames that broke their type's rules (skipped).
    pub invalid: u32,
}

/// A GOAWAY: who sent it, its error code and the last stream it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoAway {
    /// The direction it travelled.
    pub by: Direction,
    /// Its error code.
    pub error_code: u32,
    /// The last stream id the sender processed.
    pub last_stream_id: u32,
}

/// One HTTP/2 connection (or HTTP/2 layer of a connection), handed out when it ends: what
/// its frames and streams were, the material for HTTP/2 attack indicators (rapid reset,
/// CONTINUATION and control-frame floods, HPACK bombs, stream abuse) that no single
/// stream shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Http2Connection {
    /// Output order key: the packet that ended the connection.
    pub key: SortKey,
    /// The packet of its first byte.
    pub start: PacketRef,
    /// The packet that ended it.
    pub end: PacketRef,
    /// Joined midway (no preface seen).
    pub midstream: bool,
    /// Frame boundaries were lost and parsing stopped.
    pub given_up: bool,
    /// Frames the client sent.
    pub client_frames: FrameCounts,
    /// Frames the server sent.
    pub server_frames: FrameCounts,
    /// Streams opened.
    pub streams: u32,
    /// Most streams open at once.
    pub max_open_streams: u32,
    /// The server's SETTINGS_MAX_CONCURRENT_STREAMS, when it sent one.
    pub server_max_concurrent_streams: Option<u32>,
    /// Streams the client reset before any response began (CVE-2023-44487's pattern).
    pub rapid_resets: u32,
    /// Client HEADERS on a stream id a client may not open: even, or not above the last.
    pub stream_id_errors: u32,
    /// Most frames (HEADERS or PUSH_PROMISE and its CONTINUATIONs) one header block took.
    pub longest_header_block_frames: u32,
    /// Header blocks still open when the connection ended.
    pub unfinished_header_blocks: u32,
    /// Header blocks flagged `hpack_bomb`.
    pub hpack_bombs: u32,
    /// Largest decoded header list (RFC 7541 size) and the wire size of its block.
    pub largest_header_list: (u64, u64),
    /// Header fields left out for missing HPACK state.
    pub hpack_fields_unknown: u32,
    /// The first GOAWAY.
    pub goaway: Option<GoAway>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_have_their_rfc_names() {
        assert_eq!(error_code_name(0), Some("NO_ERROR"));
        assert_eq!(error_code_name(8), Some("CANCEL"));
        assert_eq!(error_code_name(13), Some("HTTP_1_1_REQUIRED"));
        assert_eq!(error_code_name(14), None);
    }
}
