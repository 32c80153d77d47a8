//! The detectors: each looks at one transaction through [`TxContext`] and returns its
//! findings, alert text included; [`crate::Analytics::process_into`] only sequences them
//! and passes the findings through the [`Gate`] (disabled rules, suppression).
//!
//! - [`auth`]: authentication failure bursts per client.
//! - [`bola`]: object id enumeration per (client, endpoint).
//! - [`url_secrets`]: secrets in URLs.
//! - [`exposure`]: sensitive data in headers and bodies, per direction.
//! - [`banner`]: software versions disclosed by servers.
//! - [`third_party`]: new external destinations, partners off their learned endpoints.
//! - [`spec_diff`]: shadow, zombie and drift against the OpenAPI spec.
//!
//! All state is bounded; evictions are counted.

pub(crate) mod auth;
pub(crate) mod banner;
pub(crate) mod bola;
pub(crate) mod exposure;
pub(crate) mod spec_diff;
pub(crate) mod third_party;
pub(crate) mod url_secrets;

use crate::alert::{Alert, Rule};
use crate::config::AnalyticsConfig;
use crate::emit::{Finding, Gate};
use crate::inventory::EndpointKey;
use crate::record::{EdgeFindings, TxRecord};
use std::collections::{BTreeMap, VecDeque};

/// What every detector sees of one transaction.
pub(crate) struct TxContext<'a> {
    pub tx: &'a TxRecord,
    /// What the scan of its raw bytes found (on a sensor's worker, or by the engine).
    pub findings: &'a EdgeFindings,
    /// The endpoint as the inventory files it.
    pub key: &'a EndpointKey,
    /// `host|METHOD /template` (suppression keys of endpoint alerts).
    pub scoped: &'a str,
    /// `METHOD /template` (as in alert messages).
    pub endpoint: &'a str,
    /// A request was seen (else the alert has no endpoint).
    pub requested: bool,
    /// Hash of the object ids in the path, when it has any.
    pub object_key: Option<u64>,
    /// Still in the learning period.
    pub learning: bool,
    pub cfg: &'a AnalyticsConfig,
}

impl TxContext<'_> {
    /// An alert of `rule` about this transaction: its time, server, host, endpoint and
    /// event as evidence.
    pub(crate) fn alert(&self, rule: Rule, message: String) -> Alert {
        let tx = self.tx;
        Alert {
            rule,
            ts_ns: tx.ts_ns,
            severity: rule.default_severity(),
            id: String::new(),
            client: None,
            server: Some(tx.server),
            host: tx.host.clone(),
            endpoint: self.requested.then(|| self.endpoint.to_string()),
            window_start_ns: tx.ts_ns,
            window_end_ns: tx.ts_ns,
            count: 1,
            counts: BTreeMap::new(),
            details: BTreeMap::new(),
            evidence: vec![tx.event_id.clone()],
            message,
            sensors: Vec::new(),
        }
    }
}

/// One detector.
pub(crate) trait Detector {
    /// Looks at one transaction and appends what it found. `gate` answers whether a rule
    /// is disabled or an alert suppressed, for detectors that can skip work.
    fn observe(&mut self, cx: &TxContext<'_>, gate: &mut Gate, out: &mut Vec<Finding>);
}

/// Failures of one actor in a sliding window (at most `threshold` kept).
#[derive(Clone, Debug, Default)]
pub(crate) struct FailWindow {
    /// Time, status and sensor (at the centre of a fleet) of each failure counted.
    times: VecDeque<(i64, u16, Option<String>)>,
    evidence: VecDeque<String>,
}

/// What a [`FailWindow`] reports when it reaches its threshold.
pub(crate) struct Burst {
    pub count: u64,
    pub start_ns: i64,
    pub end_ns: i64,
    pub by_status: BTreeMap<String, u64>,
    pub evidence: Vec<String>,
    /// The sensors that saw the failures counted (at the centre of a fleet).
    pub sensors: Vec<String>,
}

impl Burst {
    /// Puts the burst's window, count, counts by status and evidence into `a`.
    pub(crate) fn fill(self, a: &mut Alert) {
        a.window_start_ns = self.start_ns;
        a.window_end_ns = self.end_ns;
        a.count = self.count;
        a.counts = self.by_status;
        a.evidence = self.evidence;
        a.sensors = self.sensors;
    }
}

impl FailWindow {
    pub(crate) fn push(
        &mut self,
        tx: &TxRecord,
        status: u16,
        threshold: usize,
        window_ns: i64,
        max_evidence: usize,
    ) -> Option<Burst> {
        self.times.push_back((tx.ts_ns, status, tx.sensor.clone()));
        while self.times.len() > threshold {
            self.times.pop_front();
        }
        let horizon = tx.ts_ns.saturating_sub(window_ns);
        while self.times.front().is_some_and(|(t, _, _)| *t < horizon) {
            self.times.pop_front();
        }
        self.evidence.push_back(tx.event_id.clone());
        while self.evidence.len() > max_evidence {
            self.evidence.pop_front();
        }
        if self.times.len() < threshold {
            return None;
        }
        let mut by_status = BTreeMap::new();
        let mut sensors = std::collections::BTreeSet::new();
        for (_, s, sensor) in &self.times {
            *by_status.entry(s.to_string()).or_insert(0) += 1;
            sensors.extend(sensor);
        }
        Some(Burst {
            count: self.times.len() as u64,
            start_ns: self.times.front().map_or(tx.ts_ns, |(t, _, _)| *t),
            end_ns: tx.ts_ns,
            by_status,
            evidence: self.evidence.iter().cloned().collect(),
            sensors: sensors.into_iter().cloned().collect(),
        })
    }
}
