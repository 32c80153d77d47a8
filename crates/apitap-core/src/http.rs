//! HTTP transaction records: what the HTTP parser produces and the encoder serialises.
//!
//! A message head is kept as one owned byte buffer plus spans into it, so a transaction
//! costs two allocations however many headers it has.

use crate::time::{PacketRef, SortKey};

/// A byte range inside a [`Head`] buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// Start offset.
    pub start: u32,
    /// Length in bytes.
    pub len: u32,
}

impl Span {
    /// Span of `len` bytes at `start`.
    pub fn new(start: usize, len: usize) -> Span {
        Span {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            len: u32::try_from(len).unwrap_or(0),
        }
    }

    /// The byte range the span covers.
    pub fn range(self) -> std::ops::Range<usize> {
        let start = self.start as usize;
        start..start.saturating_add(self.len as usize)
    }
}

/// The bytes of one message head (start line and header fields) and spans into them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head {
    /// Owned copy of the head bytes (or just the parts the spans point into).
    pub buf: Vec<u8>,
    /// (name, value) spans, in wire order. Names keep their original case.
    pub headers: Vec<(Span, Span)>,
}

impl Head {
    /// The bytes of `span`; empty if it lies outside the buffer.
    pub fn get(&self, span: Span) -> &[u8] {
        self.buf.get(span.range()).unwrap_or(&[])
    }

    /// Iterates (name, value) pairs in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.headers
            .iter()
            .map(|&(n, v)| (self.get(n), self.get(v)))
    }

    /// First value of header `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        let name = name.as_bytes();
        // Names of another length are passed over on the span alone.
        self.headers
            .iter()
            .find(|&&(n, _)| n.len as usize == name.len() && self.get(n).eq_ignore_ascii_case(name))
            .map(|&(_, v)| self.get(v))
    }

    /// Whether the Content-Type says gRPC (`application/grpc*`, grpc-web included): one
    /// rule for the parser that counts messages and the encoder that writes `rpc.*`.
    pub fn is_grpc(&self) -> bool {
        self.header("content-type").is_some_and(|ct| {
            ct.trim_ascii_start()
                .get(..16)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"application/grpc"))
        })
    }

    /// Whether the Content-Type value starts with one of `prefixes` (ASCII
    /// case-insensitive, leading white space ignored): `http.include_body_for` matching.
    pub fn content_type_starts_with(&self, prefixes: &[String]) -> bool {
        let Some(ct) = self.header("content-type") else {
            return false;
        };
        let ct = ct.trim_ascii_start();
        prefixes.iter().any(|want| {
            ct.get(..want.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(want.as_bytes()))
        })
    }
}

/// Header names that carry credentials (lower case): events redact them by default and
/// the sensitive-data scan skips them (a token there is expected, not a leak). One list,
/// so the two cannot drift apart.
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "apikey",
    "x-auth-token",
    "x-access-token",
    "x-amz-security-token",
];

/// HTTP protocol version from the start line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HttpVersion {
    /// HTTP/0.9: a request line without a version, answered by a bare body.
    Http09,
    /// HTTP/1.0
    Http10,
    /// HTTP/1.1
    #[default]
    Http11,
    /// HTTP/2
    Http2,
}

impl HttpVersion {
    /// `"0.9"`, `"1.0"`, `"1.1"` or `"2"`, as ECS `http.version` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpVersion::Http09 => "0.9",
            HttpVersion::Http10 => "1.0",
            HttpVersion::Http11 => "1.1",
            HttpVersion::Http2 => "2",
        }
    }
}

/// A captured message body (body capture is off unless its content type is listed in
/// `http.include_body_for`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapturedBody {
    /// The body without chunk framing, content-decoded when `decoded_from` is set, at most
    /// the configured size.
    pub bytes: Vec<u8>,
    /// Not all of the body is in `bytes`: it was longer than the limit, a gap fell inside
    /// it, or it was cut short.
    pub truncated: bool,
    /// The content codings that were removed, as the message listed them.
    pub decoded_from: Option<ContentCodings>,
    /// Bytes captured when fewer than `http.max_body_bytes`: a body captured only for the
    /// sensitive-data scan is captured (and decoded) a byte past what the scan reads.
    pub capture_limit: Option<usize>,
}

