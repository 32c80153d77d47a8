//! Secrets in URLs: secret-named query parameters with a value, and values shaped like
//! credentials in the query or the path. Counted by kind; never the values.

use super::{Detector, TxContext};
use crate::alert::Rule;
use crate::emit::{Finding, Gate};
use crate::inventory::query_pairs;
use crate::record::TxRecord;
use crate::sensitive::secret_value_kind;
use apitap_core::text::split_ascii;
use foldhash::HashSet;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The secret-in-URL detector: alerts on what the scan ([`crate::edge::EdgeScan`]) found
/// with [`url_secrets`].
pub(crate) struct UrlSecrets;

impl Detector for UrlSecrets {
    fn observe(&mut self, cx: &TxContext<'_>, gate: &mut Gate, out: &mut Vec<Finding>) {
        if gate.is_disabled(Rule::SecretInUrl) {
            return;
        }
        let counts = &cx.findings.url_secrets;
        if counts.is_empty() {
            return;
        }
        let total: u64 = counts.values().sum();
        let kinds: Vec<&str> = counts.keys().map(String::as_str).collect();
        let mut alert = cx.alert(
            Rule::SecretInUrl,
            format!(
                "Secrets in the URL of {}: {} (values not recorded)",
                cx.endpoint,
                kinds.join(", ")
            ),
        );
        alert.client = Some(cx.tx.client.ip());
        alert.count = total;
        alert.counts = counts.clone();
        out.push(Finding::new(alert, cx.scoped.to_string()));
    }
}

/// Secrets in the URL: counts by `param:<name>` (a secret-named query parameter with a
/// value) and by value shape (`aws_access_key_id`, `jwt`, `github_token`, `slack_token`)
/// in query values and path segments. Never the values.
pub(crate) fn url_secrets(tx: &TxRecord, names: &HashSet<String>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    if let Some(q) = &tx.query {
        for (n, v) in query_pairs(q) {
            if v.is_empty() {
                continue;
            }
            let norm: Cow<'_, str> = if n.bytes().any(|b| b.is_ascii_uppercase() || b == b'-') {
                Cow::Owned(n.to_ascii_lowercase().replace('-', "_"))
            } else {
                Cow::Borrowed(&n)
            };
            if names.contains(norm.as_ref()) {
                *counts.entry(format!("param:{norm}")).or_insert(0) += 1;
            } else if let Some(kind) = secret_value_kind(&v) {
                *counts.entry(kind.to_string()).or_insert(0) += 1;
            }
        }
    }
    for seg in split_ascii(&tx.path, b'/').filter(|seg| seg.len() >= 15) {
        if let Some(kind) = secret_value_kind(seg) {
            *counts.entry(kind.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_secret_counts() {
        let names: HashSet<String> = ["api_key", "token"].iter().map(|s| s.to_string()).collect();
        let tx = TxRecord {
            path: "/hooks/ghp_abcdefghijklmnopqrstuvwxyz0123456789".into(),
            query: Some("API-Key=abc&token=&q=AKIAIOSFODNN7EXAMPLE&page=2".into()),
            ..TxRecord::default()
        };
        let c = url_secrets(&tx, &names);
        assert_eq!(c.get("param:api_key"), Some(&1));
        assert_eq!(c.get("param:token"), None, "empty value");
        assert_eq!(c.get("aws_access_key_id"), Some(&1));
        assert_eq!(c.get("github_token"), Some(&1));
        assert_eq!(c.len(), 3);
        let clean = TxRecord {
            path: "/search".into(),
            query: Some("q=shoes&page=2".into()),
            ..TxRecord::default()
        };
        assert!(url_secrets(&clean, &names).is_empty());
    }
}
