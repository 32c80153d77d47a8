//! Bad input never panics and never loses data silently: each case gives a clear error and
//! exit code, or a counted, reported anomaly.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::*;
use std::process::{Command, Output};

fn apitap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(args)
        .output()
        .expect("run apitap")
}

fn bad(name: &str) -> String {
    root().join("fixtures/bad").join(name).display().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn empty_file_is_a_clear_error() {
    let o = apitap(&["replay", &bad("empty.pcap")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    let e = stderr(&o);
    assert!(e.contains("empty.pcap"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn not_a_pcap_is_a_clear_error() {
    let o = apitap(&["replay", &bad("not-a-pcap.pcap")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("not-a-pcap.pcap"), "{}", stderr(&o));
}

#[test]
fn truncated_global_header_is_a_clear_error() {
    let o = apitap(&["replay", &bad("truncated-header.pcap")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("truncated-header.pcap"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn missing_file_is_a_clear_error() {
    let o = apitap(&["replay", "/nonexistent/x.pcap"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent/x.pcap"), "{}", stderr(&o));
}

#[test]
fn truncated_last_packet_is_reported_not_fatal() {
    let o = apitap(&["replay", "--workers", "2", &bad("truncated-packet.pcap")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("warning") && e.contains("truncated"), "{e}");
    let events = parse_lines(&o.stdout);
    assert!(
        !events.is_empty(),
        "events before the truncation must still be written"
    );
}

#[test]
fn corrupt_record_stops_with_error_after_earlier_events() {
    let o = apitap(&["replay", &bad("corrupt-record.pcap")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("corrupt-record.pcap"), "{e}");
    assert!(e.contains("input stopped early"), "{e}");
}

#[test]
fn garbage_on_port_80_is_counted_and_later_requests_still_parse() {
    let dir = scratch("garbage");
    let stats = dir.join("stats.json");
    let o = apitap(&[
        "replay",
        "--stats-json",
        stats.to_str().unwrap(),
        &bad("garbage-port80.pcap"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let events = parse_lines(&o.stdout);
    let gets: Vec<_> = events
        .iter()
        .filter(|e| field(e, "http.request.method") == "GET")
        .collect();
    assert!(
        !gets.is_empty(),
        "the normal GET after the garbage must be reported"
    );
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert!(
        s["http"]["bytes_skipped"].as_u64().unwrap() >= 2048,
        "garbage must be counted: {s}"
    );
    assert!(
        s["http"]["invalid_start_lines"].as_u64().unwrap() >= 1,
        "{s}"
    );
}

#[test]
fn bad_config_is_a_clear_error() {
    let dir = scratch("badcfg");
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "[flow]\nmax_flowz = 1\n").unwrap();
    let pcap = fixture_captures().into_iter().next().unwrap();
    let o = apitap(&[
        "replay",
        "--config",
        cfg.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("max_flowz") && e.contains("bad.toml"), "{e}");
}

#[test]
fn summary_goes_to_stderr_and_stdout_is_only_events() {
    let pcap = fixture_captures().into_iter().next().unwrap();
    let o = apitap(&["replay", pcap.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    for line in String::from_utf8(o.stdout.clone()).unwrap().lines() {
        assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
    }
    assert!(stderr(&o).contains("apitap summary"));
}

#[test]
fn files_named_by_the_config_must_be_regular_and_small() {
    let dir = scratch("special-files");
    let pcap = fixture_captures().into_iter().next().unwrap();
    let pcap = pcap.to_str().unwrap();
    let fifo = dir.join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let big = dir.join("big.toml");
    std::fs::write(&big, vec![b'#'; 2 << 20]).unwrap();
    let with = |text: &str| {
        let path = dir.join(format!(
            "{}.toml",
            apitap_core::stable_hash(&[text.as_bytes()])
        ));
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "replay".into(),
                "-c".into(),
                "/dev/zero".into(),
                pcap.into(),
            ],
            "not a regular file",
        ),
        (
            vec![
                "replay".into(),
                "-c".into(),
                fifo.display().to_string(),
                pcap.into(),
            ],
            "not a regular file",
        ),
        (
            vec![
                "replay".into(),
                "-c".into(),
                big.display().to_string(),
                pcap.into(),
            ],
            "more than 1048576",
        ),
        (
            vec![
                "replay".into(),
                "-c".into(),
                with("[output]\nredact_hmac_key_file = \"/dev/zero\"\n"),
                pcap.into(),
            ],
            "redact_hmac_key_file /dev/zero is not a regular file",
        ),
        (
            vec![
                "replay".into(),
                "--spec".into(),
                "/dev/zero".into(),
                pcap.into(),
            ],
            "spec /dev/zero is not a regular file",
        ),
        (
            vec![
                "check".into(),
                "--spec".into(),
                "/dev/zero".into(),
                pcap.into(),
            ],
            "spec /dev/zero is not a regular file",
        ),
        (
            vec![
                "replay".into(),
                "-c".into(),
                with("[analytics.inventory]\nstate_file = \"/dev/zero\"\n"),
                pcap.into(),
            ],
            "inventory /dev/zero is not a regular file",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // A FIFO with no writer would block an open; the timeout makes that a failure.
        let o = Command::new("timeout")
            .arg("20")
            .arg(env!("CARGO_BIN_EXE_apitap"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
}
