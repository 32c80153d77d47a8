//! API-security analytics for apitap.
//!
//! The pipeline feeds one [`TxRecord`] per HTTP transaction, in a deterministic order, from
//! one thread, to [`Analytics::process`]; it returns the [`Alert`]s that transaction
//! completed. Everything runs on packet time (`TxRecord::ts_ns`), never wall time, and the
//! same records give the same alerts, byte for byte.
//!
//! - Endpoint inventory with path templating ([`inventory`], [`template`]), saved and
//!   loaded as JSON, exported as OpenAPI 3.0 ([`openapi`]).
//! - OpenAPI spec diff ([`spec`]): shadow, zombie (deprecated / superseded version) and
//!   drift (undocumented status) findings.
//! - Per-endpoint baselines ([`baseline`]): rate spike, error bursts, latency spike,
//!   response-size jump.
//! - Misuse detectors: auth failure bursts, object id enumeration (BOLA), secrets in URLs,
//!   sensitive data in headers and bodies ([`sensitive`]), version banners, third parties.
//! - Suppression per (rule, client, endpoint) and bounded state everywhere, with overflow
//!   counters in [`AnalyticsStats`]; SARIF 2.1.0 output ([`sarif()`]).
//! - A fleet's centre ([`events`]): records read back from sensors' events, with what an
//!   edge sensor found in the raw bytes ([`EdgeFindings`]), merged by packet time.
//!
//! ```
//! use apitap_analytics::{Analytics, AnalyticsConfig, ApiSpec, TxRecord};
//!
//! let spec = ApiSpec::parse("openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths: {}\n").unwrap();
//! let mut analytics = Analytics::new(AnalyticsConfig::default()).unwrap().with_spec(spec);
//! let tx = TxRecord {
//!     ts_ns: 1_700_000_000_000_000_000,
//!     event_id: "f1-0".into(),
//!     client: "192.0.2.10:50000".parse().unwrap(),
//!     server: "198.51.100.1:80".parse().unwrap(),
//!     host: Some("api.example.com".into()),
//!     method: "GET".into(),
//!     path: "/internal/users/42".into(),
//!     status: Some(200),
//!     ..TxRecord::default()
//! };
//! let alerts = analytics.process(&tx);
//! assert_eq!(alerts[0].rule.id(), "APITAP-SHADOW-001");
//! println!("{}", alerts[0].to_json());
//! let tail = analytics.finish(); // end of input: closes the baseline buckets
//! assert!(tail.is_empty());
//! let _openapi = analytics.openapi(None);
//! let _stats = serde_json::to_value(analytics.stats()).unwrap();
//! ```

pub mod alert;
pub mod baseline;
pub mod config;
mod detect;
pub mod edge;
mod emit;
pub mod events;
mod http2;
pub mod inventory;
pub mod openapi;
pub mod record;
pub mod sarif;
pub mod sensitive;
pub mod spec;
pub mod template;
pub mod tls;

use apitap_core::Level;
use serde_json::Value;
use std::collections::BTreeMap;

pub use alert::{rfc3339_micros, severity_label, Alert, Rule};
pub use config::{AnalyticsConfig, AnalyticsMode, Cidr, ConfigError};
pub use edge::{EdgeScan, ScanCounters};
pub use http2::Http2Record;
pub use inventory::{EndpointKey, EndpointStats, Inventory, InventorySnapshot};
pub use openapi::inventory_openapi;
pub use record::{EdgeFindings, Headers, TxRecord};
pub use sarif::sarif;
pub use sensitive::SensitiveKind;
pub use spec::{ApiSpec, SpecError};
pub use tls::{CertFacts, TlsRecord, TlsService};

use baseline::Baselines;
use detect::auth::AuthDetector;
use detect::banner::Banners;
use detect::bola::BolaDetector;
use detect::exposure::{Exposure, Flow};
use detect::spec_diff::SpecDiff;
use detect::third_party::ThirdParty;
use detect::url_secrets::UrlSecrets;
use detect::{Detector, TxContext};
use emit::{secs_ns, Finding, Gate};

