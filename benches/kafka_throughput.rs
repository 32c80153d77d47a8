//! Events per second from one Kafka producer (the sensor's sink) to a local broker.
//!
//! `APITAP_TANSU_BIN=$(scripts/kafka-broker.sh) cargo bench --bench kafka_throughput`
//! (or `APITAP_TEST_KAFKA=host:port` for an existing cluster). Sends real event lines
//! (the nginx fixture's golden events, cycled) and waits until the broker acknowledged all.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use apitap_core::EncodedEvent;
use apitap_sink::{KafkaConfig, KafkaSink};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let events = 200_000u64;
    let (brokers, mut child) = match std::env::var("APITAP_TEST_KAFKA") {
        Ok(b) if !b.is_empty() => (b, None),
        _ => {
            let bin = std::env::var("APITAP_TANSU_BIN")
                .expect("set APITAP_TANSU_BIN=$(scripts/kafka-broker.sh) or APITAP_TEST_KAFKA");
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let url = format!("tcp://127.0.0.1:{port}");
            let child = Command::new(bin)
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let addr = format!("127.0.0.1:{port}");
            while std::net::TcpStream::connect(&addr).is_err() {
                std::thread::sleep(Duration::from_millis(20));
            }
            (addr, Some(child))
        }
    };
    let golden = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/nginx/nginx-mixed.events.jsonl"),
    )
    .unwrap();
    let lines: Vec<&str> = golden.lines().collect();
    for compression in ["lz4", "none"] {
        let cfg = KafkaConfig {
            brokers: brokers.clone(),
            events_topic: format!("apitap-bench-{}-{compression}.events", std::process::id()),
            alerts_topic: format!("apitap-bench-{}-{compression}.alerts", std::process::id()),
            compression: compression.into(),
            queue_max_messages: 1_000_000,
            queue_max_bytes: 2 << 30,
            flush_timeout_ms: 120_000,
            ..KafkaConfig::default()
        };
        let mut sink = KafkaSink::new(&cfg, "bench").unwrap();
        let start = Instant::now();
        let mut bytes = 0u64;
        for i in 0..events {
            let line = lines[(i as usize) % lines.len()];
            bytes += line.len() as u64;
            sink.send(EncodedEvent {
                key: apitap_core::SortKey::at_packet(i),
                json: line.as_bytes().to_vec(),
                endpoint_hash: i % 50,
                alert: false,
                client_key: None,
                endpoint_at: None,
            });
        }
        let stats = sink.close();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(stats.delivered, events, "{stats:?}");
        println!(
            "kafka_throughput compression={compression}: {events} events ({:.1} MB) in {secs:.2} s = {:.0} events/s, {:.1} MB/s; avg delivery latency {:.1} ms",
            bytes as f64 / 1e6,
            events as f64 / secs,
            bytes as f64 / 1e6 / secs,
            stats.delivery_latency_us_sum as f64 / stats.delivered as f64 / 1000.0
        );
    }
    if let Some(c) = child.as_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
}
