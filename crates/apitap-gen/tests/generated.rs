//! The generator is deterministic, and apitap recovers every transaction it writes, even
//! with heavy reordering and retransmissions, identically for any worker count.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn generate(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let status = Command::new(env!("CARGO_BIN_EXE_apitap-gen"))
        .args(args)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    out
}

fn replay(pcap: &Path, workers: usize) -> (Vec<u8>, apitap::RunSummary) {
    let mut cfg = apitap::Config::default();
    cfg.pipeline.workers = workers;
    let out = pcap.with_extension(format!("w{workers}.jsonl"));
    let summary = apitap::replay(
        &[pcap.to_path_buf()],
        Some(apitap::Output::File(out.clone())),
        &cfg,
    )
    .unwrap();
    (std::fs::read(out).unwrap(), summary)
}

#[test]
fn same_seed_same_file_and_every_transaction_recovered() {
    let dir = std::env::temp_dir().join(format!("apitap-gen-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let args = [
        "--seed",
        "11",
        "--transactions",
        "1500",
        "--clients",
        "40",
        "--reorder",
        "0.2",
        "--duplicate",
        "0.1",
    ];
    let a = generate(&dir, "a.pcap", &args);
    let b = generate(&dir, "b.pcap", &args);
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "same seed, different bytes"
    );
    let c = generate(&dir, "c.pcap", &["--seed", "12", "--transactions", "10"]);
    assert!(std::fs::read(&a).unwrap() != std::fs::read(&c).unwrap());

    let (one, s1) = replay(&a, 1);
    let (three, _) = replay(&a, 3);
    assert!(one == three, "worker count changed the output");
    let events: Vec<serde_json::Value> = String::from_utf8(one)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e["event"]["kind"] == "event")
        .collect();
    assert_eq!(events.len(), 1500);
    assert!(events
        .iter()
        .all(|e| e["apitap"]["complete"] == true
            && e["apitap"]["anomalies"] == serde_json::json!([])));
    assert!(
        s1.workers.reassembly.ooo_segments_buffered > 0,
        "reordering was exercised"
    );
    assert!(
        s1.workers.reassembly.retransmitted_segments > 0,
        "duplicates were exercised"
    );
    assert_eq!(
        s1.duplicates_dropped, 0,
        "a retransmission (new IP id) is not a SPAN duplicate"
    );
    for method in ["GET", "POST", "PUT", "DELETE"] {
        assert!(
            events
                .iter()
                .any(|e| e["http"]["request"]["method"] == method),
            "{method}"
        );
    }
    assert!(events
        .iter()
        .any(|e| e["http"]["response"]["headers"]["transfer-encoding"] == "chunked"));
    assert!(events
        .iter()
        .any(|e| e["http"]["response"]["headers"]["content-encoding"] == "gzip"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reassembly_memory_cap_holds_and_is_counted() {
    let dir = std::env::temp_dir().join(format!("apitap-gen-memcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = generate(
        &dir,
        "r.pcap",
        &[
            "--seed",
            "5",
            "--transactions",
            "600",
            "--clients",
            "30",
            "--reorder",
            "0.4",
        ],
    );
    let run = |memcap: usize| {
        let mut cfg = apitap::Config::default();
        cfg.pipeline.workers = 1;
        cfg.reassembly.memcap_bytes = memcap;
        let out = dir.join(format!("m{memcap}.jsonl"));
        let s = apitap::replay(
            std::slice::from_ref(&pcap),
            Some(apitap::Output::File(out.clone())),
            &cfg,
        )
        .unwrap();
        let lines = std::fs::read_to_string(out)
            .unwrap()
            .lines()
            .filter(|l| l.contains("\"kind\":\"event\""))
            .count();
        (s, lines)
    };
    let (roomy, roomy_events) = run(64 << 20);
    assert_eq!(roomy.workers.reassembly_memcap_flushes, 0);
    assert_eq!(roomy.workers.reassembly.gaps, 0);
    assert_eq!(roomy_events, 600);
    let cap = 1_000;
    let (tight, tight_events) = run(cap);
    assert!(tight.workers.reassembly_memcap_flushes > 0);
    assert!(
        tight.workers.reassembly.gaps > 0,
        "given-up holes are reported as gaps"
    );
    // One segment (at most 1460 bytes here) may land before the cap acts.
    assert!(
        tight.workers.ooo_bytes_peak.0 <= (cap + 1460) as u64,
        "{}",
        tight.workers.ooo_bytes_peak.0
    );
    // Transactions are still reported (with gap anomalies), none lost silently.
    assert!(tight_events >= 590, "{tight_events}");
    let _ = std::fs::remove_dir_all(&dir);
}
