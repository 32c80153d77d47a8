//! ECS JSON encoding of HTTP transactions.
//!
//! Field names follow the Elastic Common Schema so a SIEM ingests events without mapping;
//! apitap's own fields live under `apitap.*`. The encoder writes straight into a byte buffer
//! through serde derive on borrowed views, never through a `serde_json::Value` tree.

use apitap_analytics::record::utf8_lossy as text;
use apitap_core::{Endpoint, Head, HttpRequest, HttpResponse, HttpTransaction, SortKey};
use hmac::{Hmac, KeyInit, Mac};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use sha2::Sha256;
use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::net::IpAddr;

use crate::json;

/// Version of the event layout, carried in `apitap.schema_version`.
pub const SCHEMA_VERSION: &str = "1";

/// Header names redacted by default (lower case): the credential headers.
pub const DEFAULT_REDACT_HEADERS: &[&str] = apitap_analytics::CREDENTIAL_HEADERS;

/// One encoded output event and its place in the total output order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedEvent {
    /// Output order key.
    pub key: SortKey,
    /// One JSON object, no trailing newline.
    pub json: Vec<u8>,
    /// Stable hash of the API endpoint (host, method, path template): the Kafka message
    /// key, so one endpoint's events stay in one partition.
    pub endpoint_hash: u64,
    /// An alert (goes to the alerts topic) rather than a transaction event.
    pub alert: bool,
    /// The transaction as the analytics sees it (only when [`EncoderConfig::records`]).
    pub record: Option<Box<apitap_analytics::TxRecord>>,
}

/// Path with id-like segments replaced by `{id}`: all digits, UUIDs, and long hex strings.
/// (`/users/123/orders/9f86d081884c7d65` -> `/users/{id}/orders/{id}`)
pub fn path_template(path: &str) -> Cow<'_, str> {
    if !path.split('/').any(is_id_segment) {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    push_path_template(&mut out, path);
    Cow::Owned(out)
}

/// Appends [`path_template`]`(path)` to `out`.
fn push_path_template(out: &mut String, path: &str) {
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(if is_id_segment(seg) { "{id}" } else { seg });
    }
}

/// All digits, a UUID, or at least 16 hex digits.
fn is_id_segment(seg: &str) -> bool {
    let b = seg.as_bytes();
    let digits = !b.is_empty() && b.iter().all(u8::is_ascii_digit);
    let uuid = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    let hex = b.len() >= 16 && b.iter().all(u8::is_ascii_hexdigit);
    digits || uuid || hex
}

/// `apitap.endpoint`: `METHOD <path template>`, built without `format!` (once per event).
fn endpoint_name(method: &str, path: &str, template: bool) -> String {
    let mut s = String::with_capacity(method.len() + 1 + path.len() + 8);
    s.push_str(method);
    s.push(' ');
    if template {
        push_path_template(&mut s, path);
    } else {
        s.push_str(path);
    }
    s
}

/// `event.id`: `<flow id>-<transaction ordinal>`.
fn event_id(flow_id: &str, ordinal: u32) -> String {
    let mut n = itoa::Buffer::new();
    let n = n.format(ordinal);
    let mut s = String::with_capacity(flow_id.len() + 1 + n.len());
    s.push_str(flow_id);
    s.push('-');
    s.push_str(n);
    s
}

/// The Kafka message key of an event: 16 hex digits of a stable hash of `url.domain` and
/// `apitap.endpoint` (empty strings when absent).
pub fn endpoint_key(domain: &str, endpoint: &str) -> String {
    format!(
        "{:016x}",
        stable_hash(&[domain.as_bytes(), endpoint.as_bytes()])
    )
}

pub(crate) use apitap_analytics::stable_hash;

/// Per-flow facts every event of that flow repeats; computed once per flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowContext {
    /// The client (sender of requests).
    pub client: Endpoint,
    /// The server.
    pub server: Endpoint,
    /// Stable flow id (same for every worker count and every run).
    pub flow_id: String,
    /// Community ID v1 of the flow.
    pub community_id: String,
    /// Outermost VLAN id and tunnel of the flow's first packet
    /// (`observer.ingress.vlan.id`, `apitap.tunnel`).
    pub encap: apitap_core::Encap,
}

impl FlowContext {
    /// Builds the context; `first_packet` is the global index of the flow's first packet,
    /// which keeps `flow_id` unique when a 5-tuple is reused.
    pub fn new(client: Endpoint, server: Endpoint, first_packet: u64) -> FlowContext {
        let community_id = crate::community_id_v1(client, server, 6);
        let (key, _) = apitap_core::FlowKey::from_packet(client, server, 6);
        let mut h = key.shard_hash() ^ first_packet.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 29;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 32;
        FlowContext {
            client,
            server,
            flow_id: format!("F{h:016x}"),
            community_id,
            encap: apitap_core::Encap::default(),
        }
    }

    /// The same context, seen through `encap` (VLAN and tunnel).
    pub fn with_encap(mut self, encap: apitap_core::Encap) -> FlowContext {
        self.encap = encap;
        self
    }
}

/// How sensitive header values, body fields and query parameters are replaced.
#[derive(Clone, Debug)]
pub struct Redactor {
    names: Vec<String>,
    /// Body field / query parameter names, normalised (see [`crate::body`]).
    fields: Vec<String>,
    key: Option<Vec<u8>>,
}

impl Redactor {
    /// `names`: header names to redact (any case). `hmac_key`: when set, a redacted value
    /// becomes `hmac:<16 hex>` (HMAC-SHA256, truncated) so equal secrets correlate without
    /// being exposed; when not set, it becomes `[REDACTED]`.
    pub fn new(names: &[String], hmac_key: Option<Vec<u8>>) -> Redactor {
        Redactor {
            names: names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            fields: crate::body::DEFAULT_REDACT_FIELDS
                .iter()
                .map(|f| crate::body::normalize(f).into_owned())
                .collect(),
            key: hmac_key.filter(|k| !k.is_empty()),
        }
    }

    /// Replaces the body field / query parameter names whose values are redacted (a name
    /// matches when, lower-cased without `_` and `-`, it starts or ends with one of them).
    pub fn with_fields(mut self, fields: &[String]) -> Redactor {
        self.fields = fields
            .iter()
            .map(|f| crate::body::normalize(f).into_owned())
            .filter(|f| !f.is_empty())
            .collect();
        self
    }

    pub(crate) fn is_sensitive_field(&self, name: &str) -> bool {
        crate::body::is_sensitive_field(name, &self.fields)
    }

    pub(crate) fn redact_value(&self, value: &[u8]) -> Cow<'static, str> {
        self.redacted(value)
    }

    fn is_sensitive(&self, name: &[u8]) -> bool {
        self.names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
    }

    fn redacted(&self, value: &[u8]) -> Cow<'static, str> {
        match &self.key {
            None => Cow::Borrowed("[REDACTED]"),
            Some(key) => {
                let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
                    return Cow::Borrowed("[REDACTED]");
                };
                mac.update(value);
                let tag = mac.finalize().into_bytes();
                let mut s = String::with_capacity(21);
                s.push_str("hmac:");
                for b in tag.iter().take(8) {
                    let _ = write!(s, "{b:02x}");
                }
                Cow::Owned(s)
            }
        }
    }
}