apitap_core::counters! {
    /// Counters and sizes of the analytics, for the run summary and metrics. Every bound that
    /// acted has a counter here; sizes of the moment are [`Level`]s.
    pub struct AnalyticsStats {
        /// Transactions processed.
        pub transactions: u64,
        /// Transactions whose time was before the clock (processed at the clock).
        pub out_of_order: u64,
        /// Alerts emitted.
        pub alerts: u64,
        /// Alerts emitted, by rule id.
        pub alerts_by_rule: BTreeMap<String, u64>,
        /// Alerts held back by suppression.
        pub alerts_suppressed: u64,
        /// Alerts of disabled rules (not emitted).
        pub alerts_disabled: u64,
        /// Endpoints stored in the inventory.
        pub endpoints: Level,
        /// Transactions of new endpoints not stored because the inventory was full.
        pub endpoints_overflow_transactions: u64,
        /// Transactions answered 404 on endpoints not in the inventory (not stored).
        pub endpoints_404_skipped: u64,
        /// Segment positions being learned.
        pub template_positions: Level,
        /// Learned `{param}` positions.
        pub template_variables: Level,
        /// Positions forgotten while learning (bound).
        pub template_positions_evicted: u64,
        /// Promotions not recorded (bound).
        pub template_variables_overflow: u64,
        /// Endpoint baselines.
        pub baselines: Level,
        /// Baselines forgotten (bound).
        pub baselines_evicted: u64,
        /// Clients tracked for auth failures.
        pub auth_clients: Level,
        /// Auth clients forgotten (bound).
        pub auth_clients_evicted: u64,
        /// (client, endpoint) pairs tracked for enumeration.
        pub bola_keys: Level,
        /// Enumeration pairs forgotten (bound).
        pub bola_keys_evicted: u64,
        /// Suppression keys remembered.
        pub suppression_keys: Level,
        /// Suppression keys forgotten (bound; such an alert may repeat early).
        pub suppression_keys_evicted: u64,
        /// Known destinations (third parties).
        pub destinations: Level,
        /// Destinations not remembered (bound).
        pub destinations_overflow: u64,
        /// Known (partner, endpoint) pairs.
        pub partner_endpoints: Level,
        /// Partner endpoints not remembered (bound).
        pub partner_endpoints_overflow: u64,
        /// Transactions matched to a spec operation.
        pub spec_matched: u64,
        /// Transactions matching no spec operation.
        pub spec_unmatched: u64,
        /// Body samples scanned for sensitive data.
        pub bodies_scanned: u64,
        /// Bytes scanned.
        pub body_bytes_scanned: u64,
        /// Body samples not scanned (binary).
        pub bodies_skipped_binary: u64,
        /// Body samples cut to `sensitive.max_scan_bytes`.
        pub bodies_truncated: u64,
        /// TLS connections processed.
        pub tls_connections: u64,
        /// HTTP/2 connections processed (attack indicators).
        pub http2_connections: u64,
        /// Encrypted services in the inventory.
        pub tls_services: Level,
        /// TLS connections of new services not recorded (`tls.max_services`).
        pub tls_services_overflow: u64,
        /// ALPN, version, cipher or fingerprint values past a service's set bound.
        pub tls_values_overflow: u64,
        /// Hosts whose learned fingerprints were forgotten (`tls.max_fingerprint_hosts`).
        pub tls_fingerprint_hosts_evicted: u64,
    }
}

