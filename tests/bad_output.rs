//! Output that fails (a full disk, /dev/full, a closed standard output, a stats file that
//! cannot be written) gives the right exit code and a summary that counts only what was
//! written.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::*;
use std::process::{Command, Output};

fn capture() -> String {
    root()
        .join("fixtures/nginx/nginx-mixed.pcap")
        .display()
        .to_string()
}

/// Runs apitap through bash, so a test can close descriptors and set limits first.
fn apitap_in_bash(setup: &str, args: &str) -> Output {
    let bin = env!("CARGO_BIN_EXE_apitap");
    Command::new("bash")
        .arg("-c")
        .arg(format!("{setup} exec {bin} {args}"))
        .output()
        .expect("run bash")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn summary(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_full_disk_keeps_whole_lines_and_the_summary_counts_only_them() {
    let dir = scratch("full-disk");
    let events = dir.join("events.jsonl");
    let stats = dir.join("stats.json");
    // A 16 KiB file-size limit stands in for a full disk: writes past it fail with EFBIG
    // (SIGXFSZ ignored, as a full disk gives ENOSPC without a signal). The capture's events
    // take about 67 KB.
    let o = apitap_in_bash(
        "trap '' XFSZ; ulimit -f 16;",
        &format!(
            "replay -q -o {} --stats-json {} {}",
            events.display(),
            stats.display(),
            capture()
        ),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("events.jsonl"), "{}", stderr(&o));
    let text = std::fs::read(&events).unwrap();
    assert!(
        !text.is_empty() && text.len() <= 16 * 1024,
        "{}",
        text.len()
    );
    assert_eq!(text.last(), Some(&b'\n'), "the file ends with a whole line");
    let lines = parse_all(&text).len() as u64;
    let s = summary(&stats);
    assert_eq!(s["output"]["events_written"], lines, "{s}");
    assert!(s["output"]["error"].is_string(), "{s}");
}

#[test]
fn dev_full_writes_nothing_and_counts_nothing() {
    let dir = scratch("dev-full");
    let stats = dir.join("stats.json");
    let o = apitap_in_bash(
        "",
        &format!(
            "replay -q -o /dev/full --stats-json {} {}",
            stats.display(),
            capture()
        ),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("/dev/full"), "{}", stderr(&o));
    let s = summary(&stats);
    assert_eq!(s["output"]["events_written"], 0, "{s}");
}

#[test]
fn closed_stdout_is_a_start_up_error() {
    let o = apitap_in_bash("", &format!("replay -q {} >&-", capture()));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("standard output is closed"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn stdout_to_dev_null_is_a_choice_not_an_error() {
    // Write-only as a shell opens it, and read-write as Python's subprocess.DEVNULL and
    // daemon(3) do.
    for redirect in [">/dev/null", "1<>/dev/null"] {
        let o = apitap_in_bash("", &format!("replay -q {} {redirect}", capture()));
        assert_eq!(o.status.code(), Some(0), "{redirect}: {}", stderr(&o));
    }
}

#[test]
fn a_reader_that_goes_away_is_an_output_failure() {
    // The reader exits without reading: the capture's 67 KB of events cannot fit the 64 KiB
    // pipe, so the write fails with EPIPE whatever the timing.
    let bin = env!("CARGO_BIN_EXE_apitap");
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; {bin} replay -q {} | true",
            capture()
        ))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

#[test]
fn a_stats_file_that_fails_after_a_complete_run_is_exit_1() {
    let dir = scratch("stats-full");
    let events = dir.join("events.jsonl");
    let o = apitap_in_bash(
        "",
        &format!(
            "replay -q -o {} --stats-json /dev/full {}",
            events.display(),
            capture()
        ),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("/dev/full"), "{}", stderr(&o));
    assert!(!parse_lines(&std::fs::read(&events).unwrap()).is_empty());
}

#[test]
fn a_stats_file_that_cannot_be_created_stops_before_the_run() {
    let dir = scratch("stats-missing");
    let events = dir.join("events.jsonl");
    let o = apitap_in_bash(
        "",
        &format!(
            "replay -q -o {} --stats-json /nonexistent/stats.json {}",
            events.display(),
            capture()
        ),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("/nonexistent/stats.json"),
        "{}",
        stderr(&o)
    );
}
