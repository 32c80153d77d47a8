//! Events as analytics input: `apitap analyze` turns the transaction events sensors wrote
//! (ECS JSON lines) back into [`TxRecord`]s and merges the streams of several sensors into
//! one packet-time order.
//!
//! An event keeps what the stateful analytics need (addresses, host, method, path, query
//! names, status, content types, header names, sizes, duration). What it leaves out
//! (credentials, secret values, bodies) a sensor in edge mode summarised in
//! `apitap.findings`, and `apitap.ts_ns` has the request start to the nanosecond.

use crate::{EdgeFindings, Headers, TxRecord};
use apitap_core::Peak;
use foldhash::HashMap;
use serde_json::Value;
use std::borrow::Cow;
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{IpAddr, SocketAddr};

apitap_core::counters! {
    /// Counters of the event input of `apitap analyze`.
    pub struct EventInputStats {
        /// Lines read.
        pub lines: u64,
        /// Transaction events turned into records.
        pub transactions: u64,
        /// Lines that are not a JSON object (skipped).
        pub skipped_not_json: u64,
        /// Lines longer than `analyze.max_event_bytes` (skipped).
        pub skipped_too_long: u64,
        /// Events of another `apitap.schema_version` (skipped).
        pub skipped_schema_version: u64,
        /// Events that are not HTTP transactions: connections, alerts (skipped).
        pub skipped_not_transaction: u64,
        /// Transaction events missing a field the analytics need, or with a bad one
        /// (skipped).
        pub skipped_invalid: u64,
        /// `skipped_invalid` by the field at fault.
        pub invalid_fields: BTreeMap<String, u64>,
        /// Events more than `analyze.max_future_s` ahead of the wall clock (skipped).
        pub skipped_future: u64,
        /// Events released after a later one because they came more than
        /// `analyze.allowed_lateness_ms` behind (processed at the analytics' clock).
        pub late: u64,
        /// Events released before the watermark allowed because the buffer was full
        /// (`analyze.max_buffered_events` or `max_buffered_bytes`).
        pub forced_early: u64,
        /// Events whose `event.id` was already seen within the window (dropped).
        pub duplicates: u64,
        /// Most events buffered at once.
        pub peak_buffered: Peak,
    }
}

/// Why an event line is not a transaction record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Not a JSON object.
    NotJson,
    /// Another schema version.
    SchemaVersion,
    /// A connection event or an alert.
    NotTransaction,
    /// A field the analytics need is missing or malformed (its name).
    Invalid(&'static str),
}

impl Skip {
    /// Counts `self` in `stats`.
    pub fn count(self, stats: &mut EventInputStats) {
        match self {
            Skip::NotJson => stats.skipped_not_json += 1,
            Skip::SchemaVersion => stats.skipped_schema_version += 1,
            Skip::NotTransaction => stats.skipped_not_transaction += 1,
            Skip::Invalid(field) => {
                stats.skipped_invalid += 1;
                *stats.invalid_fields.entry(field.to_string()).or_insert(0) += 1;
            }
        }
    }
}

/// The record of one event line. A well-formed transaction event is read field by field
/// into borrowed parts ([`EventDoc`]); anything else (another kind, a field of another
/// type, a duplicate key, a value out of range) goes through a whole `Value`, which says
/// exactly why it is skipped. Both give the same record (a property test holds them to
/// it), with one exception: fields neither path uses are skipped here unbuilt, so a
/// line whose unused fields hold what a `Value` cannot (a lone surrogate escape, a number
/// beyond `f64`, nesting past 128 levels) is read here where a `Value` would call it not
/// JSON. (Invalid UTF-8 anywhere is not JSON on both.)
pub fn parse_event(line: &[u8]) -> Result<TxRecord, Skip> {
    // Unread fields are skipped without their UTF-8 being checked: the whole line is.
    if std::str::from_utf8(line).is_ok() {
        if let Some(rec) = serde_json::from_slice::<Object<EventDoc<'_>>>(line)
            .ok()
            .and_then(|doc| doc.0.record())
        {
            return Ok(rec);
        }
    }
    parse_event_value(line)
}

/// [`parse_event`] through a whole `serde_json::Value`.
fn parse_event_value(line: &[u8]) -> Result<TxRecord, Skip> {
    let v: Value = serde_json::from_slice(line).map_err(|_| Skip::NotJson)?;
    if !v.is_object() {
        return Err(Skip::NotJson);
    }
    event_record(&v)
}

/// The value at `path` (`/a/b`) in `v`: [`Value::pointer`] without its escapes (no
/// path here has `~`), which allocates for every segment.
fn at<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('/').skip(1).try_fold(v, |v, key| v.get(key))
}

