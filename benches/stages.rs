//! Per-stage criterion benches: decode, flow lookup, reassembly (in order and out of
//! order), HTTP head+body parsing, event JSON encoding, and the analytics of one
//! transaction (the sink's serial stage).
//!
//! `cargo bench --bench stages`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use apitap_core::{AppParser, FinishCause, ParserEnv};
use apitap_core::{Direction, Endpoint, FlowKey, PacketRef, Side, TcpFlags, Timestamp};
use apitap_event::{Encoder, FlowContext};
use apitap_flow::{FlowTable, ReassemblyConfig, ReassemblyStats, Segment, StreamEvent, TcpConn};
use apitap_http::{HttpConfig, HttpConn, HttpStats};
use apitap_wire::{decode, DecodeStats, LinkType, UdpTunnels};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x08, 0x00]);
    // IPv4 header (20 bytes) + TCP header (20 bytes), checksums left zero.
    let total = (40 + payload.len()) as u16;
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ]);
    f.extend_from_slice(&[10, 0, 0, 2, 10, 0, 0, 1]);
    f.extend_from_slice(&[
        0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0x04, 0, 0, 0, 0, 0,
    ]);
    f.extend_from_slice(payload);
    f
}

fn bench_decode(c: &mut Criterion) {
    let f = frame(&[b'a'; 512]);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(f.len() as u64));
    g.bench_function("ethernet_ipv4_tcp_512B", |b| {
        let mut stats = DecodeStats::default();
        let tunnels = UdpTunnels::default();
        b.iter(|| {
            decode(
                LinkType::Ethernet,
                black_box(&f),
                PacketRef::default(),
                &tunnels,
                &mut stats,
            )
        })
    });
    g.finish();
}

fn key(i: u32) -> FlowKey {
    let a = Endpoint {
        ip: std::net::Ipv4Addr::from(0x0a00_0000 | (i >> 8)).into(),
        port: 1024 + (i & 0xff) as u16,
    };
    let b = Endpoint {
        ip: "10.255.0.1".parse().unwrap(),
        port: 80,
    };
    FlowKey::from_packet(a, b, 6).0
}

fn bench_flow_lookup(c: &mut Criterion) {
    let n = 100_000u32;
    let mut table = FlowTable::new(n as usize);
    for i in 0..n {
        table.insert(key(i), Timestamp(0), i);
    }
    let keys: Vec<FlowKey> = (0..4096u32)
        .map(|i| key(i.wrapping_mul(2_654_435_761) % n))
        .collect();
    let mut g = c.benchmark_group("flow");
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("lookup_100k_flows", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for k in &keys {
                sum += u64::from(*table.get_mut(k, Timestamp(1)).unwrap());
            }
            sum
        })
    });
    g.bench_function("shard_hash", |b| {
        b.iter(|| {
            keys.iter()
                .map(|k| k.shard_hash())
                .fold(0, u64::wrapping_add)
        })
    });
    g.finish();
}

fn segments(n: usize, len: usize) -> Vec<(u32, Vec<u8>)> {
    (0..n)
        .map(|i| (1 + (i * len) as u32, vec![b'x'; len]))
        .collect()
}

fn run_reassembly(segs: &[(u32, Vec<u8>)]) -> usize {
    let cfg = ReassemblyConfig::default();
    let mut stats = ReassemblyStats::default();
    let mut conn = TcpConn::new();
    let mut delivered = 0;
    let syn = Segment {
        from: Side::Lo,
        seq: 0,
        ack: 0,
        flags: TcpFlags(TcpFlags::SYN),
        wire_len: 0,
    };
    conn.on_segment(&syn, &[], &cfg, &mut stats, &mut |_| {});
    for (seq, data) in segs {
        let s = Segment {
            from: Side::Lo,
            seq: *seq,
            ack: 0,
            flags: TcpFlags(TcpFlags::ACK),
            wire_len: data.len() as u32,
        };
        conn.on_segment(&s, data, &cfg, &mut stats, &mut |e| {
            if let StreamEvent::Data { bytes, .. } = e {
                delivered += bytes.len();
            }
        });
    }
    delivered
}

