//! Event encoding for apitap: one JSON object per transaction, with Elastic Common Schema
//! (ECS) field names so a SIEM ingests events without mapping (or OCSF 1.1.0 HTTP
//! Activity with `--format ocsf`); apitap's own fields live under `apitap.*`.
//!
//! - `view`: borrowed views of a transaction, in event field order (serde derive).
//! - `ecs`: the hand-written ECS writer, byte-equal to the serde form (the hot path).
//! - `headers`, [`body`], [`redact`]: header maps, captured bodies, redaction.
//! - [`ocsf`]: the OCSF mapping; [`community_id`]: Community ID v1.
//!
//! The encoder runs on the flow workers; it never sees the analytics, and the outputs only
//! ever see [`EncodedEvent`]s.

pub mod body;
pub mod community_id;
mod ecs;
mod flow;
mod h2conn;
mod headers;
mod json;
pub mod ocsf;
pub mod redact;
pub mod rpc;
mod tls;
mod view;

#[cfg(test)]
mod tests;

pub use apitap_core::EncodedEvent;
pub use community_id::community_id_v1;
pub use flow::{FlowContext, FlowSeed};
pub use redact::{Redactor, DEFAULT_REDACT_FIELDS, DEFAULT_REDACT_HEADERS};

use apitap_core::{Head, HttpTransaction, Span, TlsConnection};
use view::EventView;

pub use apitap_core::output::SCHEMA_VERSION;

/// Event layout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventFormat {
    /// Elastic Common Schema field names (the default).
    #[default]
    Ecs,
    /// OCSF 1.1.0 HTTP Activity (class 4002).
    Ocsf,
}

/// Encoder settings.
#[derive(Clone, Debug)]
pub struct EncoderConfig {
    /// Value of `observer.name` / `apitap.sensor`; omitted when empty.
    pub sensor: String,
    /// Header redaction.
    pub redactor: Redactor,
    /// Event layout.
    pub format: EventFormat,
    /// Media-type prefixes whose captured bodies are written into events
    /// (`http.include_body_for`); `None` writes every captured body. Bodies captured only
    /// for the analytics are not written.
    pub body_content_for: Option<Vec<String>>,
    /// Typed placeholders in `apitap.endpoint` (`{uuid}`, `{hex}`, ...); off: all `{id}`
    /// (`analytics.templating.typed_placeholders`, so events and the inventory agree).
    pub typed_placeholders: bool,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            sensor: String::new(),
            redactor: Redactor::default(),
            format: EventFormat::Ecs,
            body_content_for: None,
            typed_placeholders: true,
        }
    }
}

impl EncoderConfig {
    /// Whether the captured body of a message with this head goes into the event.
    fn writes_body(&self, head: &Head) -> bool {
        match &self.body_content_for {
            None => true,
            Some(list) => head.content_type_starts_with(list),
        }
    }
}

/// Turns transactions into ECS (or OCSF) JSON objects.
#[derive(Clone, Debug, Default)]
pub struct Encoder {
    cfg: EncoderConfig,
}

impl Encoder {
    /// A new encoder.
    pub fn new(cfg: EncoderConfig) -> Encoder {
        Encoder { cfg }
    }

    /// Encodes `tx` of the flow `flow` as one JSON object into `out` (appended, no newline).
    pub fn encode(&self, flow: &FlowContext, tx: &HttpTransaction, out: &mut Vec<u8>) {
        let view = EventView::new(&self.cfg, flow, tx);
        self.write(&view, out);
    }

    /// Serialises `view` in the configured format: ECS with the hand-written writer (the
    /// hot path; equal to the serde form, tested), OCSF through serde. Returns where the
    /// value of `apitap.endpoint` lies in `out`. Serialising borrowed data into a Vec
    /// cannot fail: every field is a plain string, number or sequence and the writer is
    /// infallible.
    fn write(&self, view: &EventView<'_>, out: &mut Vec<u8>) -> Option<Span> {
        let start = out.len();
        let endpoint_at = match self.cfg.format {
            EventFormat::Ecs => Some(view.write_ecs(out)),
            EventFormat::Ocsf => serde_json::to_value(view)
                .map(|ecs| ocsf::from_ecs(&ecs, view.timestamp.0 .0, env!("CARGO_PKG_VERSION")))
                .and_then(|o| serde_json::to_writer(&mut *out, &o))
                .ok()
                .and_then(|()| ocsf::endpoint_at(out.get(start..).unwrap_or(&[])))
                .map(|at| Span::new(at.start + start, at.len())),
        };
        if endpoint_at.is_none() {
            out.truncate(start);
            out.extend_from_slice(b"{}");
        }
        endpoint_at
    }