impl Default for Redactor {
    fn default() -> Self {
        let names: Vec<String> = DEFAULT_REDACT_HEADERS
            .iter()
            .map(|s| s.to_string())
            .collect();
        Redactor::new(&names, None)
    }
}

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
#[derive(Clone, Debug, Default)]
pub struct EncoderConfig {
    /// Value of `observer.name` / `apitap.sensor`; omitted when empty.
    pub sensor: String,
    /// Header redaction.
    pub redactor: Redactor,
    /// Event layout.
    pub format: EventFormat,
    /// Attach a [`apitap_analytics::TxRecord`] to every encoded event (analytics on).
    pub records: bool,
    /// Media-type prefixes whose captured bodies are written into events
    /// (`http.include_body_for`); `None` writes every captured body. Bodies captured only
    /// for the analytics are not written.
    pub body_content_for: Option<Vec<String>>,
}

impl EncoderConfig {
    /// Whether the captured body of a message with this head goes into the event.
    fn writes_body(&self, head: &Head) -> bool {
        let Some(list) = &self.body_content_for else {
            return true;
        };
        let Some(ct) = head.header("content-type") else {
            return false;
        };
        let ct = ct.trim_ascii_start();
        list.iter().any(|want| {
            ct.get(..want.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(want.as_bytes()))
        })
    }
}

/// Turns transactions into ECS JSON lines.
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
    /// hot path; equal to the serde form, tested), OCSF through serde. Serialising borrowed
    /// data into a Vec cannot fail: every field is a plain string, number or sequence and
    /// the writer is infallible.
    fn write(&self, view: &EventView<'_>, out: &mut Vec<u8>) {
        let ok = match self.cfg.format {
            EventFormat::Ecs => {
                view.write_ecs(out);
                true
            }
            EventFormat::Ocsf => serde_json::to_value(view)
                .map(|ecs| {
                    crate::ocsf::from_ecs(&ecs, view.timestamp.0 .0, env!("CARGO_PKG_VERSION"))
                })
                .and_then(|o| serde_json::to_writer(&mut *out, &o))
                .is_ok(),
        };
        if !ok {
            out.clear();
            out.extend_from_slice(b"{}");
        }
    }

    /// Encodes into a new [`EncodedEvent`]; the analytics record, when on, takes the
    /// transaction's heads and bodies.
    pub fn encode_event(&self, flow: &FlowContext, tx: HttpTransaction) -> EncodedEvent {
        let mut json = Vec::with_capacity(event_capacity(&tx));
        let mut view = EventView::new(&self.cfg, flow, &tx);
        let endpoint_hash = {
            let domain = view
                .url
                .as_ref()
                .and_then(|u| u.domain.as_deref())
                .unwrap_or("");
            stable_hash(&[domain.as_bytes(), view.apitap.endpoint.as_bytes()])
        };
        self.write(&view, &mut json);
        let event_id = std::mem::take(&mut view.event.id);
        let key = tx.key;
        let record = self
            .cfg
            .records
            .then(|| Box::new(crate::record::tx_record(flow, tx, event_id)));
        EncodedEvent {
            key,
            json,
            endpoint_hash,
            alert: false,
            record,
        }
    }
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

// ---- borrowed views, serialised by serde derive ----

#[derive(Serialize)]
struct EventView<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: Rfc3339,
    event: EventMeta,
    source: EndpointView,
    destination: EndpointView,
    network: NetworkView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observer: Option<ObserverView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<UrlView<'a>>,
    http: HttpView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<UserAgentView<'a>>,
    apitap: ApitapView<'a>,
}

struct Rfc3339(apitap_core::Timestamp);

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = String::with_capacity(28);
        self.0.write_rfc3339_micros(&mut buf);
        s.serialize_str(&buf)
    }
}

#[derive(Serialize)]
struct EventMeta {
    kind: &'static str,
    category: [&'static str; 2],
    #[serde(rename = "type")]
    kind_type: [&'static str; 2],
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<u64>,
    id: String,
}

#[derive(Serialize)]
struct EndpointView {
    ip: IpAddr,
    port: u16,
}

impl From<Endpoint> for EndpointView {
    fn from(e: Endpoint) -> Self {
        EndpointView {
            ip: e.ip,
            port: e.port,
        }
    }
}

#[derive(Serialize)]
struct NetworkView<'a> {
    transport: &'static str,
    protocol: &'static str,
    #[serde(rename = "type")]
    ip_type: &'static str,
    community_id: &'a str,
}

#[derive(Serialize)]
struct ObserverView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ingress: Option<IngressView>,
}

/// `observer.ingress`: where the observer saw the traffic.
#[derive(Serialize)]
struct IngressView {
    vlan: VlanView,
}

/// `observer.ingress.vlan`; ECS makes the id a keyword, so it is written as a string.
#[derive(Serialize)]
struct VlanView {
    id: VlanId,
}

struct VlanId(u16);

impl Serialize for VlanId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(itoa::Buffer::new().format(self.0))
    }
}

/// `apitap.tunnel`: the outermost tunnel the flow arrived in.
#[derive(Serialize)]
struct TunnelView {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u32>,
}

#[derive(Serialize)]
struct UrlView<'a> {
    original: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct HttpView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<RequestView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<ResponseView<'a>>,
}

#[derive(Serialize)]
struct BodyView {
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
}

/// What happened to a captured body (`apitap.body.request` / `.response`).
#[derive(Serialize)]
struct BodyMetaView {
    truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_encoding: Option<&'static str>,
    #[serde(skip_serializing_if = "is_zero")]
    redacted_fields: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    binary: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    withheld: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Serialize)]
struct BodiesView {
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<BodyMetaView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<BodyMetaView>,
}

/// The body view and its metadata for a message.
fn body_views(
    bytes: u64,
    captured: Option<&apitap_core::CapturedBody>,
    head: &Head,
    redactor: &Redactor,
) -> (BodyView, Option<BodyMetaView>) {
    let Some(b) = captured else {
        return (
            BodyView {
                bytes,
                content: None,
            },
            None,
        );
    };
    let r = crate::body::render(b, head, redactor);
    (
        BodyView {
            bytes,
            content: r.content,
        },
        Some(BodyMetaView {
            truncated: b.truncated,
            content_encoding: b.decoded_from,
            redacted_fields: r.redacted_fields,
            binary: r.binary,
            withheld: r.withheld,
        }),
    )
}

#[derive(Serialize)]
struct RequestView<'a> {
    method: Cow<'a, str>,
    headers: HeadersView<'a>,
    bytes: u64,
    body: BodyView,
    #[serde(skip_serializing_if = "Option::is_none")]
    mime_type: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct ResponseView<'a> {
    status_code: u16,
    headers: HeadersView<'a>,
    bytes: u64,
    body: BodyView,
    #[serde(skip_serializing_if = "Option::is_none")]
    mime_type: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct UserAgentView<'a> {
    original: Cow<'a, str>,
}