/// A content coding apitap can remove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentCoding {
    /// gzip (also "x-gzip").
    Gzip,
    /// zlib or raw deflate.
    Deflate,
    /// Brotli.
    Br,
}

impl ContentCoding {
    /// The coding's name in Content-Encoding.
    pub fn name(self) -> &'static str {
        match self {
            ContentCoding::Gzip => "gzip",
            ContentCoding::Deflate => "deflate",
            ContentCoding::Br => "br",
        }
    }
}

/// Content codings applied one over another (`Content-Encoding: gzip, br`), in the order
/// they were applied; at most [`ContentCodings::MAX`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContentCodings {
    list: [Option<ContentCoding>; ContentCodings::MAX],
}

impl ContentCodings {
    /// The most codings one body may stack; a body with more is not decoded.
    pub const MAX: usize = 4;

    /// The codings of `list` (in the order applied), or None for more than [`Self::MAX`].
    pub fn new(list: &[ContentCoding]) -> Option<ContentCodings> {
        if list.len() > Self::MAX {
            return None;
        }
        let mut out = ContentCodings::default();
        for (slot, c) in out.list.iter_mut().zip(list) {
            *slot = Some(*c);
        }
        Some(out)
    }

    /// The codings in the order they were applied.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = ContentCoding> + '_ {
        self.list.iter().flatten().copied()
    }

    /// The `n` codings applied last (all of them when there are fewer).
    pub fn last_applied(&self, n: usize) -> ContentCodings {
        let len = self.iter().count();
        let mut out = ContentCodings::default();
        for (slot, c) in out
            .list
            .iter_mut()
            .zip(self.iter().skip(len.saturating_sub(n)))
        {
            *slot = Some(c);
        }
        out
    }
}

impl std::fmt::Display for ContentCodings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, c) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(c.name())?;
        }
        Ok(())
    }
}

impl serde::Serialize for ContentCodings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A parsed request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpRequest {
    /// Head bytes and header spans.
    pub head: Head,
    /// Method span in `head`.
    pub method: Span,
    /// Request-target span in `head`, as sent (HTTP/2: `:path`).
    pub target: Span,
    /// HTTP/2 `:authority` span in `head` (empty for HTTP/1, which has `Host`).
    pub authority: Span,
    /// HTTP/2 `:scheme` span in `head` (empty for HTTP/1).
    pub scheme: Span,
    /// Version from the request line.
    pub version: HttpVersion,
    /// Body length without chunk framing, before content decoding.
    pub body_bytes: u64,
    /// Bytes of the whole message on the wire: head, body and chunk framing.
    pub wire_bytes: u64,
    /// The body, when captured.
    pub body: Option<Box<CapturedBody>>,
    /// Packet that delivered the first byte of the request.
    pub start: PacketRef,
    /// Packet that delivered the last byte of the request.
    pub end: PacketRef,
}

impl HttpRequest {
    /// The method bytes.
    pub fn method(&self) -> &[u8] {
        self.head.get(self.method)
    }
    /// The request-target bytes as sent.
    pub fn target(&self) -> &[u8] {
        self.head.get(self.target)
    }
    /// The HTTP/2 `:authority`, when there is one.
    pub fn authority(&self) -> Option<&[u8]> {
        Some(self.head.get(self.authority)).filter(|a| !a.is_empty())
    }
    /// The HTTP/2 `:scheme`, when there is one.
    pub fn scheme(&self) -> Option<&[u8]> {
        Some(self.head.get(self.scheme)).filter(|a| !a.is_empty())
    }
}

/// A parsed response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpResponse {
    /// Head bytes and header spans.
    pub head: Head,
    /// Status code (100..=999); 0 when an HTTP/2 `:status` could not be decoded.
    pub status: u16,
    /// Reason phrase span in `head`.
    pub reason: Span,
    /// Version from the status line.
    pub version: HttpVersion,
    /// Body length without chunk framing, before content decoding.
    pub body_bytes: u64,
    /// Bytes on the wire from the first interim response (if any) to the end of this one:
    /// heads, body and chunk framing.
    pub wire_bytes: u64,
    /// Number of interim (1xx) responses seen before this final one.
    pub interim_count: u16,
    /// Trailer fields (HTTP/2 trailers: gRPC's status); empty when there were none.
    pub trailers: Head,
    /// The body, when captured.
    pub body: Option<Box<CapturedBody>>,
    /// Packet that delivered the first byte of the response (of the first interim one, if any).
    pub start: PacketRef,
    /// Packet that delivered the last byte of the response.
    pub end: PacketRef,
}

