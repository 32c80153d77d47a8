//! HTTP parser behaviour per message shape, anomaly and failure mode, plus "split
//! anywhere" properties.
#![allow(clippy::unwrap_used, missing_docs)]

use apitap_core::{
    Anomaly, AppParser, Direction, FinishCause, Handoff, HttpTransaction, IncompleteReason,
    PacketRef, ParserEnv, Timestamp, UpgradeTo,
};
use apitap_http::{HttpConfig, HttpConn, HttpStats};
use proptest::prelude::*;
use Direction::{ToClient as S2C, ToServer as C2S};

struct H {
    conn: HttpConn,
    env: ParserEnv<HttpConfig, HttpStats>,
    at: PacketRef,
}

impl H {
    fn new() -> Self {
        Self::with(HttpConfig::default())
    }
    fn with(cfg: HttpConfig) -> Self {
        H {
            conn: HttpConn::new(),
            env: ParserEnv::new(cfg),
            at: PacketRef {
                index: 1,
                ts: Timestamp::from_millis(1_000),
            },
        }
    }
    fn tick(&mut self, ms: i64) {
        self.at.index += 1;
        self.at.ts = Timestamp(self.at.ts.0 + ms * 1_000_000);
    }
    /// Feeds `data`; returns the bytes the parser used.
    fn send(&mut self, dir: Direction, data: &[u8]) -> usize {
        self.tick(1);
        self.conn.on_data(dir, data, &mut self.env.cx(self.at))
    }
    fn gap(&mut self, dir: Direction, len: u64) {
        self.tick(1);
        self.conn.on_gap(dir, len, &mut self.env.cx(self.at));
    }
    fn fin(&mut self, dir: Direction) {
        self.tick(1);
        self.conn.on_fin(dir, &mut self.env.cx(self.at));
    }
    fn finish(&mut self, cause: FinishCause) {
        self.tick(1);
        self.conn.finish(cause, &mut self.env.cx(self.at));
    }
    /// (method, target, status, req body, resp body, incomplete) per transaction, by key.
    fn summary(&self) -> Vec<(String, String, u16, u64, u64, Option<IncompleteReason>)> {
        let mut txs = self.env.out.clone();
        txs.sort_by_key(|t| t.key);
        txs.iter()
            .map(|t| {
                let (m, u, qb) = t
                    .request
                    .as_ref()
                    .map(|r| {
                        (
                            String::from_utf8_lossy(r.method()).to_string(),
                            String::from_utf8_lossy(r.target()).to_string(),
                            r.body_bytes,
                        )
                    })
                    .unwrap_or_default();
                let (s, rb) = t
                    .response
                    .as_ref()
                    .map(|r| (r.status, r.body_bytes))
                    .unwrap_or((0, 0));
                (m, u, s, qb, rb, t.incomplete)
            })
            .collect()
    }
    fn anomalies(&self, i: usize) -> Vec<Anomaly> {
        let mut txs = self.env.out.clone();
        txs.sort_by_key(|t| t.key);
        txs[i].anomalies.iter().collect()
    }
}

fn row(
    m: &str,
    u: &str,
    s: u16,
    qb: u64,
    rb: u64,
) -> (String, String, u16, u64, u64, Option<IncompleteReason>) {
    (m.into(), u.into(), s, qb, rb, None)
}

