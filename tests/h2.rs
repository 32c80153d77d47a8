//! HTTP/2 and gRPC end to end on the captures scripts/make-h2-fixtures.sh made (nginx
//! with `http2` on a cleartext port and on TLS, curl, nghttp and h2load as clients, a
//! Python grpcio server and client, an h2c upgrade, a rapid-reset client): every request
//! nginx logged and every call the gRPC server logged appears once, tshark's HTTP/2
//! dissector sees the same streams, and a capture joined midway claims no header that was
//! not on the wire.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    root().join("fixtures/h2").join(name)
}

fn http_events(out: &[u8]) -> Vec<Value> {
    parse_lines(out)
        .into_iter()
        .filter(|e| field(e, "network.protocol") == "http")
        .collect()
}

fn text(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_default()
}

/// One line of the fixtures' nginx log:
/// `$request_method $request_uri $status $body_bytes_sent $content_length $server_protocol`.
#[derive(Debug)]
struct Logged {
    method: String,
    uri: String,
    status: u64,
    body_bytes: u64,
    request_bytes: Option<u64>,
    protocol: String,
}

fn nginx_log(name: &str) -> Vec<Logged> {
    std::fs::read_to_string(fixture(name))
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 6, "{l}");
            Logged {
                method: f[0].into(),
                uri: f[1].into(),
                status: f[2].parse().unwrap(),
                body_bytes: f[3].parse().unwrap(),
                request_bytes: f[4].parse().ok(),
                protocol: f[5].into(),
            }
        })
        .collect()
}

/// Pairs every logged request with a distinct HTTP/2 event (method, target, status,
/// response body bytes, request body bytes when nginx knew them); returns what did not
/// pair, both ways.
fn unpaired(logged: &[Logged], events: &[Value]) -> Vec<String> {
    let mut used = vec![false; events.len()];
    let mut problems = Vec::new();
    for l in logged {
        assert_eq!(l.protocol, "HTTP/2.0");
        let agrees = |e: &Value| {
            field(e, "http.version") == "2"
                && field(e, "http.request.method") == l.method.as_str()
                && field(e, "url.original") == l.uri.as_str()
                && field(e, "http.response.status_code") == l.status
                && field(e, "http.response.body.bytes") == l.body_bytes
                && l.request_bytes
                    .is_none_or(|n| field(e, "http.request.body.bytes") == n)
                && field(e, "apitap.complete") == true
        };
        match (0..events.len()).find(|&i| !used[i] && agrees(&events[i])) {
            Some(i) => used[i] = true,
            None => problems.push(format!("nginx logged {l:?}, no event")),
        }
    }
    for (i, e) in events.iter().enumerate() {
        if !used[i] {
            problems.push(format!(
                "event {} {} {} not in nginx's log",
                field(e, "http.request.method"),
                field(e, "url.original"),
                field(e, "http.response.status_code")
            ));
        }
    }
    problems
}

#[test]
fn every_request_nginx_logged_over_h2c_appears_once() {
    let (out, summary) = run_replay(&[fixture("h2c.pcap")], 2);
    let events = http_events(&out);
    let logged = nginx_log("h2c.access.log");
    assert!(logged.len() >= 60, "{} lines", logged.len());
    let problems = unpaired(&logged, &events);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // :authority is the domain, :scheme the scheme; pseudo-headers are not headers.
    for e in &events {
        assert_eq!(field(e, "url.domain"), "10.78.0.1", "{e}");
        assert_eq!(field(e, "url.scheme"), "http", "{e}");
        let headers = field(e, "http.request.headers").as_object().unwrap();
        assert!(headers.keys().all(|k| !k.starts_with(':')), "{e}");
        assert!(field(e, "apitap.http2.stream_id").as_u64().unwrap() % 2 == 1);
    }
    // Several streams of one connection (multiplexed: h2load -m 20).
    let mut per_flow: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        *per_flow
            .entry(text(field(e, "apitap.flow_id")))
            .or_default() += 1;
    }
    assert!(per_flow.values().any(|&n| n >= 20), "{per_flow:?}");
    let h2 = &summary.workers.session.http.http2;
    assert_eq!(
        h2.frames_invalid + h2.hpack_errors + h2.hpack_fields_unknown,
        0
    );
    assert_eq!(summary.workers.session.layers.http2, h2.connections);
}

