//! Body capture end to end, on captures of a real server and curl
//! (`scripts/make-body-fixtures.sh`): which bodies are kept, content decoding, redaction of
//! secrets in JSON bodies, form bodies and query strings, and the decompression-bomb limit.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use apitap::Config;
use common::*;
use serde_json::Value;

fn capture_cfg() -> Config {
    let mut cfg = Config::parse(
        "[http]\ninclude_body_for = [\"application/json\", \"application/x-www-form-urlencoded\", \"text/\"]\n",
    )
    .unwrap();
    cfg.pipeline.workers = 2;
    cfg
}

fn by_path<'a>(events: &'a [Value], path: &str) -> &'a Value {
    events
        .iter()
        .find(|e| field(e, "url.path") == path)
        .unwrap_or_else(|| panic!("no event for {path}"))
}

#[test]
fn bodies_are_captured_decoded_and_redacted() {
    let pcap = root().join("fixtures/bodies/json-bodies.pcap");
    let (out, summary) = run_replay_with(std::slice::from_ref(&pcap), &capture_cfg());
    let text = String::from_utf8(out.clone()).unwrap();
    for secret in [
        "hunter2",
        "4111111111111111",
        "ak_live_1234567890",
        "tok-ada-1",
    ] {
        assert!(!text.contains(secret), "{secret} leaked into the events");
    }
    let events = parse_lines(&out);
    assert_eq!(events.len(), 7);

    let items = by_path(&events, "/api/items");
    assert_eq!(
        field(items, "http.request.body.content"),
        r#"{"user":"ada","password":"[REDACTED]","card":"[REDACTED]","note":"hi"}"#
    );
    assert_eq!(field(items, "apitap.body.request.redacted_fields"), 2);
    assert_eq!(field(items, "apitap.body.request.truncated"), false);
    assert_eq!(
        field(items, "http.response.body.content"),
        r#"{"created":true,"id":7}"#
    );

    let login = by_path(&events, "/login");
    assert_eq!(
        field(login, "http.request.body.content"),
        "user=ada&password=[REDACTED]&remember=1"
    );

    for (path, coding) in [
        ("/users.json.gz", "gzip"),
        ("/users.json.deflate", "deflate"),
    ] {
        let e = by_path(&events, path);
        assert_eq!(field(e, "apitap.body.response.content_encoding"), coding);
        let content: Value =
            serde_json::from_str(field(e, "http.response.body.content").as_str().unwrap()).unwrap();
        assert_eq!(content["users"][0]["email"], "ada@example.com");
        assert_eq!(content["users"][1]["token"], "[REDACTED]");
        // body.bytes stays the size on the wire (compressed).
        assert!(field(e, "http.response.body.bytes").as_u64().unwrap() < 140);
    }

    let t = by_path(&events, "/text");
    assert_eq!(field(t, "http.response.body.content"), "plain text body\n");
    let img = by_path(&events, "/image");
    assert!(field(img, "http.response.body.content").is_null());
    assert!(
        field(img, "apitap.body").is_null(),
        "image/png is not captured"
    );

    let search = by_path(&events, "/search");
    assert_eq!(
        field(search, "url.original"),
        "/search?q=widgets&api_key=[REDACTED]"
    );
    assert_eq!(field(search, "url.query"), "q=widgets&api_key=[REDACTED]");

    let http = summary.to_json()["http"].clone();
    assert_eq!(
        http["bodies_captured"], 8,
        "2 request bodies, 6 responses (not the image) {http}"
    );
    assert_eq!(http["bodies_decoded"], 2);
    assert_eq!(http["decompression_bombs"], 0);

    // Without analytics.sensitive.scan_bodies, bodies no event asks for are not read.
    let mut no_scan = apitap::Config::default();
    no_scan.pipeline.workers = 1;
    no_scan.analytics.sensitive.scan_bodies = false;
    let (plain, _) = run_replay_with(std::slice::from_ref(&pcap), &no_scan);
    assert!(parse_alerts(&plain)
        .iter()
        .all(|a| a["rule"]["id"] != "APITAP-SENSITIVE-002"));
    // Body capture off, the scan on (the defaults): bodies captured for the scan only,
    // never written.
    let (plain, _) = run_replay(&[pcap], 1);
    let alerts = parse_alerts(&plain);
    let plain = String::from_utf8(plain).unwrap();
    assert!(!plain.contains("\"content\""));
    assert!(!plain.contains("ak_live_1234567890"));
    assert!(!plain.contains("4111111111111111"));
    let request_kinds: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["rule"]["id"] == "APITAP-SENSITIVE-002")
        .map(|a| &a["apitap"]["counts"])
        .collect();
    assert_eq!(
        request_kinds,
        [&serde_json::json!({"card_number": 1})],
        "{alerts:#?}"
    );
}

#[test]
fn a_gzip_bomb_stops_at_the_limit_with_an_anomaly_and_bounded_memory() {
    let pcap = root().join("fixtures/bodies/gzip-bomb.pcap");
    let (out, summary) = run_replay_with(std::slice::from_ref(&pcap), &capture_cfg());
    let events = parse_lines(&out);
    assert_eq!(events.len(), 1);
    let e = &events[0];
    let anomalies: Vec<&str> = field(e, "apitap.anomalies")
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(anomalies, ["decompression_bomb"]);
    assert_eq!(field(e, "apitap.body.response.truncated"), true);
    // 64 MiB of zeros is not JSON: withheld, not written.
    assert_eq!(field(e, "apitap.body.response.withheld"), true);
    assert!(out.len() < 4096, "event is {} bytes", out.len());
    let http = summary.to_json()["http"].clone();
    assert_eq!(http["decompression_bombs"], 1);
    assert_eq!(
        http["body_bytes_captured"],
        1 << 20,
        "max_decoded_body_bytes"
    );

    // The whole process stays far below the 64 MiB the bomb inflates to.
    let dir = scratch("bomb");
    let cfg = dir.join("sensor.toml");
    std::fs::write(&cfg, "[http]\ninclude_body_for = [\"application/json\"]\n").unwrap();
    let run = std::process::Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(env!("CARGO_BIN_EXE_apitap"))
        .args(["replay", "-q", "-c"])
        .arg(&cfg)
        .arg(&pcap)
        .output()
        .expect("/usr/bin/time (Debian package time; scripts/setup.sh installs it)");
    assert!(run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    let max_rss_kb: u64 = stderr.lines().last().unwrap().trim().parse().unwrap();
    assert!(max_rss_kb < 48 * 1024, "peak RSS {max_rss_kb} KiB");
}