impl HttpResponse {
    /// The reason phrase bytes.
    pub fn reason(&self) -> &[u8] {
        self.head.get(self.reason)
    }
}

crate::named_enum! {
    /// Protocol anomalies flagged on a transaction. Parsing continues after each.
    pub enum Anomaly {
    /// A TCP gap (missing bytes) fell inside this transaction.
    Gap = "gap",
    /// Content-Length together with Transfer-Encoding (request smuggling indicator).
    ContentLengthWithTransferEncoding = "content_length_with_transfer_encoding",
    /// More than one Content-Length header, or one that does not parse.
    InvalidContentLength = "invalid_content_length",
    /// Transfer-Encoding that is not a plain final `chunked`.
    InvalidTransferEncoding = "invalid_transfer_encoding",
    /// Chunk size line that does not parse or overflows.
    InvalidChunkSize = "invalid_chunk_size",
    /// Head larger than the configured limit; the message is kept from its start line and
    /// the rest of its head is skipped.
    HeadTooLarge = "head_too_large",
    /// More header fields than the configured limit.
    TooManyHeaders = "too_many_headers",
    /// The head in progress was cut to keep the heads a worker buffers within
    /// `http.head_memcap_bytes`; the message is kept from its start line, incomplete.
    HeadMemcap = "head_memcap",
    /// Bytes that are not a valid request or status line where one was expected.
    InvalidStartLine = "invalid_start_line",
    /// A header line that does not parse.
    InvalidHeader = "invalid_header",
    /// Line ends with a bare LF.
    BareLf = "bare_lf",
    /// The message body was cut short (connection end or gap).
    BodyTruncated = "body_truncated",
    /// Non-HTTP bytes were skipped to find the next message start.
    SkippedBytes = "skipped_bytes",
    /// Response data with no request outstanding.
    UnsolicitedResponse = "unsolicited_response",
    /// Trailer section after the last chunk.
    Trailers = "trailers",
    /// Whitespace between a header name and the colon (request smuggling indicator).
    WhitespaceBeforeColon = "whitespace_before_colon",
    /// A compressed body inflated past the size or ratio limit; decoding stopped there.
    DecompressionBomb = "decompression_bomb",
    /// A body's Content-Encoding could not be decoded (corrupt or unsupported coding).
    BodyDecodeError = "body_decode_error",
    /// TCP segments carried two different versions of the same bytes (evasion indicator);
    /// the first version was used.
    OverlapConflict = "overlap_conflict",
    /// A TLS record header that is not one (bad type, version or length): the direction's
    /// records are not followed further.
    TlsRecordInvalid = "tls_record_invalid",
    /// A TLS handshake message longer than `tls.max_handshake_bytes`; it was skipped.
    TlsHandshakeTooLarge = "tls_handshake_too_large",
    /// A TLS handshake message that does not parse.
    TlsHandshakeInvalid = "tls_handshake_invalid",
    /// An HTTP/2 header field named HPACK table state that was not seen (the connection
    /// was joined midway, or a header block was lost): the field is left out.
    HpackStateMissing = "hpack_state_missing",
    /// An HTTP/2 header block that does not decode (bad index, integer, length or
    /// Huffman code): the fields after the fault are lost.
    HpackInvalid = "hpack_invalid",
    /// An HTTP/2 frame that breaks the protocol (length, padding, stream, or a header
    /// block interrupted); it was skipped.
    Http2FrameInvalid = "http2_frame_invalid",
    /// An HTTP/2 header block whose decoded size is far larger than its size on the wire
    /// (an HPACK decompression bomb indicator).
    HpackBomb = "hpack_bomb",
    /// An HTTP/0.9 simple request (a request line without a version; no headers) and its
    /// answer, a bare body without a status line, up to the connection's end.
    Http09 = "http09",
    }
}

