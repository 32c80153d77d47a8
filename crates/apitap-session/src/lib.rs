//! The session layer: between TCP reassembly and the application parsers.
//!
//! The worker hands each connection's stream events (data per direction, gap, end) to
//! its [`Session`], which decides who the client is ([`role`]), which protocol the
//! connection speaks ([`detect`]), and drives one parser behind
//! [`apitap_core::AppParser`]. A parser that hands the stream on (an HTTP CONNECT tunnel,
//! a 101 upgrade) opens a new layer, whose protocol is found out again from its first
//! bytes, at most [`SessionConfig::max_depth`] layers deep (counted beyond).
//!
//! Adding a protocol means: its parser module behind `AppParser`, a probe in [`detect`],
//! a variant in `layer`'s dispatch and its counters in [`SessionStats`]; the worker,
//! reassembly, reorder and outputs do not change.

pub mod detect;
mod layer;
pub mod role;
pub mod socks;

pub use detect::Protocol;

use apitap_core::{
    FinishCause, FlowKey, Http2Connection, HttpTransaction, PacketRef, Side, SortKey, Timestamp,
    TlsConnection,
};
use apitap_flow::StreamEvent;
use apitap_http::{HttpConfig, HttpStats};
use apitap_tls::{TlsConfig, TlsStats};
use layer::Layer;

/// Session settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// HTTP/1.x parsing bounds.
    pub http: HttpConfig,
    /// TLS parsing bounds.
    pub tls: TlsConfig,
    /// Layers one connection may have (`session.max_depth`): the connection itself, and one
    /// more for each tunnel or upgrade inside it. Deeper layers are not parsed (counted).
    pub max_depth: u8,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            http: HttpConfig::default(),
            tls: TlsConfig::default(),
            max_depth: 4,
        }
    }
}

apitap_core::counters! {
    /// Layers found, by protocol.
    pub struct LayerCounts {
        /// HTTP/1.x (parsed).
        pub http1: u64,
        /// TLS (handshake metadata).
        pub tls: u64,
        /// WebSocket (not parsed).
        pub websocket: u64,
        /// HTTP/2 after an `Upgrade: h2c` (parsed).
        pub h2c: u64,
        /// HTTP/2 with prior knowledge, inside decrypted TLS (ALPN `h2`), or joined
        /// midway (parsed).
        pub http2: u64,
        /// SOCKS handshakes (the stream inside is a layer of its own).
        pub socks: u64,
        /// No parser recognised them.
        pub unknown: u64,
    }
}

impl LayerCounts {
    fn count(&mut self, p: Protocol) {
        let c = match p {
            Protocol::Http1 => &mut self.http1,
            Protocol::Tls => &mut self.tls,
            Protocol::WebSocket => &mut self.websocket,
            Protocol::H2c => &mut self.h2c,
            Protocol::Http2 => &mut self.http2,
            Protocol::Socks => &mut self.socks,
            Protocol::Unknown => &mut self.unknown,
        };
        *c += 1;
    }
}

apitap_core::counters! {
    /// Session counters.
    pub struct SessionStats {
        /// Connections whose client was known from the handshake.
        pub role_from_handshake: u64,
        /// Connections whose client was guessed from the first payload.
        pub role_from_payload: u64,
        /// Connections whose client was guessed from the ports.
        pub role_from_port: u64,
        /// Bytes lost to gaps before a connection's roles were known.
        pub gap_bytes_before_role: u64,
        /// Layers found, by protocol (a connection is one layer, plus one per tunnel or
        /// upgrade inside it).
        pub layers: LayerCounts,
        /// Layers opened by a handoff (CONNECT tunnels, 101 upgrades) or by decryption
        /// (the plaintext of a TLS layer).
        pub handoffs: u64,
        /// Handoffs past `max_depth`, not parsed.
        pub depth_exceeded: u64,
        /// Bytes of layers no parser reads (recognised but not parsed, unknown, too deep).
        pub unparsed_bytes: u64,
        /// SOCKS handshakes.
        pub socks: socks::SocksStats,
        /// HTTP/1.x parser counters (a summary section of their own).
        #[serde(skip)]
        pub http: HttpStats,
        /// TLS parser counters (a summary section of their own).
        #[serde(skip)]
        pub tls: TlsStats,
    }
}

