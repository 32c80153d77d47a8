//! HTTP/1.x parsing bounds (`[http]` in sensor.toml).

/// HTTP parsing bounds (`[http]` in sensor.toml).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest head (start line + fields) parsed; larger ones are skipped and counted.
    pub max_head_bytes: usize,
    /// Header fields kept per message (at most 256).
    pub max_headers: usize,
    /// Bytes of unfinished heads (and lines) all connections of the sensor may buffer;
    /// split evenly over the workers. Past it, the connection whose buffers just grew has
    /// its heads in progress cut (anomaly `head_memcap`, `http.heads_shed`).
    pub head_memcap_bytes: usize,
    /// Requests waiting for a response before the oldest is given up.
    pub max_pending_requests: usize,
    /// Packet time after which a request without a response start is emitted alone.
    pub transaction_timeout_ms: u64,
    /// A connection that skipped this many bytes without a single HTTP message is not
    /// HTTP: it is no longer parsed (counted in `non_http_connections`).
    pub max_non_http_bytes: u64,
    /// Media-type prefixes whose bodies are captured (e.g. "application/json", "text/");
    /// empty (the default) captures none.
    pub include_body_for: Vec<String>,
    /// Body bytes kept per message, before decoding; the rest is counted, not kept.
    pub max_body_bytes: usize,
    /// Most bytes a compressed body may inflate to; past it decoding stops
    /// (anomaly `decompression_bomb`).
    pub max_decoded_body_bytes: usize,
    /// Most a compressed body may inflate relative to its compressed size.
    pub max_decompression_ratio: u32,
    /// HTTP/2 streams open at once on one connection before the oldest is given up
    /// (`pipeline_overflow`).
    pub max_concurrent_streams: usize,
    /// Bytes of HPACK dynamic table kept per direction of an HTTP/2 connection; entries
    /// past it are forgotten (fields naming them are left out, counted).
    pub max_hpack_table_bytes: usize,
    /// Media-type prefixes whose bodies are captured only for the analytics'
    /// sensitive-data scan, never for events (set from `[analytics.sensitive]`, not read
    /// from `[http]`).
    #[serde(skip)]
    pub scan_only_body_for: Vec<String>,
    /// Bytes a scan-only body is decoded to: the scan reads no more
    /// (`analytics.sensitive.max_scan_bytes`; 0: no such limit).
    #[serde(skip)]
    pub max_scan_body_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_head_bytes: 65_536,
            max_headers: 128,
            head_memcap_bytes: 64 << 20,
            max_pending_requests: 64,
            transaction_timeout_ms: 60_000,
            max_non_http_bytes: 16_384,
            include_body_for: Vec::new(),
            max_body_bytes: 65_536,
            max_decoded_body_bytes: 1 << 20,
            max_decompression_ratio: 100,
            max_concurrent_streams: 256,
            max_hpack_table_bytes: 65_536,
            scan_only_body_for: Vec::new(),
            max_scan_body_bytes: 0,
        }
    }
}