#[derive(Serialize)]
struct ApitapView<'a> {
    /// `METHOD /path/{id}` (empty method and path for a lone response).
    endpoint: String,
    flow_id: &'a str,
    transaction: u32,
    complete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    incomplete_reason: Option<&'static str>,
    anomalies: AnomalyList,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<BodiesView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tunnel: Option<TunnelView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sensor: Option<&'a str>,
    schema_version: &'static str,
}

struct AnomalyList(apitap_core::Anomalies);

impl Serialize for AnomalyList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for a in self.0.iter() {
            seq.serialize_element(a.name())?;
        }
        seq.end()
    }
}

/// A message head checked for UTF-8 once, so that the text of any part of it is a slice
/// instead of a check of its own (a transaction's event takes a dozen parts of its heads).
#[derive(Clone, Copy)]
struct HeadText<'a> {
    buf: &'a [u8],
    /// The whole head, when it is valid UTF-8 (nearly always).
    text: Option<&'a str>,
}

impl<'a> HeadText<'a> {
    fn new(head: &'a Head) -> HeadText<'a> {
        HeadText {
            buf: &head.buf,
            text: std::str::from_utf8(&head.buf).ok(),
        }
    }

    /// `part` as text, invalid UTF-8 replaced by U+FFFD. A part of this head (compared by
    /// address, as the unstable `subslice_range` does) that starts and ends on character
    /// boundaries is sliced from the checked text; any other bytes are checked on their own.
    fn str(&self, part: &'a [u8]) -> Cow<'a, str> {
        let offset = (part.as_ptr() as usize).wrapping_sub(self.buf.as_ptr() as usize);
        let inside = offset
            .checked_add(part.len())
            .filter(|&end| end <= self.buf.len())
            .and_then(|end| self.text?.get(offset..end));
        match inside {
            Some(s) => Cow::Borrowed(s),
            None => text(part),
        }
    }
}

/// Header map: lower-case names in first-seen order; repeated names are joined with ", "
/// (RFC 9110 field combination); sensitive values redacted.
struct HeadersView<'a> {
    head: &'a Head,
    /// The whole head as text, when it is valid UTF-8 (nearly always): each value is then
    /// a slice of it instead of a UTF-8 check of its own.
    text: Option<&'a str>,
    redactor: &'a Redactor,
}

/// One entry of a [`HeadersView`].
enum HeaderValue<'a> {
    /// One field, valid UTF-8, written as is (the common case).
    Plain(&'a str),
    /// A sensitive header's replacement.
    Redacted(Cow<'static, str>),
    /// Repeated fields joined, or a value with invalid UTF-8.
    Joined(JoinedValues<'a>),
}

impl<'a> HeadersView<'a> {
    fn new(head: &'a Head, text: HeadText<'a>, redactor: &'a Redactor) -> HeadersView<'a> {
        HeadersView {
            head,
            text: text.text,
            redactor,
        }
    }

    /// The text of `span`, if it is valid UTF-8.
    fn str(&self, span: apitap_core::Span) -> Option<&'a str> {
        match self.text {
            Some(text) => text.get(span.range()),
            None => std::str::from_utf8(self.head.get(span)).ok(),
        }
    }

    /// Calls `f` with each entry of the map, in order.
    fn for_each<E>(
        &self,
        mut f: impl FnMut(LowerName<'a>, HeaderValue<'a>) -> Result<(), E>,
    ) -> Result<(), E> {
        let head: &'a Head = self.head;
        let headers = &head.headers;
        for (i, &(name_span, value_span)) in headers.iter().enumerate() {
            let name = head.get(name_span);
            let same_name = |&(n, _): &(apitap_core::Span, apitap_core::Span)| {
                n.len == name_span.len && head.get(n).eq_ignore_ascii_case(name)
            };
            if headers.iter().take(i).any(same_name) {
                continue;
            }
            let repeated = headers.iter().skip(i + 1).any(same_name);
            let joined = JoinedValues {
                head,
                name,
                from: i,
            };
            let value = if self.redactor.is_sensitive(name) {
                // A single valid value is its own joined text: no formatting needed.
                let redacted = match (repeated, self.str(value_span)) {
                    (false, Some(value)) => self.redactor.redacted(value.as_bytes()),
                    _ => self.redactor.redacted(joined.to_string().as_bytes()),
                };
                HeaderValue::Redacted(redacted)
            } else if let (false, Some(value)) = (repeated, self.str(value_span)) {
                HeaderValue::Plain(value)
            } else {
                HeaderValue::Joined(joined)
            };
            f(LowerName(name), value)?;
        }
        Ok(())
    }

    fn write_json(&self, out: &mut Vec<u8>) {
        let mut map = json::Object::new(out);
        let mut buf = [0u8; 64];
        let _ = self.for_each(|name, value| -> Result<(), ()> {
            let out = if json::is_plain(name.0) {
                map.lower_plain_key(name.0)
            } else {
                map.escaped_key(&name.lowered(&mut buf))
            };
            match value {
                HeaderValue::Plain(v) => json::string(out, v),
                HeaderValue::Redacted(v) => json::string(out, &v),
                HeaderValue::Joined(v) => json::string(out, &v.to_string()),
            }
            Ok(())
        });
        map.end();
    }
}

impl Serialize for HeadersView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        self.for_each(|name, value| match value {
            HeaderValue::Plain(v) => map.serialize_entry(&name, v),
            HeaderValue::Redacted(v) => map.serialize_entry(&name, &v),
            HeaderValue::Joined(v) => map.serialize_entry(&name, &v),
        })?;
        map.end()
    }
}

/// A header name written in lower case without allocating.
struct LowerName<'a>(&'a [u8]);

impl fmt::Display for LowerName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                f.write_char(c.to_ascii_lowercase())?;
            }
            if !chunk.invalid().is_empty() {
                f.write_char(char::REPLACEMENT_CHARACTER)?;
            }
        }
        Ok(())
    }
}

impl LowerName<'_> {
    /// The lower-cased name; header names are short ASCII tokens, lower-cased on the stack.
    fn lowered<'b>(&self, buf: &'b mut [u8; 64]) -> Cow<'b, str> {
        if let Some(dst) = buf.get_mut(..self.0.len()) {
            if self.0.is_ascii() {
                for (d, b) in dst.iter_mut().zip(self.0) {
                    *d = b.to_ascii_lowercase();
                }
                if let Ok(name) = std::str::from_utf8(dst) {
                    return Cow::Borrowed(name);
                }
            }
        }
        Cow::Owned(self.to_string())
    }
}

impl Serialize for LowerName<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.lowered(&mut [0u8; 64]))
    }
}

/// All values of one header name, from index `from` on, joined with ", ".
struct JoinedValues<'a> {
    head: &'a Head,
    name: &'a [u8],
    from: usize,
}

