//! The input: one record per HTTP transaction.

use crate::edge::ScanCounters;
use crate::sensitive::SensitiveKind;
use apitap_core::utf8_lossy;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
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
    /// A gRPC call's `grpc-status`, when it is one and the status was seen.
    pub grpc_status: Option<u32>,
    /// Content-Type of the request (as sent; parameters are ignored).
    pub request_content_type: Option<String>,
    /// Content-Type of the response (as sent; parameters are ignored).
    pub response_content_type: Option<String>,
    /// Request headers: lower-cased names, values as sent. The sensor passes credentials
    /// unredacted (the detectors tell a JWT from an opaque token, and a credential header
    /// from a leak); only counts and kinds of them ever reach an alert.
    pub request_headers: Headers,
    /// Response headers: lower-cased names.
    pub response_headers: Headers,
    /// Decoded request body sample (bounded upstream); `None` when not captured, or
    /// when `findings` are set (the scan, [`crate::EdgeScan`], is the only reader of
    /// bodies, and the worker or sensor that ran it kept them).
    pub request_body: Option<Vec<u8>>,
    /// Decoded response body sample, as `request_body`.
    pub response_body: Option<Vec<u8>>,
    /// The request body sample is not the whole body (a size limit, a gap).
    pub request_body_cut: bool,
    /// The response body sample is not the whole body (a size limit, a gap).
    pub response_body_cut: bool,
    /// Full request body length in bytes (not just the sample).
    pub request_body_bytes: u64,
    /// Full response body length in bytes (not just the sample).
    pub response_body_bytes: u64,
    /// Request start to response end, ns; `None` without a complete response.
    pub duration_ns: Option<u64>,
    /// `true` when the bearer token of `Authorization` had the shape of a JWT
    /// (`eyJ...`.`...`.`...`) before a producer redacted it. The sensor passes the token
    /// itself (and leaves this `false`); the analytics recognise a JWT in it directly, so
    /// this matters only for records built from redacted data.
    pub auth_jwt: bool,
    /// What the scan of the raw bytes found, when it ran before the analytics did: on a
    /// flow worker (4 workers or more), or on an edge sensor (a record read back from its
    /// event, which has no credentials, secret values or, usually, bodies). The engine
    /// scans records without them itself.
    pub findings: Option<Box<EdgeFindings>>,
    /// What that scan did (bodies scanned, bytes...), for the analytics' counters.
    pub scanned: ScanCounters,
    /// The sensor that saw the transaction (`observer.name` of its event, cut to
    /// [`MAX_SENSOR_BYTES`]) when the record was read back from an event at the centre of
    /// a fleet; `None` on the sensor itself.
    pub sensor: Option<String>,
}

/// What the detectors that need raw bytes found in one transaction, as counts and names
/// (never the values), made by [`crate::EdgeScan`]. A sensor in edge mode writes them into
/// the transaction's event as `apitap.findings`, and the central analytics read them back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EdgeFindings {
    /// Sensitive data in the request headers and body sample, by kind.
    pub request_sensitive: BTreeMap<SensitiveKind, u64>,
    /// Sensitive data in the response headers and body sample, by kind.
    pub response_sensitive: BTreeMap<SensitiveKind, u64>,
    /// Secrets in the URL, by `param:<name>` or value shape.
    pub url_secrets: BTreeMap<String, u64>,
    /// The auth schemes the request showed, in name order (`bearer_jwt`, `basic`,
    /// `api_key_query`, ...): the event has the credentials redacted, scheme words too.
    pub auth_schemes: Vec<&'static str>,
}

impl EdgeFindings {
    /// As the `apitap.findings` object: empty parts left out.
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        let kinds = |m: &BTreeMap<SensitiveKind, u64>| -> Value {
            m.iter()
                .map(|(k, v)| (k.name().to_string(), Value::from(*v)))
                .collect::<Map<_, _>>()
                .into()
        };
        if !self.request_sensitive.is_empty() {
            o.insert("request_sensitive".into(), kinds(&self.request_sensitive));
        }
        if !self.response_sensitive.is_empty() {
            o.insert("response_sensitive".into(), kinds(&self.response_sensitive));
        }
        if !self.url_secrets.is_empty() {
            let m: Map<_, _> = self
                .url_secrets
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(*v)))
                .collect();
            o.insert("url_secrets".into(), m.into());
        }
        if !self.auth_schemes.is_empty() {
            o.insert("auth_schemes".into(), self.auth_schemes.clone().into());
        }
        o.into()
    }

    /// Reads an `apitap.findings` object; `None` when it is not one (a count that is not
    /// a number, an unknown kind of sensitive data, auth scheme or URL secret).
    pub fn from_json(v: &Value) -> Option<EdgeFindings> {
        let o = v.as_object()?;
        let counts = |key: &str| -> Option<Vec<(&String, u64)>> {
            match o.get(key) {
                None => Some(Vec::new()),
                Some(m) => m
                    .as_object()?
                    .iter()
                    .map(|(k, n)| Some((k, n.as_u64()?)))
                    .collect(),
            }
        };
        let kinds = |key: &str| -> Option<BTreeMap<SensitiveKind, u64>> {
            counts(key)?
                .into_iter()
                .map(|(k, n)| Some((SensitiveKind::from_name(k)?, n)))
                .collect()
        };
        Some(EdgeFindings {
            request_sensitive: kinds("request_sensitive")?,
            response_sensitive: kinds("response_sensitive")?,
            url_secrets: counts("url_secrets")?
                .into_iter()
                .map(|(k, n)| url_secret_key(k).then(|| (k.clone(), n)))
                .collect::<Option<_>>()?,
            auth_schemes: match o.get("auth_schemes") {
                None => Vec::new(),
                Some(names) => names
                    .as_array()?
                    .iter()
                    .map(|n| crate::inventory::auth_scheme_name(n.as_str()?))
                    .collect::<Option<_>>()?,
            },
        })
    }
}