    /// Encodes `tx` into a new [`EncodedEvent`], keyed by its endpoint.
    pub fn encode_event(&self, flow: &FlowContext, tx: &HttpTransaction) -> EncodedEvent {
        let mut json = Vec::with_capacity(event_capacity(tx));
        let view = EventView::new(&self.cfg, flow, tx);
        let domain = view
            .url
            .as_ref()
            .and_then(|u| u.domain.as_deref())
            .unwrap_or("");
        let endpoint_hash = apitap_core::endpoint::endpoint_hash(domain, &view.apitap.endpoint);
        let endpoint_at = self.write(&view, &mut json);
        EncodedEvent {
            key: tx.key,
            json,
            endpoint_hash,
            alert: false,
            client_key: None,
            endpoint_at,
        }
    }
}

impl Encoder {
    /// Encodes the TLS connection record `c` of the flow `flow` (ECS `tls.*`, or OCSF
    /// Network Activity), keyed by the server name the client asked for.
    pub fn encode_tls(&self, flow: &FlowContext, c: &TlsConnection) -> EncodedEvent {
        let view = tls::TlsEventView::new(&self.cfg, flow, c);
        let mut json = Vec::with_capacity(1024);
        // Plain strings, numbers and sequences: serialising into a Vec cannot fail.
        let written = match self.cfg.format {
            EventFormat::Ecs => serde_json::to_writer(&mut json, &view).is_ok(),
            EventFormat::Ocsf => serde_json::to_value(&view)
                .map(|ecs| ocsf::tls_from_ecs(&ecs, c.start.ts.0, env!("CARGO_PKG_VERSION")))
                .and_then(|o| serde_json::to_writer(&mut json, &o))
                .is_ok(),
        };
        if !written {
            json.clear();
            json.extend_from_slice(b"{}");
        }
        let host = c.handshake.server_name.as_deref().unwrap_or("");
        EncodedEvent {
            key: c.key,
            json,
            endpoint_hash: apitap_core::endpoint::endpoint_hash(host, ""),
            alert: false,
            client_key: None,
            endpoint_at: None,
        }
    }
}

impl Encoder {
    /// Encodes the HTTP/2 connection record `c` of the flow `flow` (ECS layout, or OCSF
    /// Network Activity), keyed like the connection's server.
    pub fn encode_http2(
        &self,
        flow: &FlowContext,
        c: &apitap_core::Http2Connection,
    ) -> EncodedEvent {
        let view = h2conn::Http2EventView::new(&self.cfg, flow, c);
        let mut json = Vec::with_capacity(768);
        // Plain strings, numbers and sequences: serialising into a Vec cannot fail.
        let written = match self.cfg.format {
            EventFormat::Ecs => serde_json::to_writer(&mut json, &view).is_ok(),
            EventFormat::Ocsf => serde_json::to_value(&view)
                .map(|ecs| ocsf::connection_from_ecs(&ecs, c.start.ts.0, env!("CARGO_PKG_VERSION")))
                .and_then(|o| serde_json::to_writer(&mut json, &o))
                .is_ok(),
        };
        if !written {
            json.clear();
            json.extend_from_slice(b"{}");
        }
        EncodedEvent {
            key: c.key,
            json,
            endpoint_hash: apitap_core::endpoint::endpoint_hash(&flow.server.ip.to_string(), ""),
            alert: false,
            client_key: None,
            endpoint_at: None,
        }
    }
}

/// `event.id` of the transaction with `ordinal` on the flow `flow_id`:
/// `<flow id>-<ordinal>`. Alerts cite events by it.
pub fn event_id(flow_id: &str, ordinal: u32) -> String {
    let mut n = itoa::Buffer::new();
    let n = n.format(ordinal);
    let mut s = String::with_capacity(flow_id.len() + 1 + n.len());
    s.push_str(flow_id);
    s.push('-');
    s.push_str(n);
    s
}

/// Room for the event of `tx` so that writing it rarely grows the buffer: the fixed
/// fields, both heads (headers are written once, with a little quoting) and captured bodies.
fn event_capacity(tx: &HttpTransaction) -> usize {
    let head = |h: &Head| h.buf.len() + 8 * h.headers.len();
    let body =
        |b: Option<&Box<apitap_core::CapturedBody>>| b.map_or(0, |b| b.bytes.len() * 4 / 3 + 64);
    let req = tx
        .request
        .as_ref()
        .map_or(0, |r| head(&r.head) + body(r.body.as_ref()));
    let resp = tx
        .response
        .as_ref()
        .map_or(0, |r| head(&r.head) + body(r.body.as_ref()));
    1024 + req + resp
}