/// Everything a session call needs besides the session.
pub struct SessionCx<'a> {
    /// The connection (its ports guess roles when nothing else does).
    pub key: &'a FlowKey,
    /// The packet that delivered the event.
    pub at: PacketRef,
    /// Settings.
    pub cfg: &'a SessionConfig,
    /// Counters.
    pub stats: &'a mut SessionStats,
    /// Where finished transactions go.
    pub out: &'a mut Vec<HttpTransaction>,
    /// Where TLS connection records go.
    pub tls: &'a mut Vec<TlsConnection>,
    /// Where HTTP/2 connection records go.
    pub http2: &'a mut Vec<Http2Connection>,
}

/// One connection above TCP: its roles and its layers.
#[derive(Debug, Default)]
pub struct Session {
    client: Option<Side>,
    /// The next transaction ordinal, shared by every layer.
    ordinal: u32,
    /// The outermost layer, once the connection carried data.
    top: Option<Box<Layer>>,
}

impl Session {
    /// A connection with nothing seen yet.
    pub fn new() -> Session {
        Session::default()
    }

    /// The client side, once known.
    pub fn client(&self) -> Option<Side> {
        self.client
    }

    /// A SYN from `from` (with ACK: the server's answer): the handshake tells the roles.
    pub fn on_syn(&mut self, from: Side, ack: bool, stats: &mut SessionStats) {
        if self.client.is_none() {
            self.client = Some(if ack { from.other() } else { from });
            stats.role_from_handshake += 1;
        }
    }

    /// One event of the reassembled stream.
    pub fn on_stream(&mut self, ev: StreamEvent<'_>, cx: &mut SessionCx<'_>) {
        match ev {
            StreamEvent::Data { side, bytes } => {
                let client = *self.client.get_or_insert_with(|| {
                    role::client_from_payload(cx.key, side, bytes, cx.stats)
                });
                let dir = role::direction(side, client);
                let top = self
                    .top
                    .get_or_insert_with(|| Layer::outermost(bytes, cx.cfg, cx.stats));
                top.on_data(dir, bytes, &mut layer::Cx::new(cx, &mut self.ordinal));
            }
            StreamEvent::Gap { side, len } => match (self.client, self.top.as_mut()) {
                (Some(client), Some(top)) => top.on_gap(
                    role::direction(side, client),
                    len,
                    &mut layer::Cx::new(cx, &mut self.ordinal),
                ),
                _ => cx.stats.gap_bytes_before_role += len,
            },
            StreamEvent::Fin { side } => {
                if let (Some(client), Some(top)) = (self.client, self.top.as_mut()) {
                    top.on_fin(
                        role::direction(side, client),
                        &mut layer::Cx::new(cx, &mut self.ordinal),
                    );
                }
            }
            StreamEvent::Reset { .. } => {}
            StreamEvent::OverlapConflict { side } => {
                // Often before any byte was delivered (the conflict is between buffered
                // copies): the outermost layer is made to carry it to the next message.
                if let Some(client) = self.client {
                    self.top
                        .get_or_insert_with(|| Layer::outermost(&[], cx.cfg, cx.stats))
                        .on_anomaly(
                            role::direction(side, client),
                            apitap_core::Anomaly::OverlapConflict,
                        );
                }
            }
        }
    }

    /// Gives up on what timed out by packet time `cx.at`.
    pub fn expire(&mut self, cx: &mut SessionCx<'_>) {
        if let Some(top) = self.top.as_mut() {
            top.expire(&mut layer::Cx::new(cx, &mut self.ordinal));
        }
    }

    /// The connection is over: every layer hands out what is still open.
    pub fn finish(&mut self, cause: FinishCause, cx: &mut SessionCx<'_>) {
        if let Some(top) = self.top.as_mut() {
            top.finish(cause, &mut layer::Cx::new(cx, &mut self.ordinal));
        }
    }

    /// Memory the connection's parsers hold for heads and lines in progress.
    pub fn buffered_bytes(&self) -> usize {
        self.top.as_ref().map_or(0, |t| t.buffered_bytes())
    }

    /// Gives that memory back: heads in progress are cut, handed out as they stand,
    /// flagged `head_memcap` (the worker is over its parser memcap).
    pub fn shed(&mut self, cx: &mut SessionCx<'_>) {
        if let Some(top) = self.top.as_mut() {
            top.shed(&mut layer::Cx::new(cx, &mut self.ordinal));
        }
    }

    /// Every started, not yet handed out transaction of every layer: key and start time.
    pub fn open_transactions(&self, out: &mut Vec<(SortKey, Timestamp)>) {
        if let Some(top) = &self.top {
            top.open_transactions(out);
        }
    }
}
