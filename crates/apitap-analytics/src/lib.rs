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
pub mod inventory;
pub mod openapi;
pub mod record;
pub mod sarif;
pub mod sensitive;
pub mod spec;
pub mod template;

use apitap_core::text::lower_ascii;
use apitap_core::{stable_hash, Level};
use foldhash::HashSet;
use std::collections::BTreeMap;

use hashlink::LruCache;
use serde_json::{json, Value};

pub use alert::{rfc3339_micros, severity_label, Alert, Rule};
pub use config::{AnalyticsConfig, Cidr, ConfigError};
pub use inventory::{EndpointKey, EndpointStats, Inventory, InventorySnapshot};
pub use openapi::inventory_openapi;
pub use record::{Headers, TxRecord};
pub use sarif::sarif;
pub use sensitive::SensitiveKind;
pub use spec::{ApiSpec, SpecError};

use baseline::{Baselines, Finding};
use detect::{AuthDetector, BolaDetector, SensitiveScan, ThirdParty};
use spec::SpecMatch;

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
    }
}

/// The analytics engine. Single-threaded; feed transactions in order.
pub struct Analytics {
    cfg: AnalyticsConfig,
    inventory: Inventory,
    spec: Option<ApiSpec>,
    spec_hosts: HashSet<String>,
    baselines: Baselines,
    auth: AuthDetector,
    bola: BolaDetector,
    url_names: HashSet<String>,
    req_scan: SensitiveScan,
    resp_scan: SensitiveScan,
    third: ThirdParty,
    /// Bit `rule as u32` set for each disabled rule (checked several times per transaction).
    disabled: u32,
    suppress: LruCache<String, i64>,
    /// The key of the current suppression lookup (see [`suppression_key`]).
    suppress_key: String,
    suppress_evicted: u64,
    /// The scoped key of the last transaction; [`Analytics::process_into`] returns its
    /// endpoint part.
    endpoint_name: String,
    first_ns: Option<i64>,
    clock_ns: Option<i64>,
    seq: u64,
    stats: AnalyticsStats,
}

/// Writes `rule-id|part|part...`, the key of the suppression table, into `buf` (a buffer
/// reused across transactions: building a key is on the path of every transaction).
fn suppression_key(buf: &mut String, rule: Rule, parts: &[&str]) {
    buf.clear();
    buf.push_str(rule.id());
    for part in parts {
        buf.push('|');
        buf.push_str(part);
    }
}

fn secs_ns(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX)
}

impl Analytics {
    /// An engine with `cfg` (validated) and no spec.
    pub fn new(cfg: AnalyticsConfig) -> Result<Analytics, ConfigError> {
        cfg.validate()?;
        let kinds: Vec<SensitiveKind> = cfg
            .sensitive
            .kinds
            .iter()
            .filter_map(|k| SensitiveKind::from_name(k))
            .collect();
        let cidrs = |v: &[String]| -> Result<Vec<Cidr>, ConfigError> {
            v.iter().map(|c| Cidr::parse(c)).collect()
        };
        let third = ThirdParty::new(
            cidrs(&cfg.third_party.internal_cidrs)?,
            cidrs(&cfg.third_party.partner_cidrs)?,
            cfg.third_party.max_destinations,
            cfg.third_party.max_partner_endpoints,
        );
        let scan = || {
            SensitiveScan::new(
                &kinds,
                &cfg.sensitive.skip_headers,
                cfg.sensitive.scan_headers,
                cfg.sensitive.max_scan_bytes,
            )
        };
        Ok(Analytics {
            inventory: Inventory::new(&cfg.inventory, &cfg.templating),
            spec: None,
            spec_hosts: cfg
                .spec
                .hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            baselines: Baselines::new(
                &cfg.baseline,
                cfg.learning_period_s,
                cfg.inventory.max_endpoints,
                cfg.max_evidence,
            ),
            auth: AuthDetector::new(cfg.auth.max_clients, &cfg.auth.login_keywords),
            bola: BolaDetector::new(cfg.bola.max_keys),
            url_names: cfg
                .url_secrets
                .param_names
                .iter()
                .map(|n| n.to_ascii_lowercase().replace('-', "_"))
                .collect(),
            req_scan: scan(),
            resp_scan: scan(),
            third,
            disabled: cfg
                .disabled_rules
                .iter()
                .filter_map(|r| Rule::from_id(r))
                .fold(0, |mask, rule| mask | rule.bit()),
            suppress: LruCache::new(cfg.max_suppression_keys.max(1)),
            suppress_key: String::new(),
            suppress_evicted: 0,
            endpoint_name: String::new(),
            first_ns: None,
            clock_ns: None,
            seq: 0,
            stats: AnalyticsStats::default(),
            cfg,
        })
    }