/// Whether `key` is a URL secret count the analytics write: `param:` and a parameter name
/// (visible ASCII, no upper case, up to 64 bytes), or a secret value shape.
fn url_secret_key(key: &str) -> bool {
    match key.strip_prefix("param:") {
        Some(name) => {
            !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase())
        }
        None => crate::sensitive::SECRET_VALUE_KINDS.contains(&key),
    }
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
            grpc_status: None,
            request_content_type: None,
            response_content_type: None,
            request_headers: Headers::default(),
            response_headers: Headers::default(),
            request_body: None,
            response_body: None,
            request_body_cut: false,
            response_body_cut: false,
            request_body_bytes: 0,
            response_body_bytes: 0,
            duration_ns: None,
            auth_jwt: false,
            findings: None,
            scanned: ScanCounters::default(),
            sensor: None,
        }
    }
}

impl TxRecord {
    /// The authentication failure this transaction is, as an HTTP status: 401 or 403, or
    /// a gRPC call failing with UNAUTHENTICATED (as 401) or PERMISSION_DENIED (as 403).
    pub fn auth_failure(&self) -> Option<u16> {
        match (self.grpc_status, self.status) {
            (Some(16), _) => Some(401),
            (Some(7), _) => Some(403),
            (_, Some(s @ (401 | 403))) => Some(s),
            _ => None,
        }
    }

    /// First value of a request header (`name` lower case).
    pub fn request_header(&self, name: &str) -> Option<&str> {
        self.request_headers.get(name)
    }

    /// First value of a response header (`name` lower case).
    pub fn response_header(&self, name: &str) -> Option<&str> {
        self.response_headers.get(name)
    }
}

/// Header (name, value) pairs in wire order, names lower-cased, kept in one string: no
/// allocation per header (a record is built for every transaction on a worker and dropped
/// on the sink thread). [`Headers::from_text`] takes a message head as it is, without a copy.
#[derive(Clone, Debug, Default)]
pub struct Headers {
    text: String,
    /// (name start, name end, value start, value end) in `text`.
    spans: Vec<[usize; 4]>,
}

impl Headers {
    /// Empty, with room for `headers` headers of `bytes` bytes in all.
    pub fn with_capacity(headers: usize, bytes: usize) -> Headers {
        Headers {
            text: String::with_capacity(bytes),
            spans: Vec::with_capacity(headers),
        }
    }

    /// The headers of a message head, keeping `head` as their text. `fields` are the
    /// (name, value) byte ranges of each header in `head`; names are lower-cased in place and
    /// values trimmed of ASCII white space. A head that is not valid UTF-8 is copied header by
    /// header with invalid bytes replaced by U+FFFD; ranges outside `head` are skipped.
    pub fn from_text(
        head: Vec<u8>,
        fields: impl ExactSizeIterator<Item = (std::ops::Range<usize>, std::ops::Range<usize>)>,
    ) -> Headers {
        let mut text = match String::from_utf8(head) {
            Ok(text) => text,
            Err(invalid) => {
                let bytes = invalid.into_bytes();
                let mut out = Headers::with_capacity(fields.len(), bytes.len());
                for (name, value) in fields {
                    if let (Some(n), Some(v)) = (bytes.get(name), bytes.get(value)) {
                        out.push_bytes(n, v.trim_ascii());
                    }
                }
                return out;
            }
        };
        let mut spans = Vec::with_capacity(fields.len());
        for (name, value) in fields {
            // Trimming ASCII white space off text keeps its ends on character boundaries.
            let Some(v) = text.as_bytes().get(value.clone()) else {
                continue;
            };
            let start = value.start + (v.len() - v.trim_ascii_start().len());
            let end = value.start + v.trim_ascii_end().len();
            let end = end.max(start);
            if !text.is_char_boundary(start) || !text.is_char_boundary(end) {
                continue;
            }
            let Some(n) = text.get_mut(name.clone()) else {
                continue;
            };
            n.make_ascii_lowercase();
            spans.push([name.start, name.end, start, end]);
        }
        Headers { text, spans }
    }

