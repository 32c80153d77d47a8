//! One layer of a connection: the parser reading it, and the layer inside it once the
//! parser hands the stream on. Dispatch is a `match` over the parsers apitap has (no
//! trait objects on the per-byte path).

use crate::detect::{self, Protocol};
use crate::socks::SocksConn;
use crate::{SessionConfig, SessionCx, SessionStats};
use apitap_core::{
    Anomaly, AppParser, Direction, FinishCause, Handoff, Http2Connection, HttpRequest,
    HttpTransaction, PacketRef, ParseCx, SortKey, Timestamp, TlsConnection, UpgradeTo,
};
use apitap_http::{H2Conn, HttpConn};
use apitap_tls::{Plaintext, TlsConn};

/// A layer's parser. Layers are boxed, so the HTTP/1.x state sits inline: one allocation
/// per parsed connection; an unparsed layer carries that room unused.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Parser {
    /// HTTP/1.x.
    Http1(HttpConn),
    /// HTTP/2.
    Http2(Box<H2Conn>),
    /// A SOCKS handshake; a granted CONNECT hands the stream on.
    Socks(Box<SocksConn>),
    /// TLS (metadata).
    Tls(Box<TlsConn>),
    /// Opened by a handoff; its protocol is decided by its first bytes. After an
    /// `Upgrade: h2c`, the request that asked for it (HTTP/2's stream 1 answers it).
    Undecided(Handoff, Option<Box<HttpRequest>>),
    /// Not parsed (recognised or not; counted by protocol when decided): its bytes are
    /// counted.
    Unparsed,
}

/// One layer of a connection.
#[derive(Debug)]
pub(crate) struct Layer {
    parser: Parser,
    /// 1 for the connection itself, one more per handoff.
    depth: u8,
    /// The layer the parser handed the stream on to.
    inner: Option<Box<Layer>>,
}

/// What a layer call needs: the session's context and the connection's ordinals.
pub(crate) struct Cx<'s, 'a> {
    at: PacketRef,
    cfg: &'a SessionConfig,
    stats: &'s mut SessionStats,
    out: &'s mut Vec<HttpTransaction>,
    tls: &'s mut Vec<TlsConnection>,
    http2: &'s mut Vec<Http2Connection>,
    ordinal: &'s mut u32,
}

impl<'s, 'a> Cx<'s, 'a> {
    pub(crate) fn new(cx: &'s mut SessionCx<'a>, ordinal: &'s mut u32) -> Cx<'s, 'a> {
        Cx {
            at: cx.at,
            cfg: cx.cfg,
            stats: &mut *cx.stats,
            out: &mut *cx.out,
            tls: &mut *cx.tls,
            http2: &mut *cx.http2,
            ordinal,
        }
    }

    /// The TLS parser's context.
    fn tls(&mut self) -> ParseCx<'_, apitap_tls::TlsConfig, apitap_tls::TlsStats, TlsConnection> {
        ParseCx {
            at: self.at,
            cfg: &self.cfg.tls,
            stats: &mut self.stats.tls,
            out: &mut *self.tls,
            ordinal: &mut *self.ordinal,
        }
    }

    /// The HTTP/1.x parser's context.
    fn http(&mut self) -> ParseCx<'_, apitap_http::HttpConfig, apitap_http::HttpStats> {
        ParseCx {
            at: self.at,
            cfg: &self.cfg.http,
            stats: &mut self.stats.http,
            out: &mut *self.out,
            ordinal: &mut *self.ordinal,
        }
    }
}

impl Layer {
    /// A connection's outermost layer, from its first bytes.
    pub(crate) fn outermost(
        first: &[u8],
        cfg: &SessionConfig,
        stats: &mut SessionStats,
    ) -> Box<Layer> {
        let protocol = detect::outermost(first);
        let parser = if protocol == Protocol::Http1 && apitap_http::h2::probe_midstream(first) {
            // Joined midway, at a frame boundary.
            stats.layers.count(Protocol::Http2);
            Parser::Http2(Box::new(H2Conn::midstream(&cfg.http, &mut stats.http)))
        } else {
            Parser::decided(protocol, first, cfg, stats)
        };
        Box::new(Layer {
            parser,
            depth: 1,
            inner: None,
        })
    }