impl fmt::Display for JoinedValues<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for &(n, v) in self.head.headers.iter().skip(self.from) {
            if !self.head.get(n).eq_ignore_ascii_case(self.name) {
                continue;
            }
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            for chunk in self.head.get(v).utf8_chunks() {
                f.write_str(chunk.valid())?;
                if !chunk.invalid().is_empty() {
                    f.write_char(char::REPLACEMENT_CHARACTER)?;
                }
            }
        }
        Ok(())
    }
}

impl Serialize for JoinedValues<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Media type of a Content-Type value: the part before `;`, trimmed, lower case.
fn mime_type<'a>(head: &'a Head, text: HeadText<'a>) -> Option<Cow<'a, str>> {
    let value = head.header("content-type")?;
    let media = value
        .split(|&b| b == b';')
        .next()
        .unwrap_or(value)
        .trim_ascii();
    if media.is_empty() {
        return None;
    }
    Some(match text.str(media) {
        Cow::Borrowed(s) if !s.bytes().any(|b| b.is_ascii_uppercase()) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_ascii_lowercase()),
    })
}

/// Host without port: `example.com:8080` -> `example.com`, `[::1]:80` -> `[::1]` (ECS keeps
/// the brackets of an IPv6 literal in `url.domain`).
pub(crate) fn host_without_port(host: &[u8]) -> &[u8] {
    let host = host.trim_ascii();
    if host.starts_with(b"[") {
        return match host.iter().position(|&b| b == b']') {
            Some(end) => host.get(..=end).unwrap_or(host),
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) if host.iter().filter(|&&b| b == b':').count() == 1 => {
            host.get(..colon).unwrap_or(host)
        }
        _ => host,
    }
}

/// Splits a request-target into (path, query, authority from absolute/authority form).
#[allow(clippy::type_complexity)]
pub(crate) fn split_target<'a>(
    target: &'a [u8],
    method: &[u8],
) -> (Option<&'a [u8]>, Option<&'a [u8]>, Option<&'a [u8]>) {
    if method.eq_ignore_ascii_case(b"CONNECT") {
        return (None, None, Some(target));
    }
    if target == b"*" {
        return (Some(target), None, None);
    }
    let mut authority = None;
    let mut rest = target;
    if let Some(pos) = absolute_form_scheme_end(target) {
        let after = target.get(pos + 3..).unwrap_or(&[]);
        let end = after
            .iter()
            .position(|&b| b == b'/' || b == b'?' || b == b'#')
            .unwrap_or(after.len());
        let auth = after.get(..end).unwrap_or(after);
        // Strip userinfo.
        let auth = match auth.iter().rposition(|&b| b == b'@') {
            Some(at) => auth.get(at + 1..).unwrap_or(auth),
            None => auth,
        };
        authority = Some(auth);
        rest = after.get(end..).unwrap_or(&[]);
    }
    let rest = match rest.iter().position(|&b| b == b'#') {
        Some(hash) => rest.get(..hash).unwrap_or(rest),
        None => rest,
    };
    let (path, query) = match rest.iter().position(|&b| b == b'?') {
        Some(q) => (rest.get(..q).unwrap_or(rest), rest.get(q + 1..)),
        None => (rest, None),
    };
    let path: &[u8] = if path.is_empty() && authority.is_some() {
        b"/"
    } else {
        path
    };
    (Some(path), query, authority)
}

/// Where the scheme of an absolute-form target (`http://h/p`) ends, at its `://`. Only a
/// scheme at the very start counts (RFC 3986: a letter, then letters, digits, `+-.`), so an
/// origin-form target that carries a URL (`/r?to=http://x/y`) stays origin-form.
fn absolute_form_scheme_end(target: &[u8]) -> Option<usize> {
    if !target.first()?.is_ascii_alphabetic() {
        return None;
    }
    let end = target
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))?;
    target.get(end..)?.starts_with(b"://").then_some(end)
}

impl<'a> EventView<'a> {
    fn new(cfg: &'a EncoderConfig, flow: &'a FlowContext, tx: &'a HttpTransaction) -> Self {
        let req: Option<&HttpRequest> = tx.request.as_ref();
        let resp: Option<&HttpResponse> = tx.response.as_ref();
        let start = req
            .map(|r| r.start.ts)
            .or(resp.map(|r| r.start.ts))
            .unwrap_or_default();
        let duration = match (req, resp) {
            (Some(q), Some(r)) => Some(r.end.ts.nanos_since(q.start.ts)),
            _ => None,
        };
        let outcome = resp.map(|r| if r.status < 400 { "success" } else { "failure" });
        let version = req.map(|r| r.version).or(resp.map(|r| r.version));

        // Each head is checked for UTF-8 once; the parts below are slices of it.
        let req_text = req.map(|r| HeadText::new(&r.head));
        let resp_text = resp.map(|r| HeadText::new(&r.head));
        let rtext = move |part: &'a [u8]| -> Cow<'a, str> {
            match req_text {
                Some(t) => t.str(part),
                None => text(part),
            }
        };
        let url = req.map(|r| {
            let target = r.target();
            let (path, query, authority) = split_target(target, r.method());
            let domain = r
                .head
                .header("host")
                .or(authority)
                .map(host_without_port)
                .filter(|h| !h.is_empty())
                .map(rtext);
            let redacted_query =
                query.and_then(|q| crate::body::redact_query(&rtext(q), &cfg.redactor));
            match redacted_query {
                None => UrlView {
                    original: rtext(target),
                    path: path.map(rtext),
                    query: query.map(rtext),
                    domain,
                },
                Some(q) => {
                    // Rebuild the target with the redacted query (fragment dropped).
                    let before = target
                        .iter()
                        .position(|&b| b == b'?')
                        .and_then(|i| target.get(..=i))
                        .unwrap_or(target);
                    UrlView {
                        original: Cow::Owned(format!("{}{q}", rtext(before))),
                        path: path.map(rtext),
                        query: Some(Cow::Owned(q)),
                        domain,
                    }
                }
            }
        });
        let user_agent = req
            .and_then(|r| r.head.header("user-agent"))
            .map(|ua| UserAgentView {
                original: rtext(ua),
            });
        let sensor = (!cfg.sensor.is_empty()).then_some(cfg.sensor.as_str());
        let endpoint = match (req, url.as_ref().and_then(|u| u.path.as_deref())) {
            (Some(r), Some(path)) => endpoint_name(&rtext(r.method()), path, true),
            (Some(r), None) => endpoint_name(&rtext(r.method()), &rtext(r.target()), false),
            (None, _) => String::new(),
        };

        let (req_body, req_meta) = match req {
            Some(r) => {
                let body = r.body.as_deref().filter(|_| cfg.writes_body(&r.head));
                let (b, m) = body_views(r.body_bytes, body, &r.head, &cfg.redactor);
                (b, m)
            }
            None => (
                BodyView {
                    bytes: 0,
                    content: None,
                },
                None,
            ),
        };
        let (resp_body, resp_meta) = match resp {
            Some(r) => body_views(
                r.body_bytes,
                r.body.as_deref().filter(|_| cfg.writes_body(&r.head)),
                &r.head,
                &cfg.redactor,
            ),
            None => (
                BodyView {
                    bytes: 0,
                    content: None,
                },
                None,
            ),
        };
        EventView {
            timestamp: Rfc3339(start),
            event: EventMeta {
                kind: "event",
                category: ["network", "web"],
                kind_type: ["access", "protocol"],
                outcome,
                duration,
                id: event_id(&flow.flow_id, tx.key.ordinal),
            },
            source: flow.client.into(),
            destination: flow.server.into(),
            network: NetworkView {
                transport: "tcp",
                protocol: "http",
                ip_type: if flow.client.ip.is_ipv4() {
                    "ipv4"
                } else {
                    "ipv6"
                },
                community_id: &flow.community_id,
            },
            observer: (sensor.is_some() || flow.encap.vlan.is_some()).then(|| ObserverView {
                name: sensor,
                ingress: flow.encap.vlan.map(|id| IngressView {
                    vlan: VlanView { id: VlanId(id) },
                }),
            }),
            url,
            http: HttpView {
                version: version.map(|v| v.as_str()),
                request: req.zip(req_text).map(|(r, t)| RequestView {
                    method: t.str(r.method()),
                    headers: HeadersView::new(&r.head, t, &cfg.redactor),
                    bytes: r.wire_bytes,
                    body: req_body,
                    mime_type: mime_type(&r.head, t),
                }),
                response: resp.zip(resp_text).map(|(r, t)| ResponseView {
                    status_code: r.status,
                    headers: HeadersView::new(&r.head, t, &cfg.redactor),
                    bytes: r.wire_bytes,
                    body: resp_body,
                    mime_type: mime_type(&r.head, t),
                }),
            },
            user_agent,
            apitap: ApitapView {
                endpoint,
                flow_id: &flow.flow_id,
                transaction: tx.key.ordinal,
                complete: tx.is_complete(),
                incomplete_reason: tx.incomplete.map(|r| r.name()),
                anomalies: AnomalyList(tx.anomalies),
                body: (req_meta.is_some() || resp_meta.is_some()).then_some(BodiesView {
                    request: req_meta,
                    response: resp_meta,
                }),
                tunnel: flow.encap.tunnel.map(|t| TunnelView {
                    kind: t.kind.name(),
                    id: t.id,
                }),
                sensor,
                schema_version: SCHEMA_VERSION,
            },
        }
    }
}

