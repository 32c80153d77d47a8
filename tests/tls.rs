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
    // The server's ALPN answer is in the clear up to TLS 1.2 (curl offered http/1.1).
    for e in events.iter().filter(|e| field(e, "tls.version") == "1.2") {
        assert_eq!(field(e, "tls.next_protocol"), "http/1.1", "{e}");
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

// ---- With the key log ----

/// The fixture key log copied where only its owner can read it (git checks files out
/// world-readable, which apitap refuses for a key log), optionally with its secrets
/// altered; returns the path.
fn keys(tag: &str, alter: impl Fn(&str) -> String) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let text = std::fs::read_to_string(root().join("fixtures/tls/tls-mixed.keys")).unwrap();
    let path = scratch(&format!("tls-keys-{tag}")).join("keys.log");
    std::fs::write(&path, alter(&text)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn decrypt(keylog: &Path) -> (Vec<u8>, apitap::RunSummary) {
    let mut cfg = apitap::Config::default();
    cfg.pipeline.workers = 2;
    cfg.tls.keylog_files = vec![keylog.display().to_string()];
    run_replay_with(&[capture()], &cfg)
}

/// One line of the fixture's nginx log.
struct Logged {
    method: String,
    uri: String,
    status: u64,
    body_bytes: u64,
    protocol: String,
    sni: String,
}

fn nginx_log() -> Vec<Logged> {
    std::fs::read_to_string(root().join("fixtures/tls/tls-mixed.access.log"))
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Logged {
                method: f[0].into(),
                uri: f[1].into(),
                status: f[2].parse().unwrap(),
                body_bytes: f[3].parse().unwrap(),
                protocol: f[5].into(),
                sni: f[7].into(),
            }
        })
        .collect()
}

/// Every request nginx logged over an AEAD suite appears exactly once, decrypted, with its
/// method, target, status, body bytes, TLS version and SNI; the TLS 1.0 connection (CBC,
/// which apitap does not decrypt) appears as its connection event only, saying so.
#[test]
fn with_the_key_log_every_request_nginx_logged_appears_once() {
    let (out, summary) = decrypt(&keys("ok", str::to_string));
    let events = parse_lines(&out);
    let http: Vec<&Value> = events
        .iter()
        .filter(|e| field(e, "network.protocol") == "http")
        .collect();
    let logged = nginx_log();
    let mut matched = 0;
    for l in &logged {
        let version = l.protocol.trim_start_matches("TLSv");
        let version = if version == "1" { "1.0" } else { version };
        let found: Vec<_> = http
            .iter()
            .filter(|e| {
                field(e, "http.request.method") == l.method.as_str()
                    && field(e, "url.original") == l.uri.as_str()
                    && field(e, "http.response.status_code") == l.status
                    && field(e, "http.response.body.bytes") == l.body_bytes
                    && field(e, "tls.version") == version
                    && field(e, "tls.client.server_name") == l.sni.as_str()
            })
            .collect();
        if l.protocol == "TLSv1" {
            assert!(found.is_empty(), "CBC is not decrypted");
            continue;
        }
        // Two logged lines may be alike (same request on two connections): each event
        // matches as many lines as there are alike.
        let alike = logged
            .iter()
            .filter(|o| {
                (&o.method, &o.uri, o.status, &o.protocol, &o.sni)
                    == (&l.method, &l.uri, l.status, &l.protocol, &l.sni)
            })
            .count();
        assert_eq!(
            found.len(),
            alike,
            "{} {} over {}",
            l.method,
            l.uri,
            l.protocol
        );
        matched += 1;
    }
    assert_eq!(http.len(), matched, "no request beyond nginx's");
    assert_eq!(matched, logged.len() - 1);
    let tls = &summary.workers.session.tls;
    assert_eq!(tls.decryption.get(apitap_core::Decryption::Decrypted), 10);
    assert_eq!(
        tls.decryption
            .get(apitap_core::Decryption::UnsupportedCipher),
        1
    );
    assert_eq!(tls.records_unauthenticated, 0);
    let cbc = events
        .iter()
        .find(|e| field(e, "tls.version") == "1.0" && field(e, "network.protocol") == "tls")
        .unwrap();
    assert_eq!(field(cbc, "apitap.tls.decryption"), "unsupported_cipher");
    // In TLS 1.3 the certificate and the ALPN answer are encrypted: decrypted, they show.
    for e in events
        .iter()
        .filter(|e| field(e, "network.protocol") == "tls" && field(e, "tls.version") == "1.3")
    {
        assert!(
            !field(e, "tls.server.x509.subject.common_name").is_null(),
            "{e}"
        );
    }
    let keylog = summary.keylog.unwrap();
    assert_eq!((keylog.secrets, keylog.garbage_lines), (23, 0));
}

