//! Endpoint inventory: every (host, method, path template) seen, with counts, status mix,
//! content types, auth schemes, query parameter names, clients and body sizes. Bounded;
//! saved and loaded as JSON; exported as OpenAPI 3.0 (see [`crate::openapi`]).

use foldhash::HashMap;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::config::{InventoryConfig, TemplatingConfig};
use crate::record::TxRecord;
use crate::template::{LearnedVariable, Templated, Templater};
use apitap_core::text::{lower_ascii, percent_decode, split_ascii};

/// Identity of an endpoint.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EndpointKey {
    /// Host (empty when the requests had no Host header).
    pub host: String,
    /// Method (upper case).
    pub method: String,
    /// Path template (`/users/{id}`).
    pub template: String,
}

impl EndpointKey {
    /// `METHOD /template`, as in `apitap.endpoint`.
    pub fn endpoint(&self) -> String {
        let mut name = String::with_capacity(self.method.len() + 1 + self.template.len());
        name.push_str(&self.method);
        name.push(' ');
        name.push_str(&self.template);
        name
    }

    /// `host|METHOD /template`: the endpoint within its host, the key that alerts about
    /// one endpoint are suppressed under.
    pub fn scoped(&self) -> String {
        let mut key =
            String::with_capacity(self.host.len() + 2 + self.method.len() + self.template.len());
        key.push_str(&self.host);
        key.push('|');
        key.push_str(&self.method);
        key.push(' ');
        key.push_str(&self.template);
        key
    }
}

/// Min / max / sum of a size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeStats {
    /// Smallest.
    pub min: u64,
    /// Largest.
    pub max: u64,
    /// Sum (saturating).
    pub sum: u64,
}

impl SizeStats {
    fn add(&mut self, v: u64, first: bool) {
        if first {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.sum = self.sum.saturating_add(v);
    }

    fn merge(&mut self, o: &SizeStats) {
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sum = self.sum.saturating_add(o.sum);
    }
}

/// What the inventory knows about one endpoint. Maps are bounded by
/// `inventory.max_values_per_field` (further values are not added; `*_capped` says so).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointStats {
    /// Host.
    pub host: String,
    /// Method.
    pub method: String,
    /// Path template.
    pub template: String,
    /// First request (packet time, Unix ns).
    pub first_seen_ns: i64,
    /// Last request (packet time, Unix ns).
    pub last_seen_ns: i64,
    /// Transactions.
    pub count: u64,
    /// Transactions by status class: `1xx` .. `5xx`, `none` (no response).
    pub status_classes: BTreeMap<String, u64>,
    /// Transactions by exact status code.
    pub status_codes: BTreeMap<u16, u64>,
    /// Request media types (lower case, no parameters).
    pub request_content_types: BTreeMap<String, u64>,
    /// Response media types (lower case, no parameters).
    pub response_content_types: BTreeMap<String, u64>,
    /// Auth schemes: `none`, `basic`, `bearer`, `bearer_jwt`, `digest`, `api_key_header`,
    /// `api_key_query`, `cookie`, `other`.
    pub auth_schemes: BTreeMap<String, u64>,
    /// Query parameter names (percent-decoded).
    pub query_params: BTreeMap<String, u64>,
    /// Distinct clients (IP), up to `max_clients_per_endpoint`.
    pub clients: BTreeSet<IpAddr>,
    /// More clients than `clients` holds were seen.
    pub clients_capped: bool,
    /// The sensors that saw the endpoint (`observer.name` of its events), at the centre of
    /// a fleet; up to `max_values_per_field`, further ones set `fields_capped`. Empty on a
    /// sensor itself.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub sensors: BTreeSet<String>,
    /// Some field map reached its bound and dropped values.
    pub fields_capped: bool,
    /// Request body sizes.
    pub request_body_bytes: SizeStats,
    /// Response body sizes.
    pub response_body_bytes: SizeStats,
}