/// The findings of `tx`: its own (scanned on a worker or an edge sensor), else a scan with
/// `edge` (built from `cfg` on first use). Adds what the scan did to `scanned`.
fn findings_of<'a>(
    tx: &'a TxRecord,
    edge: &mut Option<EdgeScan>,
    cfg: &AnalyticsConfig,
    scanned: &mut ScanCounters,
) -> std::borrow::Cow<'a, EdgeFindings> {
    match &tx.findings {
        Some(f) => {
            scanned.add(&tx.scanned);
            std::borrow::Cow::Borrowed(f.as_ref())
        }
        None => {
            let (found, by_scan) = edge.get_or_insert_with(|| EdgeScan::new(cfg)).findings(tx);
            scanned.add(&by_scan);
            std::borrow::Cow::Owned(found)
        }
    }
}

/// How the inventory names one transaction's endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Named<'a> {
    /// `METHOD /template`, the value of `apitap.endpoint`.
    pub endpoint: &'a str,
    /// A learned `{param}` is in the template, so it differs from the shape template of
    /// the path alone (which is what an event carries until it is renamed).
    pub learned: bool,
}

/// The analytics engine. Single-threaded; feed transactions in order.
pub struct Analytics {
    cfg: AnalyticsConfig,
    inventory: Inventory,
    baselines: Baselines,
    spec: SpecDiff,
    auth: AuthDetector,
    bola: BolaDetector,
    url_secrets: UrlSecrets,
    request_data: Exposure,
    response_data: Exposure,
    /// Scans records that come without findings (a sensor with fewer than 4 workers, HAR
    /// files, events of local sensors); built on first use.
    edge: Option<EdgeScan>,
    /// What the scans behind the findings taken did.
    scanned: ScanCounters,
    banners: Banners,
    third: ThirdParty,
    tls: tls::TlsAnalytics,
    tls_connections: u64,
    http2_connections: u64,
    /// Disabled rules, suppression, alert ids.
    gate: Gate,
    /// Findings of the current transaction (reused).
    found: Vec<Finding>,
    /// The scoped key of the last transaction; [`Analytics::process_into`] returns its
    /// endpoint part.
    endpoint_name: String,
    first_ns: Option<i64>,
    clock_ns: Option<i64>,
    transactions: u64,
    out_of_order: u64,
    /// A record named its sensor (this engine is the centre of a fleet): alerts name the
    /// sensors that saw them.
    named_sensors: bool,
}

impl Analytics {
    /// An engine with `cfg` (validated) and no spec.
    pub fn new(cfg: AnalyticsConfig) -> Result<Analytics, ConfigError> {
        cfg.validate()?;
        let cidrs = |v: &[String]| -> Result<Vec<Cidr>, ConfigError> {
            v.iter().map(|c| Cidr::parse(c)).collect()
        };
        let third = ThirdParty::new(
            cidrs(&cfg.third_party.internal_cidrs)?,
            cidrs(&cfg.third_party.partner_cidrs)?,
            cfg.third_party.max_destinations,
            cfg.third_party.max_partner_endpoints,
        );
        Ok(Analytics {
            inventory: Inventory::new(&cfg.inventory, &cfg.templating),
            baselines: Baselines::new(
                &cfg.baseline,
                cfg.learning_period_s,
                cfg.inventory.max_endpoints,
                cfg.max_evidence,
            ),
            spec: SpecDiff::new(&cfg.spec.hosts),
            auth: AuthDetector::new(cfg.auth.max_clients, &cfg.auth.login_keywords),
            bola: BolaDetector::new(cfg.bola.max_keys),
            url_secrets: UrlSecrets,
            request_data: Exposure::new(Flow::Request),
            response_data: Exposure::new(Flow::Response),
            edge: None,
            scanned: ScanCounters::default(),
            banners: Banners,
            third,
            tls: tls::TlsAnalytics::new(cfg.tls.max_services, cfg.tls.max_fingerprint_hosts),
            tls_connections: 0,
            http2_connections: 0,
            gate: Gate::new(&cfg),
            found: Vec::new(),
            endpoint_name: String::new(),
            first_ns: None,
            clock_ns: None,
            named_sensors: false,
            transactions: 0,
            out_of_order: 0,
            cfg,
        })
    }

