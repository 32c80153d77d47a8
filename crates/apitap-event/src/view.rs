//! Borrowed views of one transaction in event field order. serde derive serialises them
//! (the OCSF path and the reference the ECS writer is tested against); nothing is copied
//! that the event can borrow.

use crate::headers::{mime_type, HeadText, HeadersView};
use crate::redact::{redact_query, Redactor};
use crate::{event_id, EncoderConfig, FlowContext, SCHEMA_VERSION};
use apitap_core::endpoint::{endpoint_name, shape_template};
use apitap_core::url::{host_without_port, split_target};
use apitap_core::utf8_lossy as text;
use apitap_core::{Endpoint, Head, HttpRequest, HttpResponse, HttpTransaction, HttpVersion};
use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};
use std::borrow::Cow;
use std::net::IpAddr;

#[derive(Serialize)]
pub(crate) struct EventView<'a> {
    #[serde(rename = "@timestamp")]
    pub(crate) timestamp: Rfc3339,
    pub(crate) event: EventMeta,
    pub(crate) source: EndpointView,
    pub(crate) destination: EndpointView,
    pub(crate) network: NetworkView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) observer: Option<ObserverView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<UrlView<'a>>,
    pub(crate) http: HttpView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user_agent: Option<UserAgentView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rpc: Option<crate::rpc::RpcView<'a>>,
    /// The handshake of the TLS connection the transaction was decrypted from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls: Option<crate::tls::TlsView<'a>>,
    pub(crate) apitap: ApitapView<'a>,
}

pub(crate) struct Rfc3339(pub(crate) apitap_core::Timestamp);

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = String::with_capacity(28);
        self.0.write_rfc3339_micros(&mut buf);
        s.serialize_str(&buf)
    }
}

#[derive(Serialize)]
pub(crate) struct EventMeta {
    pub(crate) kind: &'static str,
    pub(crate) category: [&'static str; 2],
    #[serde(rename = "type")]
    pub(crate) kind_type: [&'static str; 2],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) outcome: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) duration: Option<u64>,
    pub(crate) id: String,
}

#[derive(Serialize)]
pub(crate) struct EndpointView {
    pub(crate) ip: IpAddr,
    pub(crate) port: u16,
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
pub(crate) struct NetworkView<'a> {
    pub(crate) transport: &'static str,
    pub(crate) protocol: &'static str,
    #[serde(rename = "type")]
    pub(crate) ip_type: &'static str,
    pub(crate) community_id: &'a str,
}

impl<'a> NetworkView<'a> {
    /// `network` of an event of `flow` speaking `protocol`.
    pub(crate) fn new(flow: &'a FlowContext, protocol: &'static str) -> NetworkView<'a> {
        NetworkView {
            transport: "tcp",
            protocol,
            ip_type: if flow.client.ip.is_ipv4() {
                "ipv4"
            } else {
                "ipv6"
            },
            community_id: &flow.community_id,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct ObserverView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ingress: Option<IngressView>,
}

impl<'a> ObserverView<'a> {
    /// `observer` of an event of `flow`: the sensor's name and the flow's VLAN, when
    /// there is either.
    pub(crate) fn new(sensor: Option<&'a str>, flow: &FlowContext) -> Option<ObserverView<'a>> {
        (sensor.is_some() || flow.encap.vlan.is_some()).then(|| ObserverView {
            name: sensor,
            ingress: flow.encap.vlan.map(|id| IngressView {
                vlan: VlanView { id: VlanId(id) },
            }),
        })
    }
}

/// `observer.ingress`: where the observer saw the traffic.
#[derive(Serialize)]
pub(crate) struct IngressView {
    pub(crate) vlan: VlanView,
}

/// `observer.ingress.vlan`; ECS makes the id a keyword, so it is written as a string.
#[derive(Serialize)]
pub(crate) struct VlanView {
    pub(crate) id: VlanId,
}

pub(crate) struct VlanId(pub(crate) u16);

impl Serialize for VlanId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(itoa::Buffer::new().format(self.0))
    }
}

/// `apitap.tunnel`: the outermost tunnel the flow arrived in.
#[derive(Serialize)]
pub(crate) struct TunnelView {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<u32>,
}

#[derive(Serialize)]
pub(crate) struct UrlView<'a> {
    pub(crate) original: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) query: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) domain: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) scheme: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
pub(crate) struct HttpView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) request: Option<RequestView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) response: Option<ResponseView<'a>>,
}

#[derive(Serialize)]
pub(crate) struct BodyView {
    pub(crate) bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) content: Option<String>,
}