// ---- the ECS writer: the same JSON as the serde derives above, written directly ----

impl EventView<'_> {
    /// Appends the ECS event. Field order and omissions follow the serde derives (which
    /// OCSF uses); `tests::hand_writer_equals_serde` holds them to the same bytes.
    fn write_ecs(&self, out: &mut Vec<u8>) {
        out.reserve(1024);
        let mut o = json::Object::new(out);
        let mut ts = String::with_capacity(32);
        self.timestamp.0.write_rfc3339_micros(&mut ts);
        o.str("@timestamp", &ts);
        self.event.write_json(o.key("event"));
        self.source.write_json(o.key("source"));
        self.destination.write_json(o.key("destination"));
        self.network.write_json(o.key("network"));
        if let Some(observer) = &self.observer {
            let mut ob = json::Object::new(o.key("observer"));
            if let Some(name) = observer.name {
                ob.str("name", name);
            }
            if let Some(ingress) = &observer.ingress {
                let mut ing = json::Object::new(ob.key("ingress"));
                let mut vlan = json::Object::new(ing.key("vlan"));
                vlan.str("id", itoa::Buffer::new().format(ingress.vlan.id.0));
                vlan.end();
                ing.end();
            }
            ob.end();
        }
        if let Some(url) = &self.url {
            let mut u = json::Object::new(o.key("url"));
            u.str("original", &url.original);
            for (key, value) in [
                ("path", &url.path),
                ("query", &url.query),
                ("domain", &url.domain),
            ] {
                if let Some(v) = value {
                    u.str(key, v);
                }
            }
            u.end();
        }
        self.http.write_json(o.key("http"));
        if let Some(ua) = &self.user_agent {
            let mut u = json::Object::new(o.key("user_agent"));
            u.str("original", &ua.original);
            u.end();
        }
        self.apitap.write_json(o.key("apitap"));
        o.end();
    }
}

impl EventMeta {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = json::Object::new(out);
        o.str("kind", self.kind);
        str_array(o.key("category"), self.category);
        str_array(o.key("type"), self.kind_type);
        if let Some(outcome) = self.outcome {
            o.str("outcome", outcome);
        }
        if let Some(duration) = self.duration {
            o.uint("duration", duration);
        }
        o.str("id", &self.id);
        o.end();
    }
}

fn str_array<'s>(out: &mut Vec<u8>, items: impl IntoIterator<Item = &'s str>) {
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::string(out, item);
    }
    out.push(b']');
}

impl EndpointView {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = json::Object::new(out);
        json::ip(o.key("ip"), self.ip);
        o.uint("port", u64::from(self.port));
        o.end();
    }
}

impl NetworkView<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = json::Object::new(out);
        o.str("transport", self.transport);
        o.str("protocol", self.protocol);
        o.str("type", self.ip_type);
        o.str("community_id", self.community_id);
        o.end();
    }
}

impl HttpView<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = json::Object::new(out);
        if let Some(version) = self.version {
            o.str("version", version);
        }
        if let Some(r) = &self.request {
            let mut q = json::Object::new(o.key("request"));
            q.str("method", &r.method);
            write_message_rest(q, &r.headers, r.bytes, &r.body, r.mime_type.as_deref());
        }
        if let Some(r) = &self.response {
            let mut p = json::Object::new(o.key("response"));
            p.uint("status_code", u64::from(r.status_code));
            write_message_rest(p, &r.headers, r.bytes, &r.body, r.mime_type.as_deref());
        }
        o.end();
    }
}

/// The fields a request and a response share, after their first one, in the order serde
/// derive writes [`RequestView`] and [`ResponseView`]; closes the object.
fn write_message_rest(
    mut o: json::Object<'_>,
    headers: &HeadersView<'_>,
    bytes: u64,
    body: &BodyView,
    mime_type: Option<&str>,
) {
    headers.write_json(o.key("headers"));
    o.uint("bytes", bytes);
    body.write_json(o.key("body"));
    if let Some(m) = mime_type {
        o.str("mime_type", m);
    }
    o.end();
}

impl BodyView {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = json::Object::new(out);
        o.uint("bytes", self.bytes);
        if let Some(content) = &self.content {
            o.str("content", content);
        }
        o.end();
    }
}

impl BodyMetaView {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = json::Object::new(out);
        o.bool("truncated", self.truncated);
        if let Some(enc) = self.content_encoding {
            o.str("content_encoding", enc);
        }
        if self.redacted_fields != 0 {
            o.uint("redacted_fields", u64::from(self.redacted_fields));
        }
        if self.binary {
            o.bool("binary", true);
        }
        if self.withheld {
            o.bool("withheld", true);
        }
        o.end();
    }
}

