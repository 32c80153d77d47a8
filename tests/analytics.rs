//! API-security analytics end to end, on captures of real clients and servers
//! (scripts/make-analytics-fixtures.sh): for every rule one capture that fires it and one
//! with normal use of the same endpoint that must not, the expected alert checked field by
//! field and against its golden file; a mixed capture with many normal clients and one
//! misbehaving client per rule; the alert schema; `apitap check` (text, JSON, SARIF, HAR,
//! exit codes); `apitap inventory` (table, OpenAPI export, saved state).
//!
//! `UPDATE_GOLDEN=1 cargo test --test analytics` rewrites `fixtures/analytics/*.alerts.jsonl`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use apitap::Config;
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

fn dir() -> PathBuf {
    root().join("fixtures/analytics")
}

fn spec() -> PathBuf {
    dir().join("openapi.yaml")
}

fn config() -> Config {
    let mut cfg = Config::load(&dir().join("sensor.toml")).unwrap();
    cfg.analytics.spec.path = spec().display().to_string();
    cfg
}

/// (events, alerts) of a fixture replayed with the analytics config.
fn run(name: &str) -> (Vec<Value>, Vec<Value>) {
    let (out, summary) = run_replay_with(&[dir().join(format!("{name}.pcap"))], &config());
    assert!(summary.input_error.is_none(), "{name}: {summary:?}");
    let (events, alerts) = (parse_lines(&out), parse_alerts(&out));
    let a = summary.analytics.as_ref().unwrap();
    assert_eq!(a.transactions, events.len() as u64, "{name}");
    assert_eq!(a.alerts, alerts.len() as u64, "{name}");
    check_golden(name, &alerts);
    (events, alerts)
}

/// Compares the alerts with `NAME.alerts.jsonl`, field by field.
fn check_golden(name: &str, alerts: &[Value]) {
    let path = dir().join(format!("{name}.alerts.jsonl"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let text: String = alerts.iter().map(|a| format!("{a}\n")).collect();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let expected = parse_all(
        &std::fs::read(&path)
            .unwrap_or_else(|_| panic!("no {}; run with UPDATE_GOLDEN=1", path.display())),
    );
    assert_eq!(alerts.len(), expected.len(), "{name}: alert count");
    for (i, (a, e)) in alerts.iter().zip(&expected).enumerate() {
        let mut d = Vec::new();
        diff(a, e, "", &mut d);
        assert!(d.is_empty(), "{name} alert {i}: {}", d.join("; "));
    }
}

/// What a rule's alert must say.
struct Expect {
    rule: &'static str,
    client: Option<&'static str>,
    endpoint: &'static str,
    count: u64,
    owasp: &'static str,
    severity: u64,
    counts: &'static [(&'static str, u64)],
}

/// `NAME.pcap` fires exactly the expected alert (and `also`, other alerts the same
/// traffic rightly fires); `NAME-normal.pcap` fires nothing.
fn rule_case(name: &str, x: Expect, alerts_total: usize) {
    let (events, alerts) = run(name);
    assert_eq!(alerts.len(), alerts_total, "{name}: {alerts:#?}");
    let fired: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["rule"]["id"] == x.rule)
        .collect();
    assert_eq!(fired.len(), 1, "{name}: {alerts:#?}");
    let a = fired[0];
    assert_eq!(a["event"]["kind"], "alert");
    assert_eq!(field(a, "apitap.endpoint"), x.endpoint, "{name}");
    assert_eq!(field(a, "apitap.count"), x.count, "{name}");
    assert_eq!(field(a, "apitap.owasp"), x.owasp, "{name}");
    assert_eq!(field(a, "event.severity"), x.severity, "{name}");
    let label = match x.severity {
        0..=39 => "low",
        40..=69 => "medium",
        70..=89 => "high",
        _ => "critical",
    };
    assert_eq!(field(a, "apitap.severity"), label, "{name}");
    match x.client {
        Some(ip) => assert_eq!(field(a, "source.ip"), ip, "{name}"),
        None => assert!(a.get("source").is_none(), "{name}: {a}"),
    }
    if !x.counts.is_empty() {
        let want: BTreeMap<String, u64> =
            x.counts.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let got: BTreeMap<String, u64> =
            serde_json::from_value(field(a, "apitap.counts").clone()).unwrap();
        assert_eq!(got, want, "{name}");
    }
    // Evidence names transactions of this capture, from the client at fault.
    let evidence = field(a, "apitap.evidence").as_array().unwrap();
    assert!(!evidence.is_empty(), "{name}");
    for id in evidence {
        let ev = events
            .iter()
            .find(|e| &e["event"]["id"] == id)
            .unwrap_or_else(|| panic!("{name}: evidence {id} is no event"));
        if let Some(ip) = x.client {
            assert_eq!(field(ev, "source.ip"), ip, "{name}: evidence {id}");
        }
    }
    // The alert never carries the sensitive values it found.
    let text = a.to_string();
    for secret in [
        "4111",
        "ada@example.com",
        "AKIAIOSFODNN7EXAMPLE",
        "sk_live_51Habcdef0123456789",
    ] {
        assert!(!text.contains(secret), "{name}: {secret} in {text}");
    }
    let (normal_events, normal_alerts) = run(&format!("{name}-normal"));
    assert!(!normal_events.is_empty());
    assert!(
        normal_alerts.is_empty(),
        "{name}-normal: {normal_alerts:#?}"
    );
}

