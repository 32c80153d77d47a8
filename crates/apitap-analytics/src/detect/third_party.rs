//! Third parties: external destinations internal clients call, and partner networks
//! calling endpoints they did not use during learning, or failing authentication.

use super::{Burst, Detector, FailWindow, TxContext};
use crate::alert::Rule;
use crate::config::Cidr;
use crate::emit::{secs_ns, Finding, Gate};
use crate::inventory::EndpointKey;
use crate::record::TxRecord;
use apitap_core::stable_hash;
use foldhash::HashSet;
use serde_json::json;

/// Third parties: destinations and partner endpoints learned during the learning period.
#[derive(Debug)]
pub(crate) struct ThirdParty {
    pub internal: Vec<Cidr>,
    pub partners: Vec<Cidr>,
    known: HashSet<String>,
    partner_eps: HashSet<u64>,
    pub partner_fail: Vec<FailWindow>,
    max_dest: usize,
    max_partner_eps: usize,
    pub dest_overflow: u64,
    pub partner_overflow: u64,
}

/// Third-party events of one transaction.
#[derive(Default)]
pub(crate) struct ThirdPartyHits {
    /// New external destination (its name).
    pub new_destination: Option<String>,
    /// Partner (index) calling an endpoint unseen during learning.
    pub partner_new_endpoint: Option<usize>,
    /// Partner (index) auth failure burst.
    pub partner_auth: Option<(usize, Burst)>,
}

impl ThirdParty {
    pub(crate) fn new(
        internal: Vec<Cidr>,
        partners: Vec<Cidr>,
        max_dest: usize,
        max_partner_eps: usize,
    ) -> ThirdParty {
        let n = partners.len();
        ThirdParty {
            internal,
            partners,
            known: HashSet::default(),
            partner_eps: HashSet::default(),
            partner_fail: vec![FailWindow::default(); n],
            max_dest,
            max_partner_eps,
            dest_overflow: 0,
            partner_overflow: 0,
        }
    }

    pub(crate) fn sizes(&self) -> (usize, usize) {
        (self.known.len(), self.partner_eps.len())
    }

    fn remember_dest(&mut self, dest: &str) {
        if self.known.contains(dest) {
            return;
        }
        if self.known.len() < self.max_dest {
            self.known.insert(dest.to_string());
        } else {
            self.dest_overflow += 1;
        }
    }

    /// A TLS connection from `client` to `server`, named by its SNI (else the address):
    /// learned while `learning`, after that the name when an internal client reaches an
    /// external destination never seen (HTTP or TLS).
    pub(crate) fn tls_destination(
        &mut self,
        client: std::net::IpAddr,
        server: std::net::IpAddr,
        name: Option<&str>,
        learning: bool,
    ) -> Option<String> {
        if self.internal.is_empty() {
            return None;
        }
        let dest = name.map_or_else(|| server.to_string(), str::to_string);
        if learning {
            self.remember_dest(&dest);
            return None;
        }
        self.new_external(client, server, &dest).then_some(dest)
    }

    /// After learning: whether `client` reaching `dest` at `server` goes from inside to a
    /// destination outside never seen before (remembered from now on).
    fn new_external(
        &mut self,
        client: std::net::IpAddr,
        server: std::net::IpAddr,
        dest: &str,
    ) -> bool {
        let client_internal = self.internal.iter().any(|c| c.contains(client));
        let server_internal = self.internal.iter().any(|c| c.contains(server));
        if client_internal && !server_internal && !self.known.contains(dest) {
            self.remember_dest(dest);
            return true;
        }
        false
    }

    pub(crate) fn hits(
        &mut self,
        tx: &TxRecord,
        key: &EndpointKey,
        learning: bool,
        auth_threshold: usize,
        window_ns: i64,
        max_evidence: usize,
    ) -> ThirdPartyHits {
        let mut hits = ThirdPartyHits::default();
        if self.internal.is_empty() && self.partners.is_empty() {
            return hits;
        }
        let dest = tx
            .host
            .clone()
            .unwrap_or_else(|| tx.server.ip().to_string());
        let partner = self
            .partners
            .iter()
            .position(|c| c.contains(tx.client.ip()));
        let pkey = partner.map(|p| {
            stable_hash(&[
                &(p as u64).to_le_bytes(),
                key.host.as_bytes(),
                key.method.as_bytes(),
                key.template.as_bytes(),
            ])
        });
        if learning {
            self.remember_dest(&dest);
            if let Some(k) = pkey {
                if self.partner_eps.len() < self.max_partner_eps {
                    self.partner_eps.insert(k);
                } else if !self.partner_eps.contains(&k) {
                    self.partner_overflow += 1;
                }
            }
        } else {
            if self.new_external(tx.client.ip(), tx.server.ip(), &dest) {
                hits.new_destination = Some(dest.clone());
            }
            if let (Some(p), Some(k)) = (partner, pkey) {
                if !self.partner_eps.contains(&k) {
                    hits.partner_new_endpoint = Some(p);
                }
            }
        }
        if let (Some(p), Some(s)) = (partner, tx.auth_failure()) {
            if let Some(w) = self.partner_fail.get_mut(p) {
                if let Some(b) = w.push(tx, s, auth_threshold, window_ns, max_evidence) {
                    hits.partner_auth = Some((p, b));
                }
            }
        }
        hits
    }
}

impl Detector for ThirdParty {
    fn observe(&mut self, cx: &TxContext<'_>, _: &mut Gate, out: &mut Vec<Finding>) {
        let (tx, window_s) = (cx.tx, cx.cfg.auth.window_s);
        let hits = self.hits(
            tx,
            cx.key,
            cx.learning,
            cx.cfg.third_party.partner_auth_failures,
            secs_ns(window_s),
            cx.cfg.max_evidence,
        );
        let client = tx.client.ip();
        if let Some(dest) = hits.new_destination {
            let mut alert = cx.alert(
                Rule::NewExternalDestination,
                format!(
                    "Internal client {client} contacted a new external API destination {dest} ({})",
                    tx.server
                ),
            );
            alert.client = Some(client);
            alert.host = Some(dest.clone());
            out.push(Finding::new(alert, dest));
        }
        let partner_name = |p: usize| {
            self.partners
                .get(p)
                .map(|c| c.to_string())
                .unwrap_or_default()
        };
        if let Some(p) = hits.partner_new_endpoint {
            let partner = partner_name(p);
            let mut alert = cx.alert(
                Rule::PartnerNewEndpoint,
                format!(
                    "Partner network {partner} called {}, which it did not use during learning",
                    cx.endpoint
                ),
            );
            alert.client = Some(client);
            alert.details.insert("partner".into(), json!(partner));
            out.push(Finding::new(alert, format!("{partner}|{}", cx.scoped)));
        }
        if let Some((p, burst)) = hits.partner_auth {
            let partner = partner_name(p);
            let mut alert = cx.alert(
                Rule::PartnerAuthFailures,
                format!(
                    "Partner network {partner}: {} authentication failures within {window_s} s",
                    burst.count
                ),
            );
            alert.client = Some(client);
            burst.fill(&mut alert);
            alert.details.insert("partner".into(), json!(partner));
            out.push(Finding::new(alert, partner));
        }
    }
}
