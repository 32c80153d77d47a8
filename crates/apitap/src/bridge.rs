//! The bridge between the pipeline and the analytics, the one place that knows both: a
//! transaction becomes a [`TxRecord`] (on the workers) and an alert becomes an output
//! event (on the sink thread).
//!
//! Records carry the raw query, header values and captured bodies so the detectors can
//! see secrets and sensitive data; the analytics only ever puts counts and kinds of those
//! into alerts, never the values.

use apitap_analytics::{Alert, EdgeFindings, Headers, TxRecord};
use apitap_core::endpoint::endpoint_hash;
use apitap_core::url::{host_without_port, split_target};
use apitap_core::{utf8_lossy, EncodedEvent, Head, HttpTransaction, SortKey};
use apitap_event::FlowContext;
use std::net::SocketAddr;

/// Builds the analytics record of `tx`, taking its heads and bodies rather than copying
/// them (the event is encoded first); `event_id` is the `event.id` of its event.
pub fn tx_record(flow: &FlowContext, tx: HttpTransaction, event_id: String) -> TxRecord {
    let req = tx.request.as_ref();
    let resp = tx.response.as_ref();
    let start = req
        .map(|r| r.start.ts)
        .or(resp.map(|r| r.start.ts))
        .unwrap_or_default();
    let mut rec = TxRecord {
        ts_ns: start.as_nanos(),
        event_id,
        client: SocketAddr::new(flow.client.ip, flow.client.port),
        server: SocketAddr::new(flow.server.ip, flow.server.port),
        status: resp.map(|r| r.status),
        grpc_status: apitap_event::rpc::grpc_status(&tx),
        duration_ns: match (req, resp) {
            (Some(q), Some(r)) => Some(r.end.ts.nanos_since(q.start.ts)),
            _ => None,
        },
        ..TxRecord::default()
    };
    if let Some(r) = tx.request {
        let target = r.target();
        let (path, query, authority) = split_target(target, r.method());
        rec.method = lossy(r.method());
        rec.path = lossy(path.unwrap_or(target));
        rec.query = query.map(lossy);
        rec.host = r
            .authority()
            .or_else(|| r.head.header("host"))
            .or(authority)
            .map(host_without_port)
            .filter(|h| !h.is_empty())
            .map(|h| {
                let mut host = lossy(h);
                host.make_ascii_lowercase();
                apitap_analytics::record::bounded_host(host)
            });
        rec.request_content_type = r.head.header("content-type").map(lossy);
        rec.request_headers = headers(r.head);
        rec.request_body_cut = r.body.as_ref().is_some_and(|b| b.truncated);
        rec.request_body = r.body.map(|b| b.bytes);
        rec.request_body_bytes = r.body_bytes;
    }
    if let Some(r) = tx.response {
        rec.response_content_type = r.head.header("content-type").map(lossy);
        rec.response_headers = headers(r.head);
        rec.response_body_cut = r.body.as_ref().is_some_and(|b| b.truncated);
        rec.response_body = r.body.map(|b| b.bytes);
        rec.response_body_bytes = r.body_bytes;
    }
    rec
}

/// The analytics record of the TLS connection `c`; `event_id` is its event's `event.id`.
/// Whether the certificate names the SNI is decided here, with the TLS crate's rule.
pub fn tls_record(
    flow: &FlowContext,
    c: &apitap_core::TlsConnection,
    event_id: String,
) -> apitap_analytics::TlsRecord {
    let hs = &*c.handshake;
    let server_name = hs.server_name.as_ref().map(|n| n.to_ascii_lowercase());
    apitap_analytics::TlsRecord {
        ts_ns: c.start.ts.as_nanos(),
        event_id,
        client: Some(SocketAddr::new(flow.client.ip, flow.client.port)),
        server: Some(SocketAddr::new(flow.server.ip, flow.server.port)),
        version: hs.version.and_then(apitap_core::tls::version_name),
        cipher: hs.cipher_name.as_ref().map(|c| c.to_string()),
        weak_cipher: hs.weak_cipher,
        alpn: hs.next_protocol.clone(),
        ja4: hs.ja4.clone(),
        certificate: hs
            .certificate
            .as_deref()
            .map(|cert| apitap_analytics::CertFacts {
                not_before: cert.not_before,
                not_after: cert.not_after,
                subject: cert.subject_common_name.clone(),
                covers_server_name: server_name
                    .as_deref()
                    .map(|n| apitap_tls::cert::covers(cert, n)),
            }),
        server_name,
    }
}