    /// The layer inside, when the parser handed the rest of the stream to it (every byte
    /// goes there). A TLS layer's inner layer gets the plaintext instead.
    fn handed_on(&mut self) -> Option<&mut Box<Layer>> {
        match self.parser {
            Parser::Tls(_) => None,
            _ => self.inner.as_mut(),
        }
    }

    pub(crate) fn on_data(&mut self, dir: Direction, data: &[u8], cx: &mut Cx<'_, '_>) {
        if let Some(inner) = self.handed_on() {
            return inner.on_data(dir, data, cx);
        }
        let mut data = data;
        if let Parser::Undecided(handoff, _) = &self.parser {
            let handoff = *handoff;
            // Line ends left over from the message that opened the layer (a proxy's
            // answer followed by a stray CRLF) say nothing about what follows.
            let start = data
                .iter()
                .position(|b| !matches!(b, b'\r' | b'\n'))
                .unwrap_or(data.len());
            cx.stats.unparsed_bytes += start as u64;
            data = data.get(start..).unwrap_or(&[]);
            if data.is_empty() {
                return;
            }
            let protocol = detect::after(handoff, data);
            self.parser = match std::mem::replace(&mut self.parser, Parser::Unparsed) {
                Parser::Undecided(_, Some(request)) if protocol == Protocol::H2c => {
                    cx.stats.layers.count(protocol);
                    let mut h2 = H2Conn::upgraded(&cx.cfg.http, &mut cx.stats.http);
                    h2.set_upgrade_request(*request);
                    Parser::Http2(Box::new(h2))
                }
                _ => Parser::decided(protocol, data, cx.cfg, cx.stats),
            };
        }
        let used = match &mut self.parser {
            Parser::Http1(h) => h.on_data(dir, data, &mut cx.http()),
            Parser::Http2(h) => h.on_data(dir, data, &mut cx.http()),
            Parser::Tls(t) => {
                let used = t.on_data(dir, data, &mut cx.tls());
                self.forward_plaintext(cx);
                used
            }
            Parser::Socks(s) => s.on_data(dir, data, &mut cx.stats.socks),
            Parser::Undecided(..) | Parser::Unparsed => {
                cx.stats.unparsed_bytes += data.len() as u64;
                data.len()
            }
        };
        if let Some(handoff) = self.parser.handoff() {
            // The transaction that asked for an h2c upgrade was just handed out.
            let request = (self.inner.is_none() && handoff == Handoff::Upgrade(UpgradeTo::H2c))
                .then(|| {
                    cx.out
                        .iter()
                        .rev()
                        .find(|t| t.response.as_ref().is_some_and(|r| r.status == 101))
                        .and_then(|t| t.request.clone())
                        .map(Box::new)
                })
                .flatten();
            // Client bytes a SOCKS client sent before the proxy answered come first.
            let early = match &mut self.parser {
                Parser::Socks(s) => s.take_early(),
                _ => Vec::new(),
            };
            let inner =
                self.inner_layer(cx.cfg, cx.stats, |_, _| Parser::Undecided(handoff, request));
            if !early.is_empty() {
                inner.on_data(Direction::ToServer, &early, cx);
            }
            if let Some(rest) = data.get(used..).filter(|r| !r.is_empty()) {
                inner.on_data(dir, rest, cx);
            }
        }
    }

    /// Hands what the TLS parser decrypted to the layer inside (opened at the first
    /// plaintext, its protocol from the ALPN and those bytes), and marks the transactions
    /// it produced with the connection's handshake.
    fn forward_plaintext(&mut self, cx: &mut Cx<'_, '_>) {
        let Parser::Tls(t) = &mut self.parser else {
            return;
        };
        let plain = t.take_plaintext();
        if plain.is_empty() {
            return;
        }
        let alpn = t.handshake().next_protocol.clone();
        let before = cx.out.len();
        for p in plain {
            match p {
                Plaintext::Data(dir, bytes) => {
                    let inner = self.inner_layer(cx.cfg, cx.stats, |cfg, stats| {
                        let p = detect::decrypted(alpn.as_deref(), &bytes);
                        Parser::decided(p, &bytes, cfg, stats)
                    });
                    inner.on_data(dir, &bytes, cx);
                }
                Plaintext::Lost(dir, len) => {
                    if let Some(inner) = self.inner.as_mut() {
                        inner.on_gap(dir, len, cx);
                    }
                }
            }
        }
        self.mark_decrypted(cx, before);
    }