/// The record of one ECS transaction event.
pub fn event_record(v: &Value) -> Result<TxRecord, Skip> {
    let text = |p: &str| at(v, p).and_then(Value::as_str);
    let num = |p: &str| at(v, p).and_then(Value::as_u64);
    if text("/apitap/schema_version") != Some(apitap_core::output::SCHEMA_VERSION) {
        return Err(Skip::SchemaVersion);
    }
    if text("/event/kind") != Some("event") || v.get("http").is_none() {
        return Err(Skip::NotTransaction);
    }
    let ts_ns = match at(v, "/apitap/ts_ns") {
        Some(n) => n.as_i64().ok_or(Skip::Invalid("apitap.ts_ns"))?,
        None => text("/@timestamp")
            .and_then(rfc3339_ns)
            .ok_or(Skip::Invalid("@timestamp"))?,
    };
    let addr = |side: &'static str| -> Result<SocketAddr, Skip> {
        let ip: IpAddr = text(&format!("/{side}/ip"))
            .and_then(|s| s.parse().ok())
            .ok_or(Skip::Invalid(side))?;
        let port = num(&format!("/{side}/port"))
            .and_then(|p| u16::try_from(p).ok())
            .ok_or(Skip::Invalid(side))?;
        Ok(SocketAddr::new(ip, port))
    };
    let findings = match at(v, "/apitap/findings") {
        None => None,
        Some(f) => Some(Box::new(
            EdgeFindings::from_json(f).ok_or(Skip::Invalid("apitap.findings"))?,
        )),
    };
    let request = at(v, "/http/request");
    let response = at(v, "/http/response");
    let headers = |m: Option<&Value>| -> Headers {
        m.and_then(|m| m.get("headers"))
            .and_then(Value::as_object)
            .map(|h| {
                h.iter()
                    .filter_map(|(n, v)| Some((n.as_str(), v.as_str()?)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let request_headers = headers(request);
    let response_headers = headers(response);
    let content_type = |h: &Headers, m: Option<&Value>| {
        h.get("content-type")
            .or_else(|| m?.get("mime_type")?.as_str())
            .map(str::to_string)
    };
    // With findings, nothing reads the bodies: they are not kept.
    let body = |m: Option<&Value>| {
        m.filter(|_| findings.is_none())
            .and_then(|m| at(m, "/body/content"))
            .and_then(Value::as_str)
            .map(|s| s.as_bytes().to_vec())
    };
    let cut = |dir: &str| {
        at(v, &format!("/apitap/body/{dir}/truncated"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let status = match response.and_then(|r| r.get("status_code")) {
        None => None,
        Some(s) => Some(
            s.as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .ok_or(Skip::Invalid("http.response.status_code"))?,
        ),
    };
    Ok(TxRecord {
        ts_ns,
        event_id: text("/event/id")
            .filter(|id| id.len() <= MAX_EVENT_ID_BYTES)
            .ok_or(Skip::Invalid("event.id"))?
            .to_string(),
        client: addr("source")?,
        server: addr("destination")?,
        host: text("/url/domain").map(|h| crate::record::bounded_host(h.to_ascii_lowercase())),
        method: request
            .and_then(|r| r.get("method"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        path: text("/url/path")
            .or_else(|| text("/url/original"))
            .unwrap_or_default()
            .to_string(),
        query: text("/url/query").map(str::to_string),
        status,
        grpc_status: num("/rpc/grpc/status_code").and_then(|s| u32::try_from(s).ok()),
        request_content_type: content_type(&request_headers, request),
        response_content_type: content_type(&response_headers, response),
        request_body: body(request),
        response_body: body(response),
        request_body_cut: cut("request"),
        response_body_cut: cut("response"),
        request_body_bytes: request
            .and_then(|r| at(r, "/body/bytes"))
            .and_then(Value::as_u64)
            .unwrap_or(0),
        response_body_bytes: response
            .and_then(|r| at(r, "/body/bytes"))
            .and_then(Value::as_u64)
            .unwrap_or(0),
        duration_ns: num("/event/duration"),
        auth_jwt: false,
        request_headers,
        response_headers,
        findings,
        scanned: Default::default(),
        sensor: text("/observer/name")
            .filter(|s| !s.is_empty())
            .map(|s| crate::record::cut_to(s.to_string(), crate::record::MAX_SENSOR_BYTES)),
    })
}

/// A JSON field that may be absent, `null`, or a value (where `null` and absent mean
/// different things to [`event_record`]).
#[derive(Default)]
enum Field<T> {
    #[default]
    Absent,
    Null,
    Set(T),
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Field<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Option::<T>::deserialize(d)?.map_or(Field::Null, Field::Set))
    }
}

/// A string field, borrowed from the line where it has no escapes.
type Text<'a> = Option<Borrowed<'a>>;

type HeaderList<'a> = Vec<(Borrowed<'a>, Borrowed<'a>)>;

/// More headers than this on one message send the event the `Value` way (the repeated
/// name check here is quadratic).
const MAX_FAST_HEADERS: usize = 64;

/// The parts of a transaction event the analytics read; the rest is skipped unbuilt.
/// Every part must be a JSON object (serde_json would also fill a struct from an array).
#[derive(serde::Deserialize)]
struct EventDoc<'a> {
    #[serde(rename = "@timestamp", borrow, default)]
    timestamp: Text<'a>,
    #[serde(borrow, default, deserialize_with = "object")]
    event: Option<EventPart<'a>>,
    #[serde(borrow, default, deserialize_with = "object")]
    source: Option<AddrPart<'a>>,
    #[serde(borrow, default, deserialize_with = "object")]
    destination: Option<AddrPart<'a>>,
    #[serde(borrow, default, deserialize_with = "object")]
    url: Option<UrlPart<'a>>,
    #[serde(borrow, default)]
    http: Field<Object<HttpPart<'a>>>,
    #[serde(default, deserialize_with = "object")]
    rpc: Option<RpcPart>,
    #[serde(borrow, default, deserialize_with = "object")]
    observer: Option<ObserverPart<'a>>,
    #[serde(borrow, default, deserialize_with = "object")]
    apitap: Option<ApitapPart<'a>>,
}

#[derive(serde::Deserialize)]
struct EventPart<'a> {
    #[serde(borrow, default)]
    kind: Text<'a>,
    #[serde(borrow, default)]
    id: Text<'a>,
    #[serde(default)]
    duration: Option<u64>,
}

#[derive(serde::Deserialize)]
struct AddrPart<'a> {
    #[serde(borrow, default)]
    ip: Text<'a>,
    #[serde(default)]
    port: Option<u64>,
}

#[derive(serde::Deserialize)]
struct UrlPart<'a> {
    #[serde(borrow, default)]
    domain: Text<'a>,
    #[serde(borrow, default)]
    path: Text<'a>,
    #[serde(borrow, default)]
    original: Text<'a>,
    #[serde(borrow, default)]
    query: Text<'a>,
}

#[derive(serde::Deserialize)]
struct HttpPart<'a> {
    #[serde(borrow, default, deserialize_with = "object")]
    request: Option<MessagePart<'a>>,
    #[serde(borrow, default, deserialize_with = "object")]
    response: Option<MessagePart<'a>>,
}

#[derive(serde::Deserialize)]
struct MessagePart<'a> {
    #[serde(borrow, default)]
    method: Text<'a>,
    #[serde(default)]
    status_code: Field<u64>,
    #[serde(borrow, default, deserialize_with = "header_list")]
    headers: HeaderList<'a>,
    #[serde(borrow, default)]
    mime_type: Text<'a>,
    #[serde(borrow, default, deserialize_with = "object")]
    body: Option<BodyPart<'a>>,
}

#[derive(serde::Deserialize)]
struct BodyPart<'a> {
    #[serde(borrow, default)]
    content: Text<'a>,
    #[serde(default)]
    bytes: Option<u64>,
}