    /// Starts the learning period at `ts_ns` (a fleet's first event, which a member of the
    /// centre may not own), unless it started earlier.
    pub fn set_learning_start(&mut self, ts_ns: i64) {
        if self.first_ns.is_none_or(|f| ts_ns < f) {
            self.first_ns = Some(ts_ns);
        }
    }

    /// Adds an OpenAPI spec to diff traffic against (replaces an earlier one).
    pub fn with_spec(mut self, spec: ApiSpec) -> Analytics {
        self.spec.spec = Some(spec);
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &AnalyticsConfig {
        &self.cfg
    }

    /// Processes one transaction; returns the alerts it completed (possibly including
    /// baseline alerts of other endpoints whose bucket the packet clock just closed).
    pub fn process(&mut self, tx: &TxRecord) -> Vec<Alert> {
        let mut out = Vec::new();
        self.process_into(tx, &mut out);
        out
    }

    /// [`Analytics::process`] appending to `out`. Returns `apitap.endpoint` as the
    /// inventory names the transaction, or `None` when the analytics are off or no
    /// request was seen.
    pub fn process_into(&mut self, tx: &TxRecord, out: &mut Vec<Alert>) -> Option<Named<'_>> {
        if !self.cfg.enabled {
            return None;
        }
        self.transactions += 1;
        match self.clock_ns {
            Some(c) if tx.ts_ns < c => self.out_of_order += 1,
            _ => self.clock_ns = Some(tx.ts_ns),
        }
        let first = *self.first_ns.get_or_insert(tx.ts_ns);
        let learning = tx.ts_ns.saturating_sub(first) < secs_ns(self.cfg.learning_period_s);
        self.named_sensors |= tx.sensor.is_some();
        let emitted = out.len();

        // The raw bytes were scanned where they were (a worker, an edge sensor), or are
        // scanned here.
        let findings = findings_of(tx, &mut self.edge, &self.cfg, &mut self.scanned);
        let findings = findings.as_ref();

        let obs = self.inventory.observe(tx);
        let key = &obs.key;
        if obs.recorded {
            self.baselines.observe(key, tx, &mut self.found);
        } else {
            let idx = tx.ts_ns.div_euclid(secs_ns(self.cfg.baseline.bucket_s));
            self.baselines.advance_to(idx, &mut self.found);
        }
        self.gate.emit(&mut self.found, out);

        let scoped = key.scoped();
        let endpoint_from = key.host.len() + 1;
        let requested = !tx.method.is_empty();
        let cx = TxContext {
            tx,
            findings,
            key,
            scoped: &scoped,
            endpoint: scoped.get(endpoint_from..).unwrap_or_default(),
            requested,
            object_key: obs.object_key,
            learning,
            cfg: &self.cfg,
        };
        // Every detector in a fixed order (the order of their alerts in the output);
        // static calls, not a list of trait objects: this runs for every transaction.
        let (gate, found) = (&mut self.gate, &mut self.found);
        self.request_data.observe(&cx, gate, found);
        self.response_data.observe(&cx, gate, found);
        self.spec.observe(&cx, gate, found);
        self.auth.observe(&cx, gate, found);
        self.bola.observe(&cx, gate, found);
        self.url_secrets.observe(&cx, gate, found);
        self.banners.observe(&cx, gate, found);
        self.third.observe(&cx, gate, found);
        self.gate.emit(&mut self.found, out);
        if self.named_sensors {
            name_sensors(&self.inventory, &mut out[emitted..], Some(tx));
        }
        if !requested {
            return None;
        }
        self.endpoint_name = scoped;
        Some(Named {
            endpoint: self.endpoint_name.get(endpoint_from..)?,
            learned: obs.learned,
        })
    }

    /// Edge mode: what the detectors that need raw bytes find in `tx` (the sensor puts
    /// these into the event, and the central analytics take them instead of scanning):
    /// the record's own findings (scanned on a worker), else a scan here. Counts the
    /// transaction and the scan.
    pub fn edge_findings(&mut self, tx: &TxRecord) -> EdgeFindings {
        if !self.cfg.enabled {
            return EdgeFindings::default();
        }
        self.transactions += 1;
        findings_of(tx, &mut self.edge, &self.cfg, &mut self.scanned).into_owned()
    }

