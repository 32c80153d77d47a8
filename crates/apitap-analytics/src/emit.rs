//! From findings to alerts: disabled rules, suppression per (rule, key) within a window of
//! packet time, stable alert ids, the evidence cap. Every detector's findings pass here.

use crate::alert::{Alert, Rule};
use crate::config::AnalyticsConfig;
use apitap_core::StableHasher;
use hashlink::LruCache;
use std::collections::BTreeMap;

/// An alert candidate and the suppression keys it counts under: it is emitted when the
/// window of any of its keys has passed, and then starts the window of all of them.
pub(crate) struct Finding {
    pub alert: Alert,
    pub keys: Vec<String>,
}

impl Finding {
    /// A finding suppressed under one key.
    pub(crate) fn new(alert: Alert, key: String) -> Finding {
        Finding {
            alert,
            keys: vec![key],
        }
    }
}

/// Counters of the gate.
#[derive(Clone, Debug, Default)]
pub(crate) struct GateCounters {
    pub alerts: u64,
    pub alerts_by_rule: BTreeMap<String, u64>,
    pub alerts_suppressed: u64,
    pub alerts_disabled: u64,
    pub suppression_keys_evicted: u64,
}

/// Disabled rules, the suppression table and alert ids.
pub(crate) struct Gate {
    /// Bit `rule as u32` set for each disabled rule.
    disabled: u32,
    /// Last alert time per suppression key (`rule-id|key`).
    suppress: LruCache<String, i64>,
    /// The key of the current lookup, reused (a lookup is on the path of every alert).
    key: String,
    default_window_s: u64,
    rule_window_s: BTreeMap<String, u64>,
    max_evidence: usize,
    pub counters: GateCounters,
}

pub(crate) fn secs_ns(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX)
}

impl Gate {
    pub(crate) fn new(cfg: &AnalyticsConfig) -> Gate {
        Gate {
            disabled: cfg
                .disabled_rules
                .iter()
                .filter_map(|r| Rule::from_id(r))
                .fold(0, |mask, rule| mask | rule.bit()),
            suppress: LruCache::new(cfg.max_suppression_keys.max(1)),
            key: String::new(),
            default_window_s: cfg.suppression_window_s,
            rule_window_s: cfg.rule_suppression_s.clone(),
            max_evidence: cfg.max_evidence,
            counters: GateCounters::default(),
        }
    }

    /// Suppression keys remembered now.
    pub(crate) fn keys(&self) -> usize {
        self.suppress.len()
    }

    pub(crate) fn is_disabled(&self, rule: Rule) -> bool {
        self.disabled & rule.bit() != 0
    }

    fn window_ns(&self, rule: Rule) -> i64 {
        secs_ns(
            self.rule_window_s
                .get(rule.id())
                .copied()
                .unwrap_or(self.default_window_s),
        )
    }

    /// Writes `rule-id|part|part...` into the lookup buffer.
    fn set_key(&mut self, rule: Rule, parts: &[&str]) {
        self.key.clear();
        self.key.push_str(rule.id());
        for part in parts {
            self.key.push('|');
            self.key.push_str(part);
        }
    }

    /// Whether an alert of `rule` under the key `parts` joined by `|` is out of its
    /// suppression window at `ts`. Builds no string of its own (a leaky server asks on
    /// every response).
    pub(crate) fn allowed(&mut self, rule: Rule, parts: &[&str], ts: i64) -> bool {
        let window = self.window_ns(rule);
        self.set_key(rule, parts);
        match self.suppress.peek(self.key.as_str()) {
            Some(&last) => ts.saturating_sub(last) >= window,
            None => true,
        }
    }

    /// Counts an alert a detector did not build because [`Gate::allowed`] said no.
    pub(crate) fn count_suppressed(&mut self) {
        self.counters.alerts_suppressed += 1;
    }

    /// Starts the suppression window of `rule` under `key` at `ts`.
    fn mark(&mut self, rule: Rule, key: &str, ts: i64) {
        self.set_key(rule, &[key]);
        if let Some(last) = self.suppress.get_mut(self.key.as_str()) {
            *last = ts;
            return;
        }
        if self.suppress.len() >= self.suppress.capacity() && self.suppress.remove_lru().is_some() {
            self.counters.suppression_keys_evicted += 1;
        }
        self.suppress.insert(self.key.clone(), ts);
    }

    /// Applies disabling and suppression to `found` (in order), then emits into `out`.
    pub(crate) fn emit(&mut self, found: &mut Vec<Finding>, out: &mut Vec<Alert>) {
        for f in found.drain(..) {
            let rule = f.alert.rule;
            if self.is_disabled(rule) {
                self.counters.alerts_disabled += 1;
                continue;
            }
            let ts = f.alert.ts_ns;
            if !f.keys.iter().any(|k| self.allowed(rule, &[k], ts)) {
                self.counters.alerts_suppressed += 1;
                continue;
            }
            for k in &f.keys {
                self.mark(rule, k, ts);
            }
            self.finish_alert(f.alert, &f.keys, out);
        }
    }

    /// Gives the alert its id, caps its evidence, counts it and emits it.
    fn finish_alert(&mut self, mut a: Alert, keys: &[String], out: &mut Vec<Alert>) {
        a.id = alert_id(a.rule, keys, a.ts_ns);
        a.evidence.truncate(self.max_evidence);
        self.counters.alerts += 1;
        *self
            .counters
            .alerts_by_rule
            .entry(a.rule.id().to_string())
            .or_insert(0) += 1;
        out.push(a);
    }
}

/// The id of an alert of `rule` under the suppression `keys` at packet time `ts_ns`: the
/// suppression window it opens. It depends on nothing else, neither on what other alerts
/// came before nor on how the input was split or ordered, so a replayed or duplicated input
/// gives the same id, and a consumer can drop an alert whose id it has seen. Within a run
/// ids are unique: every suppression window is at least a second, so one rule and key
/// cannot fire twice at one packet time (unless the key was evicted from a full
/// suppression table in between, and then the alert is the same one again).
pub(crate) fn alert_id(rule: Rule, keys: &[String], ts_ns: i64) -> String {
    let mut h = StableHasher::new();
    h.part(rule.id().as_bytes());
    h.part(&ts_ns.to_le_bytes());
    for k in keys {
        h.part(k.as_bytes());
    }
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_ids_depend_on_rule_keys_and_time_only() {
        let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let id = alert_id(Rule::ObjectEnumeration, &keys(&["10.0.0.1|/items/{id}"]), 7);
        assert_eq!(id.len(), 16);
        assert_eq!(
            id,
            alert_id(Rule::ObjectEnumeration, &keys(&["10.0.0.1|/items/{id}"]), 7)
        );
        for other in [
            alert_id(Rule::AuthFailureBurst, &keys(&["10.0.0.1|/items/{id}"]), 7),
            alert_id(Rule::ObjectEnumeration, &keys(&["10.0.0.2|/items/{id}"]), 7),
            alert_id(Rule::ObjectEnumeration, &keys(&["10.0.0.1|/items/{id}"]), 8),
            alert_id(
                Rule::ObjectEnumeration,
                &keys(&["10.0.0.1|", "/items/{id}"]),
                7,
            ),
        ] {
            assert_ne!(id, other);
        }
    }
}