impl EndpointStats {
    fn new(key: &EndpointKey, ts: i64) -> EndpointStats {
        EndpointStats {
            host: key.host.clone(),
            method: key.method.clone(),
            template: key.template.clone(),
            first_seen_ns: ts,
            last_seen_ns: ts,
            count: 0,
            status_classes: BTreeMap::new(),
            status_codes: BTreeMap::new(),
            request_content_types: BTreeMap::new(),
            response_content_types: BTreeMap::new(),
            auth_schemes: BTreeMap::new(),
            query_params: BTreeMap::new(),
            clients: BTreeSet::new(),
            clients_capped: false,
            sensors: BTreeSet::new(),
            fields_capped: false,
            request_body_bytes: SizeStats::default(),
            response_body_bytes: SizeStats::default(),
        }
    }

    /// The endpoint key.
    pub fn key(&self) -> EndpointKey {
        EndpointKey {
            host: self.host.clone(),
            method: self.method.clone(),
            template: self.template.clone(),
        }
    }

    fn record(&mut self, tx: &TxRecord, cfg: &InventoryConfig) {
        let first = self.count == 0;
        self.count += 1;
        self.first_seen_ns = self.first_seen_ns.min(tx.ts_ns);
        self.last_seen_ns = self.last_seen_ns.max(tx.ts_ns);
        let cap = cfg.max_values_per_field;
        let mut capped = false;
        let class = match tx.status {
            Some(s) => status_class(s),
            None => "none",
        };
        bump(&mut self.status_classes, class, cap, &mut capped);
        if let Some(s) = tx.status {
            if self.status_codes.len() < cap || self.status_codes.contains_key(&s) {
                *self.status_codes.entry(s).or_insert(0) += 1;
            } else {
                capped = true;
            }
        }
        if let Some(ct) = tx.request_content_type.as_deref().and_then(media_type) {
            bump(&mut self.request_content_types, &ct, cap, &mut capped);
        }
        if let Some(ct) = tx.response_content_type.as_deref().and_then(media_type) {
            bump(&mut self.response_content_types, &ct, cap, &mut capped);
        }
        for scheme in auth_schemes(tx) {
            bump(&mut self.auth_schemes, scheme, cap, &mut capped);
        }
        if let Some(q) = &tx.query {
            for (name, _) in query_pairs(q) {
                if !name.is_empty() {
                    bump(&mut self.query_params, &name, cap, &mut capped);
                }
            }
        }
        if let Some(sensor) = &tx.sensor {
            if !self.sensors.contains(sensor) {
                if self.sensors.len() < cap {
                    self.sensors.insert(sensor.clone());
                } else {
                    capped = true;
                }
            }
        }
        let ip = tx.client.ip();
        if !self.clients.contains(&ip) {
            if self.clients.len() < cfg.max_clients_per_endpoint {
                self.clients.insert(ip);
            } else {
                self.clients_capped = true;
            }
        }
        self.fields_capped |= capped;
        self.request_body_bytes.add(tx.request_body_bytes, first);
        self.response_body_bytes.add(tx.response_body_bytes, first);
    }

    fn merge(&mut self, o: &EndpointStats, cfg: &InventoryConfig) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            self.request_body_bytes = o.request_body_bytes;
            self.response_body_bytes = o.response_body_bytes;
        } else {
            self.request_body_bytes.merge(&o.request_body_bytes);
            self.response_body_bytes.merge(&o.response_body_bytes);
        }
        self.count += o.count;
        self.first_seen_ns = self.first_seen_ns.min(o.first_seen_ns);
        self.last_seen_ns = self.last_seen_ns.max(o.last_seen_ns);
        let cap = cfg.max_values_per_field;
        let mut capped = o.fields_capped;
        for (map, other) in [
            (&mut self.status_classes, &o.status_classes),
            (&mut self.request_content_types, &o.request_content_types),
            (&mut self.response_content_types, &o.response_content_types),
            (&mut self.auth_schemes, &o.auth_schemes),
            (&mut self.query_params, &o.query_params),
        ] {
            for (k, v) in other {
                if map.len() < cap || map.contains_key(k) {
                    *map.entry(k.clone()).or_insert(0) += v;
                } else {
                    capped = true;
                }
            }
        }
        for (k, v) in &o.status_codes {
            if self.status_codes.len() < cap || self.status_codes.contains_key(k) {
                *self.status_codes.entry(*k).or_insert(0) += v;
            } else {
                capped = true;
            }
        }
        for sensor in &o.sensors {
            if self.sensors.len() < cap {
                self.sensors.insert(sensor.clone());
            } else if !self.sensors.contains(sensor) {
                capped = true;
            }
        }
        for ip in &o.clients {
            if self.clients.len() < cfg.max_clients_per_endpoint {
                self.clients.insert(*ip);
            } else if !self.clients.contains(ip) {
                self.clients_capped = true;
            }
        }
        self.clients_capped |= o.clients_capped;
        self.fields_capped |= capped;
    }
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str, cap: usize, capped: &mut bool) {
    if let Some(v) = map.get_mut(key) {
        *v += 1;
    } else if map.len() < cap {
        map.insert(key.to_string(), 1);
    } else {
        *capped = true;
    }
}