    /// Processes one TLS connection (its event, when it ended): the encrypted-service
    /// inventory and the posture rules; appends the alerts to `out`.
    pub fn process_tls(&mut self, r: &TlsRecord, out: &mut Vec<Alert>) {
        if !self.cfg.enabled {
            return;
        }
        self.tls_connections += 1;
        match self.clock_ns {
            Some(c) if r.ts_ns < c => self.out_of_order += 1,
            _ => self.clock_ns = Some(r.ts_ns),
        }
        let first = *self.first_ns.get_or_insert(r.ts_ns);
        let learning = r.ts_ns.saturating_sub(first) < secs_ns(self.cfg.learning_period_s);
        self.tls
            .observe(r, learning, &mut self.gate, &mut self.found);
        // Third parties by server name when the HTTP inside is not visible (and, when it
        // is, by the same name the HTTP Host would give).
        if let (Some(client), Some(server)) = (r.client, r.server) {
            let name = r.server_name.as_deref();
            if let Some(dest) = self
                .third
                .tls_destination(client.ip(), server.ip(), name, learning)
            {
                let mut alert = tls::alert(
                    r,
                    Rule::NewExternalDestination,
                    format!(
                        "Internal client {} contacted a new external API destination {dest} ({server}, TLS)",
                        client.ip()
                    ),
                );
                alert.host = Some(dest.clone());
                self.found.push(Finding::new(alert, dest));
            }
        }
        self.gate.emit(&mut self.found, out);
    }

    /// Processes one HTTP/2 connection (its event, when it ended): the HTTP/2 attack
    /// indicators; appends the alerts to `out`.
    pub fn process_http2(&mut self, r: &Http2Record, out: &mut Vec<Alert>) {
        if !self.cfg.enabled {
            return;
        }
        self.http2_connections += 1;
        match self.clock_ns {
            Some(c) if r.ts_ns < c => self.out_of_order += 1,
            _ => self.clock_ns = Some(r.ts_ns),
        }
        http2::observe(r, &self.cfg.http2, &mut self.found);
        self.gate.emit(&mut self.found, out);
    }

    /// Encrypted services seen, by server name (or address) and port.
    pub fn tls_services(&self) -> Vec<TlsService> {
        self.tls.services().cloned().collect()
    }

    /// Advances the packet clock without a transaction (a quiet live link): closes the
    /// baseline buckets that ended before `now_ns`.
    pub fn tick(&mut self, now_ns: i64) -> Vec<Alert> {
        let mut found = Vec::new();
        if self.cfg.enabled && self.clock_ns.is_some_and(|c| now_ns > c) {
            self.clock_ns = Some(now_ns);
            let idx = now_ns.div_euclid(secs_ns(self.cfg.baseline.bucket_s));
            self.baselines.advance_to(idx, &mut found);
        }
        let mut out = Vec::new();
        self.gate.emit(&mut found, &mut out);
        if self.named_sensors {
            name_sensors(&self.inventory, &mut out, None);
        }
        out
    }

    /// End of input: closes every open baseline bucket and returns what that fires.
    pub fn finish(&mut self) -> Vec<Alert> {
        let mut found = Vec::new();
        if self.cfg.enabled {
            self.baselines.finish(&mut found);
        }
        let mut out = Vec::new();
        self.gate.emit(&mut found, &mut out);
        if self.named_sensors {
            name_sensors(&self.inventory, &mut out, None);
        }
        out
    }

    /// The inventory.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// The inventory to save (JSON via serde), encrypted services included.
    pub fn inventory_snapshot(&self) -> InventorySnapshot {
        let mut snap = self.inventory.snapshot();
        snap.tls_services = self.tls_services();
        snap
    }

