//! The TLS connection event: ECS `tls.*` fields, one event per TLS connection (or TLS
//! layer inside a tunnel), written through serde (one event per connection, not a hot
//! path). The `tls` object alone is also what a transaction decrypted from the
//! connection carries.

use crate::view::{AnomalyList, EndpointView, NetworkView, ObserverView, Rfc3339, TunnelView};
use crate::{event_id, EncoderConfig, FlowContext, SCHEMA_VERSION};
use apitap_core::tls::version_name;
use apitap_core::{Certificate, Endpoint, Timestamp, TlsConnection, TlsHandshake};
use serde::Serialize;
use std::borrow::Cow;
use std::net::IpAddr;

#[derive(Serialize)]
pub(crate) struct TlsEventView<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: Rfc3339,
    event: TlsEventMeta,
    source: BytesEndpoint,
    destination: BytesEndpoint,
    network: crate::view::NetworkView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observer: Option<ObserverView<'a>>,
    tls: TlsView<'a>,
    apitap: ApitapTlsView<'a>,
}

#[derive(Serialize)]
struct TlsEventMeta {
    kind: &'static str,
    category: [&'static str; 1],
    #[serde(rename = "type")]
    kind_type: [&'static str; 2],
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'static str>,
    duration: u64,
    id: String,
}

#[derive(Serialize)]
struct BytesEndpoint {
    ip: IpAddr,
    port: u16,
    bytes: u64,
}

impl BytesEndpoint {
    fn new(e: Endpoint, bytes: u64) -> BytesEndpoint {
        let EndpointView { ip, port } = e.into();
        BytesEndpoint { ip, port, bytes }
    }
}

/// ECS `tls`.
#[derive(Serialize)]
pub(crate) struct TlsView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cipher: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    established: Option<bool>,
    resumed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_protocol: Option<&'a str>,
    client: TlsClientView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<TlsServerView<'a>>,
}

#[derive(Serialize)]
struct TlsClientView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    server_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    supported_ciphers: Option<&'a [Cow<'static, str>]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ja3: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ja4: Option<&'a str>,
}

#[derive(Serialize)]
struct TlsServerView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ja3s: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash: Option<HashView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    x509: Option<X509View<'a>>,
}

#[derive(Serialize)]
struct HashView<'a> {
    sha256: &'a str,
}

#[derive(Serialize)]
struct X509View<'a> {
    subject: NameView<'a>,
    issuer: NameView<'a>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    alternative_names: &'a [String],
    not_before: Rfc3339,
    not_after: Rfc3339,
    serial_number: &'a str,
}

#[derive(Serialize)]
struct NameView<'a> {
    common_name: &'a [String],
}

/// `apitap.*` of a TLS event.
#[derive(Serialize)]
struct ApitapTlsView<'a> {
    flow_id: &'a str,
    transaction: u32,
    tls: ApitapTlsFacts<'a>,
    anomalies: AnomalyList,
    #[serde(skip_serializing_if = "Option::is_none")]
    tunnel: Option<TunnelView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sensor: Option<&'a str>,
    schema_version: &'static str,
}

/// What ECS has no field for.
#[derive(Serialize)]
struct ApitapTlsFacts<'a> {
    midstream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_version: Option<&'static str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    alpn_offered: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    weak_cipher: Option<&'static str>,
    #[serde(skip_serializing_if = "is_zero")]
    certificate_chain_length: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    alert: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decryption: Option<&'static str>,
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

fn seconds(s: i64) -> Rfc3339 {
    Rfc3339(Timestamp::from_parts(s, 0))
}

impl<'a> TlsView<'a> {
    /// The `tls` object of a handshake. `established` is given on the connection event,
    /// which also lists the client's cipher suites and the certificate's fields; a
    /// transaction decrypted from the connection carries the rest (the certificate by its
    /// hash).
    pub(crate) fn new(hs: &'a TlsHandshake, established: Option<bool>) -> TlsView<'a> {
        let names = hs.version.and_then(version_name);
        let cert: Option<&Certificate> = hs.certificate.as_deref();
        let server = (hs.ja3s.is_some() || cert.is_some()).then(|| TlsServerView {
            ja3s: hs.ja3s.as_deref(),
            hash: cert.map(|c| HashView { sha256: &c.sha256 }),
            x509: cert.filter(|_| established.is_some()).map(|c| X509View {
                subject: NameView {
                    common_name: &c.subject_common_name,
                },
                issuer: NameView {
                    common_name: &c.issuer_common_name,
                },
                alternative_names: &c.alternative_names,
                not_before: seconds(c.not_before),
                not_after: seconds(c.not_after),
                serial_number: &c.serial_number,
            }),
        });
        TlsView {
            version: names.map(|n| n.1),
            version_protocol: names.map(|n| n.0),
            cipher: hs.cipher_name.as_deref(),
            established,
            resumed: hs.resumed,
            next_protocol: hs.next_protocol.as_deref(),
            client: TlsClientView {
                server_name: hs.server_name.as_deref(),
                supported_ciphers: (established.is_some() && !hs.supported_ciphers.is_empty())
                    .then_some(&hs.supported_ciphers[..]),
                ja3: hs.ja3.as_deref(),
                ja4: hs.ja4.as_deref(),
            },
            server,
        }
    }
}

impl<'a> TlsEventView<'a> {
    pub(crate) fn new(
        cfg: &'a EncoderConfig,
        flow: &'a FlowContext,
        c: &'a TlsConnection,
    ) -> TlsEventView<'a> {
        let hs = &*c.handshake;
        let sensor = (!cfg.sensor.is_empty()).then_some(cfg.sensor.as_str());
        // A handshake seen is a success or a failure; a connection joined midway is neither.
        let outcome = match (c.midstream, c.established) {
            (true, _) => None,
            (false, true) => Some("success"),
            (false, false) => Some("failure"),
        };
        TlsEventView {
            timestamp: Rfc3339(c.start.ts),
            event: TlsEventMeta {
                kind: "event",
                category: ["network"],
                kind_type: ["connection", "protocol"],
                outcome,
                duration: c.end.ts.nanos_since(c.start.ts),
                id: event_id(&flow.flow_id, c.key.ordinal),
            },
            source: BytesEndpoint::new(flow.client, c.client_bytes),
            destination: BytesEndpoint::new(flow.server, c.server_bytes),
            network: NetworkView::new(flow, "tls"),
            observer: ObserverView::new(sensor, flow),
            tls: TlsView::new(hs, Some(c.established)),
            apitap: ApitapTlsView {
                flow_id: &flow.flow_id,
                transaction: c.key.ordinal,
                tls: ApitapTlsFacts {
                    midstream: c.midstream,
                    client_version: hs.client_version.and_then(version_name).map(|n| n.1),
                    alpn_offered: &hs.alpn_offered,
                    weak_cipher: hs.weak_cipher,
                    certificate_chain_length: hs.certificate_chain_len,
                    alert: c.alert,
                    decryption: c.decryption.map(|d| d.name()),
                },
                anomalies: AnomalyList(c.anomalies),
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
