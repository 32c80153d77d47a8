//! What an HTTP/2 stream adds to its transaction: the stream, how it ended, and the gRPC
//! messages its bodies carried.

use crate::flow::Direction;

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