/// `2xx` etc. for a status code (`other` outside 100-599).
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// Media type of a Content-Type value: lower case, without parameters.
pub fn media_type(ct: &str) -> Option<Cow<'_, str>> {
    let mt = ct.split(';').next().unwrap_or("").trim();
    if mt.is_empty() || mt.len() > 100 {
        return None;
    }
    Some(lower_ascii(mt))
}

/// Query string pairs, names and values percent-decoded (`+` as space). Names are lower
/// cased for matching by the callers that need it, not here.
pub fn query_pairs(q: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> + '_ {
    split_ascii(q, b'&').filter(|p| !p.is_empty()).map(|p| {
        let (n, v) = match p.bytes().position(|b| b == b'=') {
            Some(i) => (p.get(..i).unwrap_or(p), p.get(i + 1..).unwrap_or("")),
            None => (p, ""),
        };
        (percent_decode(n), percent_decode(v))
    })
}

/// True for a (lower-case) header name that carries an API key: `x-api-key`, `api-key`,
/// `apikey`, `x-apikey`, `x-auth-token`, `x-access-token`. A `match` compiles to a switch
/// on the length, so most names are turned down without comparing bytes.
pub fn is_api_key_header(name: &str) -> bool {
    matches!(
        name,
        "x-api-key" | "api-key" | "apikey" | "x-apikey" | "x-auth-token" | "x-access-token"
    )
}

/// Query parameter names that carry API keys (for the `api_key_query` auth scheme).
const API_KEY_PARAMS: &[&str] = &["api_key", "apikey", "key", "access_token", "token"];

/// An auth scheme a request shows. Declared in name order, the order
/// [`auth_schemes`] yields them in.
#[derive(Clone, Copy)]
enum AuthScheme {
    ApiKeyHeader,
    ApiKeyQuery,
    Basic,
    Bearer,
    BearerJwt,
    Cookie,
    Digest,
    None,
    Other,
}

impl AuthScheme {
    fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// Names of [`AuthScheme`], indexed by it (sorted).
const AUTH_SCHEME_NAMES: [&str; 9] = [
    "api_key_header",
    "api_key_query",
    "basic",
    "bearer",
    "bearer_jwt",
    "cookie",
    "digest",
    "none",
    "other",
];

/// Whether a bearer credential (what follows `Bearer `) is a JWT.
fn is_jwt(credential: &str) -> bool {
    // A JWT starts with `eyJ`: only such a credential is measured out.
    let credential = credential.trim_start();
    credential.starts_with("eyJ")
        && credential
            .split(char::is_whitespace)
            .next()
            .and_then(crate::sensitive::secret_value_kind)
            == Some("jwt")
}

/// The auth scheme name `name` as the inventory spells it, when it is one.
pub fn auth_scheme_name(name: &str) -> Option<&'static str> {
    AUTH_SCHEME_NAMES.iter().find(|n| **n == name).copied()
}

/// The auth schemes a request shows (at least `none`), each once, in name order: as the
/// scan found them (`tx.findings`, from a worker or an edge sensor), else from the headers
/// and query.
pub fn auth_schemes(tx: &TxRecord) -> impl Iterator<Item = &'static str> {
    let mut shown = match &tx.findings {
        Some(f) => f
            .auth_schemes
            .iter()
            .filter_map(|s| AUTH_SCHEME_NAMES.iter().position(|n| n == s))
            .fold(0u16, |bits, i| bits | 1 << i),
        None => observed_auth_schemes(tx),
    };
    if shown == 0 {
        shown |= AuthScheme::None.bit();
    }
    AUTH_SCHEME_NAMES
        .iter()
        .enumerate()
        .filter(move |(bit, _)| shown & (1 << bit) != 0)
        .map(|(_, name)| *name)
}