#[test]
fn simple_get() {
    let mut h = H::new();
    h.send(C2S, b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(h.env.out.is_empty());
    assert!(h.conn.oldest_open().is_some());
    h.send(S2C, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(h.summary(), vec![row("GET", "/a?b=1", 200, 0, 5)]);
    assert!(h.conn.oldest_open().is_none());
    let tx = &h.env.out[0];
    assert_eq!(
        tx.request.as_ref().unwrap().head.header("host"),
        Some(&b"x"[..])
    );
    assert_eq!(tx.response.as_ref().unwrap().reason(), b"OK");
    assert!(tx.anomalies.is_empty());
}

#[test]
fn keep_alive_and_pipelining_pair_fifo() {
    let mut h = H::new();
    h.send(C2S, b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nPOST /3 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
    h.send(
        S2C,
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 404 NF\r\nContent-Length: 2\r\n\r\nbbHTTP/1.1 201 C\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(
        h.summary(),
        vec![
            row("GET", "/1", 200, 0, 1),
            row("GET", "/2", 404, 0, 2),
            row("POST", "/3", 201, 3, 0)
        ]
    );
    let ords: Vec<u32> = h.env.out.iter().map(|t| t.key.ordinal).collect();
    assert_eq!(ords, [0, 1, 2]);
}

#[test]
fn chunked_with_extensions_and_trailers() {
    let mut h = H::new();
    h.send(C2S, b"GET / HTTP/1.1\r\n\r\n");
    let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
    h.send(S2C, resp);
    assert_eq!(h.summary(), vec![row("GET", "/", 200, 0, 11)]);
    assert_eq!(
        h.env.out[0].response.as_ref().unwrap().wire_bytes,
        resp.len() as u64
    );
    assert_eq!(h.env.out[0].request.as_ref().unwrap().wire_bytes, 18);
    assert_eq!(h.anomalies(0), vec![Anomaly::Trailers]);
}

#[test]
fn chunked_request_body() {
    let mut h = H::new();
    h.send(
        C2S,
        b"POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    h.send(S2C, b"HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(h.summary(), vec![row("POST", "/u", 204, 3, 0)]);
}

#[test]
fn close_delimited_response_ends_at_fin() {
    let mut h = H::new();
    h.send(C2S, b"GET / HTTP/1.0\r\n\r\n");
    h.send(S2C, b"HTTP/1.0 200 OK\r\n\r\nsome ");
    h.send(S2C, b"bytes");
    assert!(h.env.out.is_empty());
    h.fin(S2C);
    assert_eq!(h.summary(), vec![row("GET", "/", 200, 0, 10)]);
}

#[test]
fn no_body_for_head_204_304() {
    let mut h = H::new();
    h.send(
        C2S,
        b"HEAD / HTTP/1.1\r\n\r\nGET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
    );
    h.send(
        S2C,
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 204 NC\r\n\r\nHTTP/1.1 304 NM\r\nContent-Length: 50\r\n\r\n",
    );
    assert_eq!(
        h.summary(),
        vec![
            row("HEAD", "/", 200, 0, 0),
            row("GET", "/a", 204, 0, 0),
            row("GET", "/b", 304, 0, 0)
        ]
    );
}

#[test]
fn expect_100_continue_is_one_transaction() {
    let mut h = H::new();
    h.send(
        C2S,
        b"POST /up HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
    );
    h.send(S2C, b"HTTP/1.1 100 Continue\r\n\r\n");
    h.send(C2S, b"data");
    h.send(
        S2C,
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    );
    assert_eq!(h.summary(), vec![row("POST", "/up", 200, 4, 2)]);
    assert_eq!(h.env.out[0].response.as_ref().unwrap().interim_count, 2);
    // Both interim heads (25 + 25) and the final response (40 + 2) are on the wire.
    assert_eq!(
        h.env.out[0].response.as_ref().unwrap().wire_bytes,
        25 + 25 + 40
    );
    assert_eq!(h.env.out[0].request.as_ref().unwrap().wire_bytes, 62 + 4);
    assert_eq!(h.env.stats.interim_responses, 2);
}

#[test]
fn upgrade_101_hands_the_rest_of_the_stream_on() {
    let mut h = H::new();
    h.send(
        C2S,
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
    let mut delivery = head.to_vec();
    delivery.extend_from_slice(b"\x81\x05hello");
    assert_eq!(
        h.send(S2C, &delivery),
        head.len(),
        "the frame is the next layer's"
    );
    assert_eq!(h.send(C2S, b"\x81\x85garbage"), 0);
    assert_eq!(h.summary(), vec![row("GET", "/ws", 101, 0, 0)]);
    assert!(h.conn.is_passthrough());
    assert_eq!(
        h.conn.handoff(),
        Some(Handoff::Upgrade(UpgradeTo::WebSocket))
    );
    assert_eq!(h.env.stats.upgrades, 1);
    assert_eq!(h.env.stats.non_http_bytes, 0);
}

#[test]
fn upgrade_names_h2c_and_anything_else() {
    for (header, to) in [
        ("Upgrade: h2c\r\n", UpgradeTo::H2c),
        ("Upgrade: WebSocket, foo\r\n", UpgradeTo::WebSocket),
        ("Upgrade: irc/6.9\r\n", UpgradeTo::Other),
        ("", UpgradeTo::Other),
    ] {
        let mut h = H::new();
        h.send(C2S, b"GET / HTTP/1.1\r\n\r\n");
        h.send(
            S2C,
            format!("HTTP/1.1 101 Switching\r\n{header}\r\n").as_bytes(),
        );
        assert_eq!(h.conn.handoff(), Some(Handoff::Upgrade(to)), "{header:?}");
    }
}

#[test]
fn connect_200_makes_a_tunnel() {
    let mut h = H::new();
    h.send(
        C2S,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    );
    h.send(S2C, b"HTTP/1.1 200 Connection established\r\n\r\n");
    assert_eq!(
        h.send(C2S, b"\x16\x03\x01\x02\x00"),
        0,
        "the tunnel's bytes"
    );
    assert_eq!(
        h.summary(),
        vec![row("CONNECT", "example.com:443", 200, 0, 0)]
    );
    assert!(h.conn.is_passthrough());
    assert_eq!(h.conn.handoff(), Some(Handoff::Tunnel));
}

#[test]
fn lone_response_is_request_not_seen() {
    let mut h = H::new();
    h.send(S2C, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
    let s = h.summary();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].2, 200);
    assert_eq!(s[0].5, Some(IncompleteReason::RequestNotSeen));
    assert!(h.anomalies(0).contains(&Anomaly::UnsolicitedResponse));
}

#[test]
fn timeout_by_expire_and_lazily() {
    let mut h = H::with(HttpConfig {
        transaction_timeout_ms: 1_000,
        ..HttpConfig::default()
    });
    h.send(C2S, b"GET /slow HTTP/1.1\r\n\r\n");
    h.tick(500);
    h.conn.expire(&mut h.env.cx(h.at));
    assert!(h.env.out.is_empty());
    h.tick(600);
    // No sweep: the late response itself triggers the check first.
    h.send(S2C, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let s = h.summary();
    assert_eq!(s[0].5, Some(IncompleteReason::ResponseTimeout));
    assert_eq!(s[0].0, "GET");
    assert_eq!(s[1].5, Some(IncompleteReason::RequestNotSeen));
}

#[test]
fn finish_causes() {
    for (cause, reason) in [
        (
            FinishCause::ConnectionClosed,
            IncompleteReason::ConnectionClosed,
        ),
        (FinishCause::IdleTimeout, IncompleteReason::ConnectionClosed),
        (FinishCause::EndOfCapture, IncompleteReason::EndOfCapture),
    ] {
        let mut h = H::new();
        h.send(C2S, b"GET / HTTP/1.1\r\n\r\n");
        h.finish(cause);
        assert_eq!(h.summary()[0].5, Some(reason));
    }
}

#[test]
fn finish_mid_body_is_truncated() {
    let mut h = H::new();
    h.send(C2S, b"GET / HTTP/1.1\r\n\r\n");
    h.send(S2C, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    h.finish(FinishCause::ConnectionClosed);
    assert_eq!(h.summary()[0].5, Some(IncompleteReason::ResponseIncomplete));
    assert_eq!(h.summary()[0].4, 3);
    assert!(h.anomalies(0).contains(&Anomaly::BodyTruncated));
}

#[test]
fn gap_inside_body_is_absorbed() {
    let mut h = H::new();
    h.send(C2S, b"GET / HTTP/1.1\r\n\r\n");
    h.send(S2C, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    h.gap(S2C, 4);
    h.send(S2C, b"xyz");
    assert_eq!(h.summary(), vec![row("GET", "/", 200, 0, 10)]);
    assert_eq!(h.anomalies(0), vec![Anomaly::Gap]);
}

/// A gap that swallows the end of a body: the next status line follows a JSON body with no
/// line end in between, and is found anyway (a body that mentions HTTP/1.1 is not one).
#[test]
fn after_a_gap_the_next_response_is_found_behind_a_body_without_a_line_end() {
    let mut h = H::new();
    h.send(
        C2S,
        b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n",
    );
    h.send(S2C, b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{\"x\":");
    h.gap(S2C, 100);
    h.send(S2C, b"\"see HTTP/1.1 spec\"}");
    // A delivery that starts with the status line, the last one ended mid-line.
    h.send(
        S2C,
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}HTT",
    );
    h.send(S2C, b"P/1.1 204 No Content\r\n\r\n");
    h.finish(FinishCause::ConnectionClosed);
    let rows: Vec<(String, u16)> = h.summary().into_iter().map(|r| (r.1, r.2)).collect();
    assert_eq!(
        rows,
        [
            ("/a".to_string(), 200),
            ("/b".to_string(), 201),
            ("/c".to_string(), 204)
        ]
    );
}

#[test]
fn gap_in_head_keeps_the_request_from_its_start_line_and_resyncs() {
    let mut h = H::new();
    h.send(C2S, b"GET /lost HTTP/1.1\r\nHos");
    h.gap(C2S, 100);
    h.send(C2S, b"t: x\r\n\r\nGET /next HTTP/1.1\r\n\r\n");
    h.send(S2C, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    h.finish(FinishCause::ConnectionClosed);
    // The server saw both requests: the first answer is the cut request's.
    assert_eq!(
        h.summary(),
        vec![
            (
                "GET".into(),
                "/lost".into(),
                200,
                0,
                0,
                Some(IncompleteReason::RequestIncomplete)
            ),
            (
                "GET".into(),
                "/next".into(),
                0,
                0,
                0,
                Some(IncompleteReason::ConnectionClosed)
            ),
        ]
    );
    assert!(h.anomalies(0).contains(&Anomaly::Gap));
    assert!(h.anomalies(1).contains(&Anomaly::SkippedBytes));
    assert_eq!(
        (h.env.stats.partial_heads, h.env.stats.partial_heads_lost),
        (1, 0)
    );
    assert!(h.env.stats.bytes_skipped > 0);
}

#[test]
fn a_head_cut_short_is_an_event_with_what_was_parsed_or_a_counted_loss() {
    // Connection end in the middle of a request head, and of a response head.
    let mut h = H::new();
    h.send(C2S, b"POST /api/login HTTP/1.1\r\nHost: a\r\nContent-Ty");
    h.finish(FinishCause::EndOfCapture);
    assert_eq!(
        h.summary(),
        vec![(
            "POST".into(),
            "/api/login".into(),
            0,
            0,
            0,
            Some(IncompleteReason::RequestIncomplete)
        )]
    );
    let mut h = H::new();
    h.send(C2S, b"GET /a HTTP/1.1\r\n\r\n");
    h.send(S2C, b"HTTP/1.1 503 Busy\r\nRetry-Af");
    h.finish(FinishCause::ConnectionClosed);
    assert_eq!(
        h.summary(),
        vec![(
            "GET".into(),
            "/a".into(),
            503,
            0,
            0,
            Some(IncompleteReason::ResponseIncomplete)
        )]
    );
    // Without a whole start line nothing can be said: counted as lost.
    let mut h = H::new();
    h.send(C2S, b"GET /very/long/target/that/never/ends");
    h.finish(FinishCause::EndOfCapture);
    assert!(h.summary().is_empty());
    assert_eq!(
        (h.env.stats.partial_heads, h.env.stats.partial_heads_lost),
        (1, 1)
    );
}

#[test]
fn a_request_head_unfinished_after_the_timeout_is_an_event() {
    let mut h = H::with(HttpConfig {
        transaction_timeout_ms: 1000,
        ..HttpConfig::default()
    });
    // Slowloris: a head that trickles and never ends.
    h.send(C2S, b"GET /slow HTTP/1.1\r\nX-a: 1\r\n");
    h.tick(500);
    h.send(C2S, b"X-b: 2\r\n");
    h.tick(1000);
    h.conn.expire(&mut h.env.cx(h.at));
    assert_eq!(
        h.summary(),
        vec![(
            "GET".into(),
            "/slow".into(),
            0,
            0,
            0,
            Some(IncompleteReason::RequestIncomplete)
        )]
    );
    assert_eq!(h.env.stats.heads_timed_out, 1);
    // What trickles in later is skipped; the next request is parsed.
    h.send(C2S, b"X-c: 3\r\n\r\nGET /after HTTP/1.1\r\n\r\n");
    h.send(S2C, b"HTTP/1.1 408 Timeout\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(h.summary()[1].1, "/after");
}

#[test]
fn shedding_cuts_heads_in_progress_and_gives_their_memory_back() {
    let mut h = H::new();
    let mut big = b"GET /big HTTP/1.1\r\n".to_vec();
    big.extend(
        std::iter::repeat_n(&b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"[..], 200).flatten(),
    );
    h.send(C2S, &big);
    assert!(h.conn.buffered_bytes() >= big.len());
    h.conn.shed(&mut h.env.cx(h.at));
    assert_eq!(h.conn.buffered_bytes(), 0);
    h.send(C2S, b"X-Last: 1\r\n\r\nGET /next HTTP/1.1\r\n\r\n");
    h.finish(FinishCause::ConnectionClosed);
    let s = h.summary();
    assert_eq!(
        (s[0].1.as_str(), s[0].5),
        ("/big", Some(IncompleteReason::RequestIncomplete))
    );
    assert!(h.anomalies(0).contains(&Anomaly::HeadMemcap));
    assert_eq!(s[1].1, "/next");
    assert_eq!(h.env.stats.heads_shed, 1);
}

#[test]
fn smuggling_indicators() {
    let mut h = H::new();
    h.send(
        C2S,
        b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    h.send(S2C, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert!(h
        .anomalies(0)
        .contains(&Anomaly::ContentLengthWithTransferEncoding));
    assert_eq!(h.summary()[0].3, 0, "TE wins over CL");

    let mut h = H::new();
    h.send(
        C2S,
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    );
    h.send(S2C, b"HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\n");
    assert!(h.anomalies(0).contains(&Anomaly::InvalidContentLength));

    let mut h = H::new();
    h.send(C2S, b"GET / HTTP/1.1\r\n\r\n");
    h.send(
        S2C,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    );
    assert!(h.anomalies(0).contains(&Anomaly::InvalidChunkSize));
    assert!(h.anomalies(0).contains(&Anomaly::BodyTruncated));

    let mut h = H::new();
    h.send(C2S, b"GET / HTTP/1.1\nHost: a\n\n");
    h.send(S2C, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert!(h.anomalies(0).contains(&Anomaly::BareLf));
}

#[test]
fn chunk_size_overflow_does_not_panic() {
    let mut h = H::new();
    h.send(C2S, b"GET / HTTP/1.1\r\n\r\n");
    h.send(
        S2C,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
    );
    assert!(h.anomalies(0).contains(&Anomaly::InvalidChunkSize));
}

#[test]
fn garbage_never_becomes_a_transaction() {
    let mut h = H::new();
    h.send(C2S, &[0x00, 0x03, 0x01, 0x00, 0xff, b'\n', 0x00]);
    h.send(C2S, b"hello world\r\n\r\n");
    h.send(S2C, &[0u8; 500]);
    h.finish(FinishCause::EndOfCapture);
    assert!(h.env.out.is_empty());
    assert!(h.env.stats.bytes_skipped > 0);
    assert!(h.env.stats.invalid_start_lines >= 2);
}

#[test]
fn tls_is_given_up_at_once() {
    let mut h = H::new();
    h.send(
        C2S,
        &[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ],
    );
    h.send(S2C, &[0x16, 0x03, 0x03, 0x00, 0x5a, 0x02]);
    h.send(C2S, b"GET / HTTP/1.1\r\n\r\n"); // inside the tunnel: not parsed
    h.finish(FinishCause::ConnectionClosed);
    assert!(h.env.out.is_empty());
    assert!(h.conn.is_passthrough());
    assert_eq!(h.env.stats.non_http_connections, 1);
    assert!(h.conn.oldest_open().is_none());
}

#[test]
fn non_http_bytes_are_given_up_after_the_bound() {
    let mut h = H::with(HttpConfig {
        max_non_http_bytes: 1000,
        ..HttpConfig::default()
    });
    for _ in 0..5 {
        h.send(C2S, &[0u8; 300]);
    }
    assert!(h.conn.is_passthrough());
    assert_eq!(h.env.stats.non_http_connections, 1);
    let skipped = h.env.stats.bytes_skipped;
    h.send(C2S, &[0u8; 300]);
    assert_eq!(
        h.env.stats.bytes_skipped, skipped,
        "no more scanning once given up"
    );
    // A connection that spoke HTTP once is never given up, however much garbage follows.
    let mut ok = H::with(HttpConfig {
        max_non_http_bytes: 1000,
        ..HttpConfig::default()
    });
    ok.send(C2S, b"GET / HTTP/1.1\r\n\r\n");
    for _ in 0..10 {
        ok.send(C2S, &[0u8; 300]);
    }
    assert!(!ok.conn.is_passthrough());
    assert_eq!(ok.env.stats.non_http_connections, 0);
}

#[test]
fn head_too_large_is_skipped_and_counted() {
    let mut h = H::with(HttpConfig {
        max_head_bytes: 100,
        ..HttpConfig::default()
    });
    let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 300));
    h.send(C2S, &big);
    h.send(C2S, b"\r\n\r\nGET /ok HTTP/1.1\r\n\r\n");
    h.send(S2C, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(h.env.stats.heads_too_large, 1);
    // The oversize request is kept from its request line and answered by the first
    // response; the next request waits for its own.
    let s = h.summary();
    assert_eq!(s, vec![row("GET", "/", 200, 0, 0)]);
    assert_eq!(h.anomalies(0), vec![Anomaly::HeadTooLarge]);
    assert!(h.env.out[0]
        .request
        .as_ref()
        .unwrap()
        .head
        .headers
        .is_empty());
    assert_eq!(
        h.env.out[0].request.as_ref().unwrap().wire_bytes,
        big.len() as u64 + 4
    );
    h.send(S2C, b"HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(h.summary()[1], row("GET", "/ok", 204, 0, 0));
    assert!(h.anomalies(1).is_empty(), "{:?}", h.anomalies(1));
    assert_eq!(h.env.stats.bytes_skipped, 0);

    // A request line too long to parse within the limit: skipped, flagged on the next one.
    let mut h = H::with(HttpConfig {
        max_head_bytes: 100,
        ..HttpConfig::default()
    });
    let mut long = b"GET /".to_vec();
    long.extend(std::iter::repeat_n(b'a', 300));
    long.extend_from_slice(b" HTTP/1.1\r\n\r\nGET /ok HTTP/1.1\r\n\r\n");
    h.send(C2S, &long);
    h.send(S2C, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(h.summary(), vec![row("GET", "/ok", 200, 0, 0)]);
    assert!(h.anomalies(0).contains(&Anomaly::HeadTooLarge));
}

/// Pipelined requests where one head is over the limit: every response still pairs with
/// its own request (before the fix the oversize request was dropped, the next request took
/// its response and the last response was "unsolicited").
#[test]
fn oversize_heads_keep_pipelined_pairing() {
    let cfg = HttpConfig {
        max_head_bytes: 200,
        ..HttpConfig::default()
    };
    let mut req = b"GET /big HTTP/1.1\r\nHost: h\r\n".to_vec();
    for i in 0..10 {
        req.extend_from_slice(format!("X-Pad-{i}: {}\r\n", "p".repeat(40)).as_bytes());
    }
    req.extend_from_slice(b"\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n");
    let mut resp =
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbigHTTP/1.1 404 Not Found\r\n".to_vec();
    for i in 0..10 {
        resp.extend_from_slice(format!("X-Pad-{i}: {}\r\n", "q".repeat(40)).as_bytes());
    }
    resp.extend_from_slice(b"Content-Length: 4\r\n\r\nnope");
    let whole = run_with(&cfg, &req, &resp, &[], &[]);
    let shape: Vec<_> = whole
        .iter()
        .map(|t| {
            (
                String::from_utf8_lossy(t.request.as_ref().unwrap().target()).to_string(),
                t.response.as_ref().unwrap().status,
                t.anomalies.iter().collect::<Vec<_>>(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            ("/big".to_string(), 200, vec![Anomaly::HeadTooLarge]),
            // The oversize response's body cannot be framed: it is skipped up to the end.
            ("/next".to_string(), 404, vec![Anomaly::HeadTooLarge]),
        ]
    );
    assert!(whole.iter().all(|t| t.is_complete()));
    for i in 0..=req.len() {
        assert_eq!(
            run_with(&cfg, &req, &resp, &[i], &[]),
            whole,
            "request split at {i}"
        );
    }
    for i in 0..=resp.len() {
        assert_eq!(
            run_with(&cfg, &req, &resp, &[], &[i]),
            whole,
            "response split at {i}"
        );
    }
}

/// A bad chunk size is flagged on its own message; the next request, found by resync, only
/// says bytes were skipped before it.
#[test]
fn invalid_chunk_size_stays_on_its_message() {
    let mut h = H::new();
    h.send(
        C2S,
        b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\nGET /after HTTP/1.1\r\n\r\n",
    );
    h.send(
        S2C,
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
    );
    h.send(S2C, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(
        h.anomalies(0),
        vec![Anomaly::InvalidChunkSize, Anomaly::BodyTruncated]
    );
    assert_eq!(h.anomalies(1), vec![Anomaly::SkippedBytes]);
    assert_eq!(h.summary()[1], row("GET", "/after", 200, 0, 0));
}

#[test]
fn pending_overflow_gives_up_oldest() {
    let mut h = H::with(HttpConfig {
        max_pending_requests: 2,
        ..HttpConfig::default()
    });
    h.send(
        C2S,
        b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n",
    );
    assert_eq!(h.env.stats.pipeline_overflows, 1);
    assert_eq!(h.summary()[0].5, Some(IncompleteReason::PipelineOverflow));
    assert_eq!(h.summary()[0].1, "/1");
}

/// Conversations covering every framing; each is (requests, responses).
fn conversations() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        (
            b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloHEAD /c HTTP/1.1\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nwxyz\r\n0\r\nT: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n".to_vec(),
        ),
        (
            b"POST /up HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec(),
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        ),
        (
            b"GET / HTTP/1.0\r\nUser-Agent: x\r\n\r\n".to_vec(),
            b"HTTP/1.0 200 OK\r\nServer: y\r\n\r\nclose-delimited body".to_vec(),
        ),
    ]
}

/// Delivers each direction as given by the split points (requests first, then responses),
/// then ends the connection.
fn run(req: &[u8], resp: &[u8], req_cuts: &[usize], resp_cuts: &[usize]) -> Vec<HttpTransaction> {
    run_with(&HttpConfig::default(), req, resp, req_cuts, resp_cuts)
}

fn run_with(
    cfg: &HttpConfig,
    req: &[u8],
    resp: &[u8],
    req_cuts: &[usize],
    resp_cuts: &[usize],
) -> Vec<HttpTransaction> {
    let mut env: ParserEnv<HttpConfig, HttpStats> = ParserEnv::new(cfg.clone());
    let mut conn = HttpConn::new();
    let at = PacketRef {
        index: 1,
        ts: Timestamp(0),
    };
    for (dir, data, cuts) in [(C2S, req, req_cuts), (S2C, resp, resp_cuts)] {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        points.push(0);
        points.push(data.len());
        points.sort_unstable();
        points.dedup();
        for w in points.windows(2) {
            conn.on_data(dir, &data[w[0]..w[1]], &mut env.cx(at));
        }
    }
    conn.on_fin(S2C, &mut env.cx(at));
    conn.finish(FinishCause::ConnectionClosed, &mut env.cx(at));
    let mut out = env.out;
    out.sort_by_key(|t| t.key);
    out
}

#[test]
fn split_at_every_byte_gives_the_same_transactions() {
    for (req, resp) in conversations() {
        let whole = run(&req, &resp, &[], &[]);
        assert!(!whole.is_empty());
        assert!(whole.iter().all(|t| t.is_complete()), "{whole:?}");
        for i in 0..=req.len() {
            assert_eq!(run(&req, &resp, &[i], &[]), whole, "request split at {i}");
        }
        for i in 0..=resp.len() {
            assert_eq!(run(&req, &resp, &[], &[i]), whole, "response split at {i}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_splits_give_the_same_transactions(
        which in 0usize..3,
        req_cuts in proptest::collection::vec(any::<usize>(), 0..30),
        resp_cuts in proptest::collection::vec(any::<usize>(), 0..30),
    ) {
        let (req, resp) = &conversations()[which];
        prop_assert_eq!(run(req, resp, &req_cuts, &resp_cuts), run(req, resp, &[], &[]));
    }

    #[test]
    fn arbitrary_bytes_and_gaps_never_panic(
        chunks in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300), 0u64..50),
            0..40),
        seed in proptest::collection::vec(prop_oneof![
            Just(b"GET / HTTP/1.1\r\n".to_vec()),
            Just(b"HTTP/1.1 200 OK\r\n".to_vec()),
            Just(b"Content-Length: 5\r\n".to_vec()),
            Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"ffffffffffffffffff\r\n".to_vec()),
        ], 0..20),
    ) {
        let cfg = HttpConfig { max_head_bytes: 256, ..HttpConfig::default() };
        let mut env: ParserEnv<HttpConfig, HttpStats> = ParserEnv::new(cfg);
        let mut conn = HttpConn::new();
        let mut at = PacketRef { index: 1, ts: Timestamp(0) };
        for (i, s) in seed.iter().enumerate() {
            let dir = if i % 2 == 0 { C2S } else { S2C };
            conn.on_data(dir, s, &mut env.cx(at));
        }
        for (to_server, bytes, gap) in &chunks {
            at.index += 1;
            let dir = if *to_server { C2S } else { S2C };
            conn.on_data(dir, bytes, &mut env.cx(at));
            if *gap > 40 {
                conn.on_gap(dir, *gap, &mut env.cx(at));
            }
        }
        conn.finish(FinishCause::EndOfCapture, &mut env.cx(at));
        prop_assert!(conn.oldest_open().is_none());
        for t in &env.out {
            prop_assert!(t.request.is_some() || t.response.is_some());
        }
    }
}

/// A request and a response, each with `fields` header fields (`a: b`) and a body whose
/// Content-Length comes after all of them, then a second exchange: both transactions must
/// come out whole, however many fields there are.
fn many_fields(fields: usize) -> H {
    let mut h = H::new();
    let block: Vec<u8> = std::iter::repeat_n(&b"a: b\r\n"[..], fields)
        .flatten()
        .copied()
        .collect();
    let mut req = b"POST /many HTTP/1.1\r\n".to_vec();
    req.extend_from_slice(&block);
    req.extend_from_slice(b"Content-Length: 3\r\n\r\nxyzGET /next HTTP/1.1\r\n\r\n");
    let mut resp = b"HTTP/1.1 200 OK\r\n".to_vec();
    resp.extend_from_slice(&block);
    resp.extend_from_slice(b"Content-Length: 2\r\n\r\nokHTTP/1.1 204 No Content\r\n\r\n");
    h.send(C2S, &req);
    h.send(S2C, &resp);
    h.finish(FinishCause::ConnectionClosed);
    h
}

fn check_many_fields(fields: usize) -> Result<(), TestCaseError> {
    let h = many_fields(fields);
    let max = HttpConfig::default();
    // Heads past max_head_bytes keep their start line only (and no body framing).
    let req_too_large = 21 + 6 * fields + 19 + 2 > max.max_head_bytes;
    let resp_too_large = 17 + 6 * fields + 19 + 2 > max.max_head_bytes;
    let summary = h.summary();
    let (m, t, s, q, _, incomplete) = &summary[0];
    prop_assert_eq!((m.as_str(), t.as_str(), *s), ("POST", "/many", 200));
    prop_assert_eq!(*incomplete, None);
    if !req_too_large && !resp_too_large {
        prop_assert_eq!(summary.len(), 2, "{} fields: {:?}", fields, summary);
        prop_assert_eq!(*q, 3);
        prop_assert_eq!(&summary[1].0, "GET");
        prop_assert_eq!(summary[1].2, 204);
    }
    let flagged = h.anomalies(0);
    let too_many = fields + 1 > max.max_headers;
    prop_assert_eq!(
        flagged.contains(&Anomaly::TooManyHeaders),
        too_many && !(req_too_large && resp_too_large),
        "{} fields: {:?}",
        fields,
        flagged
    );
    prop_assert_eq!(
        flagged.contains(&Anomaly::HeadTooLarge),
        req_too_large || resp_too_large
    );
    Ok(())
}

#[test]
fn any_number_of_header_fields_gives_the_transaction() {
    for fields in [
        0, 1, 127, 128, 129, 255, 256, 257, 1000, 10_000, 10_915, 10_916, 10_917, 20_000,
    ] {
        check_many_fields(fields).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn header_field_counts_up_to_20000_each_give_one_transaction(fields in 0usize..20_000) {
        check_many_fields(fields)?;
    }
}

#[test]
fn a_request_body_shorter_than_its_content_length_is_truncated() {
    // The server answers before the body is all there (413, 401...) and closes.
    for close in [false, true] {
        let mut h = H::with(HttpConfig {
            include_body_for: vec!["application/json".into()],
            ..HttpConfig::default()
        });
        h.send(
            C2S,
            b"POST /up HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\nabc",
        );
        h.send(S2C, b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n");
        if close {
            h.fin(C2S);
            h.fin(S2C);
        }
        h.finish(FinishCause::ConnectionClosed);
        let s = h.summary();
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!((s[0].2, s[0].3), (413, 3), "{s:?}");
        assert_eq!(s[0].5, Some(IncompleteReason::RequestIncomplete), "{s:?}");
        assert!(
            h.anomalies(0).contains(&Anomaly::BodyTruncated),
            "{:?}",
            h.anomalies(0)
        );
        let body = h.env.out[0]
            .request
            .as_ref()
            .unwrap()
            .body
            .as_deref()
            .unwrap();
        assert!(body.truncated && body.bytes == b"abc", "{body:?}");
    }
}
