//! Kafka output against a real Kafka-protocol broker on loopback: tansu, started per test
//! from `APITAP_TANSU_BIN` (scripts/test.sh installs it), or the cluster named by
//! `APITAP_TEST_KAFKA=host:port`. Events are read back with a real consumer by explicit
//! partition assignment.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use apitap::{replay, Config, Output};
use apitap_core::endpoint::endpoint_hash;
use apitap_core::EncodedEvent;
use apitap_sink::{DropPolicy, KafkaConfig, KafkaSink};
use common::kafka::*;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn kafka_cfg(brokers: &str, events: &str, alerts: &str) -> KafkaConfig {
    KafkaConfig {
        brokers: brokers.into(),
        events_topic: events.into(),
        alerts_topic: alerts.into(),
        linger_ms: 5,
        ..KafkaConfig::default()
    }
}

#[test]
fn replay_to_kafka_gives_exactly_the_stdout_events_keyed_by_endpoint() {
    let (brokers, _broker) = cluster();
    let (events_topic, alerts_topic) = topics("roundtrip");
    let captures: Vec<PathBuf> = [
        "nginx/nginx-mixed.pcap",
        "nginx/nginx-ipv6.pcap",
        "public/zeek/wikipedia.pcap",
    ]
    .iter()
    .map(|p| root().join("fixtures").join(p))
    .collect();
    let mut cfg = Config::default();
    cfg.pipeline.workers = 2;
    cfg.output.sensor_name = "sensor-under-test".into();
    cfg.kafka = Some(kafka_cfg(&brokers, &events_topic, &alerts_topic));
    let dir = scratch("kafka");
    let file = dir.join("events.jsonl");
    let summary = replay(&captures, Some(Output::File(file.clone())), &cfg).unwrap();
    let k = summary.kafka.clone().unwrap();
    assert_eq!(k.dropped + k.undelivered_at_close + k.too_large, 0, "{k:?}");
    let lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(lines.len() > 60);
    assert_eq!(k.produced, lines.len() as u64);
    assert_eq!(k.delivered, lines.len() as u64);

    // Alerts (version banners of these servers) go to their own topic.
    let (alert_lines, lines): (Vec<String>, Vec<String>) = lines
        .into_iter()
        .partition(|l| l.contains("\"kind\":\"alert\""));
    assert!(!alert_lines.is_empty());
    let records = consume(
        &brokers,
        &events_topic,
        lines.len(),
        Duration::from_secs(30),
    );
    assert_eq!(records.len(), lines.len(), "same count as the stdout sink");
    let mut got: Vec<&str> = records.iter().map(|r| r.payload.as_str()).collect();
    let mut want: Vec<&str> = lines.iter().map(String::as_str).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert!(got == want, "Kafka payloads differ from the JSON lines");

    // Keys as documented; one endpoint, one partition; headers carry sensor and schema.
    let mut partition_of: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for r in &records {
        let ev: serde_json::Value = serde_json::from_str(&r.payload).unwrap();
        let expected_key = format!(
            "{:016x}",
            endpoint_hash(
                field(&ev, "url.domain").as_str().unwrap_or(""),
                field(&ev, "apitap.endpoint").as_str().unwrap_or(""),
            )
        );
        assert_eq!(r.key, expected_key);
        partition_of
            .entry(r.key.clone())
            .or_default()
            .insert(r.partition);
        assert_eq!(
            r.headers.get("apitap-sensor").map(String::as_str),
            Some("sensor-under-test")
        );
        assert_eq!(
            r.headers.get("apitap-schema").map(String::as_str),
            Some("1")
        );
    }
    assert!(partition_of.values().all(|p| p.len() == 1));
    assert!(partition_of.len() > 5, "several endpoints expected");

    let alerts = consume(
        &brokers,
        &alerts_topic,
        alert_lines.len(),
        Duration::from_secs(30),
    );
    let mut got: Vec<&str> = alerts.iter().map(|r| r.payload.as_str()).collect();
    let mut want: Vec<&str> = alert_lines.iter().map(String::as_str).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert!(got == want, "alerts topic differs from the alert lines");
}

