//! Helpers shared by the end-to-end tests: find fixtures, run replays, compare events.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod kafka;
pub mod nginx;

use apitap::{replay, Config, Output, RunSummary};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A fresh scratch directory under the target dir.
pub fn scratch(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "apitap-test-{}-{}-{}",
        std::process::id(),
        name,
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every capture under fixtures/, sorted, except fixtures/bad (broken on purpose) and
/// fixtures/analytics (replayed with their own config by tests/analytics.rs).
pub fn fixture_captures() -> Vec<PathBuf> {
    let mut out = Vec::new();
    walk(&root().join("fixtures"), &mut out);
    out.retain(|p| {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        (ext == "pcap" || ext == "pcapng")
            && !p
                .components()
                .any(|c| c.as_os_str() == "bad" || c.as_os_str() == "analytics")
    });
    out.sort();
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The 24-byte header of a classic little-endian pcap: microsecond times, Ethernet.
pub fn pcap_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    h[16..20].copy_from_slice(&65_535u32.to_le_bytes());
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h
}

/// The 16-byte record header of `frame_len` bytes captured whole, `at_us` microseconds
/// after 2023-11-14 22:13:20 UTC (Unix time 1,700,000,000).
pub fn pcap_record_header(at_us: u64, frame_len: usize) -> [u8; 16] {
    let secs = 1_700_000_000 + at_us / 1_000_000;
    let len = u32::try_from(frame_len).unwrap();
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&u32::try_from(secs).unwrap().to_le_bytes());
    h[4..8].copy_from_slice(&((at_us % 1_000_000) as u32).to_le_bytes());
    h[8..12].copy_from_slice(&len.to_le_bytes());
    h[12..16].copy_from_slice(&len.to_le_bytes());
    h
}

/// One Ethernet/IPv4/TCP frame of the connection between `client` and `server` (address,
/// port), sent by the client when `from_client`. `flags` holds `S`, `F`, `A` for SYN, FIN
/// and ACK (with `ack`).
pub fn tcp_frame(
    client: ([u8; 4], u16),
    server: ([u8; 4], u16),
    from_client: bool,
    seq: u32,
    ack: u32,
    flags: &str,
    payload: &[u8],
) -> Vec<u8> {
    let ((src, sp), (dst, dp)) = if from_client {
        (client, server)
    } else {
        (server, client)
    };
    let mut b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sp, dp, seq, 65_000);
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('F') {
        b = b.fin();
    }
    if flags.contains('A') {
        b = b.ack(ack);
    }
    let mut f = Vec::new();
    b.write(&mut f, payload).unwrap();
    f
}

/// Golden events file of a capture: `NAME.events.jsonl` beside it.
pub fn golden_path(capture: &Path) -> PathBuf {
    let stem = capture.file_stem().unwrap().to_string_lossy().to_string();
    capture.with_file_name(format!("{stem}.events.jsonl"))
}

/// Replays `inputs` with `workers` workers in-process; returns the output bytes and summary.
pub fn run_replay(inputs: &[PathBuf], workers: usize) -> (Vec<u8>, RunSummary) {
    let mut cfg = Config::default();
    cfg.pipeline.workers = workers;
    run_replay_with(inputs, &cfg)
}

/// Replays with an explicit config.
pub fn run_replay_with(inputs: &[PathBuf], cfg: &Config) -> (Vec<u8>, RunSummary) {
    let dir = scratch("replay");
    let out = dir.join("events.jsonl");
    let summary = replay(inputs, Some(Output::File(out.clone())), cfg).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (bytes, summary)
}

/// The transaction events of JSON-lines output (alerts left out).
pub fn parse_lines(bytes: &[u8]) -> Vec<Value> {
    parse_all(bytes)
        .into_iter()
        .filter(|v| v["event"]["kind"] != "alert")
        .collect()
}

/// The alert lines (`event.kind: "alert"`) of JSON-lines output.
pub fn parse_alerts(bytes: &[u8]) -> Vec<Value> {
    parse_all(bytes)
        .into_iter()
        .filter(|v| v["event"]["kind"] == "alert")
        .collect()
}

/// Every line of JSON-lines output, events and alerts.
pub fn parse_all(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

/// Field-by-field differences between two JSON values, as pointer paths.
pub fn diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                match y.get(k) {
                    Some(vb) => diff(va, vb, &format!("{path}/{k}"), out),
                    None => out.push(format!("{path}/{k}: only in actual ({va})")),
                }
            }
            for (k, vb) in y {
                if !x.contains_key(k) {
                    out.push(format!("{path}/{k}: only in expected ({vb})"));
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff(va, vb, &format!("{path}/{i}"), out);
            }
        }
        _ if a != b => out.push(format!("{path}: actual {a} != expected {b}")),
        _ => {}
    }
}

/// Field of an event by dotted path (`http.request.method`).
pub fn field<'a>(ev: &'a Value, dotted: &str) -> &'a Value {
    let mut v = ev;
    for part in dotted.split('.') {
        v = v.get(part).unwrap_or(&Value::Null);
    }
    v
}

/// The metric names and the `by (...)` labels the Grafana dashboard
/// (dashboards/apitap.json) queries.
#[allow(dead_code)]
pub fn dashboard_queries() -> (
    std::collections::BTreeSet<String>,
    std::collections::BTreeSet<String>,
) {
    fn exprs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("expr", Value::String(s)) => out.push(s.clone()),
                        _ => exprs(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| exprs(x, out)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(root().join("dashboards/apitap.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    let word = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = std::collections::BTreeSet::new();
    let mut labels = std::collections::BTreeSet::new();
    for e in &all {
        for (i, _) in e.match_indices("apitap_") {
            names.insert(word(&e[i..]));
        }
        for part in e.split("by (").skip(1) {
            for l in part.split(')').next().unwrap_or("").split(',') {
                labels.insert(l.trim().to_string());
            }
        }
    }
    // Prometheus' own target label, not one apitap serves.
    labels.remove("instance");
    (names, labels)
}