/// A set of [`Anomaly`] values (bitset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Anomalies(pub u64);

impl Anomalies {
    /// Adds `a`.
    pub fn insert(&mut self, a: Anomaly) {
        self.0 |= 1 << (a as u8);
    }
    /// Whether `a` is present.
    pub fn contains(self, a: Anomaly) -> bool {
        self.0 & (1 << (a as u8)) != 0
    }
    /// Union of both sets.
    pub fn union(self, other: Anomalies) -> Anomalies {
        Anomalies(self.0 | other.0)
    }
    /// True when no anomaly is present.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Present anomalies in declaration order.
    pub fn iter(self) -> impl Iterator<Item = Anomaly> {
        Anomaly::ALL
            .iter()
            .copied()
            .filter(move |a| self.contains(*a))
    }
}

crate::named_enum! {
    /// Why a transaction is missing its request or response.
    pub enum IncompleteReason {
        /// No response began within the transaction timeout (packet time).
        ResponseTimeout = "response_timeout",
        /// The connection closed (FIN/RST) or idled out before a response.
        ConnectionClosed = "connection_closed",
        /// The capture ended before a response.
        EndOfCapture = "end_of_capture",
        /// A response with no request: the request was lost (gap, capture start,
        /// one-sided capture).
        RequestNotSeen = "request_not_seen",
        /// The response started but did not finish (gap, close or end of capture mid-body).
        ResponseIncomplete = "response_incomplete",
        /// The request started but did not finish.
        RequestIncomplete = "request_incomplete",
        /// Too many requests were waiting for responses on one connection (HTTP/2: too
        /// many open streams); the oldest was given up.
        PipelineOverflow = "pipeline_overflow",
        /// The HTTP/2 stream was reset (RST_STREAM); `apitap.http2.reset` says by whom
        /// and why.
        StreamReset = "stream_reset",
    }
}

/// One HTTP exchange: a request and its response, or a lone half with a reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpTransaction {
    /// Output order key (request start, or response start for a lone response).
    pub key: SortKey,
    /// The request, if seen.
    pub request: Option<HttpRequest>,
    /// The final response, if seen.
    pub response: Option<HttpResponse>,
    /// Anomalies seen on either message.
    pub anomalies: Anomalies,
    /// Set when the transaction is not a complete request/response pair.
    pub incomplete: Option<IncompleteReason>,
    /// The handshake of the TLS connection it was decrypted from.
    pub tls: Option<std::sync::Arc<crate::tls::TlsHandshake>>,
    /// The HTTP/2 stream it was carried on.
    pub http2: Option<Box<crate::http2::Http2Stream>>,
    /// gRPC messages counted in the bodies (gRPC calls only).
    pub grpc: Option<Box<crate::http2::GrpcMessages>>,
}

impl HttpTransaction {
    /// Both halves present and finished.
    pub fn is_complete(&self) -> bool {
        self.incomplete.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anomaly_set_roundtrip() {
        let mut s = Anomalies::default();
        assert!(s.is_empty());
        s.insert(Anomaly::BareLf);
        s.insert(Anomaly::Gap);
        assert!(s.contains(Anomaly::Gap));
        assert!(!s.contains(Anomaly::Trailers));
        let names: Vec<_> = s.iter().map(Anomaly::name).collect();
        assert_eq!(names, ["gap", "bare_lf"]);
        assert!(Anomaly::ALL.len() <= 64);
    }

    #[test]
    fn head_lookup_is_case_insensitive_and_bounds_checked() {
        let buf = b"Host: a\r\nX-Y: b".to_vec();
        let head = Head {
            buf,
            headers: vec![
                (Span::new(0, 4), Span::new(6, 1)),
                (Span::new(9, 3), Span::new(14, 1)),
                (Span::new(100, 3), Span::new(200, 1)),
            ],
        };
        assert_eq!(head.header("host"), Some(&b"a"[..]));
        assert_eq!(head.header("x-y"), Some(&b"b"[..]));
        assert_eq!(head.iter().count(), 3);
        assert_eq!(head.get(Span::new(100, 3)), b"");
    }
}