#[derive(serde::Deserialize)]
struct RpcPart {
    #[serde(default, deserialize_with = "object")]
    grpc: Option<GrpcPart>,
}

#[derive(serde::Deserialize)]
struct GrpcPart {
    #[serde(default)]
    status_code: Option<u64>,
}

#[derive(serde::Deserialize)]
struct ObserverPart<'a> {
    #[serde(borrow, default)]
    name: Text<'a>,
}

#[derive(serde::Deserialize)]
struct ApitapPart<'a> {
    #[serde(borrow, default)]
    schema_version: Text<'a>,
    #[serde(default)]
    ts_ns: Field<i64>,
    #[serde(default)]
    findings: Field<Value>,
    #[serde(default, deserialize_with = "object")]
    body: Option<TruncatedPart>,
}

#[derive(serde::Deserialize)]
struct TruncatedPart {
    #[serde(default, deserialize_with = "object")]
    request: Option<Truncated>,
    #[serde(default, deserialize_with = "object")]
    response: Option<Truncated>,
}

#[derive(serde::Deserialize)]
struct Truncated {
    #[serde(default)]
    truncated: Option<bool>,
}

/// A part that must be a JSON object.
struct Object<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<T, M::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
            .map(Object)
    }
}

/// An optional part that must be a JSON object when present (`null`: none).
fn object<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Ok(<Option<Object<T>> as serde::Deserialize>::deserialize(d)?.map(|o| o.0))
}

/// Headers in their order; `null` is none. A repeated name, or more than
/// [`MAX_FAST_HEADERS`], is an error (a `Value` keeps only the last of a repeated name,
/// so such an event goes that way).
fn header_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<HeaderList<'de>, D::Error> {
    struct Visit;
    impl<'de> serde::de::Visitor<'de> for Visit {
        type Value = HeaderList<'de>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of strings, or null")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_map<M: serde::de::MapAccess<'de>>(
            self,
            mut map: M,
        ) -> Result<Self::Value, M::Error> {
            let mut out: Self::Value = Vec::new();
            while let Some((name, value)) = map.next_entry::<Borrowed<'de>, Borrowed<'de>>()? {
                if out.len() >= MAX_FAST_HEADERS || out.iter().any(|(n, _)| n.0 == name.0) {
                    return Err(serde::de::Error::custom("repeated or too many headers"));
                }
                out.push((name, value));
            }
            Ok(out)
        }
    }
    d.deserialize_any(Visit)
}

/// A string borrowed from the input where it has no escapes (serde borrows a bare
/// `Cow<str>` field only, not one inside an `Option`).
struct Borrowed<'a>(Cow<'a, str>);

impl std::ops::Deref for Borrowed<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Borrowed<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct Inner<'a>(#[serde(borrow)] Cow<'a, str>);
        Ok(Borrowed(Inner::deserialize(d)?.0))
    }
}