fn bench_reassembly(c: &mut Criterion) {
    let in_order = segments(1000, 1460);
    let mut swapped = in_order.clone();
    for pair in swapped.chunks_mut(2) {
        pair.reverse();
    }
    let mut g = c.benchmark_group("reassembly");
    g.throughput(Throughput::Bytes(1000 * 1460));
    g.bench_function("in_order_1000x1460", |b| {
        b.iter(|| run_reassembly(black_box(&in_order)))
    });
    g.bench_function("pairwise_swapped_1000x1460", |b| {
        b.iter(|| run_reassembly(black_box(&swapped)))
    });
    g.finish();
}

const REQUEST: &[u8] = b"POST /api/v1/users/42/orders?expand=items HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: bench/1.0\r\nAccept: application/json\r\nAuthorization: Bearer abc.def.ghi\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"item\":12345,\"quantity\":2}";

fn response() -> Vec<u8> {
    let body = vec![b'y'; 1024];
    let mut r = format!(
        "HTTP/1.1 201 Created\r\nServer: nginx\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(&body);
    r
}

fn parse_exchange(resp: &[u8]) -> Vec<apitap_core::HttpTransaction> {
    let mut env: ParserEnv<HttpConfig, HttpStats> = ParserEnv::new(HttpConfig::default());
    let mut conn = HttpConn::new();
    let at = PacketRef {
        index: 1,
        ts: Timestamp(0),
    };
    conn.on_data(Direction::ToServer, REQUEST, &mut env.cx(at));
    conn.on_data(Direction::ToClient, resp, &mut env.cx(at));
    conn.finish(FinishCause::EndOfCapture, &mut env.cx(at));
    env.out
}

fn bench_http(c: &mut Criterion) {
    let resp = response();
    let mut g = c.benchmark_group("http");
    g.throughput(Throughput::Elements(1));
    g.bench_function("post_and_1KB_response", |b| {
        b.iter(|| parse_exchange(black_box(&resp)))
    });
    g.finish();
}

fn bench_encode(c: &mut Criterion) {
    let tx = parse_exchange(&response()).pop().unwrap();
    let ctx = FlowContext::new(
        Endpoint {
            ip: "10.0.0.2".parse().unwrap(),
            port: 40000,
        },
        Endpoint {
            ip: "10.0.0.1".parse().unwrap(),
            port: 80,
        },
        apitap_event::FlowSeed::Syn(1),
    );
    let enc = Encoder::default();
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("event_json", |b| {
        b.iter_batched(
            || tx.clone(),
            |tx| enc.encode_event(&ctx, black_box(&tx)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// A mix of API calls: 64 clients, object ids in the path, a versioned `Server` header
/// and a JSON response with an email address (what the sensitive-data scan looks for).
fn analytics_records() -> Vec<apitap_analytics::TxRecord> {
    use apitap_analytics::{Headers, TxRecord};
    (0..4096u32)
        .map(|i| {
            let client = std::net::SocketAddr::from(([10, 1, (i % 64) as u8, 7], 40000));
            let server = std::net::SocketAddr::from(([10, 0, 0, 1], 80));
            let (method, path) = match i % 4 {
                0 => ("GET", format!("/api/v1/users/{}", 1000 + i % 500)),
                1 => ("GET", format!("/api/v1/users/{}/orders", 1000 + i % 500)),
                2 => ("POST", "/api/v1/orders".to_string()),
                _ => ("GET", "/api/v1/products".to_string()),
            };
            let request_headers: Headers = [
                ("host", "api.example.com"),
                ("user-agent", "bench/1.0"),
                ("accept", "application/json"),
                ("authorization", "Bearer [redacted]"),
                ("content-type", "application/json"),
            ]
            .into_iter()
            .collect();
            let response_headers: Headers = [
                ("server", "nginx/1.22.1"),
                ("date", "Mon, 01 Jan 2024 00:00:00 GMT"),
                ("content-type", "application/json"),
                ("content-length", "120"),
            ]
            .into_iter()
            .collect();
            let body = format!(
                "{{\"id\":{i},\"name\":\"user {i}\",\"email\":\"user{i}@example.com\",\"items\":[1,2,3]}}"
            );
            TxRecord {
                ts_ns: 0,
                event_id: format!("{i:016x}"),
                client,
                server,
                host: Some("api.example.com".into()),
                method: method.into(),
                path,
                query: (i % 8 == 0).then(|| "page=2&limit=50".to_string()),
                status: Some(200),
                grpc_status: None,
                request_content_type: Some("application/json".into()),
                response_content_type: Some("application/json".into()),
                request_headers,
                response_headers,
                request_body: None,
                response_body: Some(body.into_bytes()),
                request_body_cut: false,
                response_body_cut: false,
                request_body_bytes: 0,
                response_body_bytes: 120,
                duration_ns: Some(1_000_000),
                auth_jwt: true,
                findings: None,
                scanned: Default::default(),
                sensor: None,
            }
        })
        .collect()
}

fn bench_analytics(c: &mut Criterion) {
    let mut records = analytics_records();
    let mut engine =
        apitap_analytics::Analytics::new(apitap_analytics::AnalyticsConfig::default()).unwrap();
    let mut alerts = Vec::new();
    let mut n = 0usize;
    let mut g = c.benchmark_group("analytics");
    g.throughput(Throughput::Elements(1));
    g.bench_function("api_transaction", |b| {
        b.iter(|| {
            // Packet time keeps moving forward, 1 ms per transaction.
            let len = records.len();
            let tx = &mut records[n % len];
            tx.ts_ns = n as i64 * 1_000_000;
            n += 1;
            engine.process_into(black_box(tx), &mut alerts);
            alerts.clear();
        })
    });
    g.finish();
}

/// TLS record decryption, one core: full 16 KiB records of each AEAD suite, TLS 1.3 and
/// 1.2 framing (the records are sealed once outside the timed loop).
fn bench_tls(c: &mut Criterion) {
    use apitap_tls::crypto::{RecordKeys, Suite};
    let plain = vec![0x61u8; 16 * 1024];
    let mut g = c.benchmark_group("tls_open");
    g.throughput(Throughput::Bytes(plain.len() as u64));
    for (name, id) in [
        ("tls13_aes128gcm", 0x1301u16),
        ("tls13_aes256gcm", 0x1302),
        ("tls13_chacha20poly1305", 0x1303),
        ("tls12_aes128gcm", 0xc02f),
        ("tls12_chacha20poly1305", 0xcca8),
    ] {
        let Some(suite) = Suite::from_id(id) else {
            continue;
        };
        let keys = || {
            if id >> 8 == 0x13 {
                RecordKeys::tls13(suite, &[9u8; 48][..if id == 0x1302 { 48 } else { 32 }])
            } else {
                RecordKeys::tls12(suite, &[5; 48], &[1; 32], &[2; 32]).map(|(c, _)| c)
            }
        };
        let (Some(mut tx), Some(_)) = (keys(), keys()) else {
            continue;
        };
        let Some((header, body)) = tx.seal(23, &plain) else {
            continue;
        };
        g.bench_function(name, |b| {
            b.iter_batched(
                || (keys(), body.clone()),
                |(rx, mut body)| {
                    if let Some(mut rx) = rx {
                        let _ = black_box(rx.open(&header, &mut body, 0));
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// The sensitive-data scan over 64 KiB bodies: API JSON with nothing to find (the common
/// case), and a user list full of emails.
fn bench_sensitive(c: &mut Criterion) {
    use apitap_analytics::sensitive::{Scanner, SensitiveKind};
    let scanner = Scanner::new(&SensitiveKind::ALL);
    let mut items = String::from("{\"items\":[");
    let mut users = String::from("{\"users\":[");
    for i in 0..2000u32 {
        items.push_str(&format!(
            "{{\"id\":{},\"name\":\"item-{i}\",\"price\":{}.{:02},\"tags\":[\"t{}\"]}},",
            400_000 + i * 7,
            i % 1000,
            i % 100,
            i % 13
        ));
        users.push_str(&format!(
            "{{\"id\":{i},\"email\":\"user{i}@example.com\",\"created\":1733561234567}},"
        ));
    }
    let mut g = c.benchmark_group("sensitive");
    for (name, body) in [("api_json_64KiB", items), ("user_emails_64KiB", users)] {
        let body = &body.as_bytes()[..65_536];
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut counts = std::collections::BTreeMap::new();
                scanner.scan(std::hint::black_box(body), &mut counts);
                counts
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_sensitive,
    bench_tls,
    bench_decode,
    bench_flow_lookup,
    bench_reassembly,
    bench_http,
    bench_encode,
    bench_analytics
);
criterion_main!(benches);