    /// Appends a header; the name is lower-cased.
    pub fn push(&mut self, name: &str, value: &str) {
        let start = self.text.len();
        self.text.push_str(name);
        let mid = self.text.len();
        if let Some(n) = self.text.get_mut(start..mid) {
            n.make_ascii_lowercase();
        }
        self.text.push_str(value);
        self.spans.push([start, mid, mid, self.text.len()]);
    }

    /// Appends a header from raw bytes (invalid UTF-8 replaced by U+FFFD); the name is
    /// lower-cased.
    pub fn push_bytes(&mut self, name: &[u8], value: &[u8]) {
        self.push(&utf8_lossy(name), &utf8_lossy(value));
    }

    /// (name, value) pairs in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.spans
            .iter()
            .map(|&[name_start, name_end, start, end]| {
                (
                    self.text.get(name_start..name_end).unwrap_or(""),
                    self.text.get(start..end).unwrap_or(""),
                )
            })
    }

    /// First value of header `name` (lower case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// Two [`Headers`] are equal when they hold the same (name, value) pairs in the same order,
/// whatever else their text holds.
impl PartialEq for Headers {
    fn eq(&self, other: &Headers) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl<N: AsRef<str>, V: AsRef<str>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Headers {
        let mut h = Headers::default();
        for (n, v) in iter {
            h.push(n.as_ref(), v.as_ref());
        }
        h
    }
}

/// Longest host a record keeps (a DNS name has at most 253 bytes; the Host header is the
/// client's to choose, and a host goes into every alert about its endpoints).
pub const MAX_HOST_BYTES: usize = 255;

/// `host` cut to [`MAX_HOST_BYTES`] at a character boundary.
pub fn bounded_host(host: String) -> String {
    cut_to(host, MAX_HOST_BYTES)
}

/// Longest sensor name a record keeps (`observer.name` is the sensor's to choose, and it
/// goes into the inventory, into alerts, and into every failure an auth window holds).
pub const MAX_SENSOR_BYTES: usize = 64;

/// `s` cut to `max` bytes at a character boundary.
pub fn cut_to(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_auth_failures_count_as_401_and_403() {
        let mut r = TxRecord {
            status: Some(200),
            grpc_status: Some(16),
            ..TxRecord::default()
        };
        assert_eq!(r.auth_failure(), Some(401));
        r.grpc_status = Some(7);
        assert_eq!(r.auth_failure(), Some(403));
        r.grpc_status = Some(5);
        assert_eq!(r.auth_failure(), None);
        r.grpc_status = None;
        r.status = Some(403);
        assert_eq!(r.auth_failure(), Some(403));
    }

    #[test]
    fn headers_keep_order_lower_case_names_and_first_value() {
        let mut h = Headers::with_capacity(3, 64);
        h.push("Content-Type", "application/json");
        h.push_bytes(b"X-A", b"1");
        h.push_bytes(b"x-a", b"2\xff");
        assert_eq!(h.len(), 3);
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            [
                ("content-type", "application/json"),
                ("x-a", "1"),
                ("x-a", "2\u{fffd}")
            ]
        );
        assert_eq!(h.get("x-a"), Some("1"));
        assert_eq!(h.get("X-A"), None, "names are looked up lower case");
        let same: Headers = [
            ("CONTENT-type", "application/json"),
            ("x-a", "1"),
            ("x-a", "2\u{fffd}"),
        ]
        .into_iter()
        .collect();
        assert_eq!(h, same);
        assert!(Headers::default().is_empty());
    }

    #[test]
    fn headers_from_text_keep_the_head_and_match_push() {
        let head = b"GET / HTTP/1.1\r\nHost: A.example\r\nX-Tok:  v 1 \t\r\n\r\n".to_vec();
        let fields = [(16..20, 22..31), (33..38, 39..46), (0..3, 999..1000)];
        let h = Headers::from_text(head.clone(), fields.iter().cloned());
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            [("host", "A.example"), ("x-tok", "v 1")],
            "names lower-cased, values trimmed, the out-of-range field skipped"
        );
        let mut pushed = Headers::default();
        pushed.push("Host", "A.example");
        pushed.push("X-Tok", "v 1");
        assert_eq!(h, pushed);

        // Invalid UTF-8 anywhere in the head: copied field by field, lossy.
        let mut bad = head;
        bad[6] = 0xff;
        bad[25] = 0xfe;
        let h = Headers::from_text(bad, fields.iter().cloned());
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            [("host", "A.e\u{fffd}ample"), ("x-tok", "v 1")]
        );
    }
}