    /// Loads a saved inventory (e.g. at start-up of a live sensor).
    pub fn restore_inventory(&mut self, snap: &InventorySnapshot) {
        self.inventory.restore(snap);
        self.tls.restore(&snap.tls_services);
    }

    /// The inventory as an OpenAPI 3.0 document (`host`: one host only).
    pub fn openapi(&self, host: Option<&str>) -> Value {
        inventory_openapi(
            &self.inventory.endpoints(),
            "apitap observed API inventory",
            host,
        )
    }

    /// Counters and sizes, read off the parts that keep them.
    pub fn stats(&self) -> AnalyticsStats {
        let g = &self.gate.counters;
        let (learning, vars) = self.inventory.templater.sizes();
        let templater = &self.inventory.templater.counters;
        let (dests, peps) = self.third.sizes();
        let mut s = AnalyticsStats {
            transactions: self.transactions,
            out_of_order: self.out_of_order,
            alerts: g.alerts,
            alerts_by_rule: g.alerts_by_rule.clone(),
            alerts_suppressed: g.alerts_suppressed,
            alerts_disabled: g.alerts_disabled,
            endpoints: Level(self.inventory.len() as u64),
            endpoints_overflow_transactions: self.inventory.overflow_transactions,
            endpoints_404_skipped: self.inventory.skipped_404,
            template_positions: Level(learning as u64),
            template_variables: Level(vars as u64),
            template_positions_evicted: templater.positions_evicted,
            template_variables_overflow: templater.variables_overflow,
            baselines: Level(self.baselines.len() as u64),
            baselines_evicted: self.baselines.evicted,
            auth_clients: Level(self.auth.len() as u64),
            auth_clients_evicted: self.auth.evicted,
            bola_keys: Level(self.bola.len() as u64),
            bola_keys_evicted: self.bola.evicted,
            suppression_keys: Level(self.gate.keys() as u64),
            suppression_keys_evicted: g.suppression_keys_evicted,
            destinations: Level(dests as u64),
            destinations_overflow: self.third.dest_overflow,
            partner_endpoints: Level(peps as u64),
            partner_endpoints_overflow: self.third.partner_overflow,
            spec_matched: self.spec.matched,
            spec_unmatched: self.spec.unmatched,
            tls_connections: self.tls_connections,
            http2_connections: self.http2_connections,
            tls_services: Level(self.tls.len() as u64),
            tls_services_overflow: self.tls.services_overflow,
            tls_values_overflow: self.tls.values_overflow,
            tls_fingerprint_hosts_evicted: self.tls.fingerprint_hosts_evicted,
            ..AnalyticsStats::default()
        };
        let c = &self.scanned;
        s.bodies_scanned = c.bodies_scanned;
        s.body_bytes_scanned = c.body_bytes_scanned;
        s.bodies_skipped_binary = c.bodies_skipped_binary;
        s.bodies_truncated = c.bodies_truncated;
        s
    }
}