impl EventDoc<'_> {
    /// The record, when the event is a well-formed transaction; `None` for anything the
    /// `Value` path should judge.
    fn record(self) -> Option<TxRecord> {
        let apitap = self.apitap?;
        if apitap.schema_version.as_deref() != Some(apitap_core::output::SCHEMA_VERSION) {
            return None;
        }
        let event = self.event?;
        let Field::Set(Object(http)) = self.http else {
            return None;
        };
        if event.kind.as_deref() != Some("event") {
            return None;
        }
        let ts_ns = match apitap.ts_ns {
            Field::Set(ts) => ts,
            Field::Absent => rfc3339_ns(self.timestamp.as_deref()?)?,
            Field::Null => return None,
        };
        let findings = match apitap.findings {
            Field::Absent => None,
            Field::Set(f) => Some(Box::new(EdgeFindings::from_json(&f)?)),
            Field::Null => return None,
        };
        let addr = |a: Option<AddrPart<'_>>| -> Option<SocketAddr> {
            let a = a?;
            let ip: IpAddr = a.ip?.parse().ok()?;
            Some(SocketAddr::new(ip, u16::try_from(a.port?).ok()?))
        };
        let (request, response) = (http.request, http.response);
        let status = match response.as_ref().map(|r| &r.status_code) {
            None | Some(Field::Absent) => None,
            Some(Field::Set(s)) => Some(u16::try_from(*s).ok()?),
            Some(Field::Null) => return None,
        };
        let headers = |m: Option<&MessagePart<'_>>| -> Headers {
            m.map(|m| m.headers.iter().map(|(n, v)| (&**n, &**v)).collect())
                .unwrap_or_default()
        };
        let request_headers = headers(request.as_ref());
        let response_headers = headers(response.as_ref());
        let content_type = |h: &Headers, m: Option<&MessagePart<'_>>| {
            h.get("content-type")
                .or_else(|| m?.mime_type.as_deref())
                .map(str::to_string)
        };
        let body_bytes =
            |m: Option<&MessagePart<'_>>| m.and_then(|m| m.body.as_ref()?.bytes).unwrap_or(0);
        // With findings, nothing reads the bodies: they are not kept.
        let body = |m: Option<&MessagePart<'_>>| {
            m.filter(|_| findings.is_none())
                .and_then(|m| m.body.as_ref()?.content.as_deref())
                .map(|s| s.as_bytes().to_vec())
        };
        let cut = |t: Option<&Truncated>| t.and_then(|t| t.truncated).unwrap_or(false);
        let truncated = apitap.body.as_ref();
        let url = self.url;
        let text = |s: &Text<'_>| s.as_deref().map(str::to_string);
        let event_id = event.id.filter(|id| id.len() <= MAX_EVENT_ID_BYTES)?;
        Some(TxRecord {
            ts_ns,
            event_id: event_id.to_string(),
            client: addr(self.source)?,
            server: addr(self.destination)?,
            host: url
                .as_ref()
                .and_then(|u| u.domain.as_deref())
                .map(|h| crate::record::bounded_host(h.to_ascii_lowercase())),
            method: request
                .as_ref()
                .and_then(|r| r.method.as_deref())
                .unwrap_or_default()
                .to_string(),
            path: url
                .as_ref()
                .and_then(|u| u.path.as_deref().or(u.original.as_deref()))
                .unwrap_or_default()
                .to_string(),
            query: url.as_ref().and_then(|u| text(&u.query)),
            status,
            grpc_status: self
                .rpc
                .and_then(|r| r.grpc?.status_code)
                .and_then(|s| u32::try_from(s).ok()),
            request_content_type: content_type(&request_headers, request.as_ref()),
            response_content_type: content_type(&response_headers, response.as_ref()),
            request_body: body(request.as_ref()),
            response_body: body(response.as_ref()),
            request_body_cut: cut(truncated.and_then(|t| t.request.as_ref())),
            response_body_cut: cut(truncated.and_then(|t| t.response.as_ref())),
            request_body_bytes: body_bytes(request.as_ref()),
            response_body_bytes: body_bytes(response.as_ref()),
            duration_ns: event.duration,
            auth_jwt: false,
            request_headers,
            response_headers,
            findings,
            scanned: Default::default(),
            sensor: self
                .observer
                .and_then(|o| o.name)
                .filter(|s| !s.is_empty())
                .map(|s| crate::record::cut_to(s.0.into_owned(), crate::record::MAX_SENSOR_BYTES)),
        })
    }
}

/// Longest `event.id` taken (a sensor's are about 20 bytes; an id is copied into every
/// alert that cites the event).
const MAX_EVENT_ID_BYTES: usize = 128;

/// Unix nanoseconds of an RFC 3339 time.
fn rfc3339_ns(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos()).ok()
}

/// A record waiting for its place in the merged order: by packet time, then flow id, then
/// its ordinal in the flow (both from `event.id`, `<flow_id>-<ordinal>`), so the order
/// does not depend on how the sources' lines interleave.
struct Pending {
    rec: TxRecord,
    /// Bytes of the line it came from (counted against `max_buffered_bytes`).
    bytes: usize,
}

