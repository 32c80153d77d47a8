//! The session layer: roles, protocol detection, handoffs to inner layers, their bound,
//! and that any split of the stream gives the same transactions.
#![allow(clippy::unwrap_used, missing_docs)]

use apitap_core::{
    Endpoint, FinishCause, FlowKey, HttpTransaction, PacketRef, Side, Timestamp, TlsConnection,
};
use apitap_flow::StreamEvent;
use apitap_session::{Session, SessionConfig, SessionCx, SessionStats};
use proptest::prelude::*;

/// A connection between a client on port 40000 and a proxy on 3128, driven by hand.
struct Conn {
    key: FlowKey,
    client: Side,
    session: Session,
    cfg: SessionConfig,
    stats: SessionStats,
    out: Vec<HttpTransaction>,
    tls: Vec<TlsConnection>,
    http2: Vec<apitap_core::Http2Connection>,
    at: PacketRef,
}

impl Conn {
    fn new(cfg: SessionConfig) -> Conn {
        let ip = "10.0.0.1".parse().unwrap();
        let (key, client) =
            FlowKey::from_packet(Endpoint { ip, port: 40000 }, Endpoint { ip, port: 3128 }, 6);
        Conn {
            key,
            client,
            session: Session::new(),
            cfg,
            stats: SessionStats::default(),
            out: Vec::new(),
            tls: Vec::new(),
            http2: Vec::new(),
            at: PacketRef {
                index: 1,
                ts: Timestamp(1_000_000_000),
            },
        }
    }