/// At the centre of a fleet: names on each alert the sensors that saw its endpoint, else
/// the sensor of the transaction that fired it (`tx`). An alert that already names them
/// (a failure burst names the sensors of the failures it counted: they depend on the
/// client alone, not on what else the engine saw) keeps them.
fn name_sensors(inventory: &Inventory, alerts: &mut [Alert], tx: Option<&TxRecord>) {
    for alert in alerts.iter_mut().filter(|a| a.sensors.is_empty()) {
        let endpoint_sensors = alert
            .endpoint
            .as_deref()
            .and_then(|e| inventory.sensors_of(alert.host.as_deref().unwrap_or(""), e))
            .filter(|s| !s.is_empty());
        alert.sensors = match (endpoint_sensors, tx.and_then(|t| t.sensor.as_ref())) {
            (Some(seen), _) => seen.iter().cloned().collect(),
            (None, Some(sensor)) => vec![sensor.clone()],
            (None, None) => Vec::new(),
        };
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A transaction to `path` of api.example.com, seen by `sensor`.
    fn tx(ts_ns: i64, path: &str, sensor: Option<&str>) -> TxRecord {
        TxRecord {
            ts_ns,
            event_id: format!("e{ts_ns}"),
            client: "192.0.2.1:40000".parse().unwrap(),
            server: "10.0.0.1:80".parse().unwrap(),
            host: Some("api.example.com".into()),
            method: "GET".into(),
            path: path.into(),
            status: Some(200),
            sensor: sensor.map(String::from),
            ..TxRecord::default()
        }
    }

    #[test]
    fn alerts_at_the_centre_name_the_sensors_that_saw_their_endpoint() {
        let leak = "/hooks/ghp_abcdefghijklmnopqrstuvwxyz0123456789";
        // A sensor itself: no record names a sensor, no alert either.
        let mut local = Analytics::new(AnalyticsConfig::default()).unwrap();
        let mut out = Vec::new();
        local.process_into(&tx(1, leak, None), &mut out);
        assert!(!out.is_empty(), "a secret in the URL fires");
        assert!(out.iter().all(|a| a.sensors.is_empty()));
        assert!(out[0].to_json()["apitap"].get("sensors").is_none());

        // The centre: the endpoint was seen by edge-b, then edge-a sends the leak.
        let mut centre = Analytics::new(AnalyticsConfig::default()).unwrap();
        let mut out = Vec::new();
        centre.process_into(&tx(1, "/search", Some("edge-b")), &mut out);
        let mut out = Vec::new();
        let mut leaky = tx(2, "/search", Some("edge-a"));
        leaky.query = Some("api_key=abc".into());
        centre.process_into(&leaky, &mut out);
        assert!(!out.is_empty());
        for alert in &out {
            assert_eq!(alert.sensors, ["edge-a", "edge-b"], "{:?}", alert.rule);
            assert_eq!(
                alert.to_json()["apitap"]["sensors"],
                serde_json::json!(alert.sensors)
            );
        }
        // An alert whose endpoint the inventory does not hold names the sender.
        let mut alerts = vec![out[0].clone()];
        alerts[0].endpoint = Some("GET /elsewhere".into());
        alerts[0].sensors.clear();
        name_sensors(
            &centre.inventory,
            &mut alerts,
            Some(&tx(3, "/", Some("edge-c"))),
        );
        assert_eq!(alerts[0].sensors, ["edge-c"]);
        // What an alert already names (a burst's own sensors) stays.
        name_sensors(&centre.inventory, &mut alerts, None);
        assert_eq!(alerts[0].sensors, ["edge-c"]);
        alerts[0].sensors.clear();
        name_sensors(&centre.inventory, &mut alerts, None);
        assert!(alerts[0].sensors.is_empty());
        alerts[0].endpoint = out[0].endpoint.clone();
        name_sensors(&centre.inventory, &mut alerts, None);
        assert_eq!(alerts[0].sensors, out[0].sensors);
    }

    #[test]
    fn a_failure_burst_names_the_sensors_of_the_failures_it_counted() {
        let cfg = AnalyticsConfig::default();
        let mut centre = Analytics::new(cfg.clone()).unwrap();
        let mut out = Vec::new();
        // Another sensor saw the login endpoint succeed: not part of the burst.
        let mut ok = tx(1, "/api/login", Some("edge-z"));
        ok.method = "POST".into();
        centre.process_into(&ok, &mut out);
        for i in 0..cfg.auth.login_failures as i64 {
            let mut fail = tx(
                10 + i,
                "/api/login",
                Some(["edge-x", "edge-y"][i as usize % 2]),
            );
            fail.method = "POST".into();
            fail.status = Some(401);
            centre.process_into(&fail, &mut out);
        }
        let burst = out
            .iter()
            .find(|a| a.rule == Rule::LoginFailureBurst)
            .expect("a login burst");
        assert_eq!(burst.sensors, ["edge-x", "edge-y"]);
    }
}
