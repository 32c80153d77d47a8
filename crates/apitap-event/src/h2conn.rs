//! The HTTP/2 connection event: one per HTTP/2 connection (or layer) when it ends, with
//! what its frames and streams were; the evidence HTTP/2 attack indicators cite (floods,
//! rapid reset, HPACK bombs, stream abuse) when no single stream shows them. Written
//! through serde (one event per connection, not a hot path).

use crate::rpc::ErrorCode;
use crate::view::{AnomalyList, EndpointView, NetworkView, ObserverView, Rfc3339, TunnelView};
use crate::{event_id, EncoderConfig, FlowContext, SCHEMA_VERSION};
use apitap_core::{Direction, FrameCounts, Http2Connection};
use serde::Serialize;

#[derive(Serialize)]
pub(crate) struct Http2EventView<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: Rfc3339,
    event: Meta,
    source: EndpointView,
    destination: EndpointView,
    network: NetworkView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observer: Option<ObserverView<'a>>,
    apitap: ApitapView<'a>,
}

#[derive(Serialize)]
struct Meta {
    kind: &'static str,
    category: [&'static str; 1],
    #[serde(rename = "type")]
    kind_type: [&'static str; 2],
    duration: u64,
    id: String,
}

#[derive(Serialize)]
struct ApitapView<'a> {
    flow_id: &'a str,
    transaction: u32,
    http2: Facts<'a>,
    anomalies: AnomalyList,
    #[serde(skip_serializing_if = "Option::is_none")]
    tunnel: Option<TunnelView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sensor: Option<&'a str>,
    schema_version: &'static str,
}

#[derive(Serialize)]
struct Facts<'a> {
    streams: u32,
    max_open_streams: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_max_concurrent_streams: Option<u32>,
    rapid_resets: u32,
    stream_id_errors: u32,
    longest_header_block_frames: u32,
    unfinished_header_blocks: u32,
    hpack_bombs: u32,
    largest_header_list: HeaderList,
    hpack_fields_unknown: u32,
    midstream: bool,
    given_up: bool,
    client_frames: &'a FrameCounts,
    server_frames: &'a FrameCounts,
    #[serde(skip_serializing_if = "Option::is_none")]
    goaway: Option<GoAwayView>,
}

#[derive(Serialize)]
struct HeaderList {
    decoded: u64,
    wire: u64,
}

#[derive(Serialize)]
struct GoAwayView {
    by: &'static str,
    error_code: ErrorCode,
    last_stream_id: u32,
}

impl<'a> Http2EventView<'a> {
    pub(crate) fn new(
        cfg: &'a EncoderConfig,
        flow: &'a FlowContext,
        c: &'a Http2Connection,
    ) -> Http2EventView<'a> {
        let sensor = (!cfg.sensor.is_empty()).then_some(cfg.sensor.as_str());
        Http2EventView {
            timestamp: Rfc3339(c.start.ts),
            event: Meta {
                kind: "event",
                category: ["network"],
                kind_type: ["connection", "protocol"],
                duration: c.end.ts.nanos_since(c.start.ts),
                id: event_id(&flow.flow_id, c.key.ordinal),
            },
            source: flow.client.into(),
            destination: flow.server.into(),
            network: NetworkView::new(flow, "http2"),
            observer: ObserverView::new(sensor, flow),
            apitap: ApitapView {
                flow_id: &flow.flow_id,
                transaction: c.key.ordinal,
                http2: Facts {
                    streams: c.streams,
                    max_open_streams: c.max_open_streams,
                    server_max_concurrent_streams: c.server_max_concurrent_streams,
                    rapid_resets: c.rapid_resets,
                    stream_id_errors: c.stream_id_errors,
                    longest_header_block_frames: c.longest_header_block_frames,
                    unfinished_header_blocks: c.unfinished_header_blocks,
                    hpack_bombs: c.hpack_bombs,
                    largest_header_list: HeaderList {
                        decoded: c.largest_header_list.0,
                        wire: c.largest_header_list.1,
                    },
                    hpack_fields_unknown: c.hpack_fields_unknown,
                    midstream: c.midstream,
                    given_up: c.given_up,
                    client_frames: &c.client_frames,
                    server_frames: &c.server_frames,
                    goaway: c.goaway.map(|g| GoAwayView {
                        by: match g.by {
                            Direction::ToServer => "client",
                            Direction::ToClient => "server",
                        },
                        error_code: ErrorCode(g.error_code),
                        last_stream_id: g.last_stream_id,
                    }),
                },
                anomalies: AnomalyList(apitap_core::Anomalies::default()),
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
