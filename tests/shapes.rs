//! One test per HTTP message shape and per request-smuggling indicator, on captures of real
//! clients and servers (`scripts/make-shape-fixtures.sh`, fixtures/shapes/): the events are
//! checked fact by fact (transactions, methods, targets, status codes, body sizes, anomalies
//! exactly where expected, lone-half reasons, parser counters), validated against
//! schema/event.schema.json, and compared byte for byte with `NAME.events.jsonl`.
//!
//! `UPDATE_GOLDEN=1 cargo test -p apitap --test shapes` rewrites the golden files (the same
//! files tests/golden.rs checks, made with the same default config); review them before
//! committing.
//!
//! Indicator captures hold two connections each: the odd request followed by a clean
//! `GET /v1/after` in one write, sent to nginx (strict: it answers 400 and closes for most)
//! and then to a lenient raw server (scripts/shape_server.py raw) that answers what it can.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use apitap::{Config, RunSummary};
use common::*;
use serde_json::Value;
use std::path::PathBuf;

const NGINX: u64 = 18480;
const RAW: u64 = 18481;
const PY11: u64 = 18482;

fn pcap(name: &str) -> PathBuf {
    root().join(format!("fixtures/shapes/{name}.pcap"))
}

fn default_cfg() -> Config {
    let mut cfg = Config::default();
    cfg.pipeline.workers = 2;
    cfg
}

/// Replays fixture `name` with `cfg`, validates every event against the schema and checks
/// the output against `fixtures/shapes/{golden}` (rewritten with UPDATE_GOLDEN=1).
fn replay_checked(name: &str, cfg: &Config, golden: &str) -> (Vec<Value>, Value) {
    let (out, summary) = run_replay_with(&[pcap(name)], cfg);
    let events = parse_lines(&out);
    let validator = schema_validator();
    for ev in &events {
        let errors: Vec<String> = validator
            .iter_errors(ev)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:?}\n{ev}");
    }
    let golden = root().join("fixtures/shapes").join(golden);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &out).unwrap();
    } else {
        let expected = std::fs::read(&golden)
            .unwrap_or_else(|_| panic!("no golden {}; run with UPDATE_GOLDEN=1", golden.display()));
        if expected != out {
            let (a, e) = (parse_all(&out), parse_all(&expected));
            let mut d = vec![format!("{} lines, expected {}", a.len(), e.len())];
            for (av, ev) in a.iter().zip(&e) {
                diff(av, ev, "", &mut d);
            }
            panic!(
                "{name}: output differs from {}:\n{}",
                golden.display(),
                d.join("\n")
            );
        }
    }
    (events, summary_json(&summary))
}

/// The events of a shape with the default config, checked against `NAME.events.jsonl`.
fn replay(name: &str) -> (Vec<Value>, Value) {
    replay_checked(name, &default_cfg(), &format!("{name}.events.jsonl"))
}

fn summary_json(s: &RunSummary) -> Value {
    s.to_json()
}

fn schema_validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("schema/event.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

fn s<'a>(e: &'a Value, path: &str) -> &'a str {
    field(e, path).as_str().unwrap_or("")
}

fn n(e: &Value, path: &str) -> u64 {
    field(e, path)
        .as_u64()
        .unwrap_or_else(|| panic!("{path} missing in {e}"))
}

