//! Every numeric key of the shipped sensor.toml (and of the commented `[kafka]` section),
//! set to 0, -1, 10^8, 2^40 and 2^63-1 (floats also to NaN and infinity): the sensor either
//! refuses the config at start-up (exit 2, naming the key) or runs normally (exit 0). It
//! never panics, aborts or runs out of memory.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::kafka::*;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use toml::Value;

const INTS: [i64; 5] = [0, -1, 100_000_000, 1 << 40, i64::MAX];
const FLOATS: [f64; 6] = [0.0, -1.0, 1e300, f64::NAN, f64::INFINITY, f64::NEG_INFINITY];

/// Dotted paths of every integer and float in `v`.
fn numeric_keys(v: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Value::Table(t) = v {
        for (k, v) in t {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Integer(_) | Value::Float(_) => out.push(path),
                Value::Table(_) => numeric_keys(v, &path, out),
                _ => {}
            }
        }
    }
}

fn set(v: &mut Value, dotted: &str, new: Value) {
    let mut at = v;
    let mut parts = dotted.split('.').peekable();
    while let Some(p) = parts.next() {
        let t = at.as_table_mut().unwrap();
        if parts.peek().is_none() {
            t.insert(p.into(), new);
            return;
        }
        at = t
            .entry(p)
            .or_insert_with(|| Value::Table(toml::Table::new()));
    }
}

fn get<'a>(v: &'a Value, dotted: &str) -> &'a Value {
    dotted
        .split('.')
        .fold(v, |at, p| at.get(p).unwrap_or_else(|| panic!("{dotted}")))
}

/// The commented `[kafka]` section of sensor.toml, uncommented (scalars only).
fn kafka_section(sensor_toml: &str) -> Value {
    let mut text = String::new();
    let mut inside = false;
    for line in sensor_toml.lines() {
        let l = line.trim_start_matches("# ");
        if l.starts_with('[') {
            inside = l.starts_with("[kafka]");
            continue;
        }
        if inside && l.contains(" = ") && !line.starts_with("# #") {
            text.push_str(l.split(" #").next().unwrap());
            text.push('\n');
        }
    }
    toml::from_str(&text).unwrap()
}

/// Runs a replay of a small capture with `cfg`; returns a complaint, or None when the
/// outcome is one of the two allowed.
fn judge(dir: &Path, key: &str, value: &Value, cfg: &Value) -> Option<String> {
    let path = dir.join("sensor.toml");
    std::fs::write(&path, toml::to_string(cfg).unwrap()).unwrap();
    let capture = root().join("fixtures/nginx/nginx-ipv6.pcap");
    // Address space capped at 8 GiB: an allocation sized from the value fails (an abort,
    // caught below) instead of swapping the machine.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -v 8388608; exec timeout -s KILL 60 {} replay -q -c {} -o /dev/null {}",
            env!("CARGO_BIN_EXE_apitap"),
            path.display(),
            capture.display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let short = |s: &str| s.lines().take(3).collect::<Vec<_>>().join(" | ");
    match out.status.code() {
        Some(0) if !stderr.contains("panicked") => None,
        Some(2) if stderr.contains(key.rsplit('.').next().unwrap()) => None,
        // No time to flush at shutdown is a choice; what it left undelivered is reported.
        Some(1)
            if key == "kafka.flush_timeout_ms"
                && stderr.contains("did not reach Kafka")
                && !stderr.contains("panicked") =>
        {
            None
        }
        code => Some(format!(
            "{key} = {value}: exit {code:?}: {}",
            short(&stderr)
        )),
    }
}

fn values(original: &Value) -> Vec<Value> {
    match original {
        Value::Float(_) => FLOATS.iter().map(|&f| Value::Float(f)).collect(),
        _ => INTS.iter().map(|&i| Value::Integer(i)).collect(),
    }
}

