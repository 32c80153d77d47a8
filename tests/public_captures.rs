//! apitap against other projects' judgement: public captures from Zeek's and Suricata's
//! test suites (fixtures/public, origin in its MANIFEST.tsv) with the transactions those
//! tools expect. For each file we count how many expected (method, host, URI, status)
//! transactions apitap also emits, print the table, and fail if a file falls below the
//! floor recorded in fixtures/public/match-floor.tsv (a regression guard; each mismatch is
//! explained in that file).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

/// One expected transaction: field (event path) -> expected value as text.
type Expect = Vec<(&'static str, String)>;

fn zeek_expectations(log: &Path) -> Vec<(Expect, usize)> {
    let text = std::fs::read_to_string(log).unwrap();
    let mut fields: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#fields\t") {
            fields = rest.split('\t').map(str::to_string).collect();
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if fields.is_empty() && cols.contains(&"method") {
            // A `.cut` baseline: the header row is a plain line.
            fields = cols.iter().map(|s| s.to_string()).collect();
            continue;
        }
        let mut e: Expect = Vec::new();
        for (zeek, ours) in [
            ("method", "http.request.method"),
            ("host", "url.domain"),
            ("uri", "url.original"),
            ("status_code", "http.response.status_code"),
        ] {
            // Compare only what the baseline has.
            let Some(value) = fields
                .iter()
                .position(|f| f == zeek)
                .and_then(|i| cols.get(i))
            else {
                continue;
            };
            let value = if zeek == "host" {
                strip_port(value)
            } else {
                value.to_string()
            };
            e.push((ours, value));
        }
        out.push((e, 1));
    }
    out
}

fn suricata_expectations(yaml: &Path) -> Vec<(Expect, usize)> {
    let text = std::fs::read_to_string(yaml).unwrap();
    let docs = YamlLoader::load_from_str(&text).unwrap();
    let mut out = Vec::new();
    let Some(checks) = docs.first().and_then(|d| d["checks"].as_vec()) else {
        return out;
    };
    for check in checks {
        let filter = &check["filter"];
        let Some(m) = filter["match"].as_hash() else {
            continue;
        };
        if m.get(&Yaml::String("event_type".into()))
            .and_then(Yaml::as_str)
            != Some("http")
        {
            continue;
        }
        let count = filter["count"].as_i64().unwrap_or(1).max(0) as usize;
        let mut e: Expect = Vec::new();
        for (k, v) in m {
            let key = k.as_str().unwrap_or("");
            let ours = match key {
                "http.url" => "url.original",
                "http.status" => "http.response.status_code",
                "http.http_method" => "http.request.method",
                "http.hostname" => "url.domain",
                "http.protocol" => "http.version",
                "http.length" => "http.response.body.bytes",
                "http.http_user_agent" => "user_agent.original",
                _ => continue,
            };
            let val = match v {
                Yaml::Integer(i) => i.to_string(),
                Yaml::String(s) if key == "http.protocol" => {
                    s.trim_start_matches("HTTP/").to_string()
                }
                Yaml::String(s) => s.clone(),
                Yaml::Real(r) => r.clone(),
                other => format!("{other:?}"),
            };
            e.push((ours, val));
        }
        if !e.is_empty() {
            out.push((e, count));
        }
    }
    out
}

/// Zeek logs the Host header as sent (`example.com:8080`); ECS `url.domain` has no port.
fn strip_port(host: &str) -> String {
    if host.starts_with('[') {
        return host
            .split(']')
            .next()
            .map(|h| format!("{h}]"))
            .unwrap_or_default();
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()) => h.to_string(),
        _ => host.to_string(),
    }
}

fn matches(ev: &Value, e: &Expect) -> bool {
    e.iter().all(|(path, want)| {
        let got = field(ev, path);
        match got {
            // Zeek writes status 0 for an answer without a status line (HTTP/0.9).
            Value::Null => want == "-" || (*path == "http.response.status_code" && want == "0"),
            Value::String(s) => s == want,
            Value::Number(n) => *want == n.to_string(),
            other => want.as_str() == other.to_string().as_str(),
        }
    })
}

struct Row {
    name: String,
    expected: usize,
    matched: usize,
    events: usize,
}

fn compare(capture: &Path, expectations: Vec<(Expect, usize)>) -> Row {
    let (out, _) = run_replay(&[capture.to_path_buf()], 2);
    let events = parse_lines(&out);
    let mut used = vec![false; events.len()];
    let mut expected = 0;
    let mut matched = 0;
    for (e, count) in &expectations {
        expected += count;
        for _ in 0..*count {
            if let Some(i) = (0..events.len()).find(|&i| !used[i] && matches(&events[i], e)) {
                used[i] = true;
                matched += 1;
            }
        }
    }
    Row {
        name: capture.file_name().unwrap().to_string_lossy().to_string(),
        expected,
        matched,
        events: events.len(),
    }
}

fn expectation_file(capture: &Path) -> Option<(PathBuf, bool)> {
    let stem = capture.file_stem()?.to_string_lossy().to_string();
    let dir = capture.parent()?;
    for (suffix, zeek) in [
        ("expected.http.log", true),
        ("expected.http.log.cut", true),
        ("expected.yaml", false),
    ] {
        let p = dir.join(format!("{stem}.{suffix}"));
        if p.exists() {
            return Some((p, zeek));
        }
    }
    None
}

fn floors() -> BTreeMap<String, usize> {
    let path = root().join("fixtures/public/match-floor.tsv");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut cols = l.split('\t');
            Some((cols.next()?.to_string(), cols.next()?.trim().parse().ok()?))
        })
        .collect()
}

#[test]
fn public_captures_match_peer_expectations() {
    let mut rows = Vec::new();
    for capture in fixture_captures() {
        if !capture.components().any(|c| c.as_os_str() == "public") {
            continue;
        }
        let Some((exp, zeek)) = expectation_file(&capture) else {
            continue;
        };
        let expectations = if zeek {
            zeek_expectations(&exp)
        } else {
            suricata_expectations(&exp)
        };
        if expectations.is_empty() {
            continue;
        }
        rows.push(compare(&capture, expectations));
    }
    assert!(
        !rows.is_empty(),
        "no public captures with expectations found"
    );
    let floors = floors();
    let (mut te, mut tm) = (0, 0);
    let mut failures = Vec::new();
    eprintln!(
        "{:<48} {:>8} {:>8} {:>7} {:>7}",
        "capture", "expected", "matched", "rate", "events"
    );
    for r in &rows {
        te += r.expected;
        tm += r.matched;
        eprintln!(
            "{:<48} {:>8} {:>8} {:>6.1}% {:>7}",
            r.name,
            r.expected,
            r.matched,
            100.0 * r.matched as f64 / r.expected.max(1) as f64,
            r.events
        );
        let floor = floors.get(&r.name).copied().unwrap_or(r.expected);
        if r.matched < floor {
            failures.push(format!(
                "{}: matched {} < floor {}",
                r.name, r.matched, floor
            ));
        }
    }
    eprintln!(
        "{:<48} {:>8} {:>8} {:>6.1}%",
        "TOTAL",
        te,
        tm,
        100.0 * tm as f64 / te.max(1) as f64
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