    /// The layer inside this one, opened on first use one level deeper with the parser
    /// `decide` picks, or left unparsed past `max_depth` (counted either way).
    fn inner_layer(
        &mut self,
        cfg: &SessionConfig,
        stats: &mut SessionStats,
        decide: impl FnOnce(&SessionConfig, &mut SessionStats) -> Parser,
    ) -> &mut Layer {
        let depth = self.depth.saturating_add(1);
        self.inner.get_or_insert_with(|| {
            let parser = if depth > cfg.max_depth {
                stats.depth_exceeded += 1;
                Parser::Unparsed
            } else {
                stats.handoffs += 1;
                decide(cfg, stats)
            };
            Box::new(Layer {
                parser,
                depth,
                inner: None,
            })
        })
    }

    pub(crate) fn on_gap(&mut self, dir: Direction, len: u64, cx: &mut Cx<'_, '_>) {
        if let Some(inner) = self.handed_on() {
            return inner.on_gap(dir, len, cx);
        }
        match &mut self.parser {
            Parser::Http1(h) => h.on_gap(dir, len, &mut cx.http()),
            Parser::Http2(h) => h.on_gap(dir, len, &mut cx.http()),
            Parser::Tls(t) => {
                t.on_gap(dir, len, &mut cx.tls());
                self.forward_plaintext(cx);
            }
            Parser::Socks(_) => {
                // The handshake is lost: nothing after it can be placed.
                cx.stats.socks.invalid += 1;
                cx.stats.unparsed_bytes += len;
                self.parser = Parser::Unparsed;
            }
            Parser::Undecided(..) => {
                // Nothing to tell the protocol by: the layer is not parsed.
                self.parser = Parser::decided(Protocol::Unknown, &[], cx.cfg, cx.stats);
                cx.stats.unparsed_bytes += len;
            }
            Parser::Unparsed => cx.stats.unparsed_bytes += len,
        }
    }

    pub(crate) fn on_fin(&mut self, dir: Direction, cx: &mut Cx<'_, '_>) {
        if let Some(inner) = self.handed_on() {
            return inner.on_fin(dir, cx);
        }
        match &mut self.parser {
            Parser::Http1(h) => h.on_fin(dir, &mut cx.http()),
            Parser::Http2(h) => h.on_fin(dir, &mut cx.http()),
            Parser::Tls(t) => {
                t.on_fin(dir, &mut cx.tls());
                if let Some(inner) = self.inner.as_mut() {
                    inner.on_fin(dir, cx);
                }
            }
            Parser::Socks(_) | Parser::Undecided(..) | Parser::Unparsed => {}
        }
    }

    pub(crate) fn on_anomaly(&mut self, dir: Direction, anomaly: Anomaly) {
        if let Some(inner) = self.handed_on() {
            return inner.on_anomaly(dir, anomaly);
        }
        match &mut self.parser {
            Parser::Http1(h) => h.on_anomaly(dir, anomaly),
            Parser::Http2(h) => h.on_anomaly(dir, anomaly),
            Parser::Tls(t) => t.on_anomaly(dir, anomaly),
            Parser::Socks(_) | Parser::Undecided(..) | Parser::Unparsed => {}
        }
    }

    pub(crate) fn expire(&mut self, cx: &mut Cx<'_, '_>) {
        match &mut self.parser {
            Parser::Http1(h) => h.expire(&mut cx.http()),
            Parser::Http2(h) => h.expire(&mut cx.http()),
            Parser::Tls(t) => t.expire(&mut cx.tls()),
            Parser::Socks(_) | Parser::Undecided(..) | Parser::Unparsed => {}
        }
        let before = cx.out.len();
        if let Some(inner) = self.inner.as_mut() {
            inner.expire(cx);
        }
        self.mark_decrypted(cx, before);
    }