/// The auth schemes the raw headers and query of `tx` show, as [`AuthScheme`] bits (0 for
/// none).
fn observed_auth_schemes(tx: &TxRecord) -> u16 {
    // A bit per scheme: no allocation, no sort.
    let mut shown = 0u16;
    for (name, value) in tx.request_headers.iter() {
        match name {
            "authorization" => {
                // The first two white-space separated words: the scheme and the credential.
                let value = value.trim_start();
                let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
                let scheme = if scheme.eq_ignore_ascii_case("basic") {
                    AuthScheme::Basic
                } else if scheme.eq_ignore_ascii_case("bearer") {
                    if tx.auth_jwt || is_jwt(rest) {
                        AuthScheme::BearerJwt
                    } else {
                        AuthScheme::Bearer
                    }
                } else if scheme.eq_ignore_ascii_case("digest") {
                    AuthScheme::Digest
                } else {
                    AuthScheme::Other
                };
                shown |= scheme.bit();
            }
            "cookie" => shown |= AuthScheme::Cookie.bit(),
            n if is_api_key_header(n) => shown |= AuthScheme::ApiKeyHeader.bit(),
            _ => {}
        }
    }
    if let Some(q) = &tx.query {
        if query_pairs(q).any(|(n, v)| {
            !v.is_empty() && API_KEY_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(&n))
        }) {
            shown |= AuthScheme::ApiKeyQuery.bit();
        }
    }
    shown
}

/// Saved inventory (JSON via serde): what a live sensor keeps across restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventorySnapshot {
    /// Format version (1).
    pub format: u32,
    /// Endpoints, merged with the learned variables, sorted by key.
    pub endpoints: Vec<EndpointStats>,
    /// Learned variable segment positions.
    pub learned_variables: Vec<LearnedVariable>,
    /// Transactions not recorded because the endpoint table was full.
    pub overflow_transactions: u64,
    /// Encrypted services (TLS) by server name and port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_services: Vec<crate::tls::TlsService>,
}

/// Result of [`Inventory::observe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The endpoint.
    pub key: EndpointKey,
    /// Object key of the path (see [`Templated::object_key`]).
    pub object_key: Option<u64>,
    /// The endpoint is in the inventory (false: table full, or a 404-only endpoint).
    pub recorded: bool,
    /// The template holds a learned `{param}` (see [`Templated::learned`]).
    pub learned: bool,
}

/// The endpoint inventory (with its templater).
#[derive(Debug)]
pub struct Inventory {
    cfg: InventoryConfig,
    /// The path templater.
    pub templater: Templater,
    endpoints: HashMap<EndpointKey, EndpointStats>,
    /// Transactions whose endpoint was new while the table was full.
    pub overflow_transactions: u64,
    /// Transactions answered 404 on an endpoint not in the inventory (not recorded unless
    /// `include_404`).
    pub skipped_404: u64,
}

impl Inventory {
    /// An empty inventory.
    pub fn new(cfg: &InventoryConfig, tcfg: &TemplatingConfig) -> Inventory {
        Inventory {
            cfg: cfg.clone(),
            templater: Templater::new(tcfg),
            endpoints: HashMap::default(),
            overflow_transactions: 0,
            skipped_404: 0,
        }
    }

    /// Templates the transaction's path and records it.
    pub fn observe(&mut self, tx: &TxRecord) -> Observed {
        let host = tx.host.as_deref().unwrap_or("");
        let method = tx.method.to_ascii_uppercase();
        let learn = matches!(tx.status, Some(s) if s != 404);
        let Templated {
            template,
            object_key,
            learned,
        } = self.templater.template(host, &method, &tx.path, learn);
        let key = EndpointKey {
            host: host.to_string(),
            method,
            template,
        };
        let recorded = if let Some(e) = self.endpoints.get_mut(&key) {
            e.record(tx, &self.cfg);
            true
        } else if tx.status == Some(404) && !self.cfg.include_404 {
            self.skipped_404 += 1;
            false
        } else if self.endpoints.len() >= self.cfg.max_endpoints {
            self.overflow_transactions += 1;
            false
        } else {
            let mut e = EndpointStats::new(&key, tx.ts_ns);
            e.record(tx, &self.cfg);
            self.endpoints.insert(key.clone(), e);
            true
        };
        Observed {
            key,
            object_key,
            recorded,
            learned,
        }
    }

