//! The input: one record per HTTP transaction.

use std::net::{Ipv4Addr, SocketAddr};

/// One HTTP transaction as the analytics sees it. The pipeline builds one per transaction
/// and feeds them in a deterministic order from one thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxRecord {
    /// Request start, packet time (Unix ns). Every window and baseline runs on this clock,
    /// never on wall time.
    pub ts_ns: i64,
    /// Id of the transaction event (`event.id`); alert evidence lists carry these.
    pub event_id: String,
    /// The client (sender of the request).
    pub client: SocketAddr,
    /// The server.
    pub server: SocketAddr,
    /// Host header, lower-cased, port stripped.
    pub host: Option<String>,
    /// Request method as sent (`GET`).
    pub method: String,
    /// Request path without the query.
    pub path: String,
    /// Raw query string (without `?`), not percent-decoded.
    pub query: Option<String>,
    /// Response status; `None` when no response was seen.
    pub status: Option<u16>,
    /// Content-Type of the request (as sent; parameters are ignored).
    pub request_content_type: Option<String>,
    /// Content-Type of the response (as sent; parameters are ignored).
    pub response_content_type: Option<String>,
    /// Request headers: lower-cased names. Values of secret headers are redacted upstream,
    /// but the auth scheme word (e.g. `Bearer`) is kept.
    pub request_headers: Vec<(String, String)>,
    /// Response headers: lower-cased names.
    pub response_headers: Vec<(String, String)>,
    /// Decoded request body sample (bounded upstream); `None` when not captured.
    pub request_body: Option<Vec<u8>>,
    /// Decoded response body sample (bounded upstream); `None` when not captured.
    pub response_body: Option<Vec<u8>>,
    /// Full request body length in bytes (not just the sample).
    pub request_body_bytes: u64,
    /// Full response body length in bytes (not just the sample).
    pub response_body_bytes: u64,
    /// Request start to response end, ns; `None` without a complete response.
    pub duration_ns: Option<u64>,
    /// Added field: `true` when the bearer token of `Authorization` had the shape of a JWT
    /// (`eyJ...`.`...`.`...`) before it was redacted upstream. The analytics also recognizes
    /// an unredacted JWT itself, so this only matters when redaction hid the token.
    pub auth_jwt: bool,
}

impl Default for TxRecord {
    fn default() -> Self {
        let unspecified = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        Self {
            ts_ns: 0,
            event_id: String::new(),
            client: unspecified,
            server: unspecified,
            host: None,
            method: String::new(),
            path: String::new(),
            query: None,
            status: None,
            request_content_type: None,
            response_content_type: None,
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            request_body: None,
            response_body: None,
            request_body_bytes: 0,
            response_body_bytes: 0,
            duration_ns: None,
            auth_jwt: false,
        }
    }
}

impl TxRecord {
    /// First value of a request header (`name` lower case).
    pub fn request_header(&self, name: &str) -> Option<&str> {
        header(&self.request_headers, name)
    }

    /// First value of a response header (`name` lower case).
    pub fn response_header(&self, name: &str) -> Option<&str> {
        header(&self.response_headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}
