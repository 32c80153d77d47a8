//! The OpenAPI spec against traffic: undocumented endpoints (shadow), deprecated
//! operations and superseded versions still answering (zombie), undocumented statuses
//! (drift).

use super::{Detector, TxContext};
use crate::alert::Rule;
use crate::emit::{Finding, Gate};
use crate::spec::{ApiSpec, SpecMatch};
use foldhash::HashSet;
use serde_json::json;

/// The spec-diff detector; does nothing without a spec.
pub(crate) struct SpecDiff {
    pub spec: Option<ApiSpec>,
    /// Hosts the spec covers (lower case); empty: every host.
    hosts: HashSet<String>,
    /// Transactions matched to a spec operation.
    pub matched: u64,
    /// Transactions matching no spec operation.
    pub unmatched: u64,
}

impl SpecDiff {
    pub(crate) fn new(hosts: &[String]) -> SpecDiff {
        SpecDiff {
            spec: None,
            hosts: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            matched: 0,
            unmatched: 0,
        }
    }
}

impl Detector for SpecDiff {
    fn observe(&mut self, cx: &TxContext<'_>, _: &mut Gate, out: &mut Vec<Finding>) {
        let Some(spec) = &self.spec else {
            return;
        };
        let tx = cx.tx;
        if !self.hosts.is_empty() {
            let host_ok = tx.host.as_ref().is_some_and(|h| self.hosts.contains(h));
            if !host_ok && !self.hosts.contains(&tx.server.ip().to_string()) {
                return;
            }
        }
        let endpoint = cx.endpoint;
        let ok2xx = matches!(tx.status, Some(200..=299));
        match spec.match_request(&tx.method, &tx.path) {
            SpecMatch::Operation(op) => {
                self.matched += 1;
                if op.deprecated && ok2xx {
                    let mut a = cx.alert(
                        Rule::DeprecatedOperation,
                        format!(
                            "Deprecated operation {} still answers {} ({endpoint})",
                            op.display(),
                            tx.status.unwrap_or(0)
                        ),
                    );
                    a.details
                        .insert("spec_operation".into(), json!(op.display()));
                    out.push(Finding::new(a, cx.scoped.to_string()));
                }
                if let Some(s) = tx.status {
                    if !op.documents(s) {
                        let mut a = cx.alert(
                            Rule::UndocumentedStatus,
                            format!(
                                "{} answered {s}, which the spec does not document for it",
                                op.display()
                            ),
                        );
                        a.details
                            .insert("spec_operation".into(), json!(op.display()));
                        a.details.insert("status".into(), json!(s));
                        out.push(Finding::new(a, format!("{}|{s}", cx.scoped)));
                    }
                }
            }
            m => {
                self.unmatched += 1;
                if m == SpecMatch::MethodNotDocumented && tx.method.eq_ignore_ascii_case("OPTIONS")
                {
                    return; // CORS preflight on a documented path
                }
                if ok2xx {
                    if let Some(sup) = spec.superseded(&tx.path) {
                        let mut a = cx.alert(
                            Rule::SupersededVersion,
                            format!(
                                "{endpoint} uses API version v{} while the spec documents v{}, and it still answers {}",
                                sup.requested, sup.current, tx.status.unwrap_or(0)
                            ),
                        );
                        a.details
                            .insert("requested_version".into(), json!(sup.requested));
                        a.details
                            .insert("current_version".into(), json!(sup.current));
                        if let Some(s) = sup.successor {
                            a.details.insert("successor".into(), json!(s));
                        }
                        out.push(Finding::new(a, cx.scoped.to_string()));
                        return;
                    }
                }
                if let Some(s) = tx.status {
                    if !cx.cfg.spec.shadow_ignore_status.contains(&s) {
                        let why = if m == SpecMatch::MethodNotDocumented {
                            "method not documented for this path"
                        } else {
                            "path not documented"
                        };
                        let mut a = cx.alert(
                            Rule::ShadowEndpoint,
                            format!("Undocumented endpoint {endpoint} answered {s} ({why})"),
                        );
                        a.details.insert("reason".into(), json!(why));
                        a.details.insert("status".into(), json!(s));
                        out.push(Finding::new(a, cx.scoped.to_string()));
                    }
                }
            }
        }
    }
}
