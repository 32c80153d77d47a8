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
        let a = parse_all(&actual);
        let e = parse_all(&expected);
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
        // Connection events (TLS) are placed where the connection ended.
        let times: Vec<&str> = events
            .iter()
            .filter(|e| e.get("http").is_some())
            .map(|e| e["@timestamp"].as_str().unwrap())
            .collect();
        // Packet order equals timestamp order in these captures.
        let mut sorted = times.clone();
        sorted.sort();
        assert_eq!(times, sorted, "{}", capture.display());
    }
}

/// Small windows, ticks, batches and timeouts exercise the paths a big capture takes (late
/// keys, tick-driven timeouts and idle expiry, many batches): output must still be
/// byte-identical for any worker count.
#[test]
fn output_is_identical_with_tiny_windows_ticks_and_timeouts() {
    let mut late_total = 0;
    for capture in fixture_captures() {
        for (window, tick) in [(1, 3), (3, 7), (5, 2)] {
            let mut outputs = Vec::new();
            for workers in [1, 2, 3] {
                let mut cfg = apitap::Config::default();
                cfg.pipeline.workers = workers;
                cfg.pipeline.reorder_window_packets = window;
                cfg.pipeline.tick_packets = tick;
                cfg.pipeline.batch_packets = 1 + workers;
                cfg.http.transaction_timeout_ms = 1;
                cfg.flow.idle_timeout_ms = 50;
                let (out, summary) = run_replay_with(std::slice::from_ref(&capture), &cfg);
                late_total += summary.workers.transactions.keyed_late;
                assert_eq!(summary.reorder.forced_early, 0);
                outputs.push(out);
            }
            let name = capture.display();
            assert!(
                outputs[0] == outputs[1],
                "{name} window {window} tick {tick}: 1 vs 2 workers"
            );
            assert!(
                outputs[0] == outputs[2],
                "{name} window {window} tick {tick}: 1 vs 3 workers"
            );
        }
    }
    assert!(late_total > 0, "the late-key path was not exercised");
}

/// Batches cut by payload bytes and a reader that pauses whenever the reorder stage holds
/// more than one event change timing only: output stays byte-identical, nothing is
/// released early, and the pauses are counted.
#[test]
fn byte_cut_batches_and_reader_pauses_keep_output_identical() {
    let mut pauses = 0;
    for capture in fixture_captures() {
        let (expected, _) =
            run_replay_with(std::slice::from_ref(&capture), &apitap::Config::default());
        for workers in [2, 3] {
            let mut cfg = apitap::Config::default();
            cfg.pipeline.workers = workers;
            cfg.pipeline.batch_bytes = 1;
            cfg.pipeline.worker_queue_batches = 1;
            cfg.pipeline.reorder_pause_events = 1;
            let (out, summary) = run_replay_with(std::slice::from_ref(&capture), &cfg);
            assert!(
                out == expected,
                "{}: {workers} workers with pauses",
                capture.display()
            );
            assert_eq!(summary.reorder.forced_early, 0);
            pauses += summary.reader_pauses;
        }
    }
    assert!(pauses > 0, "the reader never paused");
}

#[test]
fn a_pcapng_with_mixed_link_types_replays_to_the_events_of_its_source() {
    // scripts/make-pcapng-fixtures.py re-frames nginx-mixed.pcap over interfaces of
    // different link types; libpcap refuses such a file.
    let (source, _) = run_replay(&[root().join("fixtures/nginx/nginx-mixed.pcap")], 2);
    let (mixed, summary) = run_replay(&[root().join("fixtures/pcapng/mixed-links.pcapng")], 2);
    assert!(source == mixed, "events differ");
    assert_eq!(summary.warnings.len(), 1, "{:?}", summary.warnings);
    assert!(summary.input_error.is_none());
}

#[test]
fn a_capture_read_from_a_pipe_replays_to_the_events_of_its_file() {
    // A pipe cannot seek back: the reader tells pcap from pcapng by the bytes it has read.
    for capture in [
        root().join("fixtures/nginx/nginx-mixed.pcap"),
        root().join("fixtures/pcapng/mixed-links.pcapng"),
    ] {
        let (from_file, _) = run_replay(std::slice::from_ref(&capture), 2);
        let dir = scratch("pipe");
        let fifo = dir.join("capture");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let writer = {
            let (fifo, capture) = (fifo.clone(), capture.clone());
            std::thread::spawn(move || {
                let bytes = std::fs::read(&capture).unwrap();
                let mut pipe = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
                // In small writes, so that records arrive split across reads.
                for chunk in bytes.chunks(1000) {
                    std::io::Write::write_all(&mut pipe, chunk).unwrap();
                }
            })
        };
        let (from_pipe, summary) = run_replay(&[fifo], 2);
        writer.join().unwrap();
        assert!(
            from_file == from_pipe,
            "{}: events differ",
            capture.display()
        );
        assert!(summary.input_error.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
