//! The published event schema (schema/event.schema.json) accepts every event the fixtures
//! produce, and rejects events that break it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::*;
use serde_json::{json, Value};

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("schema/event.schema.json")).unwrap();
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
    for capture in fixture_captures() {
        let (out, _) = run_replay(std::slice::from_ref(&capture), 2);
        for ev in parse_lines(&out) {
            let errors: Vec<String> = v
                .iter_errors(&ev)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}\n{ev}", capture.display());
            checked += 1;
        }
    }
    assert!(checked > 300, "checked {checked}");
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
