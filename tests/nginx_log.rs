//! The sensor agrees with the server: on captures of real nginx traffic, every request
//! nginx logged (`$request_method $request_uri $status $body_bytes_sent`) appears exactly
//! once among the events, with the same method, URI, status and response body bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::*;
use std::collections::BTreeMap;

type Row = (String, String, u64, u64);

fn logged(path: &std::path::Path) -> BTreeMap<Row, usize> {
    let mut rows = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts.len(), 4, "unexpected log line {line:?}");
        let row = (
            parts[0].to_string(),
            parts[1].to_string(),
            parts[2].parse().unwrap(),
            parts[3].parse().unwrap(),
        );
        *rows.entry(row).or_insert(0) += 1;
    }
    rows
}

fn observed(events: &[serde_json::Value]) -> BTreeMap<Row, usize> {
    let mut rows = BTreeMap::new();
    for e in events {
        if field(e, "http.response.status_code").is_null() || field(e, "http.request.method").is_null() {
            continue;
        }
        let row = (
            field(e, "http.request.method").as_str().unwrap().to_string(),
            field(e, "url.original").as_str().unwrap().to_string(),
            field(e, "http.response.status_code").as_u64().unwrap(),
            field(e, "http.response.body.bytes").as_u64().unwrap(),
        );
        *rows.entry(row).or_insert(0) += 1;
    }
    rows
}

#[test]
fn events_agree_with_nginx_access_logs() {
    let dir = root().join("fixtures/nginx");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let log = entry.path();
        let name = log.file_name().unwrap().to_string_lossy().to_string();
        let Some(stem) = name.strip_suffix(".access.log") else {
            continue;
        };
        let pcap = dir.join(format!("{stem}.pcap"));
        assert!(pcap.exists(), "{} has no capture", log.display());
        let expected = logged(&log);
        let (out, _) = run_replay(&[pcap], 2);
        let events = parse_lines(&out);
        let actual = observed(&events);
        let total: usize = expected.values().sum();
        assert!(total > 0, "{name} is empty");
        let mut problems = Vec::new();
        for (row, n) in &expected {
            let got = actual.get(row).copied().unwrap_or(0);
            if got != *n {
                problems.push(format!("{row:?}: nginx logged {n}, events have {got}"));
            }
        }
        for (row, n) in &actual {
            if !expected.contains_key(row) {
                problems.push(format!("{row:?}: {n} events, not in nginx's log"));
            }
        }
        assert!(problems.is_empty(), "{name}:\n{}", problems.join("\n"));
        checked += 1;
    }
    assert!(checked >= 2, "expected several nginx captures, checked {checked}");
}