impl ApitapView<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = json::Object::new(out);
        o.str("endpoint", &self.endpoint);
        o.str("flow_id", self.flow_id);
        o.uint("transaction", u64::from(self.transaction));
        o.bool("complete", self.complete);
        if let Some(reason) = self.incomplete_reason {
            o.str("incomplete_reason", reason);
        }
        str_array(
            o.key("anomalies"),
            self.anomalies.0.iter().map(|a| a.name()),
        );
        if let Some(body) = &self.body {
            let mut b = json::Object::new(o.key("body"));
            if let Some(m) = &body.request {
                m.write_json(b.key("request"));
            }
            if let Some(m) = &body.response {
                m.write_json(b.key("response"));
            }
            b.end();
        }
        if let Some(t) = &self.tunnel {
            let mut tu = json::Object::new(o.key("tunnel"));
            tu.str("type", t.kind);
            if let Some(id) = t.id {
                tu.uint("id", u64::from(id));
            }
            tu.end();
        }
        if let Some(sensor) = self.sensor {
            o.str("sensor", sensor);
        }
        o.str("schema_version", self.schema_version);
        o.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apitap_core::{Anomaly, HttpVersion, IncompleteReason, PacketRef, Span, Timestamp};

    fn head(lines: &[(&str, &str)], start_line: &str) -> (Head, Vec<Span>) {
        let mut buf = start_line.as_bytes().to_vec();
        buf.extend_from_slice(b"\r\n");
        let mut headers = Vec::new();
        for (n, v) in lines {
            let ns = buf.len();
            buf.extend_from_slice(n.as_bytes());
            buf.extend_from_slice(b": ");
            let vs = buf.len();
            buf.extend_from_slice(v.as_bytes());
            buf.extend_from_slice(b"\r\n");
            headers.push((Span::new(ns, n.len()), Span::new(vs, v.len())));
        }
        let words: Vec<Span> = {
            let mut spans = Vec::new();
            let mut pos = 0;
            for w in start_line.splitn(3, ' ') {
                spans.push(Span::new(pos, w.len()));
                pos += w.len() + 1;
            }
            spans
        };
        (Head { buf, headers }, words)
    }

    fn flow() -> FlowContext {
        FlowContext::new(
            Endpoint {
                ip: "10.0.0.2".parse().unwrap(),
                port: 40000,
            },
            Endpoint {
                ip: "10.0.0.1".parse().unwrap(),
                port: 80,
            },
            7,
        )
    }

    fn sample_tx() -> HttpTransaction {
        let (qh, qw) = head(
            &[
                ("Host", "api.example.com:8080"),
                ("User-Agent", "curl/8.0"),
                ("Authorization", "Bearer secret-token"),
                ("Accept", "a/b"),
                ("accept", "c/d"),
                ("Content-Type", "Application/JSON; charset=utf-8"),
            ],
            "POST /v1/users/42?x=1&y=%20#frag HTTP/1.1",
        );
        let (rh, rw) = head(
            &[("Content-Length", "2"), ("Set-Cookie", "a=b")],
            "HTTP/1.1 201 Created",
        );
        HttpTransaction {
            key: SortKey {
                packet: 4,
                flow: 1,
                ordinal: 0,
            },
            request: Some(HttpRequest {
                head: qh,
                method: qw[0],
                target: qw[1],
                version: HttpVersion::Http11,
                body_bytes: 13,
                wire_bytes: 200,
                body: None,
                start: PacketRef {
                    index: 4,
                    ts: Timestamp::from_parts(1_714_564_800, 1_000),
                },
                end: PacketRef {
                    index: 4,
                    ts: Timestamp::from_parts(1_714_564_800, 1_000),
                },
            }),
            response: Some(HttpResponse {
                head: rh,
                status: 201,
                reason: rw[2],
                version: HttpVersion::Http11,
                body_bytes: 2,
                wire_bytes: 60,
                body: None,
                interim_count: 0,
                start: PacketRef {
                    index: 6,
                    ts: Timestamp::from_parts(1_714_564_800, 5_001_000),
                },
                end: PacketRef {
                    index: 6,
                    ts: Timestamp::from_parts(1_714_564_800, 5_001_000),
                },
            }),
            anomalies: Default::default(),
            incomplete: None,
        }
    }

    fn encode(tx: &HttpTransaction, enc: &Encoder) -> serde_json::Value {
        let mut out = Vec::new();
        enc.encode(&flow(), tx, &mut out);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn head_text_slices_parts_of_a_checked_head_and_checks_anything_else() {
        let head = Head {
            buf: "GET /caf\u{e9} HTTP/1.1\r\n".as_bytes().to_vec(),
            headers: Vec::new(),
        };
        let t = HeadText::new(&head);
        let path = &head.buf[4..10];
        assert!(matches!(t.str(path), Cow::Borrowed("/caf\u{e9}")));
        // Half of the two-byte é: not a character boundary, replaced as before.
        assert_eq!(t.str(&head.buf[4..9]), "/caf\u{fffd}");
        // Bytes from elsewhere (same content, other address) are checked on their own.
        let other = b"/caf\xc3\xa9".to_vec();
        assert_eq!(t.str(&other), "/caf\u{e9}");
        assert_eq!(t.str(b"\xff"), "\u{fffd}");
        // A head that is not UTF-8: every part is checked on its own.
        let bad = Head {
            buf: b"GET /\xff HTTP/1.1\r\n".to_vec(),
            headers: Vec::new(),
        };
        let b = HeadText::new(&bad);
        assert!(b.text.is_none());
        assert_eq!(b.str(&bad.buf[0..3]), "GET");
        assert_eq!(b.str(&bad.buf[4..6]), "/\u{fffd}");
    }

    /// The hand-written ECS writer against the serde derives it replaces, over transactions
    /// that reach every optional field, every escape class and invalid UTF-8.
    #[test]
    fn hand_writer_equals_serde() {
        let hostile = "q\"\\\u{1}\u{1f}\u{7f}\u{2028}é\t\n";
        let long_name = format!("X-{}", "Very-Long-Header-Name-".repeat(4));
        let mut txs = vec![sample_tx()];

        // Hostile header names and values, repeated and redacted headers, odd targets.
        for target in [
            "GET /a%22b/12345?password=hunter2&x=%FF#f HTTP/1.1",
            "GET http://u:p@h.example:81/v1/9f86d081884c7d65ab?q HTTP/1.1",
            "OPTIONS * HTTP/1.1",
            "CONNECT h.example:443 HTTP/1.1",
            "GET /p? HTTP/1.0",
        ] {
            let mut tx = sample_tx();
            let lines = [
                ("Host", hostile),
                ("User-Agent", hostile),
                (long_name.as_str(), "v"),
                ("Cookie", "a=1"),
                ("cookie", "b=2"),
                ("X-Repeated", "one"),
                ("x-REPEATED", ""),
                ("X-Repeated", hostile),
                ("Content-Type", "text/plain"),
                // Names httparse would refuse: the writer's escaping path.
                ("X-Q\"uo\\te", "v"),
                ("X-Ünï", "v"),
            ];
            let (qh, qw) = head(&lines, target);
            if let Some(r) = tx.request.as_mut() {
                r.head = qh;
                r.method = qw[0];
                r.target = qw[1];
            }
            txs.push(tx);
        }

        // Invalid UTF-8 in the target, a header value and the reason phrase.
        let mut bad = sample_tx();
        if let Some(r) = bad.request.as_mut() {
            r.head.buf[7] = 0xff;
            let last = r.head.buf.len() - 3;
            r.head.buf[last] = 0xc3;
        }
        if let Some(r) = bad.response.as_mut() {
            r.head.buf[13] = 0x80;
        }
        txs.push(bad);

        // Captured bodies: JSON with a sensitive field, binary, truncated and decoded.
        let mut bodies = sample_tx();
        if let Some(r) = bodies.request.as_mut() {
            r.body = Some(Box::new(apitap_core::CapturedBody {
                bytes: br#"{"user":"a\"b","password":"p","n":[1,2]}"#.to_vec(),
                truncated: false,
                decoded_from: None,
            }));
        }
        if let Some(r) = bodies.response.as_mut() {
            r.body = Some(Box::new(apitap_core::CapturedBody {
                bytes: vec![0, 159, 146, 150, 0xff, b'"'],
                truncated: true,
                decoded_from: Some("gzip"),
            }));
        }
        txs.push(bodies);

        // Every anomaly, an incomplete reason, lone request and lone response.
        let mut all = sample_tx();
        for a in Anomaly::ALL {
            all.anomalies.insert(*a);
        }
        all.incomplete = Some(IncompleteReason::EndOfCapture);
        all.response = None;
        txs.push(all);
        let mut lone = sample_tx();
        lone.request = None;
        lone.incomplete = Some(IncompleteReason::RequestNotSeen);
        txs.push(lone);

        let v6 = FlowContext::new(
            Endpoint {
                ip: "2001:db8::2".parse().unwrap(),
                port: 1,
            },
            Endpoint {
                ip: "2001:db8::1".parse().unwrap(),
                port: 65535,
            },
            u64::MAX,
        );
        let flows = [
            flow(),
            v6,
            flow().with_encap(apitap_core::Encap {
                vlan: Some(4095),
                tunnel: Some(apitap_core::Tunnel {
                    kind: apitap_core::TunnelKind::Vxlan,
                    id: Some(u32::MAX),
                }),
            }),
            flow().with_encap(apitap_core::Encap {
                vlan: None,
                tunnel: Some(apitap_core::Tunnel {
                    kind: apitap_core::TunnelKind::Gre,
                    id: None,
                }),
            }),
        ];
        let names: Vec<String> = vec!["authorization".into(), "cookie".into()];
        let configs = [
            EncoderConfig::default(),
            EncoderConfig {
                sensor: hostile.into(),
                redactor: Redactor::new(&names, Some(b"key".to_vec())),
                format: EventFormat::Ecs,
                records: false,
                body_content_for: Some(vec!["application/json".into()]),
            },
            EncoderConfig {
                sensor: "s".into(),
                redactor: Redactor::new(&[], None).with_fields(&[]),
                format: EventFormat::Ecs,
                records: false,
                body_content_for: None,
            },
        ];
        let mut checked = 0;
        for cfg in &configs {
            for fl in &flows {
                for tx in &txs {
                    let view = EventView::new(cfg, fl, tx);
                    let mut hand = Vec::new();
                    view.write_ecs(&mut hand);
                    let serde = serde_json::to_vec(&view).unwrap();
                    assert_eq!(
                        String::from_utf8_lossy(&hand),
                        String::from_utf8_lossy(&serde)
                    );
                    assert_eq!(hand, serde);
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, configs.len() * flows.len() * txs.len());
    }

    #[test]
    fn analytics_record_carries_raw_values_and_the_event_id() {
        let enc = Encoder::new(EncoderConfig {
            records: true,
            ..EncoderConfig::default()
        });
        let ev = enc.encode_event(&flow(), sample_tx());
        let json: serde_json::Value = serde_json::from_slice(&ev.json).unwrap();
        let r = ev.record.expect("records on");
        assert_eq!(json["event"]["id"], r.event_id.as_str());
        assert_eq!(r.ts_ns, 1_714_564_800_000_001_000);
        assert_eq!(r.client, "10.0.0.2:40000".parse().unwrap());
        assert_eq!(r.server, "10.0.0.1:80".parse().unwrap());
        assert_eq!(r.host.as_deref(), Some("api.example.com"));
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/v1/users/42");
        assert_eq!(r.query.as_deref(), Some("x=1&y=%20"));
        assert_eq!(r.status, Some(201));
        assert_eq!(
            r.request_content_type.as_deref(),
            Some("Application/JSON; charset=utf-8")
        );
        // The analytics see the credential (to tell Bearer from JWT); events do not.
        assert_eq!(
            r.request_header("authorization"),
            Some("Bearer secret-token")
        );
        assert_eq!(r.request_header("accept"), Some("a/b"));
        assert_eq!(r.response_header("set-cookie"), Some("a=b"));
        assert_eq!((r.request_body_bytes, r.response_body_bytes), (13, 2));
        assert!(Encoder::default()
            .encode_event(&flow(), sample_tx())
            .record
            .is_none());
    }

    #[test]
    fn complete_transaction_fields() {
        let v = encode(&sample_tx(), &Encoder::default());
        assert_eq!(v["@timestamp"], "2024-05-01T12:00:00.000001Z");
        assert_eq!(v["event"]["kind"], "event");
        assert_eq!(v["event"]["duration"], 5_000_000);
        assert_eq!(v["event"]["outcome"], "success");
        assert_eq!(v["source"]["ip"], "10.0.0.2");
        assert_eq!(v["source"]["port"], 40000);
        assert_eq!(v["destination"]["ip"], "10.0.0.1");
        assert_eq!(v["destination"]["port"], 80);
        assert_eq!(v["network"]["transport"], "tcp");
        assert!(v["network"]["community_id"]
            .as_str()
            .unwrap()
            .starts_with("1:"));
        assert_eq!(v["url"]["original"], "/v1/users/42?x=1&y=%20#frag");
        assert_eq!(v["url"]["path"], "/v1/users/42");
        assert_eq!(v["url"]["query"], "x=1&y=%20");
        assert_eq!(v["url"]["domain"], "api.example.com");
        assert_eq!(v["http"]["version"], "1.1");
        assert_eq!(v["http"]["request"]["method"], "POST");
        assert_eq!(v["http"]["request"]["body"]["bytes"], 13);
        assert_eq!(v["http"]["request"]["mime_type"], "application/json");
        assert_eq!(v["http"]["request"]["headers"]["accept"], "a/b, c/d");
        assert_eq!(
            v["http"]["request"]["headers"]["authorization"],
            "[REDACTED]"
        );
        assert_eq!(v["http"]["response"]["headers"]["set-cookie"], "[REDACTED]");
        assert_eq!(v["http"]["response"]["status_code"], 201);
        assert_eq!(v["http"]["response"]["body"]["bytes"], 2);
        assert_eq!(v["http"]["response"]["bytes"], 60);
        assert_eq!(v["http"]["request"]["bytes"], 200);
        assert_eq!(v["user_agent"]["original"], "curl/8.0");
        assert_eq!(v["apitap"]["complete"], true);
        assert_eq!(v["apitap"]["anomalies"], serde_json::json!([]));
        assert!(v["apitap"].get("incomplete_reason").is_none());
        assert_eq!(v["apitap"]["flow_id"], flow().flow_id);
        assert_eq!(v["apitap"]["endpoint"], "POST /v1/users/{id}");
        assert_eq!(v["event"]["id"], format!("{}-0", flow().flow_id));
    }

    #[test]
    fn hmac_redaction_is_keyed_and_stable() {
        let names: Vec<String> = vec!["authorization".into()];
        let enc = |key: &[u8]| {
            Encoder::new(EncoderConfig {
                sensor: "s1".into(),
                redactor: Redactor::new(&names, Some(key.to_vec())),
                format: EventFormat::Ecs,
                records: false,
                body_content_for: None,
            })
        };
        let a = encode(&sample_tx(), &enc(b"k1"));
        let b = encode(&sample_tx(), &enc(b"k1"));
        let c = encode(&sample_tx(), &enc(b"k2"));
        let va = a["http"]["request"]["headers"]["authorization"]
            .as_str()
            .unwrap();
        assert!(va.starts_with("hmac:") && va.len() == 21, "{va}");
        assert_eq!(va, b["http"]["request"]["headers"]["authorization"]);
        assert_ne!(va, c["http"]["request"]["headers"]["authorization"]);
        assert!(!a.to_string().contains("secret-token"));
        // Not in the list -> kept.
        assert_eq!(a["http"]["response"]["headers"]["set-cookie"], "a=b");
        assert_eq!(a["observer"]["name"], "s1");
    }

    #[test]
    fn lone_request_has_reason_and_no_duration() {
        let mut tx = sample_tx();
        tx.response = None;
        tx.incomplete = Some(IncompleteReason::EndOfCapture);
        tx.anomalies.insert(Anomaly::Gap);
        let v = encode(&tx, &Encoder::default());
        assert_eq!(v["apitap"]["complete"], false);
        assert_eq!(v["apitap"]["incomplete_reason"], "end_of_capture");
        assert_eq!(v["apitap"]["anomalies"], serde_json::json!(["gap"]));
        assert!(v["event"].get("duration").is_none());
        assert!(v["http"].get("response").is_none());
    }

    #[test]
    fn lone_response_uses_response_time() {
        let mut tx = sample_tx();
        tx.request = None;
        tx.incomplete = Some(IncompleteReason::RequestNotSeen);
        let v = encode(&tx, &Encoder::default());
        assert_eq!(v["@timestamp"], "2024-05-01T12:00:00.005001Z");
        assert!(v.get("url").is_none());
        assert_eq!(v["http"]["response"]["status_code"], 201);
    }

    #[test]
    fn non_utf8_and_control_bytes_stay_valid_json() {
        let mut tx = sample_tx();
        if let Some(req) = tx.request.as_mut() {
            req.head.buf[6] = 0xff; // inside the target
            req.head.buf.push(b'"');
        }
        let mut out = Vec::new();
        Encoder::default().encode(&flow(), &tx, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v["url"]["original"].as_str().unwrap().contains('\u{fffd}'));
    }

    #[test]
    fn path_templates() {
        assert_eq!(path_template("/users/123/orders"), "/users/{id}/orders");
        assert_eq!(
            path_template("/o/123e4567-e89b-12d3-a456-426614174000"),
            "/o/{id}"
        );
        assert_eq!(path_template("/blob/9f86d081884c7d65ab"), "/blob/{id}");
        assert_eq!(path_template("/v1/users"), "/v1/users");
        assert_eq!(path_template("/cafe"), "/cafe");
        assert_eq!(path_template("/"), "/");
        assert_eq!(path_template("/a//123/"), "/a//{id}/");
        assert_eq!(path_template("123"), "{id}");
    }

    #[test]
    fn endpoint_hash_is_stable_and_per_endpoint() {
        let enc = Encoder::default();
        let a = enc.encode_event(&flow(), sample_tx());
        let mut other = sample_tx();
        if let Some(r) = other.request.as_mut() {
            r.head.buf[15] = b'9'; // /v1/users/92 -> same template
        }
        let b = enc.encode_event(&flow(), other);
        assert_eq!(a.endpoint_hash, b.endpoint_hash);
        let mut get = sample_tx();
        if let Some(r) = get.request.as_mut() {
            r.head.buf[..4].copy_from_slice(b"PUTS");
        }
        assert_ne!(
            a.endpoint_hash,
            enc.encode_event(&flow(), get).endpoint_hash
        );
        // Fixed value: the key must not change between releases or machines.
        assert_eq!(
            stable_hash(&[b"a", b"GET /"]),
            stable_hash(&[b"a", b"GET /"])
        );
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
    }

    #[test]
    fn target_forms() {
        assert_eq!(
            split_target(b"http://u:p@h.example:81/a?b#c", b"GET"),
            (
                Some(&b"/a"[..]),
                Some(&b"b"[..]),
                Some(&b"h.example:81"[..])
            )
        );
        assert_eq!(
            split_target(b"http://h", b"GET"),
            (Some(&b"/"[..]), None, Some(&b"h"[..]))
        );
        assert_eq!(
            split_target(b"*", b"OPTIONS"),
            (Some(&b"*"[..]), None, None)
        );
        assert_eq!(
            split_target(b"h:443", b"CONNECT"),
            (None, None, Some(&b"h:443"[..]))
        );
        assert_eq!(
            split_target(b"/p?", b"GET"),
            (Some(&b"/p"[..]), Some(&b""[..]), None)
        );
        // A URL inside an origin-form target is not its authority.
        assert_eq!(
            split_target(b"/r?to=http://evil.example/x", b"GET"),
            (
                Some(&b"/r"[..]),
                Some(&b"to=http://evil.example/x"[..]),
                None
            )
        );
        assert_eq!(
            split_target(b"/proxy/https://h.example/p", b"GET"),
            (Some(&b"/proxy/https://h.example/p"[..]), None, None)
        );
        assert_eq!(
            split_target(b"svn+ssh://h/p", b"GET"),
            (Some(&b"/p"[..]), None, Some(&b"h"[..]))
        );
        assert_eq!(
            split_target(b"1http://h/p", b"GET"),
            (Some(&b"1http://h/p"[..]), None, None)
        );
    }

    #[test]
    fn host_port_stripping() {
        assert_eq!(host_without_port(b"a.b:80"), b"a.b");
        assert_eq!(host_without_port(b"[::1]:80"), b"[::1]");
        assert_eq!(host_without_port(b"::1"), b"::1");
        assert_eq!(host_without_port(b" a "), b"a");
        assert_eq!(host_without_port(b"[bad"), b"[bad");
    }

    #[test]
    fn flow_id_depends_on_first_packet() {
        let a = flow();
        let b = FlowContext::new(a.client, a.server, 8);
        assert_ne!(a.flow_id, b.flow_id);
        assert_eq!(a, FlowContext::new(a.client, a.server, 7));
    }
}