/// The analytics record of the HTTP/2 connection `c`; `event_id` is its event's
/// `event.id`.
pub fn http2_record(
    flow: &FlowContext,
    c: &apitap_core::Http2Connection,
    event_id: String,
) -> apitap_analytics::Http2Record {
    apitap_analytics::Http2Record {
        ts_ns: c.start.ts.as_nanos(),
        end_ns: c.end.ts.as_nanos(),
        event_id,
        client: Some(SocketAddr::new(flow.client.ip, flow.client.port)),
        server: Some(SocketAddr::new(flow.server.ip, flow.server.port)),
        streams: c.streams,
        max_open_streams: c.max_open_streams,
        server_max_concurrent_streams: c.server_max_concurrent_streams,
        rapid_resets: c.rapid_resets,
        stream_id_errors: c.stream_id_errors,
        longest_header_block_frames: c.longest_header_block_frames,
        hpack_bombs: c.hpack_bombs,
        largest_header_list: c.largest_header_list,
        client_settings: c.client_frames.settings,
        client_pings: c.client_frames.ping,
    }
}

/// Header (name lower case, value) pairs in wire order, over the head's own bytes.
fn headers(head: Head) -> Headers {
    let fields = head.headers.iter().map(|&(n, v)| (n.range(), v.range()));
    Headers::from_text(head.buf, fields)
}

fn lossy(bytes: &[u8]) -> String {
    utf8_lossy(bytes).into_owned()
}

/// An alert as an output event keyed right after `after` (the event that completed it),
/// for the alerts topic. `sensor` fills `observer.name` when not empty.
pub fn alert_event(alert: &Alert, after: SortKey, sensor: &str) -> EncodedEvent {
    let mut value = alert.to_json();
    if !sensor.is_empty() {
        if let Some(obj) = value.as_object_mut() {
            obj.insert("observer".into(), serde_json::json!({ "name": sensor }));
        }
    }
    // A Value of strings and numbers always serialises.
    let json = serde_json::to_vec(&value).unwrap_or_else(|_| b"{}".to_vec());
    EncodedEvent {
        key: after,
        json,
        endpoint_hash: endpoint_hash(
            alert.host.as_deref().unwrap_or(""),
            alert.endpoint.as_deref().unwrap_or(""),
        ),
        alert: true,
        client_key: None,
        endpoint_at: None,
    }
}

/// Adds `"ts_ns"` (the request start in ns, which `@timestamp` rounds to microseconds)
/// and `"findings"` (edge mode) to the `apitap` object of an ECS transaction event, its
/// last member; false when `ev` does not end like one.
pub fn attach_findings(ev: &mut EncodedEvent, ts_ns: i64, found: &EdgeFindings) -> bool {
    if !ev.json.ends_with(b"}}") || ev.alert {
        return false;
    }
    let at = ev.json.len() - 2;
    let mut add = format!(",\"ts_ns\":{ts_ns},\"findings\":").into_bytes();
    // A Value of strings, numbers and booleans always serialises.
    if serde_json::to_writer(&mut add, &found.to_json()).is_err() {
        return false;
    }
    ev.json.splice(at..at, add);
    true
}

/// Whether `ev` carries exactly `endpoint` as its `apitap.endpoint`.
pub fn carries_endpoint(ev: &EncodedEvent, endpoint: &str) -> bool {
    let mut scratch = Vec::new();
    // A string always serialises.
    serde_json::to_writer(&mut scratch, endpoint).is_ok()
        && ev.endpoint() == scratch.get(1..scratch.len().saturating_sub(1))
}