    /// Adds an OpenAPI spec to diff traffic against (replaces an earlier one).
    pub fn with_spec(mut self, spec: ApiSpec) -> Analytics {
        self.spec = Some(spec);
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
    /// inventory names the transaction (`METHOD /template`), or `None` when the analytics
    /// are off or no request was seen.
    pub fn process_into(&mut self, tx: &TxRecord, out: &mut Vec<Alert>) -> Option<&str> {
        if !self.cfg.enabled {
            return None;
        }
        self.stats.transactions += 1;
        match self.clock_ns {
            Some(c) if tx.ts_ns < c => self.stats.out_of_order += 1,
            _ => self.clock_ns = Some(tx.ts_ns),
        }
        let first = *self.first_ns.get_or_insert(tx.ts_ns);
        let learning = tx.ts_ns.saturating_sub(first) < secs_ns(self.cfg.learning_period_s);

        let obs = self.inventory.observe(tx);
        let key = &obs.key;
        let mut found: Vec<Finding> = Vec::new();
        if obs.recorded {
            self.baselines.observe(key, tx, &mut found);
        } else {
            let idx = tx.ts_ns.div_euclid(secs_ns(self.cfg.baseline.bucket_s));
            self.baselines.advance_to(idx, &mut found);
        }
        self.emit(found, out);

        // The endpoint name is the tail of the scoped key.
        let ep_key = key.scoped();
        let endpoint_from = key.host.len() + 1;
        let endpoint = ep_key.get(endpoint_from..).unwrap_or_default();
        // Without a request there is no endpoint to name.
        let requested = !tx.method.is_empty();
        let mut found: Vec<Finding> = Vec::new();
        let base = |rule: Rule, msg: String| Alert {
            rule,
            ts_ns: tx.ts_ns,
            severity: rule.default_severity(),
            id: String::new(),
            client: None,
            server: Some(tx.server),
            host: tx.host.clone(),
            endpoint: requested.then(|| endpoint.to_string()),
            window_start_ns: tx.ts_ns,
            window_end_ns: tx.ts_ns,
            count: 1,
            counts: BTreeMap::new(),
            details: BTreeMap::new(),
            evidence: vec![tx.event_id.clone()],
            message: msg,
        };

        // Spec diff.
        self.spec_diff(tx, endpoint, &ep_key, &base, &mut found);

        // Auth failure bursts.
        let max_ev = self.cfg.max_evidence;
        let bursts = self.auth.observe(
            tx,
            self.cfg.auth.login_failures,
            self.cfg.auth.any_failures,
            secs_ns(self.cfg.auth.window_s),
            max_ev,
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
                let mut a = base(
                    rule,
                    format!(
                        "{} authentication failures (401/403) for client {client} on {what} within {} s; last on {} {endpoint}",
                        b.count,
                        self.cfg.auth.window_s,
                        tx.host.as_deref().unwrap_or("")
                    ),
                );
                a.client = Some(client);
                b.fill(&mut a);
                found.push(Finding {
                    alert: a,
                    key: client.to_string(),
                });
            }
        }

        // Object id enumeration.
        if let Some(obj) = obs.object_key {
            if let Some(b) = self.bola.observe(
                tx,
                key,
                obj,
                self.cfg.bola.distinct_ids,
                secs_ns(self.cfg.bola.window_s),
                max_ev,
            ) {
                let mut a = base(
                    Rule::ObjectEnumeration,
                    format!(
                        "Client {client} requested {} distinct object ids of {endpoint} within {} s",
                        b.count, self.cfg.bola.window_s
                    ),
                );
                a.client = Some(client);
                b.fill(&mut a);
                found.push(Finding {
                    alert: a,
                    key: format!("{client}|{ep_key}"),
                });
            }
        }

        // Secrets in the URL.
        if !self.is_disabled(Rule::SecretInUrl) {
            let counts = detect::url_secrets(tx, &self.url_names);
            if !counts.is_empty() {
                let total: u64 = counts.values().sum();
                let kinds: Vec<&str> = counts.keys().map(String::as_str).collect();
                let mut a = base(
                    Rule::SecretInUrl,
                    format!(
                        "Secrets in the URL of {endpoint}: {} (values not recorded)",
                        kinds.join(", ")
                    ),
                );
                a.client = Some(client);
                a.count = total;
                a.counts = counts;
                found.push(Finding {
                    alert: a,
                    key: ep_key.clone(),
                });
            }
        }

        // Sensitive data, per direction; one suppression key per kind so a new kind on
        // the same endpoint still fires.
        for (rule, dir) in [
            (Rule::SensitiveDataRequest, "request"),
            (Rule::SensitiveDataResponse, "response"),
        ] {
            if self.is_disabled(rule) {
                continue;
            }
            let counts = if dir == "request" {
                self.req_scan.scan(
                    &tx.request_headers,
                    tx.request_body.as_deref(),
                    tx.request_content_type.as_deref(),
                )
            } else {
                self.resp_scan.scan(
                    &tx.response_headers,
                    tx.response_body.as_deref(),
                    tx.response_content_type.as_deref(),
                )
            };
            if counts.is_empty() {
                continue;
            }
            let window = self.window_ns(rule);
            let fresh: Vec<SensitiveKind> = counts
                .keys()
                .copied()
                .filter(|k| self.peek_allowed(rule, &[&ep_key, k.name()], tx.ts_ns, window))
                .collect();
            if fresh.is_empty() {
                self.stats.alerts_suppressed += 1;
                continue;
            }
            for k in counts.keys() {
                self.mark(rule, &[&ep_key, k.name()], tx.ts_ns);
            }
            let severity = counts
                .keys()
                .map(|k| k.severity())
                .max()
                .unwrap_or(rule.default_severity());
            let names: Vec<&str> = counts.keys().map(|k| k.name()).collect();
            let mut a = base(
                rule,
                format!(
                    "Sensitive data in the {dir} of {endpoint}: {} (values not recorded)",
                    names.join(", ")
                ),
            );
            if dir == "request" {
                a.client = Some(client);
            }
            a.severity = if dir == "request" {
                severity.saturating_sub(10).max(1)
            } else {
                severity
            };
            a.count = counts.values().sum();
            a.counts = counts
                .iter()
                .map(|(k, v)| (k.name().to_string(), *v))
                .collect();
            a.details.insert("direction".into(), json!(dir));
            // Suppression already applied per kind above.
            self.finish_alert(a, out);
        }

        // Version banners. A leaky server shows its banner on every response: the
        // suppression check comes before anything is built (emit checks again and marks).
        if !self.is_disabled(Rule::VersionBanner) {
            let window = self.window_ns(Rule::VersionBanner);
            let mut server_ip = None;
            for (name, value) in detect::version_banners(tx) {
                let server_id: &str = match tx.host.as_deref() {
                    Some(h) => h,
                    None => server_ip.get_or_insert_with(|| tx.server.ip().to_string()),
                };
                let value_key = lower_ascii(value);
                if !self.peek_allowed(
                    Rule::VersionBanner,
                    &[server_id, name, &value_key],
                    tx.ts_ns,
                    window,
                ) {
                    self.stats.alerts_suppressed += 1;
                    continue;
                }
                let key = format!("{server_id}|{name}|{value_key}");
                let shown: String = value.chars().take(128).collect();
                let mut a = base(
                    Rule::VersionBanner,
                    format!("{server_id} discloses its software in {name}: {shown}"),
                );
                a.details.insert("header".into(), json!(name));
                a.details.insert("banner".into(), json!(shown));
                found.push(Finding { alert: a, key });
            }
        }

        // Third parties.
        let hits = self.third.observe(
            tx,
            key,
            learning,
            self.cfg.third_party.partner_auth_failures,
            secs_ns(self.cfg.auth.window_s),
            max_ev,
        );
        if let Some(dest) = hits.new_destination {
            let mut a = base(
                Rule::NewExternalDestination,
                format!(
                    "Internal client {client} contacted a new external API destination {dest} ({})",
                    tx.server
                ),
            );
            a.client = Some(client);
            a.host = Some(dest.clone());
            found.push(Finding {
                alert: a,
                key: dest,
            });
        }
        if let Some(p) = hits.partner_new_endpoint {
            let partner = self
                .third
                .partners
                .get(p)
                .map(|c| c.to_string())
                .unwrap_or_default();
            let mut a = base(
                Rule::PartnerNewEndpoint,
                format!("Partner network {partner} called {endpoint}, which it did not use during learning"),
            );
            a.client = Some(client);
            a.details.insert("partner".into(), json!(partner));
            found.push(Finding {
                alert: a,
                key: format!("{partner}|{ep_key}"),
            });
        }
        if let Some((p, b)) = hits.partner_auth {
            let partner = self
                .third
                .partners
                .get(p)
                .map(|c| c.to_string())
                .unwrap_or_default();
            let mut a = base(
                Rule::PartnerAuthFailures,
                format!(
                    "Partner network {partner}: {} authentication failures within {} s",
                    b.count, self.cfg.auth.window_s
                ),
            );
            a.client = Some(client);
            b.fill(&mut a);
            a.details.insert("partner".into(), json!(partner));
            found.push(Finding {
                alert: a,
                key: partner,
            });
        }
        self.emit(found, out);
        if !requested {
            return None;
        }
        self.endpoint_name = ep_key;
        self.endpoint_name.get(endpoint_from..)
    }