#[test]
fn every_numeric_key_is_refused_or_runs_at_any_value() {
    let text = std::fs::read_to_string(root().join("sensor.toml")).unwrap();
    let base: Value = toml::from_str(&text).unwrap();
    let mut keys = Vec::new();
    numeric_keys(&base, "", &mut keys);
    assert!(keys.len() > 60, "{keys:?}");
    let dir = scratch("ranges");
    let mut failures = Vec::new();
    for key in &keys {
        for value in values(get(&base, key)) {
            let mut cfg = base.clone();
            set(&mut cfg, key, value.clone());
            failures.extend(judge(&dir, key, &value, &cfg));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_numeric_kafka_key_is_refused_or_runs_at_any_value() {
    let text = std::fs::read_to_string(root().join("sensor.toml")).unwrap();
    let mut kafka = kafka_section(&text);
    let (brokers, _broker) = cluster();
    let (events, alerts) = topics("ranges");
    set(&mut kafka, "brokers", Value::String(brokers));
    set(&mut kafka, "events_topic", Value::String(events));
    set(&mut kafka, "alerts_topic", Value::String(alerts));
    let mut keys = Vec::new();
    numeric_keys(&kafka, "", &mut keys);
    assert!(keys.len() >= 8, "{keys:?}");
    let dir = scratch("kafka-ranges");
    let mut failures = Vec::new();
    for key in &keys {
        for value in values(get(&kafka, key)) {
            let mut k = kafka.clone();
            set(&mut k, key, value.clone());
            // Short waits where the key under test is not one of them.
            for (other, ms) in [("flush_timeout_ms", 5_000), ("linger_ms", 5)] {
                if key != other {
                    set(&mut k, other, Value::Integer(ms));
                }
            }
            let mut cfg = toml::Table::new();
            cfg.insert("kafka".into(), k);
            let started = std::time::Instant::now();
            failures.extend(judge(
                &dir,
                &format!("kafka.{key}"),
                &value,
                &Value::Table(cfg),
            ));
            assert!(started.elapsed() < Duration::from_secs(61));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `(key, value, lo, hi, lo_excluded)` for every `key = value  # lo..=hi` in sensor.toml,
/// also in the commented `[kafka]` section.
fn documented_ranges(text: &str) -> Vec<(String, Value, f64, f64, bool)> {
    let mut out = Vec::new();
    let mut section = String::new();
    for line in text.lines() {
        let l = line.strip_prefix("# ").unwrap_or(line);
        if let Some(name) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
            if name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
            {
                section = name.to_string();
            }
            continue;
        }
        let Some((assign, comment)) = l.split_once(" # ") else {
            continue;
        };
        let Some((key, value)) = assign.split_once(" = ") else {
            continue;
        };
        let range = comment.trim_start().split(';').next().unwrap();
        let Some((lo, hi)) = range.split(',').next().unwrap().split_once("..=") else {
            continue;
        };
        let value: Value =
            toml::from_str::<toml::Table>(&format!("v = {}", value.trim())).unwrap()["v"].clone();
        out.push((
            format!("{section}.{}", key.trim()),
            value,
            lo.trim().parse().unwrap(),
            hi.trim().parse().unwrap(),
            range.contains("not 0"),
        ));
    }
    out
}

#[test]
fn every_documented_range_is_the_one_checked() {
    let text = std::fs::read_to_string(root().join("sensor.toml")).unwrap();
    let ranges = documented_ranges(&text);
    assert!(ranges.len() > 70, "{}", ranges.len());
    let mut wrong = Vec::new();
    for (key, value, lo, hi, lo_excluded) in ranges {
        let float = matches!(value, Value::Float(_));
        let make = |x: f64| {
            if float {
                Value::Float(x)
            } else {
                Value::Integer(x as i64)
            }
        };
        for (x, ok) in [
            (lo, !lo_excluded),
            (hi, true),
            (lo - 1.0, false),
            (hi + 1.0, false),
        ] {
            let mut cfg: Value =
                toml::from_str("[pipeline]\nworkers = 1\n[kafka]\nbrokers = \"127.0.0.1:1\"\n")
                    .unwrap();
            set(&mut cfg, &key, make(x));
            let accepted = toml::to_string(&cfg)
                .map_err(|e| e.to_string())
                .and_then(|t| apitap::Config::parse(&t).map_err(|e| format!("{e:#}")))
                .and_then(|c| c.validate().map_err(|e| format!("{e:#}")));
            if accepted.is_ok() != ok {
                wrong.push(format!("{key} = {x}: {accepted:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
