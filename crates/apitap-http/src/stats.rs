//! HTTP/1.x parser counters.

apitap_core::counters! {
    /// HTTP parser counters.
    pub struct HttpStats {
        /// Request heads parsed.
        pub requests: u64,
        /// Final response heads parsed.
        pub responses: u64,
        /// Interim (1xx other than 101) responses parsed.
        pub interim_responses: u64,
        /// Transactions emitted.
        pub transactions_emitted: u64,
        /// Bytes skipped while looking for the next message start.
        pub bytes_skipped: u64,
        /// Times a direction lost sync (invalid data or a gap) and had to resync.
        pub resyncs: u64,
        /// Heads larger than `max_head_bytes` (skipped).
        pub heads_too_large: u64,
        /// Heads cut short (connection end, gap, timeout, the head memcap): each message
        /// is kept from its start line, incomplete, unless `partial_heads_lost` says not.
        pub partial_heads: u64,
        /// Partial heads without a whole start line: no transaction (bytes skipped).
        pub partial_heads_lost: u64,
        /// Request heads still unfinished after `transaction_timeout_ms` (cut).
        pub heads_timed_out: u64,
        /// Heads cut to keep the buffered heads of a worker within `head_memcap_bytes`.
        pub heads_shed: u64,
        /// Bytes where a request or status line was expected but none was.
        pub invalid_start_lines: u64,
        /// Requests given up because too many were waiting for responses.
        pub pipeline_overflows: u64,
        /// Connections handed on to another protocol (101 Switching Protocols, a CONNECT
        /// tunnel); what follows is the next layer's.
        pub upgrades: u64,
        /// Bytes not parsed on connections given up as not HTTP.
        pub non_http_bytes: u64,
        /// Gaps that fell inside a body and were absorbed.
        pub gaps_in_body: u64,
        /// Gaps that broke framing and forced a resync.
        pub gaps_resync: u64,
        /// Connections given up as not HTTP (TLS, or `max_non_http_bytes` of non-HTTP bytes).
        pub non_http_connections: u64,
        /// Message bodies captured (`include_body_for`).
        pub bodies_captured: u64,
        /// Bytes of captured bodies kept (after decoding).
        pub body_bytes_captured: u64,
        /// Captured bodies not kept whole (size limit, gap, cut short, decode limit); not
        /// those captured only for the sensitive-data scan (the analytics count their cuts).
        pub bodies_truncated: u64,
        /// Captured bodies whose content coding was removed.
        pub bodies_decoded: u64,
        /// Bodies that inflated past `max_decoded_body_bytes` or `max_decompression_ratio`.
        pub decompression_bombs: u64,
        /// Bodies whose content coding could not be decoded.
        pub body_decode_errors: u64,
        /// HTTP/2 counters.
        pub http2: Http2Stats,
    }
}

apitap_core::counters! {
    /// HTTP/2 counters (`http.http2`).
    pub struct Http2Stats {
        /// HTTP/2 connections (and decrypted or upgraded layers) parsed.
        pub connections: u64,
        /// Of those, joined midway (found by their frames, not the preface).
        pub midstream_connections: u64,
        /// Frames read.
        pub frames: u64,
        /// Frames that break the protocol (skipped by their length).
        pub frames_invalid: u64,
        /// Connections whose client preface was wrong (given up).
        pub invalid_prefaces: u64,
        /// Directions whose frame boundaries were lost (a gap outside a frame payload, or
        /// joined midway not at a frame).
        pub directions_lost: u64,
        /// Connections given up after losing frame boundaries.
        pub connections_given_up: u64,
        /// Bytes not read on directions and connections given up.
        pub bytes_ignored: u64,
        /// Header blocks decoded.
        pub header_blocks: u64,
        /// Header blocks lost (gap, size limit, interrupted, memcap): the HPACK table of
        /// that direction is forgotten with them.
        pub header_blocks_lost: u64,
        /// Header fields left out: they named HPACK table entries not seen.
        pub hpack_fields_unknown: u64,
        /// Header blocks that did not decode to their end.
        pub hpack_errors: u64,
        /// Header blocks flagged `hpack_bomb`.
        pub hpack_bombs: u64,
        /// CONTINUATION frames.
        pub continuation_frames: u64,
        /// SETTINGS frames.
        pub settings_frames: u64,
        /// PING frames.
        pub ping_frames: u64,
        /// GOAWAY frames.
        pub goaways: u64,
        /// RST_STREAM frames.
        pub resets: u64,
        /// Streams opened (requests, pushes, responses whose request was not seen).
        pub streams: u64,
        /// Streams handed out reset.
        pub streams_reset: u64,
        /// Streams given up past `max_concurrent_streams`.
        pub streams_overflowed: u64,
        /// Pushed responses (PUSH_PROMISE).
        pub pushes: u64,
        /// Frames for streams already handed out or never opened (ignored).
        pub frames_on_closed_streams: u64,
        /// gRPC calls.
        pub grpc_calls: u64,
    }
}