    /// Calls the session with this connection's context.
    fn call(&mut self, f: impl FnOnce(&mut Session, &mut SessionCx<'_>)) {
        let mut cx = SessionCx {
            key: &self.key,
            at: self.at,
            cfg: &self.cfg,
            stats: &mut self.stats,
            out: &mut self.out,
            tls: &mut self.tls,
            http2: &mut self.http2,
        };
        f(&mut self.session, &mut cx);
    }

    fn event(&mut self, ev: StreamEvent<'_>) {
        self.at.index += 1;
        self.call(|s, cx| s.on_stream(ev, cx));
    }

    fn client_sends(&mut self, bytes: &[u8]) {
        let side = self.client;
        self.event(StreamEvent::Data { side, bytes });
    }

    fn server_sends(&mut self, bytes: &[u8]) {
        let side = self.client.other();
        self.event(StreamEvent::Data { side, bytes });
    }

    fn finish(&mut self) {
        self.call(|s, cx| s.finish(FinishCause::ConnectionClosed, cx));
    }

    /// (method, target, status, ordinal) of every transaction, by key.
    fn transactions(&self) -> Vec<(String, String, u16, u32)> {
        let mut txs = self.out.clone();
        txs.sort_by_key(|t| t.key);
        txs.iter()
            .map(|t| {
                let req = t.request.as_ref();
                (
                    req.map(|r| String::from_utf8_lossy(r.method()).into_owned())
                        .unwrap_or_default(),
                    req.map(|r| String::from_utf8_lossy(r.target()).into_owned())
                        .unwrap_or_default(),
                    t.response.as_ref().map_or(0, |r| r.status),
                    t.key.ordinal,
                )
            })
            .collect()
    }
}

const CONNECT: &[u8] = b"CONNECT api.example:80 HTTP/1.1\r\nHost: api.example:80\r\n\r\n";
const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";
const GET: &[u8] = b"GET /v1/items/7 HTTP/1.1\r\nHost: api.example\r\n\r\n";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

fn row(m: &str, t: &str, s: u16, o: u32) -> (String, String, u16, u32) {
    (m.into(), t.into(), s, o)
}

#[test]
fn the_handshake_or_the_first_bytes_or_the_ports_tell_the_client() {
    let mut c = Conn::new(SessionConfig::default());
    c.session.on_syn(c.client.other(), true, &mut c.stats);
    assert_eq!(
        c.session.client(),
        Some(c.client),
        "SYN+ACK comes from the server"
    );
    assert_eq!(c.stats.role_from_handshake, 1);

    let mut c = Conn::new(SessionConfig::default());
    c.server_sends(OK);
    assert_eq!(
        c.session.client(),
        Some(c.client),
        "a status line goes to the client"
    );
    assert_eq!(c.stats.role_from_payload, 1);

    let mut c = Conn::new(SessionConfig::default());
    c.server_sends(b"\x00\x01\x02");
    assert_eq!(
        c.session.client(),
        Some(c.client),
        "port 40000 is no server port"
    );
    assert_eq!(c.stats.role_from_port, 1);

    let mut c = Conn::new(SessionConfig::default());
    let side = c.client;
    c.event(StreamEvent::Gap { side, len: 10 });
    assert_eq!(c.stats.gap_bytes_before_role, 10);
}

#[test]
fn http_inside_a_connect_tunnel_is_parsed_with_the_connection_s_ordinals() {
    let mut c = Conn::new(SessionConfig::default());
    c.client_sends(CONNECT);
    // The proxy's answer and the origin's first bytes in one delivery.
    c.server_sends(ESTABLISHED);
    c.client_sends(GET);
    let mut answer = OK.to_vec();
    answer.extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
    c.server_sends(&answer);
    c.client_sends(b"GET /v1/more HTTP/1.1\r\n\r\n");
    c.finish();
    assert_eq!(
        c.transactions(),
        [
            row("CONNECT", "api.example:80", 200, 0),
            row("GET", "/v1/items/7", 200, 1),
            row("", "", 204, 2),
            row("GET", "/v1/more", 0, 3),
        ]
    );
    assert_eq!(c.stats.handoffs, 1);
    assert_eq!((c.stats.layers.http1, c.stats.layers.unknown), (2, 0));
    assert_eq!(c.stats.http.upgrades, 1);
}

#[test]
fn a_stray_line_end_after_the_proxy_s_answer_does_not_hide_the_tunnel_s_http() {
    let mut c = Conn::new(SessionConfig::default());
    c.client_sends(CONNECT);
    c.server_sends(b"HTTP/1.0 200 OK\r\nServer: proxy\r\n\r\n\n");
    c.client_sends(GET);
    c.server_sends(OK);
    c.finish();
    assert_eq!(
        c.transactions(),
        [
            row("CONNECT", "api.example:80", 200, 0),
            row("GET", "/v1/items/7", 200, 1)
        ]
    );
    assert_eq!(c.stats.unparsed_bytes, 1);
}

#[test]
fn tls_is_parsed_in_a_tunnel_and_at_the_start_one_record_per_layer() {
    let hello = [0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0, 0, 1, 0];
    let mut c = Conn::new(SessionConfig::default());
    c.client_sends(CONNECT);
    c.server_sends(ESTABLISHED);
    c.client_sends(&hello);
    c.finish();
    assert_eq!(c.transactions().len(), 1);
    assert_eq!(c.stats.layers.tls, 1);
    assert_eq!(c.stats.unparsed_bytes, 0);
    assert_eq!(c.tls.len(), 1);
    // After the CONNECT's ordinal.
    assert_eq!(c.tls[0].key.ordinal, 1);
    assert_eq!(c.tls[0].client_bytes, hello.len() as u64);
    assert_eq!(c.stats.tls.client_hellos, 1);

    let mut c = Conn::new(SessionConfig::default());
    c.client_sends(&hello);
    c.client_sends(GET);
    c.finish();
    assert!(c.out.is_empty(), "a TLS connection yields no HTTP");
    assert_eq!(c.stats.layers.tls, 1);
    assert_eq!(c.stats.layers.http1, 0);
    assert_eq!(c.tls.len(), 1);
    assert_eq!(c.stats.tls.records_invalid, 1, "GET is no record header");
}

#[test]
fn an_upgrade_to_websocket_is_a_layer_of_its_own_and_nothing_in_it_is_http() {
    let mut c = Conn::new(SessionConfig::default());
    c.client_sends(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    let mut answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
    answer.extend_from_slice(b"\x81\x11HTTP/1.1 200 OK\r\n\r\n");
    c.server_sends(&answer);
    c.client_sends(b"GET / HTTP/1.1\r\n\r\n");
    c.finish();
    assert_eq!(c.transactions(), [row("GET", "/ws", 101, 0)]);
    assert_eq!(c.stats.layers.websocket, 1);
    let frame = b"\x81\x11HTTP/1.1 200 OK\r\n\r\n".len();
    let request = b"GET / HTTP/1.1\r\n\r\n".len();
    assert_eq!(c.stats.unparsed_bytes, (frame + request) as u64);
}

#[test]
fn tunnels_past_max_depth_are_counted_not_parsed() {
    let mut c = Conn::new(SessionConfig {
        max_depth: 2,
        ..SessionConfig::default()
    });
    for _ in 0..3 {
        c.client_sends(CONNECT);
        c.server_sends(ESTABLISHED);
    }
    c.finish();
    assert_eq!(
        c.transactions().len(),
        2,
        "the third CONNECT is too deep to read"
    );
    assert_eq!((c.stats.handoffs, c.stats.depth_exceeded), (1, 1));
    assert_eq!(
        c.stats.unparsed_bytes,
        (CONNECT.len() + ESTABLISHED.len()) as u64
    );
}

/// The tunnelled conversation in the order it happens (CONNECT, the proxy's answer, the
/// request in the tunnel, its answer), each message delivered in pieces cut at `cuts`.
fn tunnelled(cuts: &[usize]) -> Vec<(String, String, u16, u32)> {
    let mut c = Conn::new(SessionConfig::default());
    for (from_client, message) in [
        (true, CONNECT),
        (false, ESTABLISHED),
        (true, GET),
        (false, OK),
    ] {
        let mut points: Vec<usize> = cuts.iter().map(|&p| p % (message.len() + 1)).collect();
        points.extend([0, message.len()]);
        points.sort_unstable();
        points.dedup();
        for w in points.windows(2) {
            let piece = &message[w[0]..w[1]];
            if from_client {
                c.client_sends(piece);
            } else {
                c.server_sends(piece);
            }
        }
    }
    c.finish();
    c.transactions()
}

#[test]
fn a_tunnelled_conversation_split_anywhere_gives_the_same_transactions() {
    let whole = tunnelled(&[]);
    assert_eq!(
        whole,
        [
            row("CONNECT", "api.example:80", 200, 0),
            row("GET", "/v1/items/7", 200, 1)
        ]
    );
    let longest = [CONNECT, ESTABLISHED, GET, OK].map(<[u8]>::len);
    for i in 0..=longest.into_iter().max().unwrap_or(0) {
        assert_eq!(tunnelled(&[i]), whole, "split at {i}");
    }
}

proptest! {
    #[test]
    fn random_splits_give_the_same_transactions(
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
    ) {
        prop_assert_eq!(tunnelled(&cuts), tunnelled(&[]));
    }
}