    pub(crate) fn finish(&mut self, cause: FinishCause, cx: &mut Cx<'_, '_>) {
        match &mut self.parser {
            Parser::Http1(h) => h.finish(cause, &mut cx.http()),
            Parser::Http2(h) => {
                h.finish(cause, &mut cx.http());
                if let Some(c) = h.take_connection() {
                    cx.http2.push(c);
                }
            }
            // The connection record comes after what was carried inside it; records that
            // still wait for keys get a last chance first.
            Parser::Tls(t) => {
                t.settle_pending(&mut cx.tls());
                self.forward_plaintext(cx);
            }
            Parser::Socks(_) | Parser::Undecided(..) | Parser::Unparsed => {}
        }
        let before = cx.out.len();
        if let Some(inner) = self.inner.as_mut() {
            inner.finish(cause, cx);
        }
        self.mark_decrypted(cx, before);
        if let Parser::Tls(t) = &mut self.parser {
            t.finish(cause, &mut cx.tls());
        }
    }

    /// Memory the parsers of this layer and the layers inside it hold (see
    /// [`AppParser::buffered_bytes`]).
    pub(crate) fn buffered_bytes(&self) -> usize {
        let own = match &self.parser {
            Parser::Http1(h) => h.buffered_bytes(),
            Parser::Http2(h) => h.buffered_bytes(),
            Parser::Tls(t) => t.buffered_bytes(),
            Parser::Socks(s) => s.buffered_bytes(),
            Parser::Undecided(..) | Parser::Unparsed => 0,
        };
        own + self.inner.as_ref().map_or(0, |i| i.buffered_bytes())
    }

    /// Has every parser give its buffers back (see [`AppParser::shed`]).
    pub(crate) fn shed(&mut self, cx: &mut Cx<'_, '_>) {
        match &mut self.parser {
            Parser::Http1(h) => h.shed(&mut cx.http()),
            Parser::Http2(h) => h.shed(&mut cx.http()),
            Parser::Tls(t) => t.shed(&mut cx.tls()),
            Parser::Socks(_) | Parser::Undecided(..) | Parser::Unparsed => {}
        }
        let before = cx.out.len();
        if let Some(inner) = self.inner.as_mut() {
            inner.shed(cx);
        }
        self.mark_decrypted(cx, before);
    }

    /// Gives the transactions the layer inside a TLS layer handed out since `before` the
    /// connection's handshake.
    fn mark_decrypted(&self, cx: &mut Cx<'_, '_>, before: usize) {
        let Parser::Tls(t) = &self.parser else {
            return;
        };
        let handshake = t.shared_handshake();
        for tx in cx.out.get_mut(before..).into_iter().flatten() {
            tx.tls.clone_from(&handshake);
        }
    }

    pub(crate) fn open_transactions(&self, out: &mut Vec<(SortKey, Timestamp)>) {
        match &self.parser {
            Parser::Http1(h) => h.open_transactions(out),
            Parser::Http2(h) => h.open_transactions(out),
            Parser::Tls(t) => t.open_transactions(out),
            Parser::Socks(_) | Parser::Undecided(..) | Parser::Unparsed => {}
        }
        if let Some(inner) = &self.inner {
            inner.open_transactions(out);
        }
    }
}

impl Parser {
    /// The parser for `protocol`, counted.
    fn decided(
        protocol: Protocol,
        first: &[u8],
        cfg: &SessionConfig,
        stats: &mut SessionStats,
    ) -> Parser {
        stats.layers.count(protocol);
        match protocol {
            Protocol::Socks => Parser::Socks(Box::new(SocksConn::new(first))),
            Protocol::Http1 => Parser::Http1(HttpConn::new()),
            Protocol::Http2 => Parser::Http2(Box::new(H2Conn::new(&cfg.http, &mut stats.http))),
            Protocol::H2c => Parser::Http2(Box::new(H2Conn::upgraded(&cfg.http, &mut stats.http))),
            Protocol::Tls => Parser::Tls(Box::new(TlsConn::new())),
            _ => Parser::Unparsed,
        }
    }

    fn handoff(&self) -> Option<Handoff> {
        match self {
            Parser::Http1(h) => h.handoff(),
            Parser::Http2(h) => h.handoff(),
            Parser::Tls(t) => t.handoff(),
            Parser::Socks(s) => s.handoff(),
            Parser::Undecided(..) | Parser::Unparsed => None,
        }
    }
}
