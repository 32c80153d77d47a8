//! Sensitive data exposure: card numbers, emails, national ids, cloud keys, JWTs, private
//! keys in the headers and body samples of one direction, as the scan found them
//! ([`crate::edge`], [`crate::sensitive`]).
//! One suppression key per kind, so a new kind on the same endpoint still fires.

use super::{Detector, TxContext};
use crate::alert::Rule;
use crate::emit::{Finding, Gate};
use serde_json::json;

/// Which way the scanned data went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// In requests (the client sent it).
    Request,
    /// In responses (the API exposed it).
    Response,
}

/// The sensitive-data detector of one direction: alerts on what the scan
/// ([`crate::edge::EdgeScan`]) found.
pub(crate) struct Exposure {
    flow: Flow,
}

impl Exposure {
    pub(crate) fn new(flow: Flow) -> Exposure {
        Exposure { flow }
    }
}

impl Detector for Exposure {
    fn observe(&mut self, cx: &TxContext<'_>, gate: &mut Gate, out: &mut Vec<Finding>) {
        let (rule, dir, counts) = match self.flow {
            Flow::Request => (
                Rule::SensitiveDataRequest,
                "request",
                &cx.findings.request_sensitive,
            ),
            Flow::Response => (
                Rule::SensitiveDataResponse,
                "response",
                &cx.findings.response_sensitive,
            ),
        };
        if gate.is_disabled(rule) {
            return;
        }
        let tx = cx.tx;
        if counts.is_empty() {
            return;
        }
        // A leaky endpoint exposes on every response: nothing is built while every kind
        // found is within its suppression window.
        if !counts
            .keys()
            .any(|k| gate.allowed(rule, &[cx.scoped, k.name()], tx.ts_ns))
        {
            gate.count_suppressed();
            return;
        }
        let severity = counts
            .keys()
            .map(|k| k.severity())
            .max()
            .unwrap_or(rule.default_severity());
        let names: Vec<&str> = counts.keys().map(|k| k.name()).collect();
        let mut alert = cx.alert(
            rule,
            format!(
                "Sensitive data in the {dir} of {}: {} (values not recorded)",
                cx.endpoint,
                names.join(", ")
            ),
        );
        if self.flow == Flow::Request {
            alert.client = Some(tx.client.ip());
            alert.severity = severity.saturating_sub(10).max(1);
        } else {
            alert.severity = severity;
        }
        alert.count = counts.values().sum();
        alert.counts = counts
            .iter()
            .map(|(k, v)| (k.name().to_string(), *v))
            .collect();
        alert.details.insert("direction".into(), json!(dir));
        let keys = counts
            .keys()
            .map(|k| format!("{}|{}", cx.scoped, k.name()))
            .collect();
        out.push(Finding { alert, keys });
    }
}