#[test]
fn shadow_endpoint() {
    rule_case(
        "shadow",
        Expect {
            rule: "APITAP-SHADOW-001",
            client: None,
            endpoint: "GET /internal/debug",
            count: 1,
            owasp: "API9:2023",
            severity: 50,
            counts: &[],
        },
        1,
    );
}

#[test]
fn deprecated_operation() {
    rule_case(
        "deprecated",
        Expect {
            rule: "APITAP-ZOMBIE-001",
            client: None,
            endpoint: "GET /api/legacy/report",
            count: 1,
            owasp: "API9:2023",
            severity: 55,
            counts: &[],
        },
        1,
    );
}

#[test]
fn superseded_version() {
    rule_case(
        "superseded",
        Expect {
            rule: "APITAP-ZOMBIE-002",
            client: None,
            endpoint: "GET /v1/orders",
            count: 1,
            owasp: "API9:2023",
            severity: 60,
            counts: &[],
        },
        1,
    );
}

#[test]
fn undocumented_status() {
    rule_case(
        "drift",
        Expect {
            rule: "APITAP-DRIFT-001",
            client: None,
            endpoint: "GET /api/users/{id}",
            count: 1,
            owasp: "API9:2023",
            severity: 25,
            counts: &[],
        },
        1,
    );
}

#[test]
fn request_rate_spike() {
    rule_case(
        "rate-spike",
        Expect {
            rule: "APITAP-RATE-001",
            client: None,
            endpoint: "GET /api/rate",
            count: 108,
            owasp: "API4:2023",
            severity: 50,
            counts: &[("requests", 108), ("4xx", 0), ("5xx", 0)],
        },
        1,
    );
}

#[test]
fn server_error_burst() {
    rule_case(
        "server-errors",
        Expect {
            rule: "APITAP-ERROR-001",
            client: None,
            endpoint: "GET /api/flaky",
            count: 12,
            owasp: "API4:2023",
            severity: 45,
            counts: &[],
        },
        1,
    );
}

#[test]
fn client_error_burst() {
    rule_case(
        "client-errors",
        Expect {
            rule: "APITAP-ERROR-002",
            client: None,
            endpoint: "GET /api/items",
            count: 12,
            owasp: "API4:2023",
            severity: 40,
            counts: &[],
        },
        1,
    );
}

#[test]
fn latency_spike() {
    rule_case(
        "latency-spike",
        Expect {
            rule: "APITAP-LATENCY-001",
            client: None,
            endpoint: "GET /api/slow",
            count: 13,
            owasp: "API4:2023",
            severity: 30,
            counts: &[],
        },
        1,
    );
}

#[test]
fn response_size_jump() {
    let (_, alerts) = run("size-jump");
    assert_eq!(alerts.len(), 1);
    let count = field(&alerts[0], "apitap.count").as_u64().unwrap();
    rule_case(
        "size-jump",
        Expect {
            rule: "APITAP-SIZE-001",
            client: None,
            endpoint: "GET /api/report",
            count,
            owasp: "API3:2023",
            severity: 60,
            counts: &[],
        },
        1,
    );
    // The bucket held the three large reports.
    assert!(count >= 3);
    let mean = field(&alerts[0], "apitap.details.observed")
        .as_f64()
        .unwrap();
    assert!(mean >= 20_000.0, "{mean}");
}

#[test]
fn login_failure_burst() {
    rule_case(
        "login-burst",
        Expect {
            rule: "APITAP-AUTH-001",
            client: Some("127.0.0.105"),
            endpoint: "POST /api/login",
            count: 10,
            owasp: "API2:2023",
            severity: 75,
            counts: &[("401", 10)],
        },
        1,
    );
}

