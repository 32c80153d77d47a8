//! `apitap alerts` against a real Kafka-protocol broker: every alert on the topic comes back
//! as published, filters pick the right ones, records that are not alerts are skipped and
//! counted, a consumer group resumes where it stopped, `--follow` shows a new alert as it
//! arrives, and a broker that is down is a clear error (exit 2).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::kafka::{cluster, topics};
use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The alerts of the analytics fixtures that make BOLA, auth-burst and banner rules fire.
fn fixture_alerts() -> Vec<String> {
    let mut out = Vec::new();
    for name in ["bola", "auth-burst", "banner"] {
        let path = root().join(format!("fixtures/analytics/{name}.alerts.jsonl"));
        for line in std::fs::read_to_string(path).unwrap().lines() {
            if !line.trim().is_empty() {
                out.push(line.to_string());
            }
        }
    }
    assert!(out.len() >= 3, "{out:?}");
    out
}

fn produce(brokers: &str, topic: &str, records: &[&[u8]]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    for r in records {
        producer
            .send(BaseRecord::<(), [u8]>::to(topic).payload(r))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(20)).unwrap();
}

fn alerts(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_apitap"))
        .arg("alerts")
        .args(args)
        .output()
        .unwrap()
}

/// The JSON lines printed, sorted (partitions interleave in no fixed order).
fn json_lines(o: &Output) -> Vec<Value> {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut lines: Vec<Value> = String::from_utf8(o.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    sorted(&mut lines);
    lines
}

fn sorted(v: &mut [Value]) {
    v.sort_by_key(|a| a.to_string());
}

#[test]
fn the_alert_topic_read_back_filtered_and_followed() {
    let (brokers, _broker) = cluster();
    let (_, topic) = topics("console");
    let published = fixture_alerts();
    let mut records: Vec<&[u8]> = published.iter().map(|s| s.as_bytes()).collect();
    records.insert(1, b"not json at all");
    records.insert(2, br#"{"event":{"kind":"event"},"url":{"path":"/"}}"#);
    produce(&brokers, &topic, &records);
    let mut all: Vec<Value> = published
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
    sorted(&mut all);
    let base = ["--kafka", &brokers, "--topic", &topic];

    // Everything, as published; the two strays counted.
    let o = alerts(&[&base[..], &["--from-beginning", "--json"]].concat());
    assert_eq!(json_lines(&o), all);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("{} shown", all.len()))
            && stderr.contains("not JSON 1, not an alert 1"),
        "{stderr}"
    );

    // Each filter against the same selection made here.
    let pick = |f: &dyn Fn(&Value) -> bool| -> Vec<Value> {
        all.iter().filter(|a| f(a)).cloned().collect()
    };
    let rule = all[0]["rule"]["id"].as_str().unwrap().to_string();
    let client = all[0]["source"]["ip"].as_str().unwrap().to_string();
    let cases: Vec<(Vec<&str>, Vec<Value>)> = vec![
        (
            vec!["--severity", "high"],
            pick(&|a| a["event"]["severity"].as_u64().unwrap() >= 70),
        ),
        (
            vec!["--rule", &rule],
            pick(&|a| a["rule"]["id"] == rule.as_str()),
        ),
        (
            vec!["--client", &client],
            pick(&|a| a["source"]["ip"] == client.as_str()),
        ),
        (
            vec!["--endpoint", "/api/users"],
            pick(&|a| {
                a["apitap"]["endpoint"]
                    .as_str()
                    .is_some_and(|e| e.contains("/api/users"))
            }),
        ),
        (vec!["--since", "2099-01-01T00:00:00Z"], Vec::new()),
        (vec!["--since", "2000-01-01T00:00:00Z"], all.clone()),
    ];
    for (filter, want) in cases {
        let o = alerts(&[&base[..], &["--from-beginning", "--json"], &filter[..]].concat());
        assert_eq!(json_lines(&o), want, "{filter:?}");
    }
    // Some filter must select a proper, non-empty subset, or the checks above prove little.
    assert!(all
        .iter()
        .any(|a| a["event"]["severity"].as_u64().unwrap() >= 70));
    assert!(all.iter().any(|a| a["rule"]["id"] != rule.as_str()));

    // The table when piped: plain, a header and one line per alert.
    let o = alerts(&[&base[..], &["--from-beginning"]].concat());
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(!text.contains('\x1b'), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("RULE"),
        "{text}"
    );
    assert_eq!(lines.len(), all.len() + 1, "{text}");
    assert!(lines.iter().any(|l| l.contains(&rule)), "{text}");

    // A consumer group: everything the first time, nothing the second, then only the new.
    let group = format!("console-test-{}", std::process::id());
    let grouped = [&base[..], &["--group", &group, "--json"]].concat();
    assert_eq!(json_lines(&alerts(&grouped)).len(), all.len());
    assert!(json_lines(&alerts(&grouped)).is_empty());
    produce(&brokers, &topic, &[all[0].to_string().as_bytes()]);
    assert_eq!(json_lines(&alerts(&grouped)), vec![all[0].clone()]);

    // --follow shows an alert published while it runs.
    let mut child = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .arg("alerts")
        .args(base)
        .args(["--since", "1s", "--json", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    // Fresh alert: a current @timestamp, so --since 1s shows it and nothing older.
    let mut fresh = all[0].clone();
    let now = apitap_analytics::rfc3339_micros(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        )
        .unwrap()
            + 60_000_000_000,
    );
    fresh["@timestamp"] = Value::String(now);
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        produce(&brokers, &topic, &[fresh.to_string().as_bytes()]);
        if let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
            break line;
        }
        assert!(Instant::now() < deadline, "--follow showed nothing");
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(serde_json::from_str::<Value>(&got).unwrap(), fresh);
}

#[test]
fn a_broker_that_is_down_is_an_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let brokers = format!("127.0.0.1:{port}");
    let o = alerts(&["--kafka", &brokers, "--connect-timeout", "2"]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("cannot reach Kafka"), "{stderr}");
    // No brokers at all, and a bad filter, are errors too.
    let o = alerts(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no brokers"));
    let o = alerts(&["--kafka", &brokers, "--severity", "urgent"]);
    assert_eq!(o.status.code(), Some(2));
    // A group means nothing without committed offsets to start from.
    let o = alerts(&["--kafka", &brokers, "--group", "g", "--from-beginning"]);
    assert_eq!(o.status.code(), Some(2));
}
