//! A sensor fleet: sensors in edge mode (`analytics.mode = "edge"`) and `apitap analyze`
//! over their events give the alerts and the inventory of one sensor that saw everything.
//!
//! fixtures/analytics/fleet.pcap (scripts/make-analytics-fixtures.sh) is the mixed capture
//! with a new connection per request for every misbehaving client; the tests split it by
//! connection between two sensor processes, so a login burst, an enumeration and every
//! other misuse reach the centre in two halves.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

fn dir() -> PathBuf {
    root().join("fixtures/analytics")
}

fn apitap() -> Command {
    Command::new(env!("CARGO_BIN_EXE_apitap"))
}

/// The analytics fixtures' config, in `mode`, written to `dir`.
fn config(dir: &Path, mode: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join("fixtures/analytics/sensor.toml")).unwrap();
    let text = text.replace(
        "[analytics]\n",
        &format!("[analytics]\nmode = \"{mode}\"\n"),
    );
    let path = dir.join(format!("{mode}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Splits a classic little-endian Ethernet pcap by TCP connection (both directions of a
/// connection go to the same half) into two files.
fn split_by_connection(pcap: &Path, halves: [&Path; 2]) {
    let bytes = std::fs::read(pcap).unwrap();
    assert_eq!(
        &bytes[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "little-endian µs pcap"
    );
    assert_eq!(u32::from_le_bytes(bytes[20..24].try_into().unwrap()), 1);
    let mut out = [bytes[..24].to_vec(), bytes[..24].to_vec()];
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let caplen = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let record = &bytes[at..at + 16 + caplen];
        let frame = &record[16..];
        assert_eq!(&frame[12..14], &[8, 0], "IPv4");
        let ip = &frame[14..];
        assert_eq!(ip[9], 6, "TCP");
        let tcp = &ip[usize::from(ip[0] & 0x0f) * 4..];
        let a = (&ip[12..16], &tcp[0..2]);
        let b = (&ip[16..20], &tcp[2..4]);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (a.min(b), a.max(b)).hash(&mut h);
        out[(h.finish() & 1) as usize].extend_from_slice(record);
        at += 16 + caplen;
    }
    assert_eq!(at, bytes.len());
    for (path, bytes) in halves.iter().zip(out) {
        std::fs::write(path, bytes).unwrap();
    }
}

/// (rule, client, endpoint, severity) of each alert, counted.
fn summary(alerts: &[Value]) -> BTreeMap<(String, String, String, u64), usize> {
    let mut m = BTreeMap::new();
    for a in alerts {
        let key = (
            a["rule"]["id"].as_str().unwrap().to_string(),
            a["source"]["ip"].as_str().unwrap_or("").to_string(),
            a["apitap"]["endpoint"].as_str().unwrap_or("").to_string(),
            a["event"]["severity"].as_u64().unwrap(),
        );
        *m.entry(key).or_insert(0) += 1;
    }
    m
}

/// Two sensors, one half of the connections each, and `apitap analyze` over both event
/// streams: the same alerts (ids included) and the same inventory as one sensor with local
/// analytics over the whole capture.
#[test]
fn two_edge_sensors_and_the_centre_equal_one_local_sensor() {
    let d = scratch("fleet");
    let spec = dir().join("openapi.yaml");
    let pcap = dir().join("fleet.pcap");
    let (local, edge) = (config(&d, "local"), config(&d, "edge"));

    // One sensor, everything, local analytics.
    let whole = run(apitap()
        .args(["replay", "-q", "-c"])
        .arg(&local)
        .arg("--spec")
        .arg(&spec)
        .arg(&pcap));
    let local_alerts = parse_alerts(&whole);
    let local_inventory = d.join("local-inventory.json");
    run(apitap()
        .args(["inventory", "--json", "-c"])
        .arg(&local)
        .arg("--state")
        .arg(&local_inventory)
        .arg(&pcap));

    // Two sensors, one half each, edge mode.
    let halves = [d.join("a.pcap"), d.join("b.pcap")];
    split_by_connection(&pcap, [&halves[0], &halves[1]]);
    let mut streams = Vec::new();
    let mut clients_by_half = Vec::new();
    for (i, half) in halves.iter().enumerate() {
        let events = d.join(format!("sensor-{i}.jsonl"));
        // The second sensor scans on its workers (4 of them), the first on its analytics
        // thread.
        run(apitap()
            .args(["replay", "-q", "-w", if i == 0 { "1" } else { "4" }, "-c"])
            .arg(&edge)
            .arg("--spec")
            .arg(&spec)
            .arg("-o")
            .arg(&events)
            .arg(half));
        let all = parse_all(&std::fs::read(&events).unwrap());
        assert!(
            all.iter().all(|e| e["event"]["kind"] == "event"),
            "an edge sensor writes no HTTP alerts"
        );
        assert!(all.iter().all(|e| e["apitap"]["findings"].is_object()));
        clients_by_half.push(
            all.iter()
                .map(|e| e["source"]["ip"].as_str().unwrap().to_string())
                .collect::<BTreeSet<_>>(),
        );
        streams.push(events);
    }
    // The login burst (127.0.0.105), the failure burst (.106) and the enumeration (.107)
    // each reached both sensors.
    for client in ["127.0.0.105", "127.0.0.106", "127.0.0.107"] {
        assert!(
            clients_by_half.iter().all(|c| c.contains(client)),
            "{client} is not split"
        );
    }

    // The centre, over both streams.
    let inventory = d.join("inventory.json");
    let stats = d.join("stats.json");
    let centre = || {
        let mut cmd = apitap();
        cmd.args(["analyze", "-q", "-c"])
            .arg(&local)
            .arg("--spec")
            .arg(&spec);
        cmd
    };
    let central = run(centre()
        .arg("--inventory")
        .arg(&inventory)
        .arg("--stats-json")
        .arg(&stats)
        .args(&streams));
    let central_alerts = parse_all(&central);
    assert_eq!(summary(&central_alerts), summary(&local_alerts));
    assert_eq!(
        central_alerts, local_alerts,
        "the same alerts, ids included"
    );
    let rules: BTreeSet<&str> = local_alerts
        .iter()
        .map(|a| a["rule"]["id"].as_str().unwrap())
        .collect();
    for rule in ["APITAP-AUTH-001", "APITAP-BOLA-001", "APITAP-SENSITIVE-002"] {
        assert!(rules.contains(rule), "{rule} fires: {rules:?}");
    }
    let read = |p: &Path| -> Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    assert_eq!(read(&inventory), read(&local_inventory));
    let stats = read(&stats);
    assert_eq!(stats["input"]["late"], 0);
    assert_eq!(
        stats["input"]["transactions"],
        stats["analytics"]["transactions"]
    );

    // The same streams in the other order, one of them cut into two files, and the other
    // given twice (a re-sent input): the same alerts, the copies counted as duplicates.
    let text = std::fs::read_to_string(&streams[0]).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    let parts = [d.join("part-1.jsonl"), d.join("part-2.jsonl")];
    for (path, part) in parts.iter().zip([first, second]) {
        std::fs::write(path, part.join("\n") + "\n").unwrap();
    }
    let again_stats = d.join("again.json");
    let again = run(centre()
        .arg("--stats-json")
        .arg(&again_stats)
        .arg(&streams[1])
        .arg(&parts[1])
        .arg(&parts[0])
        .arg(&streams[1]));
    assert_eq!(again, central);
    let again_stats = read(&again_stats);
    let copies = std::fs::read_to_string(&streams[1])
        .unwrap()
        .lines()
        .count();
    assert_eq!(again_stats["input"]["duplicates"], copies as u64);
    let _ = std::fs::remove_dir_all(&d);
}

/// Bad lines on the input are counted by reason and skipped; the good ones still count.
#[test]
fn bad_event_lines_are_counted_and_skipped() {
    let d = scratch("fleet-bad");
    let edge = config(&d, "edge");
    let events = run(apitap()
        .args(["replay", "-q", "-c"])
        .arg(&edge)
        .arg(dir().join("login-burst.pcap")));
    let good = parse_all(&events);
    let mut text = String::from_utf8(events).unwrap();
    let first = &good[0];
    let mut future = first.clone();
    future["apitap"]["ts_ns"] = Value::from(4_102_444_800_000_000_000i64); // 2100
    let mut old_schema = first.clone();
    old_schema["apitap"]["schema_version"] = Value::from("0");
    let mut bad_findings = first.clone();
    bad_findings["apitap"]["findings"] = Value::from("many");
    let mut no_source = first.clone();
    no_source["source"] = Value::Null;
    for line in [
        "not json".to_string(),
        "[]".into(),
        String::new(),
        format!("{{\"x\":\"{}\"}}", "y".repeat(5000)),
        future.to_string(),
        old_schema.to_string(),
        bad_findings.to_string(),
        no_source.to_string(),
        r#"{"event":{"kind":"alert"},"apitap":{"schema_version":"1"}}"#.into(),
    ] {
        text.push_str(&line);
        text.push('\n');
    }
    text.push_str("{\"truncated"); // no newline at the end
    let input = d.join("events.jsonl");
    std::fs::write(&input, text).unwrap();
    let cfg = d.join("analyze.toml");
    std::fs::write(&cfg, "[analyze]\nmax_event_bytes = 4096\n").unwrap();
    let stats = d.join("stats.json");
    let alerts = run(apitap()
        .args(["analyze", "-q", "-c"])
        .arg(&cfg)
        .arg("--stats-json")
        .arg(&stats)
        .arg(&input));
    let s: Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    let input = &s["input"];
    assert_eq!(input["transactions"], good.len() as u64);
    assert_eq!(input["skipped_not_json"], 3, "{input}");
    assert_eq!(input["skipped_too_long"], 1);
    assert_eq!(input["skipped_future"], 1);
    assert_eq!(input["skipped_schema_version"], 1);
    assert_eq!(input["skipped_invalid"], 2);
    assert_eq!(input["skipped_not_transaction"], 1);
    assert_eq!(
        input["lines"],
        good.len() as u64 + 10,
        "the blank line is read, not counted as skipped"
    );
    // The login burst still fires on the good lines.
    assert!(parse_all(&alerts)
        .iter()
        .any(|a| a["rule"]["id"] == "APITAP-AUTH-001"));

    // An output that is also an input is refused before anything is written; so is stdin
    // twice; a file of nothing but bad lines is exit 1.
    let events = d.join("events.jsonl");
    let before = std::fs::read(&events).unwrap();
    for args in [
        vec!["-o".to_string(), events.display().to_string()],
        vec!["--inventory".to_string(), events.display().to_string()],
    ] {
        let out = apitap()
            .args(["analyze", "-q"])
            .args(&args)
            .arg(&events)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("both an input and an output"));
    }
    assert_eq!(std::fs::read(&events).unwrap(), before);
    let out = apitap().args(["analyze", "-q", "-", "-"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let junk = d.join("junk.jsonl");
    std::fs::write(&junk, "not json\n{}\n").unwrap();
    let out = apitap()
        .args(["analyze", "-q"])
        .arg(&junk)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&d);
}
