//! `systemd/apitap.service`: `systemd-analyze verify` accepts it (with ExecStart pointed at
//! the binary under test), and it keeps the hardening the daemon relies on.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::*;
use std::process::Command;

fn unit() -> String {
    std::fs::read_to_string(root().join("systemd/apitap.service")).unwrap()
}

fn settings(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .collect()
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let dir = scratch("systemd");
    let path = dir.join("apitap.service");
    let text = unit().replace("/usr/local/bin/apitap", env!("CARGO_BIN_EXE_apitap"));
    assert!(text.contains(env!("CARGO_BIN_EXE_apitap")));
    std::fs::write(&path, text).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian package systemd; scripts/setup.sh installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verify failed:\n{stderr}");
    assert!(stderr.trim().is_empty(), "verify warned:\n{stderr}");

    // The same check rejects a broken unit (so the test can fail).
    let broken = dir.join("broken.service");
    std::fs::write(
        &broken,
        unit().replace("/usr/local/bin/apitap", "/nonexistent/apitap"),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&broken)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn unit_keeps_only_the_capture_capabilities_and_the_hardening() {
    let u = unit();
    assert_eq!(
        settings(&u, "AmbientCapabilities"),
        ["CAP_NET_RAW CAP_NET_ADMIN"]
    );
    assert_eq!(
        settings(&u, "CapabilityBoundingSet"),
        ["CAP_NET_RAW CAP_NET_ADMIN"]
    );
    for (key, want) in [
        ("Type", "notify"),
        ("User", "apitap"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ] {
        assert_eq!(settings(&u, key), [want], "{key}");
    }
    let families = settings(&u, "RestrictAddressFamilies").join(" ");
    assert!(families.contains("AF_PACKET"), "{families}");
}