fn event(i: u64, alert: bool) -> EncodedEvent {
    EncodedEvent {
        key: apitap_core::SortKey::at_packet(i),
        json: format!("{{\"n\":{i},\"alert\":{alert}}}").into_bytes(),
        endpoint_hash: i % 7,
        alert,
        client_key: None,
        endpoint_at: None,
    }
}

#[test]
fn alerts_go_to_their_own_topic() {
    let (brokers, _broker) = cluster();
    let (events_topic, alerts_topic) = topics("alerts");
    let mut sink = KafkaSink::new(&kafka_cfg(&brokers, &events_topic, &alerts_topic), "s").unwrap();
    for i in 0..10 {
        sink.send(event(i, i % 3 == 0));
    }
    let stats = sink.close();
    assert_eq!(stats.delivered, 10);
    let alerts = consume(&brokers, &alerts_topic, 4, Duration::from_secs(20));
    let events = consume(&brokers, &events_topic, 6, Duration::from_secs(20));
    assert_eq!(alerts.len(), 4);
    assert_eq!(events.len(), 6);
    assert!(alerts.iter().all(|r| r.payload.contains("\"alert\":true")));
    assert!(events.iter().all(|r| r.payload.contains("\"alert\":false")));
}

/// An event with a client key (an edge sensor's auth failure) goes to the events topic
/// and, keyed by the client, to the auth failures topic; with that topic unset, only to
/// the events topic.
#[test]
fn auth_failures_are_copied_to_their_topic_keyed_by_client() {
    let (brokers, _broker) = cluster();
    let (events_topic, alerts_topic) = topics("auth-copies");
    let auth_topic = format!("{events_topic}.auth");
    let failure = |i: u64| EncodedEvent {
        client_key: (i % 2 == 0).then_some(0xc0ffee + i),
        ..event(i, false)
    };
    let send_ten = |cfg: &KafkaConfig| {
        let mut sink = KafkaSink::new(cfg, "s").unwrap();
        for i in 0..10 {
            sink.send(failure(i));
        }
        sink.close()
    };
    let mut cfg = kafka_cfg(&brokers, &events_topic, &alerts_topic);
    cfg.auth_failures_topic = auth_topic.clone();
    let stats = send_ten(&cfg);
    assert_eq!(
        (stats.auth_failure_copies, stats.delivered),
        (5, 15),
        "{stats:?}"
    );
    let copies = consume(&brokers, &auth_topic, 5, Duration::from_secs(20));
    let keys: BTreeSet<String> = copies.iter().map(|r| r.key.clone()).collect();
    let want: BTreeSet<String> = (0..10)
        .step_by(2)
        .map(|i| format!("{:016x}", 0xc0ffee + i))
        .collect();
    assert_eq!(keys, want);
    assert_eq!(
        consume(&brokers, &events_topic, 10, Duration::from_secs(20)).len(),
        10
    );

    cfg.auth_failures_topic.clear();
    let (events_topic, alerts_topic) = topics("auth-copies-off");
    cfg.events_topic = events_topic;
    cfg.alerts_topic = alerts_topic;
    let stats = send_ten(&cfg);
    assert_eq!(
        (stats.auth_failure_copies, stats.delivered),
        (0, 10),
        "{stats:?}"
    );
}

/// Sends `range` through the sink, polling as a busy sensor would.
fn send_all(sink: &mut KafkaSink, range: std::ops::Range<u64>) {
    for i in range {
        sink.send(event(i, false));
        if i % 10 == 0 {
            sink.poll(Duration::from_millis(1));
        }
    }
}

