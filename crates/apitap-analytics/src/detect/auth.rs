//! Authentication failure bursts (401/403) per client: on login-like endpoints, and on
//! the whole API.

use super::{Burst, Detector, FailWindow, TxContext};
use crate::alert::Rule;
use crate::emit::{secs_ns, Finding, Gate};
use crate::record::TxRecord;
use hashlink::LruCache;
use std::net::IpAddr;

#[derive(Clone, Debug, Default)]
struct AuthState {
    login: FailWindow,
    any: FailWindow,
}

/// Auth failure bursts per client.
#[derive(Debug)]
pub(crate) struct AuthDetector {
    map: LruCache<IpAddr, AuthState>,
    pub evicted: u64,
    keywords: Vec<String>,
}

/// Which auth bursts a transaction completed.
pub(crate) struct AuthBursts {
    pub login: Option<Burst>,
    pub any: Option<Burst>,
}

impl AuthDetector {
    pub(crate) fn new(max_clients: usize, keywords: &[String]) -> AuthDetector {
        AuthDetector {
            map: LruCache::new(max_clients.max(1)),
            evicted: 0,
            keywords: keywords.iter().map(|k| k.to_ascii_lowercase()).collect(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the path looks like a login / token endpoint.
    pub(crate) fn login_like(&self, path: &str) -> bool {
        let lower = path.to_ascii_lowercase();
        self.keywords.iter().any(|k| lower.contains(k.as_str()))
    }

    pub(crate) fn burst(
        &mut self,
        tx: &TxRecord,
        login_threshold: usize,
        any_threshold: usize,
        window_ns: i64,
        max_evidence: usize,
    ) -> AuthBursts {
        let none = AuthBursts {
            login: None,
            any: None,
        };
        let Some(status) = tx.auth_failure() else {
            return none;
        };
        let login_like = self.login_like(&tx.path);
        let ip = tx.client.ip();
        if !self.map.contains_key(&ip) {
            if self.map.len() >= self.map.capacity() && self.map.remove_lru().is_some() {
                self.evicted += 1;
            }
            self.map.insert(ip, AuthState::default());
        }
        let Some(st) = self.map.get_mut(&ip) else {
            return none;
        };
        let login = if login_like {
            st.login
                .push(tx, status, login_threshold, window_ns, max_evidence)
        } else {
            None
        };
        let any = st
            .any
            .push(tx, status, any_threshold, window_ns, max_evidence);
        AuthBursts { login, any }
    }
}

impl Detector for AuthDetector {
    fn observe(&mut self, cx: &TxContext<'_>, _: &mut Gate, out: &mut Vec<Finding>) {
        let (tx, a) = (cx.tx, &cx.cfg.auth);
        let bursts = self.burst(
            tx,
            a.login_failures,
            a.any_failures,
            secs_ns(a.window_s),
            cx.cfg.max_evidence,
        );
        let client = tx.client.ip();
        for (rule, burst, what) in [
            (
                Rule::LoginFailureBurst,
                bursts.login,
                "login-like endpoints",
            ),
            (Rule::AuthFailureBurst, bursts.any, "the API"),
        ] {
            if let Some(b) = burst {
                let mut alert = cx.alert(
                    rule,
                    format!(
                        "{} authentication failures (401/403) for client {client} on {what} within {} s; last on {} {}",
                        b.count,
                        a.window_s,
                        tx.host.as_deref().unwrap_or(""),
                        cx.endpoint
                    ),
                );
                alert.client = Some(client);
                b.fill(&mut alert);
                out.push(Finding::new(alert, client.to_string()));
            }
        }
    }
}