    /// Endpoints currently stored (before folding into learned variables).
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// No endpoint stored.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The stored record of an endpoint.
    pub fn get(&self, key: &EndpointKey) -> Option<&EndpointStats> {
        self.endpoints.get(key)
    }

    /// The sensors that saw the endpoint `endpoint` (`GET /users/{id}`, as alerts name it)
    /// of `host`; empty when it is not stored or no sensor is known.
    pub fn sensors_of(&self, host: &str, endpoint: &str) -> Option<&BTreeSet<String>> {
        let (method, template) = endpoint.split_once(' ')?;
        // A lookup key borrows nothing, so it is built; this runs per alert, not per
        // transaction.
        let key = EndpointKey {
            host: host.to_string(),
            method: method.to_string(),
            template: template.to_string(),
        };
        self.endpoints.get(&key).map(|e| &e.sensors)
    }

    /// Endpoints folded into the learned variables and sorted by key.
    pub fn endpoints(&self) -> Vec<EndpointStats> {
        let mut merged: BTreeMap<EndpointKey, EndpointStats> = BTreeMap::new();
        let mut stored: Vec<&EndpointStats> = self.endpoints.values().collect();
        stored.sort_by(|a, b| {
            (&a.host, &a.method, &a.template).cmp(&(&b.host, &b.method, &b.template))
        });
        for e in stored {
            let template = self
                .templater
                .apply_learned(&e.host, &e.method, &e.template);
            let key = EndpointKey {
                host: e.host.clone(),
                method: e.method.clone(),
                template,
            };
            match merged.get_mut(&key) {
                Some(m) => m.merge(e, &self.cfg),
                None => {
                    let mut m = e.clone();
                    m.template = key.template.clone();
                    merged.insert(key, m);
                }
            }
        }
        merged.into_values().collect()
    }

    /// The inventory to save.
    pub fn snapshot(&self) -> InventorySnapshot {
        InventorySnapshot {
            format: 1,
            endpoints: self.endpoints(),
            learned_variables: self.templater.learned(),
            overflow_transactions: self.overflow_transactions,
            tls_services: Vec::new(),
        }
    }