#[test]
fn broker_outage_queues_then_delivers_and_counts_every_drop() {
    let broker = Broker::start();
    let port = broker.port();
    let (events_topic, alerts_topic) = topics("outage");
    let mut cfg = kafka_cfg(&broker.addr, &events_topic, &alerts_topic);
    cfg.queue_max_messages = 100;
    cfg.drop_policy = DropPolicy::OldestFirst;
    cfg.flush_timeout_ms = 30_000;
    cfg.options
        .insert("reconnect.backoff.max.ms".into(), "500".into());
    let mut sink = KafkaSink::new(&cfg, "outage-test").unwrap();

    // Before: delivered to the first broker.
    send_all(&mut sink, 0..50);
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.stats().delivered < 50 {
        assert!(
            Instant::now() < deadline,
            "first batch not delivered: {:?}",
            sink.stats()
        );
        sink.poll(Duration::from_millis(50));
    }

    // Outage: 400 events against a bound of 100.
    broker.stop();
    send_all(&mut sink, 50..450);
    let during = sink.stats().clone();
    assert!(during.dropped >= 300, "{during:?}");

    // Recovery: a new (empty) broker on the same port, then more events.
    let _broker2 = Broker::start_on(port);
    send_all(&mut sink, 450..500);
    let stats = sink.close();
    assert_eq!(stats.undelivered_at_close, 0, "{stats:?}");

    // Everything produced after the outage began either arrived or was counted as dropped.
    let produced_after: BTreeSet<u64> = (50..500).collect();
    let records = consume(
        &format!("127.0.0.1:{port}"),
        &events_topic,
        (450 - stats.dropped) as usize,
        Duration::from_secs(30),
    );
    let arrived: BTreeSet<u64> = records
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(&r.payload).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .filter(|n| produced_after.contains(n))
        .collect();
    let missing = produced_after.len() as u64 - arrived.len() as u64;
    assert_eq!(
        missing, stats.dropped,
        "drop counter must equal what is missing: {stats:?}"
    );
    // Oldest-first: what survived is the newest, and all of the post-recovery events.
    assert!((450..500).all(|n| arrived.contains(&n)));
}