impl Pending {
    fn key(&self) -> (i64, &str, u32) {
        let id = self.rec.event_id.as_str();
        let (flow, ordinal) = id.rsplit_once('-').unwrap_or((id, ""));
        (self.rec.ts_ns, flow, ordinal.parse().unwrap_or(0))
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// Bounds of an [`EventMerge`].
#[derive(Clone, Copy, Debug)]
pub struct MergeBounds {
    /// Packet time one source may trail the others and still be merged in order.
    pub allowed_lateness_ns: i64,
    /// Records held for ordering at most.
    pub max_buffered: usize,
    /// Bytes (of the lines the records came from) held for ordering at most.
    pub max_buffered_bytes: usize,
}

/// Merges the records of several sources (sensors, files, partitions) into packet-time
/// order. Each source has a watermark, the latest time it has given; a record is released
/// once every open source's watermark is `allowed_lateness_ns` past it. A source that
/// trails the others by more than that gives late records (counted, released at once).
/// A record whose `event.id` was seen within the window (a file given twice, a message
/// delivered again) is dropped and counted.
pub struct EventMerge {
    heap: BinaryHeap<Reverse<Pending>>,
    buffered_bytes: usize,
    /// Per source: its watermark and whether it is still open.
    sources: Vec<(i64, bool)>,
    bounds: MergeBounds,
    /// Time of the last record released.
    released_ns: Option<i64>,
    /// Event ids buffered or released within the window, with their times.
    seen: HashMap<String, i64>,
}

impl EventMerge {
    /// A merge of `sources` sources.
    pub fn new(sources: usize, bounds: MergeBounds) -> EventMerge {
        EventMerge {
            heap: BinaryHeap::new(),
            buffered_bytes: 0,
            sources: vec![(i64::MIN, true); sources],
            bounds,
            released_ns: None,
            seen: HashMap::default(),
        }
    }

    /// The open source to read next: the one furthest behind (`None` when all closed).
    pub fn next_source(&self) -> Option<usize> {
        self.sources
            .iter()
            .enumerate()
            .filter(|(_, (_, open))| *open)
            .min_by_key(|(i, (wm, _))| (*wm, *i))
            .map(|(i, _)| i)
    }

    /// Adds a record of `source` that came from a line of `bytes` bytes; appends the
    /// records this releases to `out`.
    pub fn push(
        &mut self,
        source: usize,
        rec: TxRecord,
        bytes: usize,
        stats: &mut EventInputStats,
        out: &mut Vec<TxRecord>,
    ) {
        if self.seen.contains_key(&rec.event_id) {
            stats.duplicates += 1;
            return;
        }
        if self.seen.len() > 2 * self.heap.len() + 4096 {
            let horizon = self.horizon().unwrap_or(i64::MAX);
            self.seen.retain(|_, ts| *ts >= horizon);
        }
        self.seen.insert(rec.event_id.clone(), rec.ts_ns);
        if let Some((wm, _)) = self.sources.get_mut(source) {
            *wm = (*wm).max(rec.ts_ns);
        }
        self.buffered_bytes += bytes;
        self.heap.push(Reverse(Pending { rec, bytes }));
        self.release(stats, out);
        while self.heap.len() > self.bounds.max_buffered
            || self.buffered_bytes > self.bounds.max_buffered_bytes
        {
            stats.forced_early += 1;
            self.pop(stats, out);
        }
        stats.peak_buffered.raise(self.heap.len() as u64);
    }

    /// `source` has ended; appends the records this releases to `out`.
    pub fn close(&mut self, source: usize, stats: &mut EventInputStats, out: &mut Vec<TxRecord>) {
        if let Some((_, open)) = self.sources.get_mut(source) {
            *open = false;
        }
        self.release(stats, out);
    }

    /// `source` gives records again after [`EventMerge::close`] (a Kafka partition that
    /// was idle): it holds back the others from its next record on.
    pub fn reopen(&mut self, source: usize) {
        if let Some((_, open)) = self.sources.get_mut(source) {
            *open = true;
        }
    }

    /// Whether `source` is open.
    pub fn is_open(&self, source: usize) -> bool {
        self.sources.get(source).is_some_and(|(_, open)| *open)
    }

    /// The time up to which records may be released (`None`: every source is closed).
    fn horizon(&self) -> Option<i64> {
        self.sources
            .iter()
            .filter(|(_, open)| *open)
            .map(|(wm, _)| *wm)
            .min()
            .map(|wm| wm.saturating_sub(self.bounds.allowed_lateness_ns))
    }

    fn release(&mut self, stats: &mut EventInputStats, out: &mut Vec<TxRecord>) {
        let horizon = self.horizon();
        while let Some(Reverse(top)) = self.heap.peek() {
            if horizon.is_some_and(|h| top.rec.ts_ns > h) {
                break;
            }
            self.pop(stats, out);
        }
    }

    fn pop(&mut self, stats: &mut EventInputStats, out: &mut Vec<TxRecord>) {
        if let Some(Reverse(Pending { rec, bytes })) = self.heap.pop() {
            self.buffered_bytes -= bytes;
            match self.released_ns {
                Some(last) if rec.ts_ns < last => stats.late += 1,
                _ => self.released_ns = Some(rec.ts_ns),
            }
            out.push(rec);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;

    fn rec(ts_ns: i64, id: &str) -> TxRecord {
        TxRecord {
            ts_ns,
            event_id: id.into(),
            ..TxRecord::default()
        }
    }

    fn ids(out: &[TxRecord]) -> Vec<&str> {
        out.iter().map(|r| r.event_id.as_str()).collect()
    }

    #[test]
    fn two_sources_merge_in_time_order_whatever_their_interleaving() {
        let a = [(10, "a-0"), (30, "a-1"), (50, "a-2")];
        let b = [(20, "b-0"), (30, "b-1"), (40, "b-2")];
        let mut orders = Vec::new();
        // Every interleaving of the two streams that keeps each stream's own order.
        for mask in 0u32..64 {
            if mask.count_ones() != 3 {
                continue;
            }
            let mut m = EventMerge::new(2, bounds(0, 100));
            let (mut s, mut out) = (EventInputStats::default(), Vec::new());
            let (mut ia, mut ib) = (0, 0);
            for bit in 0..6 {
                if mask & (1 << bit) != 0 {
                    let (t, id) = a[ia];
                    ia += 1;
                    m.push(0, rec(t, id), 1, &mut s, &mut out);
                } else {
                    let (t, id) = b[ib];
                    ib += 1;
                    m.push(1, rec(t, id), 1, &mut s, &mut out);
                }
            }
            m.close(0, &mut s, &mut out);
            m.close(1, &mut s, &mut out);
            assert_eq!(s.late, 0);
            orders.push(ids(&out).join(","));
        }
        assert_eq!(orders.len(), 20);
        assert!(
            orders.iter().all(|o| o == "a-0,b-0,a-1,b-1,b-2,a-2"),
            "{orders:?}"
        );
    }

    #[test]
    fn a_closed_source_reopens_and_holds_the_others_back_again() {
        let mut m = EventMerge::new(2, bounds(0, 100));
        let (mut s, mut out) = (EventInputStats::default(), Vec::new());
        m.push(0, rec(10, "a-0"), 1, &mut s, &mut out);
        assert!(out.is_empty(), "source 1 has said nothing yet");
        m.close(1, &mut s, &mut out);
        assert_eq!(ids(&out), ["a-0"]);
        assert!(!m.is_open(1));
        m.reopen(1);
        assert!(m.is_open(1));
        out.clear();
        m.push(1, rec(20, "b-0"), 1, &mut s, &mut out);
        m.push(0, rec(30, "a-1"), 1, &mut s, &mut out);
        assert_eq!(ids(&out), ["b-0"], "a-1 waits for source 1 again");
        m.push(1, rec(5, "b-1"), 1, &mut s, &mut out);
        assert_eq!(s.late, 1, "behind what was released: late, at once");
    }

    fn bounds(lateness: i64, max: usize) -> MergeBounds {
        MergeBounds {
            allowed_lateness_ns: lateness,
            max_buffered: max,
            max_buffered_bytes: 1000,
        }
    }

    #[test]
    fn a_source_that_trails_by_more_than_the_lateness_gives_late_records() {
        let mut m = EventMerge::new(2, bounds(5, 100));
        let (mut s, mut out) = (EventInputStats::default(), Vec::new());
        m.push(0, rec(100, "a-0"), 1, &mut s, &mut out);
        m.push(1, rec(200, "b-0"), 1, &mut s, &mut out);
        assert!(out.is_empty(), "a-0 is not 5 ns behind both watermarks yet");
        m.push(0, rec(300, "a-1"), 1, &mut s, &mut out);
        assert_eq!(ids(&out), ["a-0"]);
        m.push(1, rec(400, "b-1"), 1, &mut s, &mut out);
        assert_eq!(ids(&out), ["a-0", "b-0"]);
        m.push(1, rec(150, "b-2"), 1, &mut s, &mut out);
        assert_eq!(s.late, 1, "150 after 200 was released");
        assert_eq!(ids(&out), ["a-0", "b-0", "b-2"]);
        m.close(1, &mut s, &mut out);
        m.close(0, &mut s, &mut out);
        assert_eq!(ids(&out), ["a-0", "b-0", "b-2", "a-1", "b-1"]);
    }

    #[test]
    fn a_full_buffer_releases_early_and_counts_it() {
        let mut m = EventMerge::new(2, bounds(0, 2));
        let (mut s, mut out) = (EventInputStats::default(), Vec::new());
        for (t, id) in [(10, "a-0"), (20, "a-1"), (30, "a-2")] {
            m.push(0, rec(t, id), 1, &mut s, &mut out);
        }
        assert_eq!((s.forced_early, out.len()), (1, 1));
        assert_eq!(s.peak_buffered, Peak(2));
        // The byte bound acts alike.
        let mut m = EventMerge::new(2, bounds(0, 100));
        let mut s = EventInputStats::default();
        m.push(0, rec(10, "a-0"), 600, &mut s, &mut out);
        m.push(0, rec(20, "a-1"), 600, &mut s, &mut out);
        assert_eq!(s.forced_early, 1);
    }

    #[test]
    fn equal_times_go_by_flow_then_numeric_ordinal_and_duplicates_are_dropped() {
        let mut m = EventMerge::new(1, bounds(5, 100));
        let (mut s, mut out) = (EventInputStats::default(), Vec::new());
        for id in ["Fb-10", "Fb-2", "Fa-1", "Fb-2"] {
            m.push(0, rec(7, id), 1, &mut s, &mut out);
        }
        m.close(0, &mut s, &mut out);
        assert_eq!(ids(&out), ["Fa-1", "Fb-2", "Fb-10"]);
        assert_eq!(s.duplicates, 1);
    }

    #[test]
    fn bad_lines_are_told_apart() {
        assert_eq!(parse_event(b"not json").unwrap_err(), Skip::NotJson);
        assert_eq!(parse_event(b"[1]").unwrap_err(), Skip::NotJson);
        assert_eq!(
            parse_event(br#"{"apitap":{"schema_version":"99"}}"#).unwrap_err(),
            Skip::SchemaVersion
        );
        assert_eq!(
            parse_event(br#"{"event":{"kind":"alert"},"apitap":{"schema_version":"1"}}"#)
                .unwrap_err(),
            Skip::NotTransaction
        );
        let tx = |extra: &str| {
            format!(
                r#"{{"@timestamp":"2026-01-01T00:00:00.000001Z","event":{{"kind":"event","id":"F1-0"}},"source":{{"ip":"10.0.0.1","port":5}},"destination":{{"ip":"10.0.0.2","port":80}},"http":{{"request":{{"method":"GET"}}}},"url":{{"path":"/a"}},"apitap":{{"schema_version":"1"{extra}}}}}"#
            )
        };
        let r = parse_event(tx("").as_bytes()).unwrap();
        assert_eq!(r.ts_ns, 1_767_225_600_000_001_000);
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/a"));
        assert_eq!(r.findings, None);
        let r = parse_event(
            tx(r#","ts_ns":7,"findings":{"request_sensitive":{"email":2},"auth_schemes":["bearer_jwt"]}"#)
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(r.ts_ns, 7);
        assert_eq!(r.findings.as_ref().unwrap().auth_schemes, ["bearer_jwt"]);
        assert_eq!(
            r.findings
                .unwrap()
                .request_sensitive
                .into_iter()
                .collect::<Vec<_>>(),
            [(crate::SensitiveKind::Email, 2)]
        );
        for (extra, field) in [
            (r#","ts_ns":"7""#, "apitap.ts_ns"),
            (
                r#","findings":{"request_sensitive":{"gold":1}}"#,
                "apitap.findings",
            ),
            (
                r#","findings":{"auth_schemes":["magic"]}"#,
                "apitap.findings",
            ),
            (
                r#","findings":{"url_secrets":{"a b":1}}"#,
                "apitap.findings",
            ),
        ] {
            assert_eq!(
                parse_event(tx(extra).as_bytes()).unwrap_err(),
                Skip::Invalid(field)
            );
        }
        let no_port = tx("").replace(r#","port":5"#, "");
        assert_eq!(
            parse_event(no_port.as_bytes()).unwrap_err(),
            Skip::Invalid("source")
        );
        // Ids go into every alert that cites the event: bounded.
        let long_id = tx("").replace("F1-0", &"F".repeat(MAX_EVENT_ID_BYTES + 1));
        assert_eq!(
            parse_event(long_id.as_bytes()).unwrap_err(),
            Skip::Invalid("event.id")
        );
        let host = |n: usize| {
            tx("").replace(
                r#""url":{"#,
                &format!(r#""url":{{"domain":"{}","#, "h".repeat(n)),
            )
        };
        // A long host is cut, as a sensor cuts it, not a reason to drop the transaction.
        let max = crate::record::MAX_HOST_BYTES;
        let r = parse_event(host(max + 100).as_bytes()).unwrap();
        assert_eq!(r.host.unwrap().len(), max);
        // The sensor is the event's observer, cut like a host; an empty name is none.
        assert_eq!(parse_event(tx("").as_bytes()).unwrap().sensor, None);
        let observer = |name: &str| {
            tx("").replace(
                r#""url":{"#,
                &format!(r#""observer":{{"name":"{name}"}},"url":{{"#),
            )
        };
        let r = parse_event(observer("edge-1").as_bytes()).unwrap();
        assert_eq!(r.sensor.as_deref(), Some("edge-1"));
        assert_eq!(parse_event(observer("").as_bytes()).unwrap().sensor, None);
        let long = "é".repeat(crate::record::MAX_SENSOR_BYTES);
        let r = parse_event(observer(&long).as_bytes()).unwrap();
        let cut = r.sensor.unwrap();
        // "é" is two bytes: the cut falls on a character boundary.
        assert_eq!(cut.len(), crate::record::MAX_SENSOR_BYTES);
    }

    /// An edge sensor's transaction event, as `apitap replay` writes it.
    const EDGE_EVENT: &str = r#"{"@timestamp":"2024-01-01T00:00:00.000064Z","event":{"kind":"event","category":["network","web"],"duration":18000,"id":"F39e45fa0d82b4b09-0"},"source":{"ip":"10.1.0.28","port":21121},"destination":{"ip":"10.0.0.1","port":8080},"url":{"original":"/api/v1/users/7890?x=1","path":"/api/v1/users/7890","query":"x=1","domain":"API.example.com"},"http":{"version":"1.1","request":{"method":"GET","headers":{"host":"api.example.com","authorization":"[REDACTED]","x-q":"a\"b"},"bytes":158,"body":{"bytes":0}},"response":{"status_code":401,"headers":{"content-type":"application/json"},"bytes":353,"body":{"bytes":243,"content":"{}"},"mime_type":"application/json"}},"rpc":{"grpc":{"status_code":16}},"observer":{"name":"edge-1"},"apitap":{"endpoint":"GET /api/v1/users/{id}","schema_version":"1","ts_ns":1704067200000064000,"body":{"response":{"truncated":true}},"findings":{"auth_schemes":["bearer"]}}}"#;

    #[test]
    fn a_well_formed_edge_event_takes_the_borrowed_path_and_reads_alike() {
        let doc: EventDoc<'_> = serde_json::from_str(EDGE_EVENT).unwrap();
        let fast = doc.record().expect("the borrowed path takes it");
        assert_eq!(Ok(fast.clone()), parse_event_value(EDGE_EVENT.as_bytes()));
        assert_eq!(fast.host.as_deref(), Some("api.example.com"));
        assert_eq!(fast.request_headers.get("x-q"), Some("a\"b"));
        assert_eq!(
            (fast.status, fast.grpc_status, fast.response_body_cut),
            (Some(401), Some(16), true)
        );
        assert_eq!(fast.sensor.as_deref(), Some("edge-1"));
    }

    #[test]
    fn odd_shapes_go_the_value_way_and_read_alike() {
        let both = |line: &str| {
            let value = parse_event_value(line.as_bytes());
            assert_eq!(parse_event(line.as_bytes()), value, "{line}");
            value
        };
        // A part given as an array (serde would fill a struct from it).
        let r = both(&EDGE_EVENT.replace(r#"{"name":"edge-1"}"#, r#"["edge-1"]"#)).unwrap();
        assert_eq!(r.sensor, None);
        assert_eq!(
            both(
                &EDGE_EVENT
                    .replace(r#"{"kind":"event","#, r#"["event","#)
                    .replace(r#""F39e45fa0d82b4b09-0"},"#, r#""F39e45fa0d82b4b09-0"],"#)
            ),
            Err(Skip::NotJson)
        );
        assert_eq!(both(&format!("[{EDGE_EVENT}]")), Err(Skip::NotJson));
        // Many headers.
        let many: String = (0..100).map(|i| format!(r#""x-h{i}":"v","#)).collect();
        let r = both(&EDGE_EVENT.replace(
            r#""headers":{"host""#,
            &format!(r#""headers":{{{many}"host""#),
        ))
        .unwrap();
        assert_eq!(r.request_headers.get("x-h99"), Some("v"));
        // A repeated header: the last value, as a Value keeps it.
        let r = both(&EDGE_EVENT.replace(r#""x-q":"#, r#""host":"b","x-q":"#)).unwrap();
        assert_eq!(r.request_headers.get("host"), Some("b"));
        // No findings and no ts_ns (a local sensor's event): time from @timestamp, bodies
        // kept.
        let local = EDGE_EVENT
            .replace(r#","ts_ns":1704067200000064000"#, "")
            .replace(r#","findings":{"auth_schemes":["bearer"]}"#, "");
        let doc: Object<EventDoc<'_>> = serde_json::from_str(&local).unwrap();
        let fast = doc.0.record().expect("the borrowed path takes it");
        assert_eq!(Ok(fast.clone()), both(&local));
        assert_eq!(fast.ts_ns, 1_704_067_200_000_064_000);
        assert_eq!(fast.response_body.as_deref(), Some(&b"{}"[..]));
        // Invalid UTF-8 in a field neither path reads is still not JSON.
        let mut bad = EDGE_EVENT
            .replace(r#""version":"1.1""#, r#""version":"1.?""#)
            .into_bytes();
        let at = bad.windows(2).position(|w| w == b".?").unwrap() + 1;
        bad[at] = 0xff;
        assert_eq!(parse_event(&bad), Err(Skip::NotJson));
    }

    /// Values a field may be given instead of its own.
    fn odd_value() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "null",
            "0",
            "-1",
            "1.5",
            "70000",
            "18446744073709551615",
            "\"\"",
            "\"x\"",
            "\"10.0.0.1\"",
            "true",
            "[]",
            "{}",
            "{\"a\":1}",
            "[\"x\"]",
            "[1,2]",
            "[\"event\",\"F1-0\",5]",
            "{\"name\":\"n\",\"ip\":\"10.0.0.9\",\"port\":1}",
        ])
    }

    proptest! {
        /// Whatever a field holds (null, another type, out of range), missing or given
        /// twice, the borrowed path and the `Value` path agree on the record or on why it
        /// is skipped.
        #[test]
        fn both_paths_agree_on_any_field(
            at in 0usize..400,
            odd in odd_value(),
            how in 0u8..4,
        ) {
            // At a value (after a `":`): the odd value instead, the key given twice with
            // the odd value first or last, or the pair left out.
            let starts: Vec<usize> = EDGE_EVENT.match_indices("\":").map(|(i, _)| i + 2).collect();
            let start = starts[at % starts.len()];
            let rest = &EDGE_EVENT[start..];
            let mut depth = 0i32;
            let mut in_str = false;
            let mut escaped = false;
            let mut end = rest.len();
            for (i, c) in rest.char_indices() {
                if in_str {
                    match (escaped, c) {
                        (true, _) => escaped = false,
                        (false, '\\') => escaped = true,
                        (false, '"') => in_str = false,
                        _ => {}
                    }
                    continue;
                }
                match c {
                    '"' => in_str = true,
                    '{' | '[' => depth += 1,
                    '}' | ']' if depth == 0 => { end = i; break; }
                    '}' | ']' => depth -= 1,
                    ',' if depth == 0 => { end = i; break; }
                    _ => {}
                }
            }
            let key_start = EDGE_EVENT[..start - 2].rfind('"').unwrap();
            let key = &EDGE_EVENT[key_start..start - 1];
            let value = &rest[..end];
            let line = match how {
                0 => format!("{}{}{}", &EDGE_EVENT[..start], odd, &rest[end..]),
                // The pair left out (with the comma before it, or after it when first).
                3 => {
                    let before = &EDGE_EVENT[..key_start];
                    match before.strip_suffix(',') {
                        Some(b) => format!("{b}{}", &rest[end..]),
                        None => format!("{before}{}", rest[end..].strip_prefix(',').unwrap_or(&rest[end..])),
                    }
                }
                1 => format!("{}:{odd},{}{}", &EDGE_EVENT[..start - 1], key, &EDGE_EVENT[start - 1..]),
                _ => format!("{}{value},{key}:{odd}{}", &EDGE_EVENT[..start], &rest[end..]),
            };
            prop_assert_eq!(parse_event(line.as_bytes()), parse_event_value(line.as_bytes()), "{}", line);
        }
    }

    /// The findings object reads back as written.
    #[test]
    fn findings_round_trip() {
        let f = EdgeFindings {
            request_sensitive: [(crate::SensitiveKind::CardNumber, 1)].into(),
            response_sensitive: [(crate::SensitiveKind::Ssn, 3)].into(),
            url_secrets: [("param:token".to_string(), 2), ("jwt".to_string(), 1)].into(),
            auth_schemes: vec!["basic", "bearer_jwt"],
        };
        assert_eq!(EdgeFindings::from_json(&f.to_json()), Some(f));
        let empty = EdgeFindings::default();
        assert_eq!(empty.to_json().to_string(), "{}");
        assert_eq!(EdgeFindings::from_json(&empty.to_json()), Some(empty));
    }
}