    fn spec_diff(
        &mut self,
        tx: &TxRecord,
        endpoint: &str,
        ep_key: &str,
        base: &dyn Fn(Rule, String) -> Alert,
        found: &mut Vec<Finding>,
    ) {
        let Some(spec) = &self.spec else {
            return;
        };
        if !self.spec_hosts.is_empty() {
            let host_ok = tx
                .host
                .as_ref()
                .is_some_and(|h| self.spec_hosts.contains(h));
            if !host_ok && !self.spec_hosts.contains(&tx.server.ip().to_string()) {
                return;
            }
        }
        let ok2xx = matches!(tx.status, Some(200..=299));
        match spec.match_request(&tx.method, &tx.path) {
            SpecMatch::Operation(op) => {
                self.stats.spec_matched += 1;
                if op.deprecated && ok2xx {
                    let mut a = base(
                        Rule::DeprecatedOperation,
                        format!(
                            "Deprecated operation {} still answers {} ({endpoint})",
                            op.display(),
                            tx.status.unwrap_or(0)
                        ),
                    );
                    a.details
                        .insert("spec_operation".into(), json!(op.display()));
                    found.push(Finding {
                        alert: a,
                        key: ep_key.to_string(),
                    });
                }
                if let Some(s) = tx.status {
                    if !op.documents(s) {
                        let mut a = base(
                            Rule::UndocumentedStatus,
                            format!(
                                "{} answered {s}, which the spec does not document for it",
                                op.display()
                            ),
                        );
                        a.details
                            .insert("spec_operation".into(), json!(op.display()));
                        a.details.insert("status".into(), json!(s));
                        found.push(Finding {
                            alert: a,
                            key: format!("{ep_key}|{s}"),
                        });
                    }
                }
            }
            m => {
                self.stats.spec_unmatched += 1;
                if m == SpecMatch::MethodNotDocumented && tx.method.eq_ignore_ascii_case("OPTIONS")
                {
                    return; // CORS preflight on a documented path
                }
                if ok2xx {
                    if let Some(sup) = spec.superseded(&tx.path) {
                        let mut a = base(
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
                        found.push(Finding {
                            alert: a,
                            key: ep_key.to_string(),
                        });
                        return;
                    }
                }
                if let Some(s) = tx.status {
                    if !self.cfg.spec.shadow_ignore_status.contains(&s) {
                        let why = if m == SpecMatch::MethodNotDocumented {
                            "method not documented for this path"
                        } else {
                            "path not documented"
                        };
                        let mut a = base(
                            Rule::ShadowEndpoint,
                            format!("Undocumented endpoint {endpoint} answered {s} ({why})"),
                        );
                        a.details.insert("reason".into(), json!(why));
                        a.details.insert("status".into(), json!(s));
                        found.push(Finding {
                            alert: a,
                            key: ep_key.to_string(),
                        });
                    }
                }
            }
        }
    }

    fn is_disabled(&self, rule: Rule) -> bool {
        self.disabled & rule.bit() != 0
    }

    fn window_ns(&self, rule: Rule) -> i64 {
        secs_ns(
            self.cfg
                .rule_suppression_s
                .get(rule.id())
                .copied()
                .unwrap_or(self.cfg.suppression_window_s),
        )
    }

    /// Whether an alert of `rule` keyed by `parts` is out of its suppression window.
    fn peek_allowed(&mut self, rule: Rule, parts: &[&str], ts: i64, window: i64) -> bool {
        suppression_key(&mut self.suppress_key, rule, parts);
        match self.suppress.peek(self.suppress_key.as_str()) {
            Some(&last) => ts.saturating_sub(last) >= window,
            None => true,
        }
    }

    /// Starts the suppression window of `rule` keyed by `parts` at `ts`.
    fn mark(&mut self, rule: Rule, parts: &[&str], ts: i64) {
        suppression_key(&mut self.suppress_key, rule, parts);
        if let Some(last) = self.suppress.get_mut(self.suppress_key.as_str()) {
            *last = ts;
            return;
        }
        if self.suppress.len() >= self.suppress.capacity() && self.suppress.remove_lru().is_some() {
            self.suppress_evicted += 1;
        }
        self.suppress.insert(self.suppress_key.clone(), ts);
    }

    /// Applies disabling and suppression, then emits.
    fn emit(&mut self, found: Vec<Finding>, out: &mut Vec<Alert>) {
        for f in found {
            let rule = f.alert.rule;
            if self.is_disabled(rule) {
                self.stats.alerts_disabled += 1;
                continue;
            }
            let window = self.window_ns(rule);
            if !self.peek_allowed(rule, &[&f.key], f.alert.ts_ns, window) {
                self.stats.alerts_suppressed += 1;
                continue;
            }
            self.mark(rule, &[&f.key], f.alert.ts_ns);
            self.finish_alert(f.alert, out);
        }
    }

    /// Gives the alert its id, caps its evidence, counts it and emits it.
    fn finish_alert(&mut self, mut a: Alert, out: &mut Vec<Alert>) {
        self.seq += 1;
        let h = stable_hash(&[
            a.rule.id().as_bytes(),
            &a.ts_ns.to_le_bytes(),
            &self.seq.to_le_bytes(),
            a.endpoint.as_deref().unwrap_or("").as_bytes(),
            a.host.as_deref().unwrap_or("").as_bytes(),
        ]);
        a.id = format!("{h:016x}");
        a.evidence.truncate(self.cfg.max_evidence);
        self.stats.alerts += 1;
        *self
            .stats
            .alerts_by_rule
            .entry(a.rule.id().to_string())
            .or_insert(0) += 1;
        out.push(a);
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
        self.emit(found, &mut out);
        out
    }

    /// End of input: closes every open baseline bucket and returns what that fires.
    pub fn finish(&mut self) -> Vec<Alert> {
        let mut found = Vec::new();
        if self.cfg.enabled {
            self.baselines.finish(&mut found);
        }
        let mut out = Vec::new();
        self.emit(found, &mut out);
        out
    }

    /// The inventory.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// The inventory to save (JSON via serde).
    pub fn inventory_snapshot(&self) -> InventorySnapshot {
        self.inventory.snapshot()
    }

    /// Loads a saved inventory (e.g. at start-up of a live sensor).
    pub fn restore_inventory(&mut self, snap: &InventorySnapshot) {
        self.inventory.restore(snap);
    }

    /// The inventory as an OpenAPI 3.0 document (`host`: one host only).
    pub fn openapi(&self, host: Option<&str>) -> Value {
        inventory_openapi(
            &self.inventory.endpoints(),
            "apitap observed API inventory",
            host,
        )
    }

    /// Counters and sizes.
    pub fn stats(&self) -> AnalyticsStats {
        let mut s = self.stats.clone();
        s.endpoints = Level(self.inventory.len() as u64);
        s.endpoints_overflow_transactions = self.inventory.overflow_transactions;
        s.endpoints_404_skipped = self.inventory.skipped_404;
        let (learning, vars) = self.inventory.templater.sizes();
        s.template_positions = Level(learning as u64);
        s.template_variables = Level(vars as u64);
        s.template_positions_evicted = self.inventory.templater.counters.positions_evicted;
        s.template_variables_overflow = self.inventory.templater.counters.variables_overflow;
        s.baselines = Level(self.baselines.len() as u64);
        s.baselines_evicted = self.baselines.evicted;
        s.auth_clients = Level(self.auth.len() as u64);
        s.auth_clients_evicted = self.auth.evicted;
        s.bola_keys = Level(self.bola.len() as u64);
        s.bola_keys_evicted = self.bola.evicted;
        s.suppression_keys = Level(self.suppress.len() as u64);
        s.suppression_keys_evicted = self.suppress_evicted;
        let (dests, peps) = self.third.sizes();
        s.destinations = Level(dests as u64);
        s.destinations_overflow = self.third.dest_overflow;
        s.partner_endpoints = Level(peps as u64);
        s.partner_endpoints_overflow = self.third.partner_overflow;
        for c in [self.req_scan.counters, self.resp_scan.counters] {
            s.bodies_scanned += c.bodies_scanned;
            s.body_bytes_scanned += c.body_bytes_scanned;
            s.bodies_skipped_binary += c.bodies_skipped_binary;
            s.bodies_truncated += c.bodies_truncated;
        }
        s
    }
}