#[test]
fn auth_failure_burst() {
    rule_case(
        "auth-burst",
        Expect {
            rule: "APITAP-AUTH-002",
            client: Some("127.0.0.106"),
            endpoint: "GET /api/admin/page19",
            count: 20,
            owasp: "API2:2023",
            severity: 55,
            counts: &[("403", 20)],
        },
        1,
    );
}

#[test]
fn object_id_enumeration() {
    rule_case(
        "bola",
        Expect {
            rule: "APITAP-BOLA-001",
            client: Some("127.0.0.107"),
            endpoint: "GET /api/users/{id}",
            count: 50,
            owasp: "API1:2023",
            severity: 75,
            counts: &[],
        },
        1,
    );
}

#[test]
fn secret_in_url() {
    rule_case(
        "url-secret",
        Expect {
            rule: "APITAP-URLSECRET-001",
            client: Some("127.0.0.108"),
            endpoint: "GET /api/search",
            count: 1,
            owasp: "API8:2023",
            severity: 65,
            counts: &[("param:api_key", 1)],
        },
        1,
    );
}

#[test]
fn sensitive_data_in_request() {
    rule_case(
        "sensitive-request",
        Expect {
            rule: "APITAP-SENSITIVE-002",
            client: Some("127.0.0.109"),
            endpoint: "POST /api/payments",
            count: 2,
            owasp: "API3:2023",
            severity: 70,
            counts: &[("card_number", 1), ("email", 1)],
        },
        1,
    );
}

#[test]
fn sensitive_data_in_response() {
    rule_case(
        "sensitive-response",
        Expect {
            rule: "APITAP-SENSITIVE-001",
            client: None,
            endpoint: "GET /api/profile",
            count: 3,
            owasp: "API3:2023",
            severity: 85,
            counts: &[("aws_access_key_id", 1), ("card_number", 1), ("email", 1)],
        },
        1,
    );
}

#[test]
fn version_banner() {
    // Two banners (Server and X-Powered-By): two alerts; the first is checked here.
    rule_case_banner();
}