/// What happened to a captured body (`apitap.body.request` / `.response`).
#[derive(Serialize)]
pub(crate) struct BodyMetaView {
    pub(crate) truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) content_encoding: Option<apitap_core::ContentCodings>,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) redacted_fields: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) binary: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) withheld: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Serialize)]
pub(crate) struct BodiesView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) request: Option<BodyMetaView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) response: Option<BodyMetaView>,
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
pub(crate) struct RequestView<'a> {
    pub(crate) method: Cow<'a, str>,
    pub(crate) headers: HeadersView<'a>,
    pub(crate) bytes: u64,
    pub(crate) body: BodyView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mime_type: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
pub(crate) struct ResponseView<'a> {
    /// Absent when an HTTP/2 `:status` could not be decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status_code: Option<u16>,
    pub(crate) headers: HeadersView<'a>,
    pub(crate) bytes: u64,
    pub(crate) body: BodyView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mime_type: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
pub(crate) struct UserAgentView<'a> {
    pub(crate) original: Cow<'a, str>,
}

#[derive(Serialize)]
pub(crate) struct ApitapView<'a> {
    /// `METHOD /path/{id}` (empty method and path for a lone response).
    pub(crate) endpoint: String,
    pub(crate) flow_id: &'a str,
    pub(crate) transaction: u32,
    pub(crate) complete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) incomplete_reason: Option<&'static str>,
    pub(crate) anomalies: AnomalyList,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) body: Option<BodiesView>,
    /// Response trailer fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) trailers: Option<HeadersView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) http2: Option<crate::rpc::Http2View>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) grpc: Option<crate::rpc::GrpcView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tunnel: Option<TunnelView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sensor: Option<&'a str>,
    pub(crate) schema_version: &'static str,
}

pub(crate) struct AnomalyList(pub(crate) apitap_core::Anomalies);

impl Serialize for AnomalyList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for a in self.0.iter() {
            seq.serialize_element(a.name())?;
        }
        seq.end()
    }
}

impl<'a> EventView<'a> {
    /// The views of `tx` on the flow `flow`.
    pub(crate) fn new(
        cfg: &'a EncoderConfig,
        flow: &'a FlowContext,
        tx: &'a HttpTransaction,
    ) -> Self {
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
        let grpc_status = crate::rpc::grpc_status(tx);
        let outcome = resp.filter(|r| r.status != 0).map(|r| {
            if r.status >= 400 || grpc_status.is_some_and(|s| s != 0) {
                "failure"
            } else {
                "success"
            }
        });
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
        // An HTTP/2 request whose :path could not be decoded has no URL.
        let url = req
            .filter(|r| r.target.len > 0 || r.version != HttpVersion::Http2)
            .map(|r| {
                let target = r.target();
                let (path, query, authority) = split_target(target, r.method());
                let domain = r
                    .authority()
                    .or_else(|| r.head.header("host"))
                    .or(authority)
                    .map(host_without_port)
                    .filter(|h| !h.is_empty())
                    .map(rtext);
                let redacted_query = query.and_then(|q| redact_query(&rtext(q), &cfg.redactor));
                match redacted_query {
                    None => UrlView {
                        original: rtext(target),
                        path: path.map(rtext),
                        query: query.map(rtext),
                        domain,
                        scheme: r.scheme().map(rtext),
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
                            scheme: r.scheme().map(rtext),
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
        let (rpc, grpc) = match crate::rpc::views(tx, req_text, tx.grpc.as_deref()) {
            Some((r, g)) => (Some(r), Some(g)),
            None => (None, None),
        };
        let endpoint = match (req, url.as_ref().and_then(|u| u.path.as_deref())) {
            (Some(r), Some(path)) => endpoint_name(
                &rtext(r.method()),
                &shape_template(path, cfg.typed_placeholders),
            ),
            (Some(r), None) if !r.target().is_empty() => {
                endpoint_name(&rtext(r.method()), &rtext(r.target()))
            }
            (Some(_), None) => String::new(),
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
            network: NetworkView::new(flow, "http"),
            observer: ObserverView::new(sensor, flow),
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
                    status_code: (r.status != 0).then_some(r.status),
                    headers: HeadersView::new(&r.head, t, &cfg.redactor),
                    bytes: r.wire_bytes,
                    body: resp_body,
                    mime_type: mime_type(&r.head, t),
                }),
            },
            user_agent,
            rpc,
            tls: tx
                .tls
                .as_deref()
                .map(|hs| crate::tls::TlsView::new(hs, None)),
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
                trailers: resp.filter(|r| !r.trailers.headers.is_empty()).map(|r| {
                    HeadersView::new(&r.trailers, HeadText::new(&r.trailers), &cfg.redactor)
                }),
                http2: tx.http2.as_deref().map(crate::rpc::Http2View::new),
                grpc,
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