/// Names the event's endpoint as the inventory does (`endpoint`, from the analytics), and
/// keys it by that name: an alert and the events it cites then carry the same
/// `apitap.endpoint` and share a Kafka partition. `scratch` is a reused buffer.
pub fn name_endpoint(
    ev: &mut EncodedEvent,
    host: Option<&str>,
    endpoint: &str,
    scratch: &mut Vec<u8>,
) {
    // Nearly always the event already carries the name. Equal bytes without a backslash
    // mean equal names: with no escape in the event's value, neither name needed one.
    if let Some(current) = ev.endpoint() {
        if current == endpoint.as_bytes() && !current.contains(&b'\\') {
            return;
        }
    }
    scratch.clear();
    // A string always serialises; the quotes are dropped below.
    if serde_json::to_writer(&mut *scratch, endpoint).is_err() {
        return;
    }
    let escaped = scratch
        .get(1..scratch.len().saturating_sub(1))
        .unwrap_or(&[]);
    if ev.endpoint() != Some(escaped) && ev.replace_endpoint(escaped) {
        ev.endpoint_hash = endpoint_hash(host.unwrap_or(""), endpoint);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use apitap_core::{AppParser, Direction, Endpoint, PacketRef, ParserEnv, Timestamp};
    use apitap_http::{HttpConfig, HttpConn, HttpStats};

    /// One transaction as the HTTP parser makes it from wire bytes.
    fn transaction() -> HttpTransaction {
        let mut env: ParserEnv<HttpConfig, HttpStats> = ParserEnv::new(HttpConfig {
            include_body_for: vec!["application/json".into()],
            ..HttpConfig::default()
        });
        let mut conn = HttpConn::new();
        let at = |i: u64| PacketRef {
            index: i,
            ts: Timestamp(1_714_564_800_000_001_000 + i as i64 * 1000),
        };
        conn.on_data(
            Direction::ToServer,
            b"POST /v1/users/42?x=1&y=%20#frag HTTP/1.1\r\nHost: API.example.com:8080\r\n\
              Authorization: Bearer secret-token\r\nContent-Type: Application/JSON\r\n\
              Content-Length: 13\r\n\r\n{\"email\":\"a\"}",
            &mut env.cx(at(1)),
        );
        conn.on_data(
            Direction::ToClient,
            b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nSet-Cookie: a=b\r\n\r\nok",
            &mut env.cx(at(2)),
        );
        assert_eq!(env.out.len(), 1);
        env.out.remove(0)
    }

    fn flow() -> FlowContext {
        let ip = "10.0.0.1".parse().unwrap();
        FlowContext::new(
            Endpoint { ip, port: 40000 },
            Endpoint { ip, port: 80 },
            apitap_event::FlowSeed::Syn(7),
        )
    }

    #[test]
    fn a_record_carries_raw_values_and_the_event_id() {
        let r = tx_record(&flow(), transaction(), "F1-0".into());
        assert_eq!(r.event_id, "F1-0");
        assert_eq!(r.ts_ns, 1_714_564_800_000_002_000);
        assert_eq!(r.client, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(r.server, "10.0.0.1:80".parse().unwrap());
        assert_eq!(
            r.host.as_deref(),
            Some("api.example.com"),
            "lower case, no port"
        );
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/v1/users/42")
        );
        assert_eq!(r.query.as_deref(), Some("x=1&y=%20"));
        assert_eq!(r.status, Some(201));
        assert_eq!(r.request_content_type.as_deref(), Some("Application/JSON"));
        // The analytics see the credential (to tell Bearer from JWT); events do not.
        assert_eq!(
            r.request_header("authorization"),
            Some("Bearer secret-token")
        );
        assert_eq!(r.response_header("set-cookie"), Some("a=b"));
        assert_eq!(r.request_body.as_deref(), Some(&b"{\"email\":\"a\"}"[..]));
        assert_eq!((r.request_body_bytes, r.response_body_bytes), (13, 2));
        assert_eq!(r.duration_ns, Some(1000));
    }

    #[test]
    fn an_event_is_renamed_and_rekeyed_only_when_the_inventory_names_it_otherwise() {
        let tx = transaction();
        let ev = apitap_event::Encoder::default().encode_event(&flow(), &tx);
        let mut scratch = Vec::new();
        let mut same = ev.clone();
        name_endpoint(
            &mut same,
            Some("api.example.com"),
            "POST /v1/users/{id}",
            &mut scratch,
        );
        assert_eq!(
            same, ev,
            "the inventory's name is the event's: nothing to do"
        );
        let mut renamed = ev.clone();
        name_endpoint(
            &mut renamed,
            Some("api.example.com"),
            "POST /v1/users/{param}",
            &mut scratch,
        );
        let v: serde_json::Value = serde_json::from_slice(&renamed.json).unwrap();
        assert_eq!(v["apitap"]["endpoint"], "POST /v1/users/{param}");
        assert_eq!(
            renamed.endpoint_hash,
            endpoint_hash("api.example.com", "POST /v1/users/{param}")
        );
        // A name that needs escaping is compared and written escaped.
        let mut quoted = ev.clone();
        name_endpoint(
            &mut quoted,
            Some("api.example.com"),
            "POST /v1/\"x\\y\u{1}",
            &mut scratch,
        );
        let v: serde_json::Value = serde_json::from_slice(&quoted.json).unwrap();
        assert_eq!(v["apitap"]["endpoint"], "POST /v1/\"x\\y\u{1}");
        let again = quoted.clone();
        name_endpoint(
            &mut quoted,
            Some("api.example.com"),
            "POST /v1/\"x\\y\u{1}",
            &mut scratch,
        );
        assert_eq!(quoted, again);
        // An alert about that endpoint shares the event's Kafka key.
        let alert = Alert {
            rule: apitap_analytics::Rule::ObjectEnumeration,
            ts_ns: 0,
            severity: 50,
            id: String::new(),
            client: None,
            server: None,
            host: Some("api.example.com".into()),
            endpoint: Some("POST /v1/users/{param}".into()),
            window_start_ns: 0,
            window_end_ns: 0,
            count: 1,
            counts: Default::default(),
            details: Default::default(),
            evidence: Vec::new(),
            message: String::new(),
            sensors: Vec::new(),
        };
        assert_eq!(
            alert_event(&alert, ev.key, "").endpoint_hash,
            renamed.endpoint_hash
        );
    }
}
