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

/// A copy of `cfg` whose sensor is called `name` (`observer.name` of its events).
fn named(cfg: &Path, name: &str) -> PathBuf {
    let mut text = std::fs::read_to_string(cfg).unwrap();
    text.push_str(&format!("\n[output]\nsensor_name = \"{name}\"\n"));
    let path = cfg.with_file_name(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The sensors a fleet's alert or endpoint names, taken out of it (`apitap.sensors` of
/// an alert, `sensors` of an inventory endpoint, `x-apitap.sensors` of an OpenAPI
/// operation), so what is left compares with one local sensor's.
fn take_sensors(v: &mut Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut take = |o: &mut Value| {
        if let Some(Value::Array(a)) = o.as_object_mut().and_then(|o| o.remove("sensors")) {
            names.extend(a.iter().map(|s| s.as_str().unwrap().to_string()));
        }
    };
    // (`get_mut`, not indexing: indexing a missing key would add it.)
    if let Some(apitap) = v.get_mut("apitap") {
        take(apitap);
    }
    take(v);
    if let Some(paths) = v.get_mut("paths").and_then(Value::as_object_mut) {
        for ops in paths.values_mut().filter_map(Value::as_object_mut) {
            for op in ops.values_mut().filter_map(|op| op.get_mut("x-apitap")) {
                take(op);
            }
        }
    }
    if let Some(endpoints) = v.get_mut("endpoints").and_then(Value::as_array_mut) {
        for e in endpoints {
            take(e);
        }
    }
    names
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
            .arg(named(&edge, &format!("edge-{i}")))
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
    let mut central_alerts = parse_all(&central);
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schema/alert.schema.json")).unwrap(),
    )
    .unwrap();
    let schema = jsonschema::options().build(&schema).unwrap();
    for a in &central_alerts {
        let errors: Vec<String> = schema.iter_errors(a).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}\n{a}");
    }
    // Each alert names the sensors that saw its endpoint; the login burst's both.
    let both: BTreeSet<String> = ["edge-0".to_string(), "edge-1".into()].into();
    let mut login_bursts = 0;
    for a in &mut central_alerts {
        let rule = a["rule"]["id"].as_str().unwrap().to_string();
        let endpoint = a["apitap"]["endpoint"].as_str().unwrap_or("").to_string();
        let sensors = take_sensors(a);
        assert!(
            !sensors.is_empty() && sensors.is_subset(&both),
            "{rule}: {sensors:?}"
        );
        if rule == "APITAP-AUTH-001" && endpoint.contains("login") {
            assert_eq!(sensors, both, "the login burst reached both sensors");
            login_bursts += 1;
        }
    }
    assert!(login_bursts > 0);
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
    let mut fleet_inventory = read(&inventory);
    assert_eq!(take_sensors(&mut fleet_inventory), both);
    assert_eq!(fleet_inventory, read(&local_inventory));
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

mod group {
    //! The centre as a Kafka consumer group: edge sensors publish to the events topic, and
    //! members of `apitap analyze --kafka` publish the alerts.
    use super::*;
    use crate::common::kafka::*;
    use std::process::{Child, Stdio};
    use std::time::Duration;

    /// The group notices a dead member after 6 s (librdkafka's default is 45 s).
    const SESSION: &str =
        "options = { \"session.timeout.ms\" = \"6000\", \"heartbeat.interval.ms\" = \"500\" }";

    /// `base` with a `[kafka]` section for `brokers` and the topics, and quick commits.
    fn with_kafka(base: &Path, brokers: &str, topics: &(String, String), name: &str) -> PathBuf {
        let mut text = std::fs::read_to_string(base).unwrap();
        text.push_str(&format!(
            "\n[kafka]\nbrokers = \"{brokers}\"\nevents_topic = \"{}\"\nalerts_topic = \"{}\"\nauth_failures_topic = \"{}\"\nlinger_ms = 5\n{SESSION}\n\n[analyze]\ncommit_interval_ms = 200\nidle_partition_ms = 1000\n",
            topics.0,
            topics.1,
            auth_topic(&topics.0)
        ));
        let path = base.with_file_name(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The auth failures topic of a test's events topic.
    fn auth_topic(events: &str) -> String {
        format!("{events}.auth")
    }

    /// A member's counter summed over its two groups (hosts and clients).
    fn both_groups(stats: &Value, counter: &str) -> u64 {
        stats["member"][counter].as_u64().unwrap()
            + stats["clients"]["member"][counter].as_u64().unwrap()
    }

    fn member(cfg: &Path, brokers: &str, spec: &Path, stats: &Path, idle_s: &str) -> Child {
        apitap()
            .env("APITAP_LOG", "info")
            .args([
                "analyze",
                "-q",
                "--kafka",
                brokers,
                "--exit-when-idle",
                idle_s,
                "-c",
            ])
            .arg(cfg)
            .arg("--spec")
            .arg(spec)
            .arg("--stats-json")
            .arg(stats)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn wait_ok(child: Child) {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "member failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The alerts on the topic, one per id; copies of an id must be identical.
    fn alerts_by_id(brokers: &str, topic: &str, want: usize) -> BTreeMap<String, String> {
        let mut by_id = BTreeMap::new();
        for r in consume(brokers, topic, want, Duration::from_secs(60)) {
            let v: Value = serde_json::from_str(&r.payload).unwrap();
            let id = v["event"]["id"].as_str().unwrap().to_string();
            if let Some(before) = by_id.insert(id.clone(), r.payload.clone()) {
                assert_eq!(before, r.payload, "two different alerts share id {id}");
            }
        }
        by_id
    }

    fn local_alerts(local: &Path, spec: &Path, pcap: &Path) -> BTreeMap<String, String> {
        let whole = run(apitap()
            .args(["replay", "-q", "-c"])
            .arg(local)
            .arg("--spec")
            .arg(spec)
            .arg(pcap));
        String::from_utf8(whole)
            .unwrap()
            .lines()
            .filter(|l| l.contains("\"kind\":\"alert\""))
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (
                    v["event"]["id"].as_str().unwrap().to_string(),
                    l.to_string(),
                )
            })
            .collect()
    }

    /// Each half of the connections through its own edge sensor (`edge-0`, `edge-1`) into
    /// the events topic.
    fn publish_halves(d: &Path, edge: &Path, spec: &Path, pcap: &Path) {
        let halves = [d.join("a.pcap"), d.join("b.pcap")];
        split_by_connection(pcap, [&halves[0], &halves[1]]);
        for (i, half) in halves.iter().enumerate() {
            run(apitap()
                .args(["replay", "-q", "-o", "/dev/null", "-c"])
                .arg(named(edge, &format!("edge-{i}")))
                .arg("--spec")
                .arg(spec)
                .arg(half));
        }
    }

    /// Two sensors publish one half each; two members share the 4 partitions. The alerts
    /// topic holds exactly the alerts of one local sensor over the whole capture, byte for
    /// byte (a member that leaves first hands its partitions over, and the one that takes
    /// them does not publish what is already there).
    #[test]
    fn two_members_publish_the_alerts_of_one_local_sensor() {
        let (brokers, _broker) = cluster();
        let Setup {
            d,
            spec,
            pcap,
            brokers,
            topics,
            local,
            centre,
        } = Setup::new("fleet-group", &brokers, 4);
        let edge = with_kafka(&config(&d, "edge"), &brokers, &topics, "edge-kafka.toml");
        publish_halves(&d, &edge, &spec, &pcap);
        // The sensors sent every authentication failure also to the auth failures topic,
        // keyed by client, and nothing else.
        let events = consume(&brokers, &topics.0, usize::MAX, Duration::from_secs(5));
        let mut failures: Vec<String> = events
            .iter()
            .filter(|r| auth_failure_client(&r.payload).is_some())
            .map(|r| r.payload.clone())
            .collect();
        assert!(failures.len() >= 30, "{}", failures.len());
        let copies = consume(
            &brokers,
            &auth_topic(&topics.0),
            usize::MAX,
            Duration::from_secs(10),
        );
        for c in &copies {
            let client = auth_failure_client(&c.payload).expect("an auth failure");
            let key = apitap_core::endpoint::endpoint_hash(&client, "");
            assert_eq!(c.key, format!("{key:016x}"));
        }
        let mut copied: Vec<String> = copies.into_iter().map(|r| r.payload).collect();
        failures.sort();
        copied.sort();
        assert!(copied == failures, "the auth failures topic differs");

        let stats = [d.join("m0.json"), d.join("m1.json")];
        let members: Vec<Child> = stats
            .iter()
            .map(|s| member(&centre, &brokers, &spec, s, "3"))
            .collect();
        for m in members {
            wait_ok(m);
        }
        let want = local_alerts(&local, &spec, &pcap);
        let got = alerts_by_id(&brokers, &topics.1, want.len());
        assert_eq!(got.len(), want.len(), "alert ids differ");
        // Without the sensors each alert names, the alerts of one local sensor.
        let both: BTreeSet<String> = ["edge-0".to_string(), "edge-1".into()].into();
        let mut named_both = 0;
        let got: BTreeMap<String, Value> = got
            .into_iter()
            .map(|(id, payload)| {
                let mut v: Value = serde_json::from_str(&payload).unwrap();
                let sensors = take_sensors(&mut v);
                assert!(!sensors.is_empty() && sensors.is_subset(&both), "{payload}");
                named_both += usize::from(sensors == both);
                (id, v)
            })
            .collect();
        assert!(named_both > 0, "no endpoint was seen by both sensors");
        let want: BTreeMap<String, Value> = want
            .into_iter()
            .map(|(id, line)| (id, serde_json::from_str(&line).unwrap()))
            .collect();
        assert!(
            got == want,
            "the alerts differ from those of one local sensor"
        );
        let read =
            |p: &Path| -> Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
        let published: u64 = stats
            .iter()
            .map(|s| both_groups(&read(s), "alerts_published"))
            .sum();
        assert!(published >= want.len() as u64);
        // The auth bursts came from the clients group alone.
        let by_clients: u64 = stats
            .iter()
            .map(|s| {
                read(s)["clients"]["member"]["alerts_published"]
                    .as_u64()
                    .unwrap()
            })
            .sum();
        assert!(by_clients >= 2, "{by_clients}");

        // The fleet's inventory from the events topic equals the local sensor's, and its
        // OpenAPI export too.
        let inventory = |args: &[&str], openapi: &Path| -> Value {
            serde_json::from_slice(&run(apitap()
                .args(["inventory", "--json", "--openapi"])
                .arg(openapi)
                .arg("-c")
                .args(args)))
            .unwrap()
        };
        let (fleet_api, local_api) = (d.join("fleet-openapi.json"), d.join("local-openapi.json"));
        let fleet = inventory(&[centre.to_str().unwrap(), "--kafka", &brokers], &fleet_api);
        let whole = inventory(
            &[local.to_str().unwrap(), pcap.to_str().unwrap()],
            &local_api,
        );
        assert!(fleet["endpoints"].as_array().unwrap().len() > 5, "{fleet}");
        let mut fleet = fleet;
        assert_eq!(take_sensors(&mut fleet), both);
        assert_eq!(fleet, whole);
        let mut fleet_api = read(&fleet_api);
        assert_eq!(take_sensors(&mut fleet_api), both);
        assert_eq!(fleet_api, read(&local_api));
        let _ = std::fs::remove_dir_all(&d);
    }

    /// What every group test starts from: a scratch directory, the fixtures, a broker
    /// (`Broker::start` when the test needs its own), the topics (events with
    /// `partitions`), and the local and centre configs.
    struct Setup {
        d: PathBuf,
        spec: PathBuf,
        pcap: PathBuf,
        brokers: String,
        topics: (String, String),
        local: PathBuf,
        centre: PathBuf,
    }

    impl Setup {
        fn new(tag: &str, brokers: &str, partitions: i32) -> Setup {
            let d = scratch(tag);
            let topics = topics(tag);
            create_topic(brokers, &topics.0, partitions);
            // One partition: with two members, one of them is assigned none of it.
            create_topic(brokers, &auth_topic(&topics.0), 1);
            let local = config(&d, "local");
            let centre = with_kafka(&local, brokers, &topics, "centre-kafka.toml");
            Setup {
                spec: dir().join("openapi.yaml"),
                pcap: dir().join("fleet.pcap"),
                brokers: brokers.to_string(),
                topics,
                local,
                centre,
                d,
            }
        }
    }

    /// The events of each half through its own edge sensor into a file.
    fn sensor_files(d: &Path, edge: &Path, spec: &Path, pcap: &Path) -> Vec<PathBuf> {
        let halves = [d.join("a.pcap"), d.join("b.pcap")];
        split_by_connection(pcap, [&halves[0], &halves[1]]);
        halves
            .iter()
            .enumerate()
            .map(|(i, half)| {
                let events = d.join(format!("sensor-{i}.jsonl"));
                run(apitap()
                    .args(["replay", "-q", "-c"])
                    .arg(edge)
                    .arg("--spec")
                    .arg(spec)
                    .arg("-o")
                    .arg(&events)
                    .arg(half));
                events
            })
            .collect()
    }

    /// Every line of `files`, file after file.
    fn all_lines(files: &[PathBuf]) -> Vec<String> {
        files
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(f)
                    .unwrap()
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Produces `lines` to `topic` keyed by host, and the authentication failures among
    /// them also to its auth failures topic keyed by client, as an edge sensor does.
    fn produce(brokers: &str, topic: &str, lines: &[String]) {
        produce_to(brokers, topic, lines, |_| None);
    }

    /// [`produce`], with the partition of a host's events chosen by `partition` (`None`:
    /// by key, as a sensor's producer does).
    fn produce_to(
        brokers: &str,
        topic: &str,
        lines: &[String],
        partition: impl Fn(&str) -> Option<i32>,
    ) {
        use rdkafka::config::ClientConfig;
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "5")
            .create()
            .unwrap();
        for line in lines {
            let host = serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|v| v["url"]["domain"].as_str().map(str::to_string))
                .unwrap_or_default();
            let key = format!("{:016x}", apitap_core::endpoint::endpoint_hash(&host, ""));
            let mut record = BaseRecord::to(topic).key(&key).payload(line);
            if let Some(p) = partition(&host) {
                record = record.partition(p);
            }
            producer.send(record).unwrap();
            if let Some(client) = auth_failure_client(line) {
                let key = format!("{:016x}", apitap_core::endpoint::endpoint_hash(&client, ""));
                producer
                    .send(BaseRecord::to(&auth_topic(topic)).key(&key).payload(line))
                    .unwrap();
            }
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }

    /// A client fails to log in on two hosts (every other attempt moved to a second host,
    /// `login-b.example`), on partitions that range assignment gives to different members
    /// while both are in the group. The host group never counts auth bursts (those rules
    /// are off there); the clients group, which reads the auth failures keyed by client,
    /// counts this one whole. The alerts equal those of one centre over the same events
    /// (`apitap analyze` on the file).
    #[test]
    fn a_login_burst_over_two_hosts_of_two_members_is_counted_by_client() {
        let (brokers, _broker) = cluster();
        let Setup {
            d,
            spec,
            pcap,
            brokers,
            topics,
            local,
            centre,
        } = Setup::new("fleet-clients", &brokers, 4);
        let files = sensor_files(&d, &config(&d, "edge"), &spec, &pcap);
        let mut moved = 0;
        let mut lines = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let mut stream = Vec::new();
            for line in std::fs::read_to_string(f).unwrap().lines() {
                let mut v: Value = serde_json::from_str(line).unwrap();
                // Named sensors: the alerts name them, alike at one centre and at two
                // members.
                v["observer"] = serde_json::json!({ "name": format!("edge-{i}") });
                if v["source"]["ip"] == "127.0.0.105" {
                    moved += 1;
                    if moved % 2 == 0 {
                        v["url"]["domain"] = Value::from("login-b.example");
                    }
                }
                stream.push(v.to_string());
            }
            // Each sensor's stream stays a stream of its own (in time order).
            std::fs::write(f, stream.join("\n") + "\n").unwrap();
            lines.extend(stream);
        }
        assert!(moved >= 10, "{moved}");
        // One centre over all of it: the reference.
        let want: BTreeMap<String, Value> = parse_all(&run(apitap()
            .args(["analyze", "-q", "-c"])
            .arg(&local)
            .arg("--spec")
            .arg(&spec)
            .args(&files)))
        .into_iter()
        .map(|a| (a["event"]["id"].as_str().unwrap().to_string(), a))
        .collect();
        let burst = want
            .values()
            .find(|a| a["rule"]["id"] == "APITAP-AUTH-001" && a["source"]["ip"] == "127.0.0.105")
            .expect("the reference sees the login burst");
        assert_eq!(burst["apitap"]["count"], 10, "{burst}");
        assert_eq!(
            burst["apitap"]["sensors"],
            serde_json::json!(["edge-0", "edge-1"]),
            "{burst}"
        );

        // The two hosts on partitions 0 and 2: with two members (range assignment over
        // four partitions) each is owned by a different member.
        produce_to(&brokers, &topics.0, &lines, |host| match host {
            "login-b.example" => Some(2),
            _ => Some(0),
        });
        let stats = [d.join("m0.json"), d.join("m1.json")];
        let members: Vec<Child> = stats
            .iter()
            .map(|s| member(&centre, &brokers, &spec, s, "3"))
            .collect();
        for m in members {
            wait_ok(m);
        }
        let read =
            |p: &Path| -> Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
        let mut bursts_by_clients = 0;
        for s in &stats {
            let s = read(s);
            assert!(
                s["analytics"]["alerts_by_rule"]
                    .get("APITAP-AUTH-001")
                    .is_none(),
                "{s}"
            );
            bursts_by_clients += s["clients"]["analytics"]["alerts_by_rule"]["APITAP-AUTH-001"]
                .as_u64()
                .unwrap_or(0);
        }
        assert!(bursts_by_clients >= 1);
        let got: BTreeMap<String, Value> = alerts_by_id(&brokers, &topics.1, want.len())
            .into_iter()
            .map(|(id, payload)| (id, serde_json::from_str(&payload).unwrap()))
            .collect();
        assert_eq!(got.len(), want.len(), "alert ids differ");
        let differ: Vec<String> = want
            .iter()
            .filter(|(id, a)| got.get(*id) != Some(a))
            .map(|(id, a)| format!("{a}\n   got {}", got.get(id).unwrap_or(&Value::Null)))
            .collect();
        assert!(
            differ.is_empty(),
            "alerts differ from those of one centre:\n{differ:#?}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A member whose auth failures topic does not exist refuses to start (exit 2, saying
    /// what to do); with `kafka.auth_failures_topic = ""` it runs one group with every
    /// rule and gives the alerts of one local sensor.
    #[test]
    fn without_the_auth_failures_topic_one_group_runs_every_rule() {
        let (brokers, _broker) = cluster();
        let Setup {
            d,
            spec,
            pcap,
            brokers,
            topics,
            local,
            centre,
        } = Setup::new("fleet-no-auth-topic", &brokers, 2);
        let text = std::fs::read_to_string(&centre).unwrap();
        let auth = format!("auth_failures_topic = \"{}\"", auth_topic(&topics.0));
        assert!(text.contains(&auth));
        std::fs::write(&centre, text.replace(".auth\"", ".missing\"")).unwrap();
        let out = member(&centre, &brokers, &spec, &d.join("refused.json"), "2")
            .wait_with_output()
            .unwrap();
        let logs = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{logs}");
        assert!(logs.contains("auth_failures_topic = \"\""), "{logs}");
        std::fs::write(&centre, text.replace(&auth, "auth_failures_topic = \"\"")).unwrap();
        let files = sensor_files(&d, &config(&d, "edge"), &spec, &pcap);
        let lines = all_lines(&files);
        produce(&brokers, &topics.0, &lines);
        let want = local_alerts(&local, &spec, &pcap);
        let stats = d.join("member.json");
        let out = member(&centre, &brokers, &spec, &stats, "2")
            .wait_with_output()
            .unwrap();
        let logs = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{logs}");
        let got = alerts_by_id(&brokers, &topics.1, want.len());
        assert!(
            got == want,
            "alerts differ: {} of {}",
            got.len(),
            want.len()
        );
        let s: Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
        assert!(s.get("clients").is_none(), "{s}");
        assert!(s["analytics"]["alerts_by_rule"]["APITAP-AUTH-001"].as_u64() >= Some(1));
        let _ = std::fs::remove_dir_all(&d);
    }

    /// The client of an authentication failure event (`None`: not one).
    fn auth_failure_client(line: &str) -> Option<String> {
        let rec = apitap_analytics::events::parse_event(line.as_bytes()).ok()?;
        rec.auth_failure()?;
        Some(rec.client.ip().to_string())
    }

    /// The group's committed offset and the end of each partition of `topic` (counted by
    /// reading it: the test broker's high watermark can lag its last batch).
    fn committed_and_ends(brokers: &str, group: &str, topic: &str) -> Vec<(i64, i64)> {
        use rdkafka::config::ClientConfig;
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::{Offset, TopicPartitionList};
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .create()
            .unwrap();
        let md = c
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let n = md.topics()[0].partitions().len() as i32;
        let mut tpl = TopicPartitionList::new();
        for p in 0..n {
            tpl.add_partition(topic, p);
        }
        let committed = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        let mut ends = vec![0i64; n as usize];
        for r in consume(brokers, topic, usize::MAX, Duration::from_secs(5)) {
            ends[r.partition as usize] += 1;
        }
        (0..n)
            .map(|p| {
                let at = match committed.find_partition(topic, p).unwrap().offset() {
                    Offset::Offset(o) => o,
                    _ => -1,
                };
                (at, ends[p as usize])
            })
            .collect()
    }

    /// A member killed (SIGKILL) mid-stream: the events of the first half of the time are
    /// on the topic, with bad messages among them (not JSON, another schema version, an
    /// event from the future); it publishes their alerts, commits, and dies. The second
    /// half arrives; another member takes the partitions, rebuilds the state from the
    /// events topic, publishes only what is not there yet, and the alerts topic ends up
    /// with the alerts of one local sensor. The bad messages are counted and skipped, and
    /// the committed offsets reach the end of every partition.
    #[test]
    fn a_killed_member_is_taken_over_and_no_alert_is_lost() {
        let (brokers, _broker) = cluster();
        let Setup {
            d,
            spec,
            pcap,
            brokers,
            topics,
            local,
            centre,
        } = Setup::new("fleet-kill", &brokers, 4);
        let files = sensor_files(&d, &config(&d, "edge"), &spec, &pcap);
        let want = local_alerts(&local, &spec, &pcap);

        // The cut: the time of the middle alert.
        let mut alert_times: Vec<String> = want
            .values()
            .map(|a| {
                serde_json::from_str::<Value>(a).unwrap()["@timestamp"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        alert_times.sort();
        let cut = alert_times[alert_times.len() / 2].clone();
        let (mut early, mut late) = (Vec::new(), Vec::new());
        for f in &files {
            for line in std::fs::read_to_string(f).unwrap().lines() {
                let v: Value = serde_json::from_str(line).unwrap();
                if v["@timestamp"].as_str().unwrap() < cut.as_str() {
                    early.push(line.to_string());
                } else {
                    late.push(line.to_string());
                }
            }
        }
        let mut future: Value = serde_json::from_str(&early[0]).unwrap();
        future["apitap"]["ts_ns"] = Value::from(4_102_444_800_000_000_000i64); // 2100
        future["event"]["id"] = Value::from("Ffuture-0");
        let mut old_schema: Value = serde_json::from_str(&early[1]).unwrap();
        old_schema["apitap"]["schema_version"] = Value::from("0");
        early.extend([
            "not json".to_string(),
            future.to_string(),
            old_schema.to_string(),
        ]);
        produce(&brokers, &topics.0, &early);

        let stats = [d.join("killed.json"), d.join("survivor.json")];
        let mut killed = member(&centre, &brokers, &spec, &stats[0], "600");
        // It has published (and, every 200 ms, committed) the alerts of the first half
        // once the topic stops growing.
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        let mut seen = (0, std::time::Instant::now());
        loop {
            let n = alerts_by_id(&brokers, &topics.1, 0).len();
            if n != seen.0 {
                seen = (n, std::time::Instant::now());
            } else if n > 0 && seen.1.elapsed() > Duration::from_secs(3) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no alert before the kill"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        killed.kill().unwrap();
        killed.wait().unwrap();
        let before = seen.0;
        assert!(before < want.len(), "the second half has alerts of its own");
        let group = "apitap-analyze";
        assert!(
            committed_and_ends(&brokers, group, &topics.0)
                .iter()
                .any(|(c, _)| *c > 0),
            "the killed member committed"
        );

        produce(&brokers, &topics.0, &late);
        let survivor = member(&centre, &brokers, &spec, &stats[1], "8");
        wait_ok(survivor);

        let got = alerts_by_id(&brokers, &topics.1, want.len());
        assert!(
            got == want,
            "alerts differ: {} on the topic, {} wanted",
            got.len(),
            want.len()
        );
        let s: Value = serde_json::from_slice(&std::fs::read(&stats[1]).unwrap()).unwrap();
        let m = &s["member"];
        assert_eq!(m["partitions"], 4, "{m}");
        assert_eq!(s["clients"]["member"]["partitions"], 1, "{s}");
        assert!(m["replayed"].as_u64().unwrap() > 0, "{m}");
        assert_eq!(
            both_groups(&s, "alerts_already_published"),
            before as u64,
            "{s}"
        );
        assert_eq!(
            both_groups(&s, "alerts_published"),
            (want.len() - before) as u64,
            "{s}"
        );
        let input = &s["input"];
        assert_eq!(input["skipped_not_json"], 1, "{input}");
        assert_eq!(input["skipped_schema_version"], 1, "{input}");
        assert_eq!(input["skipped_future"], 1, "{input}");
        let clients_group = format!("{group}-clients");
        for (committed, end) in committed_and_ends(&brokers, group, &topics.0)
            .into_iter()
            .chain(committed_and_ends(
                &brokers,
                &clients_group,
                &auth_topic(&topics.0),
            ))
        {
            // An empty partition has nothing to commit.
            if end > 0 {
                assert_eq!(committed, end, "offsets reach the end of every partition");
            }
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    /// The broker stops answering (frozen) while a member holds events for ordering; the
    /// alerts they give wait, nothing is committed meanwhile, the counters say so, and
    /// once the broker is back every alert is delivered.
    #[test]
    fn a_broker_outage_delays_the_alerts_and_loses_none() {
        if std::env::var("APITAP_TEST_KAFKA").is_ok_and(|v| !v.is_empty()) {
            eprintln!("skipped: needs the test's own broker to freeze");
            return;
        }
        let broker = Broker::start();
        let Setup {
            d,
            spec,
            pcap,
            brokers,
            topics,
            local,
            centre,
        } = Setup::new("fleet-outage", &broker.addr, 4);
        // The member holds all it read (a lateness longer than the capture) for 2 s before
        // it counts the partitions idle and lets it through; the
        // group keeps it through an outage of 8 s (a longer one costs it its partitions:
        // it takes them again and rebuilds, which loses nothing either).
        let text = std::fs::read_to_string(&centre)
            .unwrap()
            .replace("idle_partition_ms = 1000", "idle_partition_ms = 2000")
            .replace("[analyze]\n", "[analyze]\nallowed_lateness_ms = 60000\n")
            .replace("\"6000\"", "\"20000\"");
        std::fs::write(&centre, text).unwrap();
        let files = sensor_files(&d, &config(&d, "edge"), &spec, &pcap);
        let lines = all_lines(&files);
        produce(&brokers, &topics.0, &lines);
        let want = local_alerts(&local, &spec, &pcap);

        let stats = d.join("member.json");
        let mut child = member(&centre, &brokers, &spec, &stats, "20");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let events_topic = topics.0.clone();
        let logs = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut all = String::new();
            for line in std::io::BufReader::new(stderr).lines() {
                let line = line.unwrap();
                // The events group's line (the clients group's names `<events>.auth`).
                if line.contains("every partition at its end")
                    && line.trim_end().ends_with(&format!("topic={events_topic}"))
                {
                    let _ = tx.send(());
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        rx.recv_timeout(Duration::from_secs(90))
            .expect("the member read its partitions");
        // It has read the events and holds them for 2 s; the broker goes away before the
        // member lets them through, and comes back 8 s later.
        broker.freeze(true);
        std::thread::sleep(Duration::from_secs(8));
        broker.freeze(false);
        let status = child.wait().unwrap();
        let logs = logs.join().unwrap();
        assert!(status.success(), "member failed: {logs}");

        let got = alerts_by_id(&brokers, &topics.1, want.len());
        assert!(
            got == want,
            "alerts differ: {} on the topic, {} wanted",
            got.len(),
            want.len()
        );
        let s: Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
        let m = &s["member"];
        assert!(m["delivery_waits"].as_u64().unwrap() > 0, "{m} {logs}");
        assert_eq!(m["rebuilds"], 1, "{m}");
        assert!(m["alerts_waiting_max"].as_u64().unwrap() > 0, "{m}");
        assert_eq!(
            both_groups(&s, "alerts_published"),
            want.len() as u64,
            "{s}"
        );
        broker.stop();
        let _ = std::fs::remove_dir_all(&d);
    }
}
