//! The Grafana dashboard (dashboards/apitap.json) is a well-formed import: unique panel ids,
//! every query on the data-source variable, every metric an apitap one. Whether the daemon
//! really serves each metric and label it queries is checked against a running sensor's
//! /metrics in tests/live.rs (`live_events_reach_kafka`, which has Kafka and the analytics
//! on, so every family is present).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeSet;

#[test]
fn the_dashboard_is_a_well_formed_import() {
    let text = std::fs::read_to_string(root().join("dashboards/apitap.json")).unwrap();
    let d: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(d["uid"], "apitap-sensors");
    assert_eq!(d["__inputs"][0]["pluginId"], "prometheus");
    let panels = d["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "duplicate id {}",
            p["id"]
        );
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            let expr = t["expr"].as_str().unwrap();
            assert!(expr.contains("apitap_"), "{expr}");
            assert!(expr.contains("instance=~\"$instance\""), "{expr}");
        }
    }
    let (names, labels) = dashboard_queries();
    assert!(names.len() >= 40, "{names:?}");
    for family in [
        "capture",
        "input",
        "kafka",
        "flows",
        "analytics",
        "transactions",
    ] {
        assert!(
            names
                .iter()
                .any(|n| n.starts_with(&format!("apitap_{family}_"))),
            "no {family} panel"
        );
    }
    assert_eq!(
        labels,
        ["anomaly", "interface", "reason", "rule", "tunnel"]
            .map(String::from)
            .into(),
    );
}
