//! Misuse detectors: auth failure bursts, object id enumeration (BOLA), secrets in URLs,
//! sensitive data, version banners, third parties. All state is bounded; evictions are
//! counted.

use foldhash::HashSet;
use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use hashlink::LruCache;

use crate::alert::Alert;
use crate::config::Cidr;
use crate::inventory::{media_type, query_pairs, EndpointKey};
use crate::record::{Headers, TxRecord};
use crate::sensitive::{secret_value_kind, Scanner, SensitiveKind};
use apitap_core::stable_hash;
use apitap_core::text::split_ascii;

/// Failures of one actor in a sliding window (at most `threshold` kept).
#[derive(Clone, Debug, Default)]
pub(crate) struct FailWindow {
    times: VecDeque<(i64, u16)>,
    evidence: VecDeque<String>,
}

/// What a [`FailWindow`] reports when it reaches its threshold.
pub(crate) struct Burst {
    pub count: u64,
    pub start_ns: i64,
    pub end_ns: i64,
    pub by_status: BTreeMap<String, u64>,
    pub evidence: Vec<String>,
}

impl Burst {
    /// Puts the burst's window, count, counts by status and evidence into `a`.
    pub(crate) fn fill(self, a: &mut Alert) {
        a.window_start_ns = self.start_ns;
        a.window_end_ns = self.end_ns;
        a.count = self.count;
        a.counts = self.by_status;
        a.evidence = self.evidence;
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
        self.times.push_back((tx.ts_ns, status));
        while self.times.len() > threshold {
            self.times.pop_front();
        }
        let horizon = tx.ts_ns.saturating_sub(window_ns);
        while self.times.front().is_some_and(|(t, _)| *t < horizon) {
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
        for (_, s) in &self.times {
            *by_status.entry(s.to_string()).or_insert(0) += 1;
        }
        Some(Burst {
            count: self.times.len() as u64,
            start_ns: self.times.front().map_or(tx.ts_ns, |(t, _)| *t),
            end_ns: tx.ts_ns,
            by_status,
            evidence: self.evidence.iter().cloned().collect(),
        })
    }
}

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

