//! Golden end-to-end tests: every fixture capture replays to exactly its committed events
//! (compared field by field), and the output is byte-identical for any worker count.
//!
//! `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the golden files after a reviewed
//! change in output.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::*;

#[test]
fn every_fixture_matches_its_golden_events() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let captures = fixture_captures();
    assert!(captures.len() >= 10, "fixtures missing: {captures:?}");
    let mut failures = Vec::new();
    for capture in &captures {
        let (actual, _) = run_replay(std::slice::from_ref(capture), 2);
        let golden = golden_path(capture);
        if update {
            std::fs::write(&golden, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read(&golden).unwrap_or_else(|_| {
            panic!(
                "no golden file {}; run with UPDATE_GOLDEN=1",
                golden.display()
            )
        });
        let a = parse_lines(&actual);
        let e = parse_lines(&expected);
        let name = capture.strip_prefix(root()).unwrap().display().to_string();
        if a.len() != e.len() {
            failures.push(format!("{name}: {} events, expected {}", a.len(), e.len()));
            continue;
        }
        for (i, (av, ev)) in a.iter().zip(&e).enumerate() {
            let mut d = Vec::new();
            diff(av, ev, "", &mut d);
            if !d.is_empty() {
                failures.push(format!("{name} event {i}: {}", d.join("; ")));
                break;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
}

#[test]
fn output_is_identical_for_any_worker_count_and_run() {
    for capture in fixture_captures() {
        let (one, _) = run_replay(std::slice::from_ref(&capture), 1);
        let (three, _) = run_replay(std::slice::from_ref(&capture), 3);
        let (three_again, _) = run_replay(std::slice::from_ref(&capture), 3);
        assert!(one == three, "{}: 1 vs 3 workers differ", capture.display());
        assert!(
            three == three_again,
            "{}: two runs differ",
            capture.display()
        );
    }
}

#[test]
fn events_are_in_request_start_order() {
    for capture in fixture_captures() {
        let (out, _) = run_replay(std::slice::from_ref(&capture), 2);
        let events = parse_lines(&out);
        let times: Vec<&str> = events
            .iter()
            .map(|e| e["@timestamp"].as_str().unwrap())
            .collect();
        // Packet order equals timestamp order in these captures.
        let mut sorted = times.clone();
        sorted.sort();
        assert_eq!(times, sorted, "{}", capture.display());
    }
}