fn apitap(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn bad_kafka_config_is_a_clear_startup_error() {
    let pcap = root().join("fixtures/nginx/nginx-ipv6.pcap");
    let pcap = pcap.to_str().unwrap();
    // Unreachable broker: a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = scratch("kafkacfg");
    let cfg = dir.join("k.toml");
    std::fs::write(&cfg, "[kafka]\nconnect_timeout_ms = 1500\n").unwrap();
    let o = apitap(&[
        "replay",
        "-c",
        cfg.to_str().unwrap(),
        "--kafka",
        &format!("127.0.0.1:{port}"),
        pcap,
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("cannot reach Kafka brokers"), "{e}");
    assert!(o.stdout.is_empty());

    let (brokers, _broker) = cluster();
    for (toml, needle) in [
        (
            "[kafka.options]\n\"no.such.property\" = \"1\"\n",
            "no.such.property",
        ),
        (
            "[kafka.tls]\nca_file = \"/nonexistent/ca.pem\"\n",
            "/nonexistent/ca.pem",
        ),
        ("[kafka.options]\n\"acks\" = \"1\"\n", "clashes"),
        ("compression = \"brotli\"\n", "brotli"),
        (
            "events_topic = \"t\"\nauth_failures_topic = \"t\"\n",
            "auth_failures_topic must differ",
        ),
    ] {
        let text = format!("[kafka]\nbrokers = \"{brokers}\"\n{toml}");
        std::fs::write(&cfg, text).unwrap();
        let o = apitap(&["replay", "-c", cfg.to_str().unwrap(), pcap]);
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{toml}: {e}");
        assert!(e.contains(needle), "{toml}: {e}");
    }
}

/// Frames of `n` keep-alive transactions (`GET /items/<i>` answered `200 ok`), spread over
/// connections of 500 transactions each, starting with transaction `from`.
fn transactions(from: u64, n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    for i in from..from + n {
        let conn = u16::try_from(i / 500).unwrap();
        let client = ([10, 1, (conn >> 8) as u8, conn as u8], 40_000);
        let server = ([10, 2, 0, 1], 8080);
        let k = u32::try_from(i % 500).unwrap();
        let req = format!("GET /items/{i} HTTP/1.1\r\nHost: api.example\r\n\r\n");
        let (cseq, sseq) = (1 + k * req.len() as u32, 1 + k * ok.len() as u32);
        for (from_client, seq, ack, payload) in [
            (true, cseq, sseq, req.as_bytes()),
            (false, sseq, cseq + req.len() as u32, &ok[..]),
        ] {
            let f = tcp_frame(client, server, from_client, seq, ack, "A", payload);
            out.extend_from_slice(&pcap_record_header(
                i * 100 + u64::from(!from_client),
                f.len(),
            ));
            out.extend_from_slice(&f);
        }
    }
    out
}

/// A broker that dies mid-replay and stays down: capture and analysis go on, events queue
/// to the bound and are dropped past it, counted; the replay flushes for
/// `flush_timeout_ms`, exits 1, and every event produced is delivered, dropped or
/// undelivered. Before, each message waited on a metadata request to the dead broker
/// (about 1 s): 3,000 events had not finished after 200 s. The bound below only tells a
/// finished run from that stall.
#[test]
fn a_broker_that_dies_and_stays_down_does_not_stall_the_pipeline() {
    let broker = Broker::start();
    let (events_topic, alerts_topic) = topics("dead");
    let dir = scratch("deadbroker");
    let fifo = dir.join("capture.pcap");
    let _ = std::fs::remove_file(&fifo);
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let config = dir.join("sensor.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{}\"\nevents_topic = \"{events_topic}\"\nalerts_topic = \"{alerts_topic}\"\n\
             queue_max_messages = 10000\nflush_timeout_ms = 2000\nlinger_ms = 5\n",
            broker.addr
        ),
    )
    .unwrap();
    let stats = dir.join("stats.json");
    let mut sensor = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(["replay", "-q", "--config"])
        .arg(&config)
        .arg("--stats-json")
        .arg(&stats)
        .arg(&fifo)
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    use std::io::Write as _;
    let mut first = pcap_header().to_vec();
    first.extend_from_slice(&transactions(0, 30_000));
    writer
        .write_all(&first)
        .unwrap_or_else(|e| panic!("the sensor stopped reading: {e}\n{}", log()));
    // The broker has some of the first half; then it dies and the second half comes.
    let seen = consume(&broker.addr, &events_topic, 100, Duration::from_secs(60));
    assert!(seen.len() >= 100, "nothing reached the broker");
    broker.stop();
    let killed = Instant::now();
    writer
        .write_all(&transactions(30_000, 30_000))
        .unwrap_or_else(|e| panic!("the sensor stopped reading: {e}\n{}", log()));
    drop(writer);
    let status = loop {
        if let Some(status) = sensor.try_wait().unwrap() {
            break status;
        }
        if killed.elapsed() > Duration::from_secs(120) {
            let _ = sensor.kill();
            panic!("the replay stalled on the dead broker");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let after_kill = killed.elapsed();
    assert_eq!(
        status.code(),
        Some(1),
        "events were lost: exit 1\n{}",
        log()
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(summary["transactions"]["total"], 60_000, "{summary}");
    let k = &summary["kafka"];
    let n = |f: &str| k[f].as_u64().unwrap();
    assert!(n("produced") >= 60_000, "{k}");
    assert_eq!(
        n("delivered") + n("dropped") + n("too_large") + n("undelivered_at_close"),
        n("produced"),
        "{k}"
    );
    assert!(n("dropped") > 0 && n("undelivered_at_close") > 0, "{k}");
    assert!(
        after_kill < Duration::from_secs(60),
        "took {after_kill:?} after the broker died"
    );
}