    pub(crate) fn observe(
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
        let Some(status @ (401 | 403)) = tx.status else {
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

#[derive(Clone, Debug, Default)]
struct BolaState {
    ids: VecDeque<(i64, u64, u16)>,
    set: HashSet<u64>,
    evidence: VecDeque<String>,
}

/// Object id enumeration per (client, endpoint).
#[derive(Debug)]
pub(crate) struct BolaDetector {
    map: LruCache<u64, BolaState>,
    pub evicted: u64,
}

impl BolaDetector {
    pub(crate) fn new(max_keys: usize) -> BolaDetector {
        BolaDetector {
            map: LruCache::new(max_keys.max(1)),
            evicted: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Counts a distinct object id; reports when the client reached `threshold`
    /// distinct ids of the endpoint within the window.
    pub(crate) fn observe(
        &mut self,
        tx: &TxRecord,
        key: &EndpointKey,
        object: u64,
        threshold: usize,
        window_ns: i64,
        max_evidence: usize,
    ) -> Option<Burst> {
        let ip = match tx.client.ip() {
            std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(a) => a.octets(),
        };
        let k = stable_hash(&[
            &ip,
            key.host.as_bytes(),
            key.method.as_bytes(),
            key.template.as_bytes(),
        ]);
        if !self.map.contains_key(&k) {
            if self.map.len() >= self.map.capacity() && self.map.remove_lru().is_some() {
                self.evicted += 1;
            }
            self.map.insert(k, BolaState::default());
        }
        let st = self.map.get_mut(&k)?;
        let horizon = tx.ts_ns.saturating_sub(window_ns);
        while let Some(&(t, id, _)) = st.ids.front() {
            if t >= horizon {
                break;
            }
            st.ids.pop_front();
            st.set.remove(&id);
        }
        if st.set.contains(&object) || st.set.len() >= threshold {
            return None;
        }
        st.set.insert(object);
        st.ids.push_back((tx.ts_ns, object, tx.status.unwrap_or(0)));
        st.evidence.push_back(tx.event_id.clone());
        while st.evidence.len() > max_evidence {
            st.evidence.pop_front();
        }
        if st.set.len() < threshold {
            return None;
        }
        let mut by_status = BTreeMap::new();
        for (_, _, s) in &st.ids {
            let class = if *s == 0 {
                "none"
            } else {
                crate::inventory::status_class(*s)
            };
            *by_status.entry(class.to_string()).or_insert(0) += 1;
        }
        Some(Burst {
            count: st.set.len() as u64,
            start_ns: st.ids.front().map_or(tx.ts_ns, |(t, _, _)| *t),
            end_ns: tx.ts_ns,
            by_status,
            evidence: st.evidence.iter().cloned().collect(),
        })
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

/// Counters of the sensitive-data scan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ScanCounters {
    pub bodies_scanned: u64,
    pub body_bytes_scanned: u64,
    pub bodies_skipped_binary: u64,
    pub bodies_truncated: u64,
}

/// Sensitive-data scan of one direction.
pub(crate) struct SensitiveScan {
    scanner: Scanner,
    skip_headers: HashSet<String>,
    scan_headers: bool,
    max_bytes: usize,
    pub counters: ScanCounters,
    /// Header values of one message, newline-separated (reused).
    header_buf: Vec<u8>,
}

fn binary_media(mt: &str) -> bool {
    ["image/", "audio/", "video/", "font/", "model/"]
        .iter()
        .any(|p| mt.starts_with(p))
        || matches!(
            mt,
            "application/octet-stream"
                | "application/zip"
                | "application/gzip"
                | "application/x-gzip"
                | "application/pdf"
                | "application/x-protobuf"
                | "application/protobuf"
                | "application/grpc"
                | "application/wasm"
        )
}

impl SensitiveScan {
    pub(crate) fn new(
        kinds: &[SensitiveKind],
        skip_headers: &[String],
        scan_headers: bool,
        max_bytes: usize,
    ) -> SensitiveScan {
        SensitiveScan {
            scanner: Scanner::new(kinds),
            skip_headers: skip_headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            scan_headers,
            max_bytes,
            counters: ScanCounters::default(),
            header_buf: Vec::new(),
        }
    }

    /// Counts by kind in the headers and the body sample of one direction.
    pub(crate) fn scan(
        &mut self,
        headers: &Headers,
        body: Option<&[u8]>,
        content_type: Option<&str>,
    ) -> BTreeMap<SensitiveKind, u64> {
        let mut counts = BTreeMap::new();
        if self.scan_headers {
            // One scan over the values joined by newlines (no pattern spans a newline)
            // instead of one per header: a regex search has a fixed cost per call.
            self.header_buf.clear();
            for (n, v) in headers.iter() {
                if v.len() >= 6 && !self.skip_headers.contains(n) {
                    self.header_buf.extend_from_slice(v.as_bytes());
                    self.header_buf.push(b'\n');
                }
            }
            if !self.header_buf.is_empty() {
                self.scanner.scan(&self.header_buf, &mut counts);
            }
        }
        if let Some(body) = body.filter(|b| !b.is_empty()) {
            let binary_type = content_type
                .and_then(media_type)
                .is_some_and(|mt| binary_media(&mt));
            let head = &body[..body.len().min(512)];
            if binary_type || head.contains(&0) {
                self.counters.bodies_skipped_binary += 1;
            } else {
                let n = body.len().min(self.max_bytes);
                if n < body.len() {
                    self.counters.bodies_truncated += 1;
                }
                self.counters.bodies_scanned += 1;
                self.counters.body_bytes_scanned += n as u64;
                self.scanner.scan(&body[..n], &mut counts);
            }
        }
        counts
    }
}

/// A response header that discloses software and a version: `(header, value)`.
/// `Server` counts when it carries a version number (`nginx/1.18.0`, `Apache/2.4.41`);
/// `X-Powered-By` (`PHP/7.2.1`, `Express`), `X-AspNet-Version`, `X-AspNetMvc-Version`
/// and `X-Generator` count whenever present.
pub(crate) fn version_banners(tx: &TxRecord) -> impl Iterator<Item = (&str, &str)> {
    tx.response_headers.iter().filter_map(|(n, v)| {
        let v = v.trim();
        let leaky = !v.is_empty()
            && match n {
                "server" => has_version(v),
                "x-powered-by" | "x-aspnet-version" | "x-aspnetmvc-version" | "x-generator" => true,
                _ => false,
            };
        leaky.then_some((n, v))
    })
}

/// `name/1.2`, `name 1.2`, `1.2.3`: a digit after `/`, or digit `.` digit.
fn has_version(v: &str) -> bool {
    let b = v.as_bytes();
    b.windows(2).any(|w| w[0] == b'/' && w[1].is_ascii_digit())
        || b.windows(3)
            .any(|w| w[0].is_ascii_digit() && w[1] == b'.' && w[2].is_ascii_digit())
}

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

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn observe(
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
            let client_internal = self.internal.iter().any(|c| c.contains(tx.client.ip()));
            let server_internal = self.internal.iter().any(|c| c.contains(tx.server.ip()));
            if client_internal && !server_internal && !self.known.contains(&dest) {
                hits.new_destination = Some(dest.clone());
                self.remember_dest(&dest);
            }
            if let (Some(p), Some(k)) = (partner, pkey) {
                if !self.partner_eps.contains(&k) {
                    hits.partner_new_endpoint = Some(p);
                }
            }
        }
        if let (Some(p), Some(s @ (401 | 403))) = (partner, tx.status) {
            if let Some(w) = self.partner_fail.get_mut(p) {
                if let Some(b) = w.push(tx, s, auth_threshold, window_ns, max_evidence) {
                    hits.partner_auth = Some((p, b));
                }
            }
        }
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banners() {
        let tx = TxRecord {
            response_headers: [
                ("server", "nginx/1.18.0"),
                ("x-powered-by", "Express"),
                ("content-type", "text/html"),
            ]
            .into_iter()
            .collect(),
            ..TxRecord::default()
        };
        assert_eq!(
            version_banners(&tx).collect::<Vec<_>>(),
            [("server", "nginx/1.18.0"), ("x-powered-by", "Express")]
        );
        let quiet = TxRecord {
            response_headers: [("server", "nginx")].into_iter().collect(),
            ..TxRecord::default()
        };
        assert_eq!(version_banners(&quiet).count(), 0);
        assert!(has_version("Apache/2.4.41 (Ubuntu)"));
        assert!(has_version("Microsoft-IIS/10.0"));
        assert!(!has_version("cloudflare"));
    }

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

    #[test]
    fn binary_bodies_are_skipped() {
        let mut s = SensitiveScan::new(&SensitiveKind::ALL, &[], true, 10);
        let c = s.scan(
            &Headers::default(),
            Some(b"a@example.com"),
            Some("image/png"),
        );
        assert!(c.is_empty());
        let c = s.scan(&Headers::default(), Some(b"\0a@example.com"), None);
        assert!(c.is_empty());
        assert_eq!(s.counters.bodies_skipped_binary, 2);
        // Truncation to max_bytes: the email after byte 10 is not seen.
        let c = s.scan(&Headers::default(), Some(b"0123456789 a@example.com"), None);
        assert!(c.is_empty());
        assert_eq!(s.counters.bodies_truncated, 1);
    }
}
