//! TLS without keys, end to end on the capture scripts/make-tls-fixtures.sh made (nginx
//! with TLS 1.0 to 1.3, curl and Python's ssl): one connection event per connection,
//! its fingerprints and server names equal to what tshark's dissector says, and a capture
//! joined after the handshakes gives marked events that claim nothing they did not see.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn capture() -> PathBuf {
    root().join("fixtures/tls/tls-mixed.pcap")
}

fn tls_events(pcap: &Path) -> Vec<Value> {
    let (out, _) = run_replay(&[pcap.to_path_buf()], 2);
    parse_lines(&out)
        .into_iter()
        .filter(|e| field(e, "network.protocol") == "tls")
        .collect()
}

/// tshark's fields of the handshake packets: one row per hello, `-e` fields tab-separated.
fn tshark(pcap: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-r"])
        .arg(pcap)
        .args(["-Y", filter, "-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd
        .output()
        .expect("tshark is needed (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

fn text(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_default()
}

#[test]
fn fingerprints_and_names_agree_with_tshark() {
    let pcap = capture();
    let events = tls_events(&pcap);
    // Client port -> (ja3, sni), and -> ja3s, from tshark.
    let hellos: BTreeMap<String, (String, String)> = tshark(
        &pcap,
        "tls.handshake.type == 1",
        &[
            "tcp.srcport",
            "tls.handshake.ja3",
            "tls.handshake.extensions_server_name",
        ],
    )
    .into_iter()
    .map(|r| (r[0].clone(), (r[1].clone(), r[2].clone())))
    .collect();
    let server_hellos: BTreeMap<String, String> = tshark(
        &pcap,
        "tls.handshake.type == 2",
        &["tcp.dstport", "tls.handshake.ja3s"],
    )
    .into_iter()
    .map(|r| (r[0].clone(), r[1].clone()))
    .collect();
    assert_eq!(events.len(), hellos.len(), "one event per connection");
    assert!(events.len() >= 11);
    for e in &events {
        let port = field(e, "source.port").to_string();
        let (ja3, sni) = &hellos[&port];
        assert_eq!(&text(field(e, "tls.client.ja3")), ja3, "port {port}");
        assert_eq!(
            &text(field(e, "tls.client.server_name")),
            sni,
            "port {port}"
        );
        assert_eq!(
            text(field(e, "tls.server.ja3s")),
            server_hellos[&port],
            "port {port}"
        );
        assert_eq!(field(e, "tls.established"), true, "port {port}");
        assert_eq!(field(e, "apitap.tls.midstream"), false);
    }
}

#[test]
fn versions_ciphers_and_certificates_are_the_negotiated_ones() {
    let events = tls_events(&capture());
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| (text(field(e, "tls.version")), text(field(e, "tls.cipher"))))
        .collect();
    for want in [
        ("1.3", "TLS_AES_128_GCM_SHA256"),
        ("1.3", "TLS_AES_256_GCM_SHA384"),
        ("1.3", "TLS_CHACHA20_POLY1305_SHA256"),
        ("1.2", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
        ("1.2", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
        ("1.2", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
        ("1.2", "TLS_RSA_WITH_AES_128_GCM_SHA256"),
        ("1.0", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
    ] {
        assert!(
            seen.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} not among {seen:?}"
        );
    }
    // Certificates are in the clear up to TLS 1.2 only.
    for e in &events {
        let has_cert = !field(e, "tls.server.x509").is_null();
        assert_eq!(has_cert, field(e, "tls.version") != "1.3", "{e}");
    }
    let expired = events
        .iter()
        .find(|e| field(e, "tls.client.server_name") == "expired.api.test")
        .unwrap();
    assert_eq!(
        field(expired, "tls.server.x509.not_after"),
        "2021-01-01T00:00:00.000000Z"
    );
    assert_eq!(field(expired, "tls.server.x509.serial_number"), "01");
    let mismatched = events
        .iter()
        .find(|e| field(e, "destination.port") == 8445)
        .unwrap();
    assert_eq!(
        field(mismatched, "tls.server.x509.alternative_names"),
        &serde_json::json!(["other.test", "*.other.test"])
    );
}

/// The capture without its SYNs and handshake records: every connection is joined
/// midway. Each still gets one event, marked, with no name or fingerprint it could not
/// have seen, and nothing is taken for HTTP.
#[test]
fn joined_after_the_handshake_every_connection_is_one_marked_event() {
    let pcap = capture();
    let drop: Vec<String> = tshark(
        &pcap,
        "tcp.flags.syn == 1 || tls.handshake",
        &["frame.number"],
    )
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    let cut = scratch("tls-midstream").join("midstream.pcap");
    let status = Command::new("editcap")
        .arg(&pcap)
        .arg(&cut)
        .args(&drop)
        .status()
        .expect("editcap (tshark's package)");
    assert!(status.success());
    let (out, summary) = run_replay(&[cut], 2);
    let events = parse_lines(&out);
    assert!(events.len() >= 11, "{} events", events.len());
    for e in &events {
        assert_eq!(field(e, "network.protocol"), "tls", "{e}");
        assert_eq!(field(e, "apitap.tls.midstream"), true);
        assert!(field(e, "tls.client.server_name").is_null(), "{e}");
        assert!(field(e, "tls.client.ja3").is_null(), "{e}");
        assert!(field(e, "event.outcome").is_null(), "{e}");
    }
    assert_eq!(summary.workers.session.tls.midstream, events.len() as u64);
}
