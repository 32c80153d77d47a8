//! Encoder tests: every field of an event, redaction, and the hand writer against serde.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::headers::HeadText;
use crate::view::EventView;
use apitap_core::{
    Anomaly, Endpoint, HttpRequest, HttpResponse, HttpVersion, IncompleteReason, PacketRef,
    SortKey, Span, Timestamp,
};
use std::borrow::Cow;

fn head(lines: &[(&str, &str)], start_line: &str) -> (Head, Vec<Span>) {
    let mut buf = start_line.as_bytes().to_vec();
    buf.extend_from_slice(b"\r\n");
    let mut headers = Vec::new();
    for (n, v) in lines {
        let ns = buf.len();
        buf.extend_from_slice(n.as_bytes());
        buf.extend_from_slice(b": ");
        let vs = buf.len();
        buf.extend_from_slice(v.as_bytes());
        buf.extend_from_slice(b"\r\n");
        headers.push((Span::new(ns, n.len()), Span::new(vs, v.len())));
    }
    let words: Vec<Span> = {
        let mut spans = Vec::new();
        let mut pos = 0;
        for w in start_line.splitn(3, ' ') {
            spans.push(Span::new(pos, w.len()));
            pos += w.len() + 1;
        }
        spans
    };
    (Head { buf, headers }, words)
}

fn flow() -> FlowContext {
    FlowContext::new(
        Endpoint {
            ip: "10.0.0.2".parse().unwrap(),
            port: 40000,
        },
        Endpoint {
            ip: "10.0.0.1".parse().unwrap(),
            port: 80,
        },
        FlowSeed::Syn(7),
    )
}

fn sample_tx() -> HttpTransaction {
    let (qh, qw) = head(
        &[
            ("Host", "api.example.com:8080"),
            ("User-Agent", "curl/8.0"),
            ("Authorization", "Bearer secret-token"),
            ("Accept", "a/b"),
            ("accept", "c/d"),
            ("Content-Type", "Application/JSON; charset=utf-8"),
        ],
        "POST /v1/users/42?x=1&y=%20#frag HTTP/1.1",
    );
    let (rh, rw) = head(
        &[("Content-Length", "2"), ("Set-Cookie", "a=b")],
        "HTTP/1.1 201 Created",
    );
    HttpTransaction {
        key: SortKey {
            packet: 4,
            flow: 1,
            ordinal: 0,
        },
        request: Some(HttpRequest {
            head: qh,
            method: qw[0],
            target: qw[1],
            version: HttpVersion::Http11,
            body_bytes: 13,
            wire_bytes: 200,
            body: None,
            authority: Default::default(),
            scheme: Default::default(),
            start: PacketRef {
                index: 4,
                ts: Timestamp::from_parts(1_714_564_800, 1_000),
            },
            end: PacketRef {
                index: 4,
                ts: Timestamp::from_parts(1_714_564_800, 1_000),
            },
        }),
        response: Some(HttpResponse {
            head: rh,
            status: 201,
            reason: rw[2],
            version: HttpVersion::Http11,
            body_bytes: 2,
            wire_bytes: 60,
            body: None,
            interim_count: 0,
            trailers: Default::default(),
            start: PacketRef {
                index: 6,
                ts: Timestamp::from_parts(1_714_564_800, 5_001_000),
            },
            end: PacketRef {
                index: 6,
                ts: Timestamp::from_parts(1_714_564_800, 5_001_000),
            },
        }),
        anomalies: Default::default(),
        incomplete: None,
        tls: None,
        http2: None,
        grpc: None,
    }
}