/// The key log's copy only its owner can read (apitap refuses others).
fn keys() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = scratch("h2-keys").join("keys.log");
    std::fs::copy(fixture("h2-tls.keys"), &path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn every_request_nginx_logged_over_tls_h2_appears_once_decrypted() {
    let mut cfg = apitap::Config::default();
    cfg.pipeline.workers = 2;
    cfg.tls.keylog_files = vec![keys().display().to_string()];
    let (out, summary) = run_replay_with(&[fixture("h2-tls.pcap")], &cfg);
    let events = http_events(&out);
    let problems = unpaired(&nginx_log("h2-tls.access.log"), &events);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for e in &events {
        assert_eq!(field(e, "tls.next_protocol"), "h2", "{e}");
        assert_eq!(field(e, "url.scheme"), "https", "{e}");
        assert_eq!(field(e, "url.domain"), "api.test", "{e}");
    }
    // A gzip response is decoded like an HTTP/1 one when its body is captured.
    assert!(events
        .iter()
        .any(|e| field(e, "http.response.headers.content-encoding") == "gzip"));
    assert_eq!(summary.workers.session.layers.http2, 5);
}

/// One line of the gRPC server's log: `service method STATUS requests responses`.
fn grpc_log() -> Vec<(String, String, String, u64, u64)> {
    std::fs::read_to_string(fixture("grpc.server.log"))
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (
                f[0].into(),
                f[1].into(),
                f[2].into(),
                f[3].parse().unwrap(),
                f[4].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn every_grpc_call_the_server_logged_appears_with_its_status_and_messages() {
    let (out, summary) = run_replay(&[fixture("grpc.pcap")], 2);
    let events = http_events(&out);
    let mut ours: Vec<(String, String, String, u64, u64)> = events
        .iter()
        .map(|e| {
            assert_eq!(field(e, "rpc.system"), "grpc");
            assert_eq!(field(e, "http.request.method"), "POST");
            assert!(field(e, "apitap.grpc.request.framing_lost").is_null());
            (
                text(field(e, "rpc.service")),
                text(field(e, "rpc.method")),
                text(field(e, "apitap.grpc.status")),
                field(e, "apitap.grpc.request.messages").as_u64().unwrap(),
                field(e, "apitap.grpc.response.messages").as_u64().unwrap(),
            )
        })
        .collect();
    let mut theirs = grpc_log();
    assert!(theirs.len() >= 8);
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs);
    // Failed calls fail (HTTP 200 with a gRPC status), with the server's message.
    let denied = events
        .iter()
        .find(|e| field(e, "apitap.grpc.status") == "UNAUTHENTICATED")
        .unwrap();
    assert_eq!(field(denied, "event.outcome"), "failure");
    assert_eq!(field(denied, "rpc.grpc.status_code"), 16);
    assert_eq!(field(denied, "http.response.status_code"), 200);
    assert!(!text(field(denied, "apitap.grpc.message")).is_empty());
    // Compressed messages and their encoding.
    let gzip = events
        .iter()
        .find(|e| field(e, "apitap.grpc.encoding") == "gzip")
        .unwrap();
    assert_eq!(field(gzip, "apitap.grpc.request.compressed"), 1);
    // Trailers of a call that sent messages carry its status.
    let ok = events
        .iter()
        .find(|e| field(e, "rpc.method") == "ListUsers")
        .unwrap();
    assert_eq!(field(ok, "apitap.trailers.grpc-status"), "0");
    assert_eq!(summary.workers.session.http.http2.grpc_calls, 9);
}

/// tshark's HTTP/2 dissector, on the same capture: per HEADERS frame, the client port,
/// stream, and `:method`/`:path` (requests) or `:status` (responses).
fn tshark_streams(pcap: &Path, port: u16, keylog: Option<&Path>) -> Vec<(String, String, String)> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(pcap);
    match keylog {
        // Inside TLS, ALPN tells tshark the protocol.
        Some(k) => cmd.args(["-o", &format!("tls.keylog_file:{}", k.display())]),
        None => cmd.args(["-d", &format!("tcp.port=={port},http2")]),
    };
    cmd.args(["-Y", "http2.type == 1", "-T", "fields"]);
    for f in [
        "tcp.srcport",
        "tcp.dstport",
        "http2.streamid",
        "http2.type",
        "http2.headers.method",
        "http2.headers.path",
        "http2.headers.status",
    ] {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rows = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let f: Vec<Vec<&str>> = line
            .split('\t')
            .map(|c| c.split(',').filter(|s| !s.is_empty()).collect())
            .collect();
        let to_server = f[1] == [port.to_string().as_str()];
        let client = if to_server { f[0][0] } else { f[1][0] };
        let (mut methods, mut paths, mut statuses) = (f[4].iter(), f[5].iter(), f[6].iter());
        for (stream, kind) in f[2].iter().zip(&f[3]) {
            if *kind != "1" {
                continue;
            }
            let what = if to_server {
                format!("{} {}", methods.next().unwrap(), paths.next().unwrap())
            } else {
                match statuses.next() {
                    Some(s) => s.to_string(),
                    // Trailers: no :status.
                    None => continue,
                }
            };
            rows.push((client.to_string(), stream.to_string(), what));
        }
    }
    rows.sort();
    rows
}

fn our_streams(events: &[Value]) -> Vec<(String, String, String)> {
    let mut rows = Vec::new();
    for e in events {
        let client = field(e, "source.port").to_string();
        let stream = field(e, "apitap.http2.stream_id").to_string();
        rows.push((
            client.clone(),
            stream.clone(),
            format!(
                "{} {}",
                text(field(e, "http.request.method")),
                text(field(e, "url.original"))
            ),
        ));
        if let Some(status) = field(e, "http.response.status_code").as_u64() {
            rows.push((client, stream, status.to_string()));
        }
    }
    rows.sort();
    rows
}

#[test]
fn streams_agree_with_tsharks_http2_dissector() {
    for (name, port) in [("h2c.pcap", 8080), ("grpc.pcap", 50051)] {
        let (out, _) = run_replay(&[fixture(name)], 2);
        let ours = our_streams(&http_events(&out));
        let theirs = tshark_streams(&fixture(name), port, None);
        assert!(ours.len() >= 18, "{name}");
        assert_eq!(ours, theirs, "{name}");
    }
    let keylog = keys();
    let mut cfg = apitap::Config::default();
    cfg.tls.keylog_files = vec![keylog.display().to_string()];
    let (out, _) = run_replay_with(&[fixture("h2-tls.pcap")], &cfg);
    let ours = our_streams(&http_events(&out));
    assert_eq!(
        ours,
        tshark_streams(&fixture("h2-tls.pcap"), 8443, Some(&keylog))
    );
}

/// The h2c capture without its SYNs and the packets that carried the prefaces: every
/// connection is joined midway. What the events say is what the whole capture's events
/// say of the same stream (no header, path or status that was not on the wire), and
/// what could not be decoded is marked.
#[test]
fn joined_midway_no_event_claims_what_was_not_on_the_wire() {
    let pcap = fixture("h2c.pcap");
    let drop: Vec<String> = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-d", "tcp.port==8080,http2"])
        .args([
            "-Y",
            "tcp.flags.syn == 1 || http2.magic || (http2.type == 4 && http2.flags.ack.settings == 0)",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ])
        .output()
        .map(|o| String::from_utf8(o.stdout).unwrap())
        .expect("tshark")
        .lines()
        .map(str::to_string)
        .collect();
    assert!(drop.len() >= 20);
    let cut = scratch("h2-midstream").join("midstream.pcap");
    let status = Command::new("editcap")
        .arg(&pcap)
        .arg(&cut)
        .args(&drop)
        .status()
        .expect("editcap (tshark's package)");
    assert!(status.success());
    let (whole, _) = run_replay(&[pcap], 1);
    let truth: BTreeMap<(String, String), Value> = http_events(&whole)
        .into_iter()
        .map(|e| {
            (
                (
                    field(&e, "source.port").to_string(),
                    field(&e, "apitap.http2.stream_id").to_string(),
                ),
                e,
            )
        })
        .collect();
    let (out, summary) = run_replay(&[cut], 1);
    let events = http_events(&out);
    assert!(events.len() >= 30, "{} events", events.len());
    let mut marked = 0;
    for e in &events {
        let key = (
            field(e, "source.port").to_string(),
            field(e, "apitap.http2.stream_id").to_string(),
        );
        let t = truth
            .get(&key)
            .unwrap_or_else(|| panic!("no such stream {key:?}"));
        for part in ["request", "response"] {
            let headers = format!("http.{part}.headers");
            if let Some(h) = field(e, &headers).as_object() {
                for (name, value) in h {
                    assert_eq!(
                        field(t, &format!("{headers}.{name}")),
                        value,
                        "{key:?} {name}"
                    );
                }
            }
        }
        for f in [
            "url.original",
            "http.request.method",
            "http.response.status_code",
            "url.domain",
        ] {
            if !field(e, f).is_null() {
                assert_eq!(field(e, f), field(t, f), "{key:?} {f}");
            }
        }
        let anomalies = field(e, "apitap.anomalies").to_string();
        if anomalies.contains("hpack_state_missing")
            || !field(e, "apitap.incomplete_reason").is_null()
        {
            marked += 1;
        }
    }
    assert!(marked > 0, "nothing marked");
    let h2 = &summary.workers.session.http.http2;
    assert!(h2.midstream_connections >= 5, "{h2:?}");
    assert!(h2.hpack_fields_unknown > 0, "{h2:?}");
}

#[test]
fn an_h2c_upgrade_is_followed_into_http2() {
    let (out, summary) = run_replay(&[fixture("h2c-upgrade.pcap")], 1);
    let events = http_events(&out);
    let seen: Vec<(String, String, u64, bool)> = events
        .iter()
        .map(|e| {
            (
                text(field(e, "http.version")),
                text(field(e, "url.original")),
                field(e, "http.response.status_code").as_u64().unwrap(),
                field(e, "apitap.http2.upgrade") == true,
            )
        })
        .collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0].0, "1.1");
    assert_eq!(seen[0].2, 101);
    // Stream 1 answers the HTTP/1.1 request that asked for the upgrade; stream 3 is a
    // request of its own.
    assert_eq!((seen[1].0.as_str(), seen[1].2, seen[1].3), ("2", 200, true));
    assert_eq!(seen[1].1, seen[0].1);
    assert_eq!(field(&events[1], "apitap.complete"), true);
    assert_eq!((seen[2].0.as_str(), seen[2].3), ("2", false));
    assert!(!seen[2].1.is_empty());
    assert_eq!(summary.workers.session.layers.h2c, 1);
}

