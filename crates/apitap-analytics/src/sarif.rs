//! SARIF 2.1.0 output for findings (`apitap check` in CI).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::alert::{rfc3339_micros, Alert, Rule};
use apitap_core::stable_hash;

/// SARIF `level` of a severity: `error` (>= 70), `warning` (>= 40), `note`.
pub fn sarif_level(severity: u8) -> &'static str {
    match severity {
        70.. => "error",
        40..=69 => "warning",
        _ => "note",
    }
}

/// A SARIF 2.1.0 log with one run: the rules that fired (id, name, descriptions, help,
/// default level, `properties.security-severity` 0.0-10.0 as GitHub code scanning reads
/// it, OWASP tags) and one result per finding (ruleId/ruleIndex, level from its severity,
/// message, a logical location naming the endpoint, a partial fingerprint, and the counts,
/// window and evidence as properties). Findings keep their order.
pub fn sarif(findings: &[Alert], tool_version: &str) -> Value {
    let mut used: Vec<Rule> = findings.iter().map(|a| a.rule).collect();
    used.sort_unstable();
    used.dedup();
    let index: BTreeMap<Rule, usize> = used.iter().enumerate().map(|(i, r)| (*r, i)).collect();
    let rules: Vec<Value> = used
        .iter()
        .map(|r| {
            json!({
                "id": r.id(),
                "name": r.name(),
                "shortDescription": { "text": r.description() },
                "fullDescription": {
                    "text": format!("{} OWASP {} {}.", r.description(), r.owasp(), r.owasp_name())
                },
                "help": {
                    "text": r.help(),
                    "markdown": format!("{}\n\nOWASP API Security Top 10: **{} {}**", r.help(), r.owasp(), r.owasp_name()),
                },
                "defaultConfiguration": { "level": sarif_level(r.default_severity()) },
                "properties": {
                    "security-severity": format!("{:.1}", f64::from(r.default_severity()) / 10.0),
                    "tags": ["security", "api", r.owasp()],
                },
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|a| {
            let host = a.host.as_deref().unwrap_or("");
            let name = a
                .endpoint
                .as_deref()
                .or(a.host.as_deref())
                .unwrap_or("traffic");
            let fqn = match (&a.endpoint, host) {
                (Some(e), h) if !h.is_empty() => format!("{h} {e}"),
                _ => name.to_string(),
            };
            let fp = stable_hash(&[a.rule.id().as_bytes(), fqn.as_bytes()]);
            let mut props = Map::new();
            props.insert("severity".into(), json!(a.severity));
            props.insert("severity_label".into(), json!(a.severity_label()));
            props.insert("owasp".into(), json!(a.rule.owasp()));
            props.insert("count".into(), json!(a.count));
            if !a.counts.is_empty() {
                props.insert("counts".into(), json!(a.counts));
            }
            if let Some(c) = a.client {
                props.insert("client".into(), json!(c.to_string()));
            }
            props.insert(
                "window".into(),
                json!({
                    "start": rfc3339_micros(a.window_start_ns),
                    "end": rfc3339_micros(a.window_end_ns),
                }),
            );
            props.insert("evidence".into(), json!(a.evidence));
            props.insert("alert_id".into(), json!(a.id));
            json!({
                "ruleId": a.rule.id(),
                "ruleIndex": index.get(&a.rule).copied().unwrap_or(0),
                "level": sarif_level(a.severity),
                "message": { "text": a.message },
                "locations": [{
                    "logicalLocations": [{
                        "name": name,
                        "fullyQualifiedName": fqn,
                        "kind": "resource",
                    }]
                }],
                "partialFingerprints": { "apitapEndpoint/v1": format!("{fp:016x}") },
                "properties": props,
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "apitap",
                    "version": tool_version,
                    "rules": rules,
                }
            },
            "results": results,
        }]
    })
}
