//! The published schemas (schema/event.schema.json, schema/alert.schema.json) accept every
//! event and alert the fixtures produce, and reject ones that break them.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::*;
use serde_json::{json, Value};

fn validator() -> jsonschema::Validator {
    schema_validator("schema/event.schema.json")
}

fn alert_validator() -> jsonschema::Validator {
    schema_validator("schema/alert.schema.json")
}

/// What `v` finds wrong with `value`, each with where.
fn schema_errors(v: &jsonschema::Validator, value: &Value) -> Vec<String> {
    v.iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn schema_validator(path: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

#[test]
fn every_fixture_event_matches_the_schema() {
    let v = validator();
    let mut checked = 0;
    let av = alert_validator();
    let mut alerts = 0;
    for capture in fixture_captures() {
        let (out, _) = run_replay(std::slice::from_ref(&capture), 2);
        for ev in parse_lines(&out) {
            let errors = schema_errors(&v, &ev);
            assert!(errors.is_empty(), "{}: {errors:?}\n{ev}", capture.display());
            checked += 1;
        }
        for alert in parse_alerts(&out) {
            let errors = schema_errors(&av, &alert);
            assert!(
                errors.is_empty(),
                "{}: {errors:?}\n{alert}",
                capture.display()
            );
            alerts += 1;
        }
    }
    assert!(checked > 300, "checked {checked}");
    assert!(alerts > 20, "checked {alerts} alerts");
}

#[test]
fn broken_alerts_are_rejected() {
    let v = alert_validator();
    let (out, _) = run_replay(&[root().join("fixtures/nginx/nginx-ipv6.pcap")], 1);
    let good = parse_alerts(&out).remove(0);
    assert!(v.is_valid(&good), "{good}");
    for (what, pointer, bad) in [
        ("unknown rule", "/rule/id", json!("APITAP-NOPE-001")),
        ("severity out of range", "/event/severity", json!(101)),
        ("kind event", "/event/kind", json!("event")),
        ("OWASP id", "/apitap/owasp", json!("A01:2021")),
        (
            "a value in counts",
            "/apitap/counts",
            json!({"card_number": "4111"}),
        ),
    ] {
        let mut a = good.clone();
        match a.pointer_mut(pointer) {
            Some(slot) => *slot = bad,
            None => {
                let (parent, key) = pointer.rsplit_once('/').unwrap();
                a.pointer_mut(parent)
                    .unwrap()
                    .as_object_mut()
                    .unwrap()
                    .insert(key.into(), bad);
            }
        }
        assert!(!v.is_valid(&a), "{what} accepted");
    }
}

#[test]
fn broken_events_are_rejected() {
    let v = validator();
    let (out, _) = run_replay(&[root().join("fixtures/nginx/nginx-ipv6.pcap")], 1);
    let good = parse_lines(&out).remove(0);
    assert!(v.is_valid(&good));
    type Mutation = Box<dyn Fn(&mut Value)>;
    let mutations: Vec<(&str, Mutation)> = vec![
        (
            "no timestamp",
            Box::new(|e: &mut Value| {
                e.as_object_mut().unwrap().remove("@timestamp");
            }),
        ),
        (
            "bad status",
            Box::new(|e: &mut Value| e["http"]["response"]["status_code"] = json!(42)),
        ),
        (
            "unknown anomaly",
            Box::new(|e: &mut Value| e["apitap"]["anomalies"] = json!(["nope"])),
        ),
        (
            "unknown field",
            Box::new(|e: &mut Value| e["apitap"]["surprise"] = json!(1)),
        ),
        (
            "incomplete without reason",
            Box::new(|e: &mut Value| e["apitap"]["complete"] = json!(false)),
        ),
        (
            "bad ip",
            Box::new(|e: &mut Value| e["source"]["ip"] = json!("not-an-ip")),
        ),
    ];
    for (name, mutate) in mutations {
        let mut bad = good.clone();
        mutate(&mut bad);
        assert!(!v.is_valid(&bad), "{name} was accepted");
    }
}

/// Events with captured bodies (content, `apitap.body`) match the schema too.
#[test]
fn events_with_captured_bodies_match_the_schema() {
    let v = validator();
    let mut cfg = apitap::Config::parse(
        "[http]\ninclude_body_for = [\"application/json\", \"application/x-www-form-urlencoded\", \"text/\"]\n",
    )
    .unwrap();
    cfg.pipeline.workers = 1;
    let mut with_body = 0;
    for name in ["json-bodies.pcap", "gzip-bomb.pcap"] {
        let (out, _) = run_replay_with(&[root().join("fixtures/bodies").join(name)], &cfg);
        for ev in parse_lines(&out) {
            let errors = schema_errors(&v, &ev);
            assert!(errors.is_empty(), "{name}: {errors:?}\n{ev}");
            with_body += usize::from(!ev["apitap"]["body"].is_null());
        }
    }
    assert_eq!(with_body, 7);
}

/// Events of a sensor in edge mode (`apitap.ts_ns`, `apitap.findings`) match the schema,
/// and one with a finding the schema does not know is rejected.
#[test]
fn edge_mode_events_match_the_schema() {
    let v = validator();
    let mut cfg = apitap::Config::load(&root().join("fixtures/analytics/sensor.toml")).unwrap();
    cfg.analytics.mode = apitap_analytics::AnalyticsMode::Edge;
    let mut found = 0;
    for name in [
        "sensitive-request",
        "sensitive-response",
        "url-secret",
        "mixed",
    ] {
        let pcap = root().join(format!("fixtures/analytics/{name}.pcap"));
        let (out, _) = run_replay_with(&[pcap], &cfg);
        for ev in parse_all(&out) {
            let errors = schema_errors(&v, &ev);
            assert!(errors.is_empty(), "{name}: {errors:?}\n{ev}");
            assert!(ev["apitap"]["ts_ns"].is_i64(), "{ev}");
            let findings = ev["apitap"]["findings"].as_object().unwrap();
            found += usize::from(findings.keys().any(|k| k != "auth_schemes"));
        }
    }
    assert!(
        found >= 4,
        "{found} events with sensitive data or URL secrets"
    );
    let (out, _) = run_replay_with(&[root().join("fixtures/analytics/url-secret.pcap")], &cfg);
    let mut ev = parse_all(&out).remove(0);
    ev["apitap"]["findings"]["request_sensitive"] = serde_json::json!({"gold": 1});
    assert!(!v.is_valid(&ev));
}

/// `--format ocsf`: one OCSF 1.1.0 HTTP Activity record per ECS event, with the required
/// attributes and the same transaction in it.
#[test]
fn ocsf_output_has_one_http_activity_per_event() {
    let pcap = root().join("fixtures/nginx/nginx-mixed.pcap");
    let (ecs, _) = run_replay(std::slice::from_ref(&pcap), 2);
    let mut cfg = apitap::Config::parse("[output]\nformat = \"ocsf\"\n").unwrap();
    cfg.pipeline.workers = 2;
    let (ocsf, _) = run_replay_with(&[pcap], &cfg);
    let ecs = parse_lines(&ecs);
    let ocsf = parse_lines(&ocsf);
    assert_eq!(ecs.len(), ocsf.len());
    assert!(ocsf.len() > 50);
    for (e, o) in ecs.iter().zip(&ocsf) {
        for key in [
            "activity_id",
            "category_uid",
            "class_uid",
            "type_uid",
            "time",
            "severity_id",
            "metadata",
            "src_endpoint",
            "dst_endpoint",
        ] {
            assert!(!o[key].is_null(), "{key} missing: {o}");
        }
        assert_eq!(o["class_uid"], 4002);
        assert_eq!(o["category_uid"], 4);
        assert_eq!(
            o["type_uid"].as_u64(),
            o["activity_id"].as_u64().map(|a| 400_200 + a)
        );
        assert_eq!(o["metadata"]["version"], "1.1.0");
        assert_eq!(o["metadata"]["uid"], e["event"]["id"]);
        assert_eq!(
            o["http_request"]["http_method"],
            e["http"]["request"]["method"]
        );
        assert_eq!(o["http_request"]["url"]["url_string"], e["url"]["original"]);
        assert_eq!(
            o["http_response"]["code"],
            e["http"]["response"]["status_code"]
        );
        assert_eq!(o["src_endpoint"]["ip"], e["source"]["ip"]);
        assert_eq!(o["dst_endpoint"]["port"], e["destination"]["port"]);
        assert_eq!(o["unmapped"]["apitap"], e["apitap"]);
        let method = e["http"]["request"]["method"].as_str().unwrap_or("");
        let want = match method {
            "GET" => 3,
            "POST" => 6,
            "PUT" => 7,
            "DELETE" => 2,
            "HEAD" => 4,
            _ => 99,
        };
        assert_eq!(o["activity_id"], want, "{method}");
    }
}