fn rule_case_banner() {
    let (_, alerts) = run("banner");
    let details: BTreeSet<(String, String)> = alerts
        .iter()
        .map(|a| {
            assert_eq!(a["rule"]["id"], "APITAP-BANNER-001");
            assert_eq!(field(a, "destination.ip"), "127.0.0.2");
            assert_eq!(field(a, "apitap.owasp"), "API8:2023");
            (
                field(a, "apitap.details.header")
                    .as_str()
                    .unwrap()
                    .to_string(),
                field(a, "apitap.details.banner")
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> =
        [("server", "nginx/1.18.0"), ("x-powered-by", "PHP/7.4.3")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
    assert_eq!(details, want);
    let (_, normal) = run("banner-normal");
    assert!(normal.is_empty(), "{normal:#?}");
}

#[test]
fn new_external_destination() {
    rule_case(
        "new-destination",
        Expect {
            rule: "APITAP-THIRDPARTY-001",
            client: Some("127.0.0.111"),
            endpoint: "GET /api/users",
            count: 1,
            owasp: "API10:2023",
            severity: 45,
            counts: &[],
        },
        1,
    );
}

#[test]
fn partner_new_endpoint() {
    rule_case(
        "partner-endpoint",
        Expect {
            rule: "APITAP-THIRDPARTY-002",
            client: Some("127.0.2.5"),
            endpoint: "GET /api/users",
            count: 1,
            owasp: "API10:2023",
            severity: 45,
            counts: &[],
        },
        1,
    );
}

#[test]
fn partner_auth_failures() {
    rule_case(
        "partner-auth",
        Expect {
            rule: "APITAP-THIRDPARTY-003",
            client: Some("127.0.2.6"),
            endpoint: "POST /api/login",
            count: 3,
            owasp: "API10:2023",
            severity: 55,
            counts: &[("401", 3)],
        },
        1,
    );
}

/// (events, alerts) of a TLS posture fixture (scripts/make-tls-fixtures.sh): the
/// analytics config with a 1 s learning period (the fingerprint capture waits 2 s).
fn run_tls(name: &str) -> (Vec<Value>, Vec<Value>) {
    let mut cfg = config();
    cfg.analytics.learning_period_s = 1;
    let (out, summary) = run_replay_with(&[dir().join(format!("{name}.pcap"))], &cfg);
    assert!(summary.input_error.is_none(), "{name}: {summary:?}");
    let (events, alerts) = (parse_lines(&out), parse_alerts(&out));
    let a = summary.analytics.as_ref().unwrap();
    let tls = events
        .iter()
        .filter(|e| field(e, "network.protocol") == "tls")
        .count();
    assert!(tls > 0, "{name}");
    assert_eq!(a.tls_connections, tls as u64, "{name}");
    assert_eq!(a.alerts, alerts.len() as u64, "{name}");
    check_golden(name, &alerts);
    (events, alerts)
}

/// Each TLS posture rule fires once on its capture, citing the connection event, and
/// never on the same traffic done right.
#[test]
fn tls_posture_rules_fire_on_their_capture_and_not_on_its_twin() {
    for (name, rule, severity, owasp, detail) in [
        (
            "tls-deprecated",
            "APITAP-TLS-001",
            50,
            "API8:2023",
            ("version", "1.0"),
        ),
        (
            "tls-weak-cipher",
            "APITAP-TLS-002",
            70,
            "API8:2023",
            ("weakness", "null"),
        ),
        (
            "tls-cert-expired",
            "APITAP-TLS-003",
            60,
            "API8:2023",
            ("state", "expired"),
        ),
        (
            "tls-cert-name",
            "APITAP-TLS-004",
            55,
            "API8:2023",
            ("server_name", "api.test"),
        ),
        (
            "tls-new-fingerprint",
            "APITAP-TLS-005",
            30,
            "API6:2023",
            ("ja4", ""),
        ),
    ] {
        let (events, alerts) = run_tls(name);
        assert_eq!(alerts.len(), 1, "{name}: {alerts:#?}");
        let a = &alerts[0];
        assert_eq!(a["rule"]["id"], rule, "{name}");
        assert_eq!(field(a, "event.severity"), severity, "{name}");
        assert_eq!(field(a, "apitap.owasp"), owasp, "{name}");
        let got = field(a, &format!("apitap.details.{}", detail.0));
        if detail.1.is_empty() {
            assert!(
                got.as_str().is_some_and(|s| s.starts_with("t13")),
                "{name}: {a}"
            );
        } else {
            assert_eq!(got, detail.1, "{name}: {a}");
        }
        for id in field(a, "apitap.evidence").as_array().unwrap() {
            let ev = events.iter().find(|e| &e["event"]["id"] == id).unwrap();
            assert_eq!(field(ev, "network.protocol"), "tls", "{name}");
        }
        let (normal_events, normal_alerts) = run_tls(&format!("{name}-normal"));
        assert!(!normal_events.is_empty());
        assert!(
            normal_alerts.is_empty(),
            "{name}-normal: {normal_alerts:#?}"
        );
    }
}

/// (events, alerts) of an HTTP/2 capture (fixtures/h2, scripts/make-h2-fixtures.sh),
/// its alerts compared with `fixtures/analytics/GOLDEN.alerts.jsonl`.
fn run_h2(pcap: &str, golden: &str) -> (Vec<Value>, Vec<Value>) {
    let path = root().join("fixtures/h2").join(format!("{pcap}.pcap"));
    let (out, summary) = run_replay_with(&[path], &config());
    assert!(summary.input_error.is_none(), "{pcap}: {summary:?}");
    let (events, alerts) = (parse_lines(&out), parse_alerts(&out));
    let a = summary.analytics.as_ref().unwrap();
    let conns = events
        .iter()
        .filter(|e| field(e, "network.protocol") == "http2")
        .count();
    assert_eq!(a.http2_connections, conns as u64, "{pcap}");
    assert!(conns > 0, "{pcap}");
    check_golden(golden, &alerts);
    (events, alerts)
}

/// Each HTTP/2 attack indicator fires once on its capture (a raw client against nginx),
/// citing the connection event, and never on normal HTTP/2 traffic to the same server.
#[test]
fn http2_attack_indicators_fire_on_their_capture_and_not_on_normal_traffic() {
    for (pcap, normal, rule, severity, count) in [
        (
            "rapid-reset",
            "rapid-reset-normal",
            "APITAP-H2-001",
            75,
            200,
        ),
        ("continuation-flood", "h2-normal", "APITAP-H2-002", 70, 301),
        ("settings-flood", "h2-normal", "APITAP-H2-003", 60, 502),
        ("ping-flood", "h2-normal", "APITAP-H2-003", 60, 500),
        ("hpack-bomb", "h2-normal", "APITAP-H2-004", 65, 10),
        ("stream-abuse", "h2-normal", "APITAP-H2-005", 50, 2),
    ] {
        let golden = format!("h2-{pcap}");
        let (events, alerts) = run_h2(pcap, &golden);
        let fired: Vec<&Value> = alerts.iter().filter(|a| a["rule"]["id"] == rule).collect();
        assert_eq!(fired.len(), 1, "{pcap}: {alerts:#?}");
        let a = fired[0];
        assert_eq!(field(a, "event.severity"), severity, "{pcap}");
        assert_eq!(field(a, "apitap.owasp"), "API4:2023", "{pcap}");
        assert_eq!(field(a, "apitap.count"), count, "{pcap}: {a}");
        assert_eq!(field(a, "source.ip"), "10.78.0.2", "{pcap}");
        for id in field(a, "apitap.evidence").as_array().unwrap() {
            let ev = events.iter().find(|e| &e["event"]["id"] == id).unwrap();
            assert_eq!(field(ev, "network.protocol"), "http2", "{pcap}");
        }
        // The normal twin: the same server, ordinary requests.
        let (_, normal_alerts) = run_h2(normal, &format!("{golden}-normal"));
        assert!(
            normal_alerts.iter().all(|a| !a["rule"]["id"]
                .as_str()
                .is_some_and(|r| r.starts_with("APITAP-H2"))),
            "{normal}: {normal_alerts:#?}"
        );
    }
}

/// `apitap inventory` lists the encrypted services by server name and port.
#[test]
fn inventory_lists_encrypted_services() {
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(["inventory", "--json"])
        .arg(root().join("fixtures/tls/tls-mixed.pcap"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let snap: Value = serde_json::from_slice(&out.stdout).unwrap();
    let services = snap["tls_services"].as_array().unwrap();
    let names: BTreeSet<(String, u64)> = services
        .iter()
        .map(|s| {
            (
                s["host"].as_str().unwrap().to_string(),
                s["port"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(names.contains(&("api.test".to_string(), 8443)), "{names:?}");
    assert!(
        names.contains(&("expired.api.test".to_string(), 8444)),
        "{names:?}"
    );
    let main = services.iter().find(|s| s["port"] == 8443).unwrap();
    for v in ["1.0", "1.2", "1.3"] {
        assert!(
            main["versions"].as_array().unwrap().contains(&v.into()),
            "{main}"
        );
    }
    assert!(main["client_fingerprints"].as_array().unwrap().len() >= 3);
}

/// With 4 or more workers the raw-byte scan (sensitive data, URL secrets, auth schemes)
/// runs on them instead of on the analytics thread: the same output (events and alerts),
/// byte for byte, and the same analytics counters, on every analytics capture.
#[test]
fn the_scan_on_the_workers_finds_what_the_analytics_thread_finds() {
    let mut scanned = 0;
    let names: BTreeSet<String> = std::fs::read_dir(dir())
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.to_string();
            Some(n.strip_suffix(".pcap")?.to_string())
        })
        .collect();
    assert!(names.len() > 40, "{names:?}");
    for name in &names {
        let pcap = dir().join(format!("{name}.pcap"));
        let (one, s1) = run_replay_with(std::slice::from_ref(&pcap), &config());
        let mut cfg = config();
        cfg.pipeline.workers = 4;
        let (four, s4) = run_replay_with(&[pcap], &cfg);
        assert!(one == four, "{name}: 1 vs 4 workers differ");
        let (a1, a4) = (s1.analytics.unwrap(), s4.analytics.unwrap());
        assert_eq!(
            serde_json::to_value(&a1).unwrap(),
            serde_json::to_value(&a4).unwrap(),
            "{name}"
        );
        scanned += a1.bodies_scanned;
    }
    assert!(scanned > 0);
}

/// Every rule has its fixture pair (a new rule without one fails here).
#[test]
fn every_rule_has_a_firing_and_a_normal_capture() {
    let fixtures: BTreeSet<String> = std::fs::read_dir(dir())
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.ends_with(".alerts.jsonl"))
        .collect();
    let mut fired = BTreeSet::new();
    for f in &fixtures {
        if f.contains("-normal.") || f.starts_with("mixed.") || f.starts_with("endpoint-shapes.") {
            continue;
        }
        let normal = f.replace(".alerts.jsonl", "-normal.alerts.jsonl");
        assert!(fixtures.contains(&normal), "{f} has no normal twin");
        for a in parse_all(&std::fs::read(dir().join(f)).unwrap()) {
            fired.insert(a["rule"]["id"].as_str().unwrap().to_string());
        }
    }
    for rule in apitap_analytics::Rule::ALL {
        assert!(fired.contains(rule.id()), "no fixture fires {}", rule.id());
    }
}

/// Ten normal clients and a partner throughout; after the learning period one
/// misbehaving client per rule. Every misuse is found and attributed; no normal client is
/// ever alerted on, and every alert's evidence leads to a misbehaving client.
#[test]
fn mixed_capture_precision_and_recall() {
    let (events, alerts) = run("mixed");
    let normal: BTreeSet<String> = (10..20)
        .map(|n| format!("127.0.0.{n}"))
        .chain(["127.0.2.5".to_string()])
        .collect();
    // (rule, endpoint, client at fault when the rule names one)
    let expected: Vec<(&str, &str, Option<&str>)> = vec![
        ("APITAP-SHADOW-001", "GET /internal/debug", None),
        ("APITAP-ZOMBIE-001", "GET /api/legacy/report", None),
        ("APITAP-ZOMBIE-002", "GET /v1/orders", None),
        ("APITAP-DRIFT-001", "GET /api/users/{id}", None),
        ("APITAP-AUTH-001", "POST /api/login", Some("127.0.0.105")),
        (
            "APITAP-AUTH-002",
            "GET /api/admin/page19",
            Some("127.0.0.106"),
        ),
        (
            "APITAP-BOLA-001",
            "GET /api/users/{id}",
            Some("127.0.0.107"),
        ),
        (
            "APITAP-URLSECRET-001",
            "GET /api/search",
            Some("127.0.0.108"),
        ),
        (
            "APITAP-SENSITIVE-002",
            "POST /api/payments",
            Some("127.0.0.109"),
        ),
        ("APITAP-SENSITIVE-001", "GET /api/profile", None),
        ("APITAP-BANNER-001", "GET /api/users", None),
        (
            "APITAP-THIRDPARTY-001",
            "GET /api/users",
            Some("127.0.0.111"),
        ),
        ("APITAP-THIRDPARTY-002", "GET /api/users", Some("127.0.2.7")),
        (
            "APITAP-THIRDPARTY-003",
            "POST /api/login",
            Some("127.0.2.6"),
        ),
        ("APITAP-RATE-001", "GET /api/rate", None),
        ("APITAP-ERROR-001", "GET /api/flaky", None),
        ("APITAP-ERROR-002", "GET /api/items", None),
        ("APITAP-LATENCY-001", "GET /api/slow", None),
        ("APITAP-SIZE-001", "GET /api/report", None),
    ];
    let source_of = |id: &Value| -> String {
        let ev = events
            .iter()
            .find(|e| &e["event"]["id"] == id)
            .unwrap_or_else(|| panic!("evidence {id} is no event"));
        field(ev, "source.ip").as_str().unwrap().to_string()
    };
    let mut found = 0;
    for (rule, endpoint, client) in &expected {
        let hit = alerts.iter().any(|a| {
            a["rule"]["id"] == *rule
                && field(a, "apitap.endpoint") == *endpoint
                && client.is_none_or(|c| field(a, "source.ip") == c)
        });
        found += usize::from(hit);
        assert!(hit, "missed {rule} {endpoint} {client:?}");
    }
    let mut true_positives = 0;
    for a in &alerts {
        if let Some(ip) = field(a, "source.ip").as_str() {
            assert!(!normal.contains(ip), "normal client alerted on: {a}");
        }
        // Caused by a misbehaving client: some evidence transaction comes from one.
        let caused = field(a, "apitap.evidence")
            .as_array()
            .unwrap()
            .iter()
            .any(|id| !normal.contains(&source_of(id)));
        true_positives += usize::from(caused);
        assert!(caused, "alert not caused by a misbehaving client: {a}");
    }
    let recall = found as f64 / expected.len() as f64;
    let precision = true_positives as f64 / alerts.len() as f64;
    eprintln!(
        "mixed: {} transactions, {} alerts, precision {precision:.3}, recall {recall:.3}",
        events.len(),
        alerts.len()
    );
    assert_eq!(recall, 1.0);
    assert_eq!(precision, 1.0);
}

#[test]
fn alerts_match_the_alert_schema() {
    let text = std::fs::read_to_string(root().join("schema/alert.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    let v = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let (_, alerts) = run("mixed");
    assert!(alerts.len() >= 19);
    for a in &alerts {
        let errors: Vec<String> = v.iter_errors(a).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}\n{a}");
    }
}

#[test]
fn alerts_are_identical_for_any_worker_count() {
    let mut cfg = config();
    let pcap = dir().join("mixed.pcap");
    cfg.pipeline.workers = 1;
    let (one, _) = run_replay_with(std::slice::from_ref(&pcap), &cfg);
    for workers in [3, 4] {
        // From 4 workers up the raw-byte scan runs on the workers.
        cfg.pipeline.workers = workers;
        let (many, _) = run_replay_with(std::slice::from_ref(&pcap), &cfg);
        assert!(one == many, "1 vs {workers} workers differ");
    }
}

/// An alert's id names its rule, suppression keys and packet time, nothing else: with the
/// most frequent rule of the mixed capture disabled, every other alert keeps its id (a
/// run-wide sequence in the id changed them all), and each id is unique.
#[test]
fn alert_ids_do_not_depend_on_other_alerts() {
    let pcap = dir().join("mixed.pcap");
    let ids = |cfg: &Config| -> BTreeMap<String, String> {
        let (out, _) = run_replay_with(std::slice::from_ref(&pcap), cfg);
        let alerts = parse_alerts(&out);
        let ids: BTreeMap<String, String> = alerts
            .iter()
            .map(|a| {
                (
                    a["event"]["id"].as_str().unwrap().to_string(),
                    a.to_string(),
                )
            })
            .collect();
        assert_eq!(ids.len(), alerts.len(), "ids are unique");
        ids
    };
    let all = ids(&config());
    let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
    for a in all.values() {
        let v: Value = serde_json::from_str(a).unwrap();
        *by_rule
            .entry(v["rule"]["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let (dropped, n) = by_rule.iter().max_by_key(|(_, n)| **n).unwrap();
    assert!(all.len() > *n && *n > 1, "{by_rule:?}");
    let mut cfg = config();
    cfg.analytics.disabled_rules = vec![dropped.clone()];
    let rest = ids(&cfg);
    assert_eq!(rest.len(), all.len() - n);
    for (id, alert) in &rest {
        assert_eq!(all.get(id), Some(alert), "alert {id} changed");
    }
}

/// One templater: ids of every shape become their placeholder, fixed names stay literal,
/// a position with many free-form names is learned as `{param}`; every alert names the
/// endpoint exactly as every event it cites does, for any worker count.
#[test]
fn alerts_and_the_events_they_cite_name_the_same_endpoint() {
    let (events, alerts) = run("endpoint-shapes");
    let endpoint_of: BTreeMap<&str, &str> = events
        .iter()
        .map(|e| {
            (
                e["event"]["id"].as_str().unwrap(),
                e["apitap"]["endpoint"].as_str().unwrap(),
            )
        })
        .collect();
    let named: BTreeSet<&str> = endpoint_of.values().copied().collect();
    for endpoint in [
        "GET /api/things/{id}",
        "GET /api/things/{uuid}",
        "GET /api/things/{hex}",
        "GET /api/things/{token}",
        "GET /api/things/{date}",
        "GET /api/things/{email}",
        "GET /api/things/me",
        "GET /api/things/search",
        "GET /api/files/{param}/meta",
        // Before the position was learned, a name is its own endpoint.
        "GET /api/files/report-a0/meta",
    ] {
        assert!(named.contains(endpoint), "{endpoint} not in {named:#?}");
    }
    let mut enumerated = BTreeSet::new();
    for a in &alerts {
        let endpoint = a["apitap"]["endpoint"].as_str().unwrap();
        let evidence = a["apitap"]["evidence"].as_array().unwrap();
        assert!(!evidence.is_empty(), "{a}");
        for id in evidence {
            assert_eq!(
                endpoint_of.get(id.as_str().unwrap()),
                Some(&endpoint),
                "alert {} cites {id}",
                a["rule"]["id"]
            );
        }
        if a["rule"]["id"] == "APITAP-BOLA-001" {
            enumerated.insert(endpoint);
        }
    }
    // Every object shape is enumerable; a date is not an object.
    assert_eq!(
        enumerated,
        BTreeSet::from([
            "GET /api/things/{id}",
            "GET /api/things/{uuid}",
            "GET /api/things/{hex}",
            "GET /api/things/{token}",
            "GET /api/things/{email}",
            "GET /api/files/{param}/meta",
        ])
    );
    let mut cfg = config();
    let pcap = dir().join("endpoint-shapes.pcap");
    cfg.pipeline.workers = 1;
    let (one, _) = run_replay_with(std::slice::from_ref(&pcap), &cfg);
    cfg.pipeline.workers = 3;
    let (three, _) = run_replay_with(std::slice::from_ref(&pcap), &cfg);
    assert!(one == three, "1 vs 3 workers differ");
}

fn apitap() -> Command {
    Command::new(env!("CARGO_BIN_EXE_apitap"))
}

#[test]
fn check_gates_on_severity_and_writes_valid_sarif() {
    let config = dir().join("sensor.toml");
    let run_check = |files: &[&str], extra: &[&str]| {
        let mut cmd = apitap();
        cmd.arg("check")
            .arg("--spec")
            .arg(spec())
            .arg("-c")
            .arg(&config)
            .args(extra);
        for f in files {
            cmd.arg(dir().join(f));
        }
        cmd.output().unwrap()
    };
    // Documented traffic passes.
    let out = run_check(&["shadow-normal.pcap"], &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 findings; passed"));
    // A shadow endpoint (medium) fails the default gate, passes --fail-on high.
    let out = run_check(&["shadow.pcap"], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("MEDIUM   APITAP-SHADOW-001      127.0.0.1 GET /internal/debug"));
    assert!(
        text.contains("FAILED: 1 at or above --fail-on medium"),
        "{text}"
    );
    let out = run_check(&["shadow.pcap"], &["--fail-on", "high"]);
    assert_eq!(out.status.code(), Some(0));
    // JSON.
    let out = run_check(&["shadow.pcap", "drift.pcap"], &["--format", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rules: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["rule"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["APITAP-SHADOW-001", "APITAP-DRIFT-001"]);
    assert_eq!(report["failing"], 1, "drift is low, shadow medium");
    assert_eq!(report["passed"], false);
    // SARIF 2.1.0, validated against a schema of the parts code scanning reads.
    let out = run_check(&["mixed.pcap"], &["--format", "sarif", "--fail-on", "none"]);
    assert_eq!(out.status.code(), Some(0));
    let sarif: Value = serde_json::from_slice(&out.stdout).unwrap();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/data/sarif-2.1.0-subset.schema.json")).unwrap(),
    )
    .unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = v.iter_errors(&sarif).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert!(results.len() >= 19);
    let rules = sarif["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    for r in results {
        let idx = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[idx]["id"], r["ruleId"]);
    }
    // Bad arguments are a clear error (exit 2).
    let out = run_check(&["shadow.pcap"], &["--fail-on", "sometimes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--fail-on"));
}

#[test]
fn check_reads_har_recordings() {
    let scratch = scratch("har");
    let har = scratch.join("run.har");
    std::fs::write(
        &har,
        r#"{"log":{"version":"1.2","creator":{"name":"test","version":"1"},"entries":[
          {"startedDateTime":"2024-01-31T12:00:00.000Z","time":3,
           "request":{"method":"GET","url":"http://api.example/api/users","headers":[]},
           "response":{"status":200,"headers":[],"content":{"size":2,"mimeType":"application/json","text":"[]"}}},
          {"startedDateTime":"2024-01-31T12:00:01.000Z","time":3,
           "request":{"method":"GET","url":"http://api.example/internal/debug?token=abc123","headers":[]},
           "response":{"status":200,"headers":[],"content":{"size":2,"mimeType":"application/json","text":"{}"}}}
        ]}}"#,
    )
    .unwrap();
    let out = apitap()
        .args(["check", "--format", "json", "--spec"])
        .arg(spec())
        .arg(&har)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut rules: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["rule"]["id"].as_str().unwrap())
        .collect();
    rules.sort_unstable();
    assert_eq!(rules, ["APITAP-SHADOW-001", "APITAP-URLSECRET-001"]);
    assert_eq!(report["transactions"], 2);
    let evidence = &report["findings"][0]["apitap"]["evidence"];
    assert_eq!(evidence[0], "har-1");
    // A broken HAR is an error, not a pass.
    std::fs::write(&har, "{\"log\":{}}").unwrap();
    let out = apitap()
        .args(["check", "--spec"])
        .arg(spec())
        .arg(&har)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("log.entries"));
}

#[test]
fn inventory_table_openapi_export_and_saved_state() {
    let scratch = scratch("inventory");
    let openapi = scratch.join("inventory.openapi.json");
    let state = scratch.join("inventory.state.json");
    let out = apitap()
        .arg("inventory")
        .arg(dir().join("bola.pcap"))
        .arg(dir().join("login-burst.pcap"))
        .arg("--openapi")
        .arg(&openapi)
        .arg("--state")
        .arg(&state)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("HOST"), "{table}");
    // 70 ids walked: one templated endpoint.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("GET /api/users/{id}") && l.contains(" 70 ")),
        "{table}"
    );
    assert!(lines
        .iter()
        .any(|l| l.contains("POST /api/login") && l.contains("401:12")));
    assert_eq!(lines.len(), 3, "{table}");
    let doc: Value = serde_json::from_slice(&std::fs::read(&openapi).unwrap()).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/api/users/{id}"]["get"].is_object(), "{doc}");
    assert!(doc["paths"]["/api/login"]["post"]["responses"]["401"].is_object());
    // The state carries over: a second run adds to the counts.
    let out = apitap()
        .arg("inventory")
        .arg("--json")
        .arg(dir().join("bola.pcap"))
        .arg("--state")
        .arg(&state)
        .output()
        .unwrap();
    assert!(out.status.success());
    let snap: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = snap.to_string();
    assert!(text.contains("\"count\":140"), "{text}");
}