#[test]
fn reset_streams_are_incomplete_with_who_reset_them_and_why() {
    let (out, summary) = run_replay(&[fixture("rapid-reset.pcap")], 1);
    let events = http_events(&out);
    assert_eq!(events.len(), 200);
    for e in &events {
        assert_eq!(field(e, "apitap.incomplete_reason"), "stream_reset", "{e}");
        assert_eq!(field(e, "apitap.http2.reset.by"), "client");
        assert_eq!(field(e, "apitap.http2.reset.error_code"), "CANCEL");
        assert_eq!(field(e, "url.original"), "/api/users");
    }
    assert_eq!(summary.workers.session.http.http2.streams_reset, 200);
}

#[test]
fn a_header_block_that_never_ends_is_one_incomplete_event() {
    let (out, summary) = run_replay(&[fixture("continuation-flood.pcap")], 1);
    let events = http_events(&out);
    assert_eq!(events.len(), 1);
    assert_eq!(
        field(&events[0], "apitap.incomplete_reason"),
        "request_incomplete"
    );
    let h2 = &summary.workers.session.http.http2;
    assert_eq!(h2.continuation_frames, 300);
    assert_eq!(h2.header_blocks_lost, 1);
}

/// Bodies of HTTP/2 streams are captured, content-decoded and redacted as HTTP/1 bodies
/// are (`http.include_body_for`).
#[test]
fn http2_bodies_are_captured_and_decoded_like_http1() {
    let mut cfg = apitap::Config::default();
    cfg.http.include_body_for = vec!["application/json".into()];
    let (out, _) = run_replay_with(&[fixture("h2c.pcap")], &cfg);
    let events = http_events(&out);
    let post = events
        .iter()
        .find(|e| field(e, "http.request.method") == "POST")
        .unwrap();
    let sent = text(field(post, "http.request.body.content"));
    assert!(sent.starts_with('{'), "{post}");
    assert_eq!(
        field(post, "http.request.body.bytes").as_u64(),
        Some(sent.len() as u64)
    );
    let gzip = events
        .iter()
        .find(|e| field(e, "apitap.body.response.content_encoding") == "gzip")
        .unwrap();
    assert!(text(field(gzip, "http.response.body.content")).starts_with('{'));
}