fn anomalies(e: &Value) -> Vec<&str> {
    field(e, "apitap.anomalies")
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

fn port(e: &Value) -> u64 {
    n(e, "destination.port")
}

/// The events of the connection to `server_port`, in order.
fn conn(events: &[Value], server_port: u64) -> Vec<&Value> {
    events.iter().filter(|e| port(e) == server_port).collect()
}

/// A complete transaction: method, target as sent, status, body sizes, anomalies.
#[track_caller]
fn assert_tx(e: &Value, method: &str, target: &str, status: u64, req_body: u64, resp_body: u64) {
    assert_eq!(s(e, "http.request.method"), method, "{e}");
    assert_eq!(s(e, "url.original"), target, "{e}");
    assert_eq!(n(e, "http.response.status_code"), status, "{e}");
    assert_eq!(n(e, "http.request.body.bytes"), req_body, "{e}");
    assert_eq!(n(e, "http.response.body.bytes"), resp_body, "{e}");
}

#[track_caller]
fn assert_complete(e: &Value) {
    assert_eq!(field(e, "apitap.complete"), true, "{e}");
    assert!(field(e, "apitap.incomplete_reason").is_null(), "{e}");
}

/// A request the server never answered (it closed the connection first).
#[track_caller]
fn assert_unanswered(e: &Value, target: &str) {
    assert_eq!(s(e, "http.request.method"), "GET", "{e}");
    assert_eq!(s(e, "url.original"), target, "{e}");
    assert!(field(e, "http.response").is_null(), "{e}");
    assert_eq!(field(e, "apitap.complete"), false, "{e}");
    assert_eq!(s(e, "apitap.incomplete_reason"), "connection_closed", "{e}");
}

/// Every event of a clean shape: complete, no anomaly at all.
#[track_caller]
fn assert_clean(events: &[Value]) {
    for e in events {
        assert_complete(e);
        assert!(anomalies(e).is_empty(), "{e}");
    }
}

/// The trailing clean `GET /v1/after` of an indicator conversation, answered.
#[track_caller]
fn assert_after_answered(e: &Value, resp_body: u64) {
    assert_tx(e, "GET", "/v1/after", 200, 0, resp_body);
    assert_complete(e);
    assert!(anomalies(e).is_empty(), "{e}");
}

// JSON the raw server answers with: {"path": "...", "body_bytes": N}.
fn raw_json_len(path: &str, body_bytes: u64) -> u64 {
    format!("{{\"path\": \"{path}\", \"body_bytes\": {body_bytes}}}").len() as u64
}
// nginx: `return 200 '{"ok":true}'` and its built-in 400 page.
const NGINX_OK: u64 = 11;
const NGINX_400: u64 = 157;

// ---------------------------------------------------------------- message shapes

#[test]
fn expect_100_continue_is_one_transaction() {
    let (events, sum) = replay("expect-100-continue");
    assert_eq!(
        events.len(),
        1,
        "the interim 100 is not a transaction of its own"
    );
    let e = &events[0];
    assert_tx(e, "POST", "/v1/upload", 201, 3000, 18);
    assert_eq!(s(e, "http.request.headers.expect"), "100-continue");
    assert_eq!(
        s(e, "http.response.headers.content-type"),
        "application/json",
        "the final response's head, not the 100's"
    );
    // The response's wire bytes run from the interim 100 to the end of the final response.
    let interim = "HTTP/1.1 100 Continue\r\n\r\n".len() as u64;
    assert!(n(e, "http.response.bytes") > interim + 18);
    assert_clean(&events);
    assert_eq!(sum["http"]["interim_responses"], 1);
    assert_eq!(sum["http"]["responses"], 1);
    assert_eq!(sum["http"]["requests"], 1);
}

#[test]
fn websocket_upgrade_emits_the_101_and_hands_the_frames_to_a_websocket_layer() {
    let (events, sum) = replay("websocket-upgrade");
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_tx(e, "GET", "/ws", 101, 0, 0);
    assert_eq!(s(e, "http.request.headers.upgrade"), "websocket");
    assert_eq!(s(e, "http.response.headers.upgrade"), "websocket");
    assert_clean(&events);
    // The frames after the 101 are a WebSocket layer, not parsed, though the server's frame
    // carries text that looks like a status line ("...\r\nHTTP/1.1 200 OK\r\n...").
    assert_eq!(sum["http"]["upgrades"], 1);
    assert_eq!(sum["session"]["handoffs"], 1);
    assert_eq!(sum["session"]["layers"]["websocket"], 1);
    assert!(
        sum["session"]["unparsed_bytes"].as_u64().unwrap() > 100,
        "{sum}"
    );
    assert_eq!(sum["http"]["responses"], 1);
    assert_eq!(sum["http"]["bytes_skipped"], 0);
}

#[test]
fn connect_opens_a_tunnel_whose_http_is_parsed_as_a_layer_of_its_own() {
    let (events, sum) = replay("connect-tunnel");
    assert_eq!(events.len(), 2, "the CONNECT and the GET inside the tunnel");
    let e = &events[0];
    assert_tx(e, "CONNECT", "api.example:18480", 200, 0, 0);
    assert_eq!(s(e, "url.domain"), "api.example");
    assert!(field(e, "url.path").is_null());
    assert_eq!(s(e, "apitap.endpoint"), "CONNECT api.example:18480");
    // The tunnelled request: same connection, the next transaction, nginx's answer.
    let inner = &events[1];
    assert_tx(inner, "GET", "/v1/tunneled", 200, 0, NGINX_OK);
    assert_eq!(s(inner, "apitap.flow_id"), s(e, "apitap.flow_id"));
    assert_eq!(n(inner, "apitap.transaction"), 1);
    assert_clean(&events);
    assert_eq!(sum["http"]["upgrades"], 1);
    assert_eq!(sum["http"]["requests"], 2);
    assert_eq!(sum["session"]["handoffs"], 1);
    assert_eq!(sum["session"]["layers"]["http1"], 2);
    assert_eq!(sum["session"]["unparsed_bytes"], 0);
}

#[test]
fn http10_keep_alive_carries_two_transactions_on_one_connection() {
    let (events, _) = replay("http10-keepalive");
    assert_eq!(events.len(), 2);
    assert_tx(&events[0], "GET", "/v1/first", 200, 0, NGINX_OK);
    assert_tx(&events[1], "GET", "/v1/second", 200, 0, NGINX_OK);
    assert_eq!(
        field(&events[0], "apitap.flow_id"),
        field(&events[1], "apitap.flow_id")
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(n(e, "apitap.transaction"), i as u64);
        assert_eq!(s(e, "http.version"), "1.0");
        assert_eq!(s(e, "http.request.headers.connection"), "keep-alive");
        assert_eq!(s(e, "http.response.headers.connection"), "keep-alive");
    }
    assert_clean(&events);
}

#[test]
fn absolute_form_target_is_kept() {
    let (events, _) = replay("absolute-form");
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_tx(
        e,
        "GET",
        "http://api.example/v1/items?page=2",
        200,
        0,
        NGINX_OK,
    );
    assert_eq!(s(e, "url.path"), "/v1/items");
    assert_eq!(s(e, "url.query"), "page=2");
    assert_eq!(s(e, "url.domain"), "api.example");
    assert_eq!(s(e, "apitap.endpoint"), "GET /v1/items");
    assert_eq!(s(e, "http.request.headers.proxy-connection"), "Keep-Alive");
    assert_clean(&events);
}

#[test]
fn asterisk_form_target_is_kept() {
    let (events, _) = replay("asterisk-form");
    assert_eq!(events.len(), 2);
    // nginx refuses OPTIONS *; python's http.server answers it.
    let [ngx, py] = [conn(&events, NGINX), conn(&events, PY11)];
    assert_tx(ngx[0], "OPTIONS", "*", 400, 0, NGINX_400);
    assert_tx(py[0], "OPTIONS", "*", 204, 0, 0);
    assert_eq!(
        s(py[0], "http.response.headers.allow"),
        "GET, HEAD, POST, OPTIONS"
    );
    for e in &events {
        assert_eq!(s(e, "url.path"), "*");
        assert_eq!(s(e, "apitap.endpoint"), "OPTIONS *");
    }
    assert_clean(&events);
}

#[test]
fn long_pipeline_pairs_all_50_in_order() {
    let (events, sum) = replay("pipeline-50");
    assert_eq!(events.len(), 50);
    let flow = field(&events[0], "apitap.flow_id");
    for (i, e) in events.iter().enumerate() {
        assert_tx(e, "GET", &format!("/v1/items/{i}"), 200, 0, NGINX_OK);
        assert_eq!(n(e, "apitap.transaction"), i as u64);
        assert_eq!(field(e, "apitap.flow_id"), flow);
    }
    assert_clean(&events);
    assert_eq!(sum["http"]["pipeline_overflows"], 0);
    assert_eq!(sum["reassembly"]["gaps"], 0);
}

#[test]
fn head_response_has_content_length_but_no_body() {
    let (events, _) = replay("head-response");
    assert_eq!(events.len(), 2);
    let (head, get) = (&events[0], &events[1]);
    let length = s(get, "http.response.headers.content-length");
    assert_tx(head, "HEAD", "/data.json", 200, 0, 0);
    assert_eq!(s(head, "http.response.headers.content-length"), length);
    // The GET on the same connection right after is framed correctly.
    assert_tx(get, "GET", "/data.json", 200, 0, length.parse().unwrap());
    assert_eq!(field(head, "apitap.flow_id"), field(get, "apitap.flow_id"));
    assert_clean(&events);
}

#[test]
fn chunked_trailers_are_flagged_and_the_connection_goes_on() {
    let (events, _) = replay("trailers");
    assert_eq!(events.len(), 2);
    let t = &events[0];
    assert_tx(t, "GET", "/trailers", 200, 0, "hello, world".len() as u64);
    assert_eq!(s(t, "http.response.headers.transfer-encoding"), "chunked");
    assert_eq!(s(t, "http.response.headers.trailer"), "X-Checksum, X-Count");
    assert_eq!(anomalies(t), ["trailers"]);
    assert_complete(t);
    assert_after_answered(&events[1], raw_json_len("/v1/after", 0));
}

#[test]
fn several_interim_responses_then_the_final_one_are_one_transaction() {
    let (events, sum) = replay("multiple-1xx");
    assert_eq!(events.len(), 2, "102 and 103 are not transactions");
    let e = &events[0];
    assert_tx(
        e,
        "GET",
        "/early-hints",
        200,
        0,
        raw_json_len("/early-hints", 0),
    );
    assert!(
        field(e, "http.response.headers.link").is_null(),
        "the 103's Link header is not the final response's"
    );
    assert_after_answered(&events[1], raw_json_len("/v1/after", 0));
    assert_clean(&events);
    assert_eq!(sum["http"]["interim_responses"], 2);
    assert_eq!(sum["http"]["responses"], 2);
}

#[test]
fn obs_fold_in_a_request_is_an_invalid_header() {
    let (events, _) = replay("obs-fold");
    assert_eq!(events.len(), 4);
    // nginx rejects the folded request and closes: the GET behind it stays unanswered.
    let ngx = conn(&events, NGINX);
    assert_eq!(ngx.len(), 2);
    assert_tx(ngx[0], "GET", "/v1/folded", 400, 0, NGINX_400);
    assert_eq!(anomalies(ngx[0]), ["invalid_header"]);
    assert_unanswered(ngx[1], "/v1/after");
    assert!(anomalies(ngx[1]).is_empty());
    // python's http.server accepts it; both requests answered.
    let py = conn(&events, PY11);
    assert_eq!(py.len(), 2);
    assert_tx(py[0], "GET", "/v1/folded", 200, 0, 22);
    assert_eq!(anomalies(py[0]), ["invalid_header"]);
    assert_complete(py[0]);
    assert_tx(py[1], "GET", "/v1/after", 200, 0, 21);
    assert!(anomalies(py[1]).is_empty());
    for e in [ngx[0], py[0]] {
        // The continuation line is dropped; the fields around it are kept.
        assert_eq!(s(e, "http.request.headers.x-folded"), "first part");
        assert_eq!(s(e, "http.request.headers.accept"), "*/*");
    }
}

#[test]
fn response_delimited_by_connection_close() {
    let (events, _) = replay("close-delimited");
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_tx(e, "GET", "/stream", 200, 0, 5000);
    assert!(field(e, "http.response.headers.content-length").is_null());
    assert!(field(e, "http.response.headers.transfer-encoding").is_null());
    assert_clean(&events);
}

// ---------------------------------------------------------------- smuggling indicators

#[test]
fn content_length_with_transfer_encoding() {
    let (events, _) = replay("cl-te");
    assert_eq!(events.len(), 4);
    let (ngx, raw) = (conn(&events, NGINX), conn(&events, RAW));
    // Chunked wins over Content-Length: 4, so the body is the 5 bytes of "hello" and the GET
    // behind it is found where it is.
    for e in [ngx[0], raw[0]] {
        assert_eq!(anomalies(e), ["content_length_with_transfer_encoding"]);
        assert_eq!(n(e, "http.request.body.bytes"), 5);
        assert_complete(e);
    }
    assert_tx(ngx[0], "POST", "/v1/upload", 400, 5, NGINX_400);
    assert_unanswered(ngx[1], "/v1/after");
    assert!(anomalies(ngx[1]).is_empty());
    assert_tx(
        raw[0],
        "POST",
        "/v1/upload",
        200,
        5,
        raw_json_len("/v1/upload", 5),
    );
    assert_after_answered(raw[1], raw_json_len("/v1/after", 0));
}

#[test]
fn duplicate_content_length_equal() {
    let (events, _) = replay("dup-cl-equal");
    assert_eq!(events.len(), 4);
    let (ngx, raw) = (conn(&events, NGINX), conn(&events, RAW));
    // Equal values: the length is used, so parsing continues right after the body.
    assert_tx(ngx[0], "POST", "/v1/upload", 400, 5, NGINX_400);
    assert_unanswered(ngx[1], "/v1/after");
    assert!(anomalies(ngx[1]).is_empty());
    assert_tx(
        raw[0],
        "POST",
        "/v1/upload",
        200,
        5,
        raw_json_len("/v1/upload", 5),
    );
    assert_after_answered(raw[1], raw_json_len("/v1/after", 0));
    for e in [ngx[0], raw[0]] {
        assert_eq!(anomalies(e), ["invalid_content_length"]);
        assert_complete(e);
    }
}

#[test]
fn duplicate_content_length_differing() {
    let (events, sum) = replay("dup-cl-differ");
    // The body's end is unknown: the request is taken to have none and the bytes after its
    // head are not trusted to start a request. Both servers refuse it (400).
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_tx(
        conn(&events, NGINX)[0],
        "POST",
        "/v1/upload",
        400,
        0,
        NGINX_400,
    );
    assert_tx(conn(&events, RAW)[0], "POST", "/v1/upload", 400, 0, 0);
    for e in &events {
        assert_eq!(anomalies(e), ["invalid_content_length"]);
        assert_complete(e);
    }
    assert_eq!(sum["http"]["resyncs"], 2);
    // "hello" + the GET's head, on each connection.
    let skipped = ("hello".len()
        + "GET /v1/after HTTP/1.1\r\nHost: shapes.test\r\nUser-Agent: shape-client/1\r\n\r\n".len())
        as u64;
    assert_eq!(sum["http"]["bytes_skipped"], 2 * skipped);
}

#[test]
fn invalid_chunk_size() {
    let (events, sum) = replay("invalid-chunk");
    assert_eq!(events.len(), 4);
    for server in [NGINX, RAW] {
        let c = conn(&events, server);
        assert_eq!(c.len(), 2);
        // The request's body stops at the bad size line; the 400 still pairs with it.
        assert_eq!(s(c[0], "http.request.method"), "POST");
        assert_eq!(n(c[0], "http.response.status_code"), 400);
        assert_eq!(n(c[0], "http.request.body.bytes"), 0);
        assert_eq!(anomalies(c[0]), ["invalid_chunk_size", "body_truncated"]);
        assert_eq!(field(c[0], "apitap.complete"), false);
        assert_eq!(s(c[0], "apitap.incomplete_reason"), "request_incomplete");
        // Parsing resumes at the next request line; the GET only says bytes were skipped
        // before it (the bad chunk is not blamed on it). Both servers closed on the 400.
        assert_unanswered(c[1], "/v1/after");
        assert_eq!(anomalies(c[1]), ["skipped_bytes"]);
    }
    assert_eq!(
        n(conn(&events, NGINX)[0], "http.response.body.bytes"),
        NGINX_400
    );
    assert_eq!(sum["transactions"]["anomalies"]["invalid_chunk_size"], 2);
}

#[test]
fn bare_lf_line_ends() {
    let (events, _) = replay("bare-lf");
    assert_eq!(events.len(), 4);
    let (ngx, raw) = (conn(&events, NGINX), conn(&events, RAW));
    assert_tx(ngx[0], "GET", "/v1/bare-lf", 200, 0, NGINX_OK);
    assert_tx(
        raw[0],
        "GET",
        "/v1/bare-lf",
        200,
        0,
        raw_json_len("/v1/bare-lf", 0),
    );
    for e in [ngx[0], raw[0]] {
        assert_eq!(anomalies(e), ["bare_lf"]);
        assert_complete(e);
        assert_eq!(s(e, "http.request.headers.user-agent"), "shape-client/1");
    }
    assert_after_answered(ngx[1], NGINX_OK);
    assert_after_answered(raw[1], raw_json_len("/v1/after", 0));
}

#[test]
fn whitespace_before_colon() {
    let (events, _) = replay("ws-colon");
    let (ngx, raw) = (conn(&events, NGINX), conn(&events, RAW));
    // "Content-Length : 5" is not taken as a Content-Length (RFC 9112 5.1 has servers refuse
    // it, as nginx does), so "hello" and the GET behind it are skipped.
    assert_eq!(ngx.len(), 1);
    assert_tx(ngx[0], "POST", "/v1/upload", 400, 0, NGINX_400);
    assert_complete(ngx[0]);
    // The lenient server honours it and answers the GET too: that second answer has no
    // request apitap could see, the desync made visible.
    assert_eq!(raw.len(), 2);
    assert_tx(
        raw[0],
        "POST",
        "/v1/upload",
        200,
        0,
        raw_json_len("/v1/upload", 5),
    );
    assert_complete(raw[0]);
    for e in [ngx[0], raw[0]] {
        assert_eq!(anomalies(e), ["invalid_header", "whitespace_before_colon"]);
        assert!(field(e, "http.request.headers.content-length").is_null());
    }
    let lone = raw[1];
    assert!(field(lone, "http.request").is_null());
    assert_eq!(n(lone, "http.response.status_code"), 200);
    assert_eq!(
        n(lone, "http.response.body.bytes"),
        raw_json_len("/v1/after", 0)
    );
    assert_eq!(anomalies(lone), ["unsolicited_response"]);
    assert_eq!(s(lone, "apitap.incomplete_reason"), "request_not_seen");
}

#[test]
fn invalid_header_names() {
    let (events, _) = replay("bad-header-name");
    assert_eq!(events.len(), 4);
    let (ngx, raw) = (conn(&events, NGINX), conn(&events, RAW));
    assert_tx(ngx[0], "GET", "/v1/bad-name", 200, 0, NGINX_OK);
    assert_tx(
        raw[0],
        "GET",
        "/v1/bad-name",
        200,
        0,
        raw_json_len("/v1/bad-name", 0),
    );
    for e in [ngx[0], raw[0]] {
        assert_eq!(anomalies(e), ["invalid_header"]);
        assert_complete(e);
        // The bad field is left out, the good one after it kept.
        assert!(field(e, "http.request.headers.x@bad{name}").is_null());
        assert_eq!(s(e, "http.request.headers.x-good"), "2");
    }
    assert_after_answered(ngx[1], NGINX_OK);
    assert_after_answered(raw[1], raw_json_len("/v1/after", 0));
}

#[test]
fn oversize_head() {
    // Under the default 64 KiB limit the 5 KB head is an ordinary request.
    let (events, _) = replay("oversize-head");
    assert_eq!(events.len(), 4);
    assert_clean(&events);
    let big = conn(&events, NGINX)[0];
    assert_eq!(s(big, "http.request.headers.x-pad-19").len(), 240);

    // Over a 4 KiB limit: the request is kept from its request line, flagged, and still
    // paired with its own response; the GET behind it gets the next one.
    let mut cfg = default_cfg();
    cfg.http.max_head_bytes = 4096;
    let (events, sum) = replay_checked(
        "oversize-head",
        &cfg,
        "oversize-head.max-head-4096.events.jsonl",
    );
    assert_eq!(events.len(), 4);
    let (ngx, raw) = (conn(&events, NGINX), conn(&events, RAW));
    assert_tx(ngx[0], "GET", "/v1/big-head", 200, 0, NGINX_OK);
    assert_tx(
        raw[0],
        "GET",
        "/v1/big-head",
        200,
        0,
        raw_json_len("/v1/big-head", 0),
    );
    for e in [ngx[0], raw[0]] {
        assert_eq!(anomalies(e), ["head_too_large"]);
        assert_complete(e);
        assert!(field(e, "http.request.headers")
            .as_object()
            .is_none_or(|h| h.is_empty()));
        assert!(
            n(e, "http.request.bytes") > 4096,
            "the whole head is counted"
        );
    }
    assert_after_answered(ngx[1], NGINX_OK);
    assert_after_answered(raw[1], raw_json_len("/v1/after", 0));
    assert_eq!(sum["http"]["heads_too_large"], 2);
    assert_eq!(sum["http"]["bytes_skipped"], 0);
}

/// Every capture here is small and has no TCP loss (a lost segment would change the shape).
#[test]
fn shape_captures_are_small_and_whole() {
    let dir = root().join("fixtures/shapes");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "pcap").then(|| p.file_stem().unwrap().to_string_lossy().into())
        })
        .collect();
    names.sort();
    assert_eq!(names.len(), 20, "{names:?}");
    for name in names {
        let size = std::fs::metadata(pcap(&name)).unwrap().len();
        assert!(size < 32 * 1024, "{name}: {size} bytes");
        let (_, summary) = run_replay(&[pcap(&name)], 1);
        let sum = summary.to_json();
        assert_eq!(sum["reassembly"]["gaps"], 0, "{name}: {sum}");
    }
}