    /// Loads a saved inventory into this one (merging with what is there). Endpoints past
    /// `max_endpoints` are dropped and counted in `overflow_transactions` by their count.
    pub fn restore(&mut self, snap: &InventorySnapshot) {
        self.templater.restore(&snap.learned_variables);
        self.overflow_transactions += snap.overflow_transactions;
        for e in &snap.endpoints {
            let key = e.key();
            if let Some(m) = self.endpoints.get_mut(&key) {
                m.merge(e, &self.cfg);
            } else if self.endpoints.len() < self.cfg.max_endpoints {
                self.endpoints.insert(key, e.clone());
            } else {
                self.overflow_transactions += e.count;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn scoped_key_is_host_bar_endpoint() {
        let key = EndpointKey {
            host: "api.example.com".into(),
            method: "GET".into(),
            template: "/users/{id}".into(),
        };
        assert_eq!(key.endpoint(), "GET /users/{id}");
        assert_eq!(key.scoped(), "api.example.com|GET /users/{id}");
    }
    use std::net::SocketAddr;

    fn tx(ts: i64, client: &str, method: &str, path: &str, status: u16) -> TxRecord {
        TxRecord {
            ts_ns: ts,
            event_id: format!("e{ts}"),
            client: format!("{client}:40000").parse::<SocketAddr>().unwrap(),
            server: "10.0.0.1:80".parse().unwrap(),
            host: Some("api.example.com".into()),
            method: method.into(),
            path: path.into(),
            status: Some(status),
            ..TxRecord::default()
        }
    }

    fn inv() -> Inventory {
        Inventory::new(&InventoryConfig::default(), &TemplatingConfig::default())
    }

    #[test]
    fn sensors_are_named_bounded_and_merged() {
        let cfg = InventoryConfig {
            max_values_per_field: 2,
            ..InventoryConfig::default()
        };
        let mut inv = Inventory::new(&cfg, &TemplatingConfig::default());
        let mut t = tx(1, "192.0.2.1", "GET", "/a", 200);
        inv.observe(&t);
        let quiet = inv.endpoints();
        assert!(quiet[0].sensors.is_empty());
        let json = serde_json::to_string(&quiet[0]).unwrap();
        assert!(
            !json.contains("sensors"),
            "a sensor's own inventory is unchanged: {json}"
        );
        for name in ["edge-b", "edge-a", "edge-b", "edge-c"] {
            t.sensor = Some(name.into());
            inv.observe(&t);
        }
        let e = &inv.endpoints()[0];
        assert_eq!(e.sensors.iter().collect::<Vec<_>>(), ["edge-a", "edge-b"]);
        assert!(e.fields_capped, "the third sensor did not fit");
        let seen = inv.sensors_of("api.example.com", "GET /a").unwrap();
        assert_eq!(seen.len(), 2);
        assert!(inv.sensors_of("api.example.com", "GET /b").is_none());
        assert!(inv.sensors_of("api.example.com", "nospace").is_none());
        // The saved inventory keeps them, and a restore merges them.
        let snap = inv.snapshot();
        let back: InventorySnapshot =
            serde_json::from_str(&serde_json::to_string(&snap).unwrap()).unwrap();
        let mut other = Inventory::new(&InventoryConfig::default(), &TemplatingConfig::default());
        t.sensor = Some("edge-z".into());
        other.observe(&t);
        other.restore(&back);
        let e = &other.endpoints()[0];
        assert_eq!(
            e.sensors.iter().collect::<Vec<_>>(),
            ["edge-a", "edge-b", "edge-z"]
        );
    }

    #[test]
    fn auth_schemes_each_once_in_name_order() {
        let mut names = AUTH_SCHEME_NAMES;
        names.sort_unstable();
        assert_eq!(names, AUTH_SCHEME_NAMES, "bit order must be name order");
        let mut t = tx(1, "192.0.2.1", "GET", "/a", 200);
        assert_eq!(auth_schemes(&t).collect::<Vec<_>>(), ["none"]);
        t.request_headers = [
            ("cookie", "a=1"),
            ("authorization", "Digest x"),
            ("x-api-key", "k"),
            ("cookie", "b=2"),
            ("authorization", "Bearer abc"),
        ]
        .into_iter()
        .collect();
        t.query = Some("token=t&q=1".into());
        assert_eq!(
            auth_schemes(&t).collect::<Vec<_>>(),
            [
                "api_key_header",
                "api_key_query",
                "bearer",
                "cookie",
                "digest"
            ]
        );
        t.request_headers = [("authorization", "NTLM x"), ("authorization", "basic y")]
            .into_iter()
            .collect();
        t.query = Some("token=".into());
        assert_eq!(auth_schemes(&t).collect::<Vec<_>>(), ["basic", "other"]);
        // A bearer credential shaped like a JWT, after any white space, up to the next.
        for (value, scheme) in [
            (
                "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
                "bearer_jwt",
            ),
            (
                " bearer\t  eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln extra",
                "bearer_jwt",
            ),
            ("Bearer eyJhbGciOiJIUzI1NiJ9", "bearer"),
            ("Bearer tok-0000001c", "bearer"),
            ("Bearer", "bearer"),
            ("", "other"),
        ] {
            t.request_headers = [("authorization", value)].into_iter().collect();
            assert_eq!(auth_schemes(&t).collect::<Vec<_>>(), [scheme], "{value:?}");
        }
    }

    #[test]
    fn ten_thousand_ids_one_endpoint_and_fixed_paths_stay() {
        let mut inv = inv();
        for i in 0..10_000 {
            inv.observe(&tx(i, "192.0.2.1", "GET", &format!("/users/{i}"), 200));
        }
        for p in ["/users/me", "/users/search", "/health"] {
            inv.observe(&tx(20_000, "192.0.2.1", "GET", p, 200));
        }
        let eps = inv.endpoints();
        let names: Vec<String> = eps.iter().map(|e| e.key().endpoint()).collect();
        assert_eq!(
            names,
            [
                "GET /health",
                "GET /users/me",
                "GET /users/search",
                "GET /users/{id}"
            ]
        );
        let users = eps.iter().find(|e| e.template == "/users/{id}").unwrap();
        assert_eq!(users.count, 10_000);
        assert_eq!(users.first_seen_ns, 0);
        assert_eq!(users.last_seen_ns, 9_999);
    }

    #[test]
    fn learned_variables_merge_on_output() {
        let mut inv = inv();
        for i in 0..80 {
            let name = format!(
                "name{}{}",
                char::from(b'a' + (i % 26) as u8),
                "z".repeat(i as usize / 26)
            );
            inv.observe(&tx(i, "192.0.2.1", "GET", &format!("/repos/{name}"), 200));
        }
        let eps = inv.endpoints();
        assert_eq!(
            eps.len(),
            1,
            "{:?}",
            eps.iter().map(|e| &e.template).collect::<Vec<_>>()
        );
        assert_eq!(eps[0].template, "/repos/{param}");
        assert_eq!(eps[0].count, 80);
    }

    #[test]
    fn fields_are_recorded_and_bounded() {
        let cfg = InventoryConfig {
            max_endpoints: 2,
            max_clients_per_endpoint: 2,
            ..InventoryConfig::default()
        };
        let mut inv = Inventory::new(&cfg, &TemplatingConfig::default());
        let mut t = tx(5, "192.0.2.1", "post", "/login", 401);
        t.query = Some("next=%2Fhome&api_key=x".into());
        t.request_headers = [("authorization", "Basic [REDACTED]")]
            .into_iter()
            .collect();
        t.request_content_type = Some("application/JSON; charset=utf-8".into());
        t.request_body_bytes = 10;
        inv.observe(&t);
        let mut t2 = tx(7, "192.0.2.2", "POST", "/login", 200);
        t2.request_headers = [("authorization", "Bearer [REDACTED]")]
            .into_iter()
            .collect();
        t2.auth_jwt = true;
        t2.request_body_bytes = 30;
        inv.observe(&t2);
        inv.observe(&tx(8, "192.0.2.3", "POST", "/login", 200));
        inv.observe(&tx(9, "192.0.2.3", "GET", "/a", 200));
        inv.observe(&tx(9, "192.0.2.3", "GET", "/b", 200));
        inv.observe(&tx(9, "192.0.2.3", "GET", "/c", 404));
        assert_eq!(inv.overflow_transactions, 1);
        assert_eq!(inv.skipped_404, 1);
        let e = inv
            .get(&EndpointKey {
                host: "api.example.com".into(),
                method: "POST".into(),
                template: "/login".into(),
            })
            .unwrap();
        assert_eq!(e.count, 3);
        assert_eq!(e.status_classes.get("4xx"), Some(&1));
        assert_eq!(e.status_classes.get("2xx"), Some(&2));
        assert_eq!(e.status_codes.get(&401), Some(&1));
        assert_eq!(
            e.request_content_types.keys().collect::<Vec<_>>(),
            ["application/json"]
        );
        assert_eq!(
            e.auth_schemes.keys().collect::<Vec<_>>(),
            ["api_key_query", "basic", "bearer_jwt", "none"]
        );
        assert_eq!(
            e.query_params.keys().collect::<Vec<_>>(),
            ["api_key", "next"]
        );
        assert_eq!(e.clients.len(), 2);
        assert!(e.clients_capped);
        assert_eq!(
            e.request_body_bytes,
            SizeStats {
                min: 0,
                max: 30,
                sum: 40
            }
        );
    }

    #[test]
    fn snapshot_round_trip() {
        let mut a = inv();
        for i in 0..100 {
            a.observe(&tx(i, "192.0.2.1", "GET", &format!("/users/{i}"), 200));
        }
        let snap = a.snapshot();
        let json = serde_json::to_string(&snap).unwrap();
        let back: InventorySnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snap);
        let mut b = inv();
        b.restore(&back);
        b.observe(&tx(200, "192.0.2.9", "GET", "/users/5", 200));
        let eps = b.endpoints();
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].count, 101);
        assert_eq!(eps[0].clients.len(), 2);
    }
}
