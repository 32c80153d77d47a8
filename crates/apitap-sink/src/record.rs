//! The bridge to the analytics: a transaction as a [`TxRecord`], an alert as an output event.
//!
//! Records carry the raw query, header values and captured bodies so the detectors can
//! see secrets and sensitive data; the analytics only ever puts counts and kinds of those
//! into alerts, never the values.

use crate::event::{host_without_port, split_target, EncodedEvent, FlowContext};
use apitap_analytics::{Alert, Headers, TxRecord};
use apitap_core::{Head, HttpTransaction, SortKey};
use std::net::SocketAddr;

/// Builds the analytics record of `tx`, taking its heads and bodies rather than copying
/// them (the event is written first); `event_id` is the `event.id` of its event.
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
            .head
            .header("host")
            .or(authority)
            .map(host_without_port)
            .filter(|h| !h.is_empty())
            .map(|h| {
                let mut host = lossy(h);
                host.make_ascii_lowercase();
                host
            });
        rec.request_content_type = r.head.header("content-type").map(lossy);
        rec.request_headers = headers(r.head);
        rec.request_body = r.body.map(|b| b.bytes);
        rec.request_body_bytes = r.body_bytes;
    }
    if let Some(r) = tx.response {
        rec.response_content_type = r.head.header("content-type").map(lossy);
        rec.response_headers = headers(r.head);
        rec.response_body = r.body.map(|b| b.bytes);
        rec.response_body_bytes = r.body_bytes;
    }
    rec
}

/// Header (name lower case, value) pairs in wire order, over the head's own bytes.
fn headers(head: Head) -> Headers {
    let fields = head.headers.iter().map(|&(n, v)| (n.range(), v.range()));
    Headers::from_text(head.buf, fields)
}

fn lossy(bytes: &[u8]) -> String {
    apitap_analytics::record::utf8_lossy(bytes).into_owned()
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
    let endpoint_hash = crate::event::stable_hash(&[
        alert.host.as_deref().unwrap_or("").as_bytes(),
        alert.endpoint.as_deref().unwrap_or("").as_bytes(),
    ]);
    EncodedEvent {
        key: after,
        json,
        endpoint_hash,
        alert: true,
        record: None,
    }
}