/// tshark decrypts the same capture with the same key log: the same requests, by client
/// port, method and target (it also decrypts the CBC connection, which apitap leaves).
#[test]
fn decrypted_requests_agree_with_tshark() {
    let keylog = keys("tshark", str::to_string);
    let (out, _) = decrypt(&keylog);
    let events = parse_lines(&out);
    let unsupported: Vec<String> = events
        .iter()
        .filter(|e| field(e, "apitap.tls.decryption") == "unsupported_cipher")
        .map(|e| field(e, "source.port").to_string())
        .collect();
    let mut ours: Vec<(String, String, String)> = events
        .iter()
        .filter(|e| field(e, "network.protocol") == "http")
        .map(|e| {
            (
                field(e, "source.port").to_string(),
                text(field(e, "http.request.method")),
                text(field(e, "url.original")),
            )
        })
        .collect();
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(capture())
        .arg("-o")
        .arg(format!("tls.keylog_file:{}", keylog.display()))
        .args(["-Y", "http.request", "-T", "fields"])
        .args([
            "-e",
            "tcp.srcport",
            "-e",
            "http.request.method",
            "-e",
            "http.request.uri",
        ]);
    let out = cmd.output().expect("tshark");
    assert!(out.status.success());
    let mut theirs: Vec<(String, String, String)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .filter(|(port, _, _)| !unsupported.contains(port))
        .collect();
    ours.sort();
    theirs.sort();
    assert!(ours.len() >= 13);
    assert_eq!(ours, theirs);
}

/// The decrypting run's every output (events, alerts, summary, stats JSON, logs at debug
/// level) holds no secret of the key log, in any case.
#[test]
fn no_secret_reaches_an_output_or_a_log() {
    let keylog = keys("secrets", str::to_string);
    let dir = scratch("tls-secrets");
    let stats = dir.join("stats.json");
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .arg("replay")
        .arg("--keylog")
        .arg(&keylog)
        .arg("--stats-json")
        .arg(&stats)
        .arg(capture())
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut everything = out.stdout.clone();
    everything.extend_from_slice(&out.stderr);
    everything.extend_from_slice(&std::fs::read(&stats).unwrap());
    let everything = String::from_utf8_lossy(&everything).to_lowercase();
    assert!(
        everything.contains("\"decryption\":\"decrypted\""),
        "it did decrypt"
    );
    let text = std::fs::read_to_string(&keylog).unwrap();
    let mut secrets = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let secret = line.split_whitespace().nth(2).unwrap().to_lowercase();
        // Any 16 hex digits of a secret would be a leak.
        for i in (0..secret.len().saturating_sub(16)).step_by(8) {
            assert!(!everything.contains(&secret[i..i + 16]), "a secret leaked");
        }
        secrets += 1;
    }
    assert!(secrets >= 20);
}

/// Wrong secrets: every AEAD connection is counted `authentication_failed` and still gets
/// its metadata event; a key log's garbage lines are counted, not fatal.
#[test]
fn wrong_keys_and_garbage_lines_are_counted_and_metadata_stays() {
    let keylog = keys("wrong", |text| {
        let mut out = String::from("not a key log line\nCLIENT_RANDOM zz 00\n");
        for line in text.lines() {
            let mut f: Vec<String> = line.split(' ').map(str::to_string).collect();
            if f.len() == 3 && !line.starts_with('#') {
                // Flip the first hex digit of the secret.
                let c = if f[2].starts_with('0') { "1" } else { "0" };
                f[2].replace_range(0..1, c);
            }
            out.push_str(&f.join(" "));
            out.push('\n');
        }
        out
    });
    let (out, summary) = decrypt(&keylog);
    let events = parse_lines(&out);
    assert!(
        events.iter().all(|e| field(e, "network.protocol") == "tls"),
        "nothing decrypted"
    );
    assert_eq!(events.len(), 11);
    let failed = events
        .iter()
        .filter(|e| field(e, "apitap.tls.decryption") == "authentication_failed")
        .count();
    assert_eq!(failed, 10);
    let tls = &summary.workers.session.tls;
    assert_eq!(
        tls.decryption
            .get(apitap_core::Decryption::AuthenticationFailed),
        10
    );
    assert!(tls.records_unauthenticated >= 10);
    assert_eq!(summary.keylog.unwrap().garbage_lines, 2);
}

#[test]
fn a_key_log_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let keylog = keys("open", str::to_string);
    std::fs::set_permissions(&keylog, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(["replay", "--keylog"])
        .arg(&keylog)
        .arg(capture())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("readable by every user"), "{err}");
    assert!(!err.contains(&std::fs::read_to_string(&keylog).unwrap()[40..80]));
}

/// The decrypted run's exact output (`UPDATE_GOLDEN=1` rewrites it).
#[test]
fn decrypted_output_matches_its_golden() {
    let (out, _) = decrypt(&keys("golden", str::to_string));
    let golden = root().join("fixtures/tls/tls-mixed.decrypted.jsonl");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &out).unwrap();
    }
    let expected = std::fs::read(&golden).unwrap();
    let (a, e) = (parse_all(&out), parse_all(&expected));
    assert_eq!(a.len(), e.len());
    for (i, (av, ev)) in a.iter().zip(&e).enumerate() {
        let mut d = Vec::new();
        diff(av, ev, "", &mut d);
        assert!(d.is_empty(), "event {i}: {}", d.join("; "));
    }
}