fn encode(tx: &HttpTransaction, enc: &Encoder) -> serde_json::Value {
    let mut out = Vec::new();
    enc.encode(&flow(), tx, &mut out);
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn head_text_slices_parts_of_a_checked_head_and_checks_anything_else() {
    let head = Head {
        buf: "GET /caf\u{e9} HTTP/1.1\r\n".as_bytes().to_vec(),
        headers: Vec::new(),
    };
    let t = HeadText::new(&head);
    let path = &head.buf[4..10];
    assert!(matches!(t.str(path), Cow::Borrowed("/caf\u{e9}")));
    // Half of the two-byte é: not a character boundary, replaced as before.
    assert_eq!(t.str(&head.buf[4..9]), "/caf\u{fffd}");
    // Bytes from elsewhere (same content, other address) are checked on their own.
    let other = b"/caf\xc3\xa9".to_vec();
    assert_eq!(t.str(&other), "/caf\u{e9}");
    assert_eq!(t.str(b"\xff"), "\u{fffd}");
    // A head that is not UTF-8: every part is checked on its own.
    let bad = Head {
        buf: b"GET /\xff HTTP/1.1\r\n".to_vec(),
        headers: Vec::new(),
    };
    let b = HeadText::new(&bad);
    assert!(b.text.is_none());
    assert_eq!(b.str(&bad.buf[0..3]), "GET");
    assert_eq!(b.str(&bad.buf[4..6]), "/\u{fffd}");
}

/// The hand-written ECS writer against the serde derives it replaces, over transactions
/// that reach every optional field, every escape class and invalid UTF-8.
#[test]
fn hand_writer_equals_serde() {
    let hostile = "q\"\\\u{1}\u{1f}\u{7f}\u{2028}é\t\n";
    let long_name = format!("X-{}", "Very-Long-Header-Name-".repeat(4));
    let mut txs = vec![sample_tx()];

    // Hostile header names and values, repeated and redacted headers, odd targets.
    for target in [
        "GET /a%22b/12345?password=hunter2&x=%FF#f HTTP/1.1",
        "GET http://u:p@h.example:81/v1/9f86d081884c7d65ab?q HTTP/1.1",
        "OPTIONS * HTTP/1.1",
        "CONNECT h.example:443 HTTP/1.1",
        "GET /p? HTTP/1.0",
    ] {
        let mut tx = sample_tx();
        let lines = [
            ("Host", hostile),
            ("User-Agent", hostile),
            (long_name.as_str(), "v"),
            ("Cookie", "a=1"),
            ("cookie", "b=2"),
            ("X-Repeated", "one"),
            ("x-REPEATED", ""),
            ("X-Repeated", hostile),
            ("Content-Type", "text/plain"),
            // Names httparse would refuse: the writer's escaping path.
            ("X-Q\"uo\\te", "v"),
            ("X-Ünï", "v"),
        ];
        let (qh, qw) = head(&lines, target);
        if let Some(r) = tx.request.as_mut() {
            r.head = qh;
            r.method = qw[0];
            r.target = qw[1];
        }
        txs.push(tx);
    }

    // Invalid UTF-8 in the target, a header value and the reason phrase.
    let mut bad = sample_tx();
    if let Some(r) = bad.request.as_mut() {
        r.head.buf[7] = 0xff;
        let last = r.head.buf.len() - 3;
        r.head.buf[last] = 0xc3;
    }
    if let Some(r) = bad.response.as_mut() {
        r.head.buf[13] = 0x80;
    }
    txs.push(bad);

    // Captured bodies: JSON with a sensitive field, binary, truncated and decoded.
    let mut bodies = sample_tx();
    if let Some(r) = bodies.request.as_mut() {
        r.body = Some(Box::new(apitap_core::CapturedBody {
            bytes: br#"{"user":"a\"b","password":"p","n":[1,2]}"#.to_vec(),
            truncated: false,
            decoded_from: None,
            capture_limit: None,
        }));
    }
    if let Some(r) = bodies.response.as_mut() {
        r.body = Some(Box::new(apitap_core::CapturedBody {
            bytes: vec![0, 159, 146, 150, 0xff, b'"'],
            truncated: true,
            decoded_from: apitap_core::ContentCodings::new(&[apitap_core::ContentCoding::Gzip]),
            capture_limit: None,
        }));
    }
    txs.push(bodies);

    // Every anomaly, an incomplete reason, lone request and lone response.
    let mut all = sample_tx();
    for a in Anomaly::ALL {
        all.anomalies.insert(*a);
    }
    all.incomplete = Some(IncompleteReason::EndOfCapture);
    all.response = None;
    txs.push(all);
    let mut lone = sample_tx();
    lone.request = None;
    lone.incomplete = Some(IncompleteReason::RequestNotSeen);
    txs.push(lone);

    // HTTP/2 and gRPC: authority and scheme, the stream's reset, push and GOAWAY, gRPC
    // messages, trailers, a status that could not be decoded.
    let mut h2 = sample_tx();
    let (qh, qw) = head(
        &[
            ("content-type", "application/grpc"),
            ("grpc-encoding", "gzip"),
        ],
        "POST /pkg.Svc/Do api.example.com:443 https",
    );
    if let Some(r) = h2.request.as_mut() {
        r.head = qh;
        r.method = qw[0];
        r.target = qw[1];
        let rest = qw[2];
        r.authority = Span::new(rest.start as usize, 19);
        r.scheme = Span::new(rest.start as usize + 20, 5);
        r.version = HttpVersion::Http2;
    }
    if let Some(r) = h2.response.as_mut() {
        r.version = HttpVersion::Http2;
        r.status = 0;
        let (th, _) = head(
            &[("grpc-status", "16"), ("grpc-message", "who%20are%20you")],
            "-",
        );
        r.trailers = th;
    }
    h2.http2 = Some(Box::new(apitap_core::Http2Stream {
        stream_id: 7,
        reset: Some(apitap_core::StreamReset {
            by: apitap_core::Direction::ToServer,
            error_code: 8,
        }),
        promised_by: Some(1),
        goaway: Some(0x42),
        upgrade: true,
    }));
    h2.grpc = Some(Box::new(apitap_core::GrpcMessages {
        request: apitap_core::MessageCount {
            messages: 2,
            bytes: 10,
            compressed: 1,
            framing_lost: true,
        },
        response: apitap_core::MessageCount::default(),
    }));
    h2.incomplete = Some(IncompleteReason::StreamReset);
    txs.push(h2);

    let v6 = FlowContext::new(
        Endpoint {
            ip: "2001:db8::2".parse().unwrap(),
            port: 1,
        },
        Endpoint {
            ip: "2001:db8::1".parse().unwrap(),
            port: 65535,
        },
        FlowSeed::FirstSeen(i64::MAX),
    );
    let flows = [
        flow(),
        v6,
        flow().with_encap(apitap_core::Encap {
            vlan: Some(4095),
            tunnel: Some(apitap_core::Tunnel {
                kind: apitap_core::TunnelKind::Vxlan,
                id: Some(u32::MAX),
            }),
        }),
        flow().with_encap(apitap_core::Encap {
            vlan: None,
            tunnel: Some(apitap_core::Tunnel {
                kind: apitap_core::TunnelKind::Gre,
                id: None,
            }),
        }),
    ];
    let names: Vec<String> = vec!["authorization".into(), "cookie".into()];
    let configs = [
        EncoderConfig::default(),
        EncoderConfig {
            sensor: hostile.into(),
            redactor: Redactor::new(&names, Some(b"key".to_vec())),
            format: EventFormat::Ecs,
            typed_placeholders: true,
            body_content_for: Some(vec!["application/json".into()]),
        },
        EncoderConfig {
            sensor: "s".into(),
            redactor: Redactor::new(&[], None).with_fields(&[]),
            format: EventFormat::Ecs,
            typed_placeholders: true,
            body_content_for: None,
        },
    ];
    let mut checked = 0;
    for cfg in &configs {
        for fl in &flows {
            for tx in &txs {
                let view = EventView::new(cfg, fl, tx);
                let mut hand = Vec::new();
                view.write_ecs(&mut hand);
                let serde = serde_json::to_vec(&view).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&hand),
                    String::from_utf8_lossy(&serde)
                );
                assert_eq!(hand, serde);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, configs.len() * flows.len() * txs.len());
}

#[test]
fn complete_transaction_fields() {
    let v = encode(&sample_tx(), &Encoder::default());
    assert_eq!(v["@timestamp"], "2024-05-01T12:00:00.000001Z");
    assert_eq!(v["event"]["kind"], "event");
    assert_eq!(v["event"]["duration"], 5_000_000);
    assert_eq!(v["event"]["outcome"], "success");
    assert_eq!(v["source"]["ip"], "10.0.0.2");
    assert_eq!(v["source"]["port"], 40000);
    assert_eq!(v["destination"]["ip"], "10.0.0.1");
    assert_eq!(v["destination"]["port"], 80);
    assert_eq!(v["network"]["transport"], "tcp");
    assert!(v["network"]["community_id"]
        .as_str()
        .unwrap()
        .starts_with("1:"));
    assert_eq!(v["url"]["original"], "/v1/users/42?x=1&y=%20#frag");
    assert_eq!(v["url"]["path"], "/v1/users/42");
    assert_eq!(v["url"]["query"], "x=1&y=%20");
    assert_eq!(v["url"]["domain"], "api.example.com");
    assert_eq!(v["http"]["version"], "1.1");
    assert_eq!(v["http"]["request"]["method"], "POST");
    assert_eq!(v["http"]["request"]["body"]["bytes"], 13);
    assert_eq!(v["http"]["request"]["mime_type"], "application/json");
    assert_eq!(v["http"]["request"]["headers"]["accept"], "a/b, c/d");
    assert_eq!(
        v["http"]["request"]["headers"]["authorization"],
        "[REDACTED]"
    );
    assert_eq!(v["http"]["response"]["headers"]["set-cookie"], "[REDACTED]");
    assert_eq!(v["http"]["response"]["status_code"], 201);
    assert_eq!(v["http"]["response"]["body"]["bytes"], 2);
    assert_eq!(v["http"]["response"]["bytes"], 60);
    assert_eq!(v["http"]["request"]["bytes"], 200);
    assert_eq!(v["user_agent"]["original"], "curl/8.0");
    assert_eq!(v["apitap"]["complete"], true);
    assert_eq!(v["apitap"]["anomalies"], serde_json::json!([]));
    assert!(v["apitap"].get("incomplete_reason").is_none());
    assert_eq!(v["apitap"]["flow_id"], flow().flow_id);
    assert_eq!(v["apitap"]["endpoint"], "POST /v1/users/{id}");
    assert_eq!(v["event"]["id"], format!("{}-0", flow().flow_id));
}

#[test]
fn hmac_redaction_is_keyed_and_stable() {
    let names: Vec<String> = vec!["authorization".into()];
    let enc = |key: &[u8]| {
        Encoder::new(EncoderConfig {
            sensor: "s1".into(),
            redactor: Redactor::new(&names, Some(key.to_vec())),
            format: EventFormat::Ecs,
            typed_placeholders: true,
            body_content_for: None,
        })
    };
    let a = encode(&sample_tx(), &enc(b"k1"));
    let b = encode(&sample_tx(), &enc(b"k1"));
    let c = encode(&sample_tx(), &enc(b"k2"));
    let va = a["http"]["request"]["headers"]["authorization"]
        .as_str()
        .unwrap();
    assert!(va.starts_with("hmac:") && va.len() == 21, "{va}");
    assert_eq!(va, b["http"]["request"]["headers"]["authorization"]);
    assert_ne!(va, c["http"]["request"]["headers"]["authorization"]);
    assert!(!a.to_string().contains("secret-token"));
    // Not in the list -> kept.
    assert_eq!(a["http"]["response"]["headers"]["set-cookie"], "a=b");
    assert_eq!(a["observer"]["name"], "s1");
}

#[test]
fn lone_request_has_reason_and_no_duration() {
    let mut tx = sample_tx();
    tx.response = None;
    tx.incomplete = Some(IncompleteReason::EndOfCapture);
    tx.anomalies.insert(Anomaly::Gap);
    let v = encode(&tx, &Encoder::default());
    assert_eq!(v["apitap"]["complete"], false);
    assert_eq!(v["apitap"]["incomplete_reason"], "end_of_capture");
    assert_eq!(v["apitap"]["anomalies"], serde_json::json!(["gap"]));
    assert!(v["event"].get("duration").is_none());
    assert!(v["http"].get("response").is_none());
}

#[test]
fn lone_response_uses_response_time() {
    let mut tx = sample_tx();
    tx.request = None;
    tx.incomplete = Some(IncompleteReason::RequestNotSeen);
    let v = encode(&tx, &Encoder::default());
    assert_eq!(v["@timestamp"], "2024-05-01T12:00:00.005001Z");
    assert!(v.get("url").is_none());
    assert_eq!(v["http"]["response"]["status_code"], 201);
}

#[test]
fn non_utf8_and_control_bytes_stay_valid_json() {
    let mut tx = sample_tx();
    if let Some(req) = tx.request.as_mut() {
        req.head.buf[6] = 0xff; // inside the target
        req.head.buf.push(b'"');
    }
    let mut out = Vec::new();
    Encoder::default().encode(&flow(), &tx, &mut out);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(v["url"]["original"].as_str().unwrap().contains('\u{fffd}'));
}

#[test]
fn endpoint_hash_is_stable_and_per_endpoint() {
    let enc = Encoder::default();
    let a = enc.encode_event(&flow(), &sample_tx());
    let mut other = sample_tx();
    if let Some(r) = other.request.as_mut() {
        r.head.buf[15] = b'9'; // /v1/users/92 -> same template
    }
    let b = enc.encode_event(&flow(), &other);
    assert_eq!(a.endpoint_hash, b.endpoint_hash);
    let mut get = sample_tx();
    if let Some(r) = get.request.as_mut() {
        r.head.buf[..4].copy_from_slice(b"PUTS");
    }
    assert_ne!(
        a.endpoint_hash,
        enc.encode_event(&flow(), &get).endpoint_hash
    );
    // The key hashes the host and the endpoint the event carries.
    let v: serde_json::Value = serde_json::from_slice(&a.json).unwrap();
    assert_eq!(
        a.endpoint_hash,
        apitap_core::endpoint::endpoint_hash(
            v["url"]["domain"].as_str().unwrap(),
            v["apitap"]["endpoint"].as_str().unwrap()
        )
    );
}

#[test]
fn endpoint_at_points_at_the_endpoint_value_in_both_formats() {
    for format in [EventFormat::Ecs, EventFormat::Ocsf] {
        let enc = Encoder::new(EncoderConfig {
            format,
            ..EncoderConfig::default()
        });
        let mut tx = sample_tx();
        if let Some(r) = tx.request.as_mut() {
            // A header named like the field, with a value like the endpoint.
            let (h, _) = head(&[("apitap", "{\"endpoint\":\"x\"}")], "GET /\"q\" HTTP/1.1");
            r.head.headers.extend(h.headers.iter().map(|&(n, v)| {
                let shift =
                    |s: Span| Span::new(s.start as usize + r.head.buf.len(), s.len as usize);
                (shift(n), shift(v))
            }));
            r.head.buf.extend_from_slice(&h.buf);
        }
        let ev = enc.encode_event(&flow(), &tx);
        assert_eq!(
            ev.endpoint(),
            Some(&b"POST /v1/users/{id}"[..]),
            "{format:?}"
        );
        let mut patched = ev.clone();
        assert!(patched.replace_endpoint(b"POST /v1/users/{param}"));
        let v: serde_json::Value = serde_json::from_slice(&patched.json).unwrap();
        let got = match format {
            EventFormat::Ecs => &v["apitap"]["endpoint"],
            EventFormat::Ocsf => &v["unmapped"]["apitap"]["endpoint"],
        };
        assert_eq!(got, "POST /v1/users/{param}");
    }
}

#[test]
fn flow_id_depends_on_the_syn_or_the_first_packet_time() {
    let a = flow();
    let b = FlowContext::new(a.client, a.server, FlowSeed::Syn(8));
    assert_ne!(a.flow_id, b.flow_id);
    assert_eq!(a, FlowContext::new(a.client, a.server, FlowSeed::Syn(7)));
    // A connection picked up mid-stream is named by its first packet's time instead.
    let c = FlowContext::new(a.client, a.server, FlowSeed::FirstSeen(7));
    assert_ne!(a.flow_id, c.flow_id);
}

/// grpc-web over HTTP/1.1 is recognised by its content type: `rpc.*` from the path, the
/// status from a trailers-only response head; no message counts (the body is not framed
/// by the HTTP/1 parser).
#[test]
fn grpc_web_over_http1_is_a_grpc_call() {
    let (qh, qw) = head(
        &[
            ("Host", "api.example.com"),
            ("Content-Type", "application/grpc-web+proto"),
        ],
        "POST /shop.v1.Shop/GetUser HTTP/1.1",
    );
    let (rh, rw) = head(
        &[
            ("Content-Type", "application/grpc-web+proto"),
            ("grpc-status", "5"),
            ("grpc-message", "no%20such%20user"),
        ],
        "HTTP/1.1 200 OK",
    );
    let mut tx = sample_tx();
    let req = tx.request.as_mut().unwrap();
    req.head = qh;
    req.method = qw[0];
    req.target = qw[1];
    let resp = tx.response.as_mut().unwrap();
    resp.head = rh;
    resp.status = 200;
    resp.reason = rw[2];
    let v = encode(&tx, &Encoder::new(EncoderConfig::default()));
    assert_eq!(v["rpc"]["system"], "grpc");
    assert_eq!(v["rpc"]["service"], "shop.v1.Shop");
    assert_eq!(v["rpc"]["method"], "GetUser");
    assert_eq!(v["rpc"]["grpc"]["status_code"], 5);
    assert_eq!(v["apitap"]["grpc"]["status"], "NOT_FOUND");
    assert_eq!(v["apitap"]["grpc"]["message"], "no such user");
    assert!(v["apitap"]["grpc"].get("request").is_none());
    assert_eq!(v["event"]["outcome"], "failure");
    assert_eq!(v["http"]["version"], "1.1");
}
