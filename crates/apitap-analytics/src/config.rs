//! Configuration (`[analytics]` in `sensor.toml`). Every field has a default; unknown
//! fields are rejected. Times are packet time.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::alert::Rule;
use crate::sensitive::SensitiveKind;

/// An invalid configuration value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "analytics config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Where the analytics run (`analytics.mode`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AnalyticsMode {
    /// Every detector on the sensor; alerts from the sensor.
    #[default]
    Local,
    /// The raw-byte detectors (sensitive data, secrets in URLs, JWT recognition) on the
    /// sensor, their findings in its events (`apitap.findings`); the stateful analytics
    /// central, in `apitap analyze`.
    Edge,
}

/// Top-level analytics configuration.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    /// Run the analytics at all.
    pub enabled: bool,
    /// Where the analytics run: `local` (all of them, on this sensor) or `edge` (this
    /// sensor runs only the detectors that need raw bytes and puts their findings into its
    /// events; `apitap analyze` runs the rest centrally, over the events of many sensors).
    pub mode: AnalyticsMode,
    /// Packet time during which baselines and third-party lists learn before they alert
    /// (per endpoint for baselines, from the first transaction for third parties).
    pub learning_period_s: u64,
    /// The same (rule, client, endpoint) does not fire again within this packet time.
    pub suppression_window_s: u64,
    /// Per-rule suppression window overrides: rule id -> seconds (1 or more).
    pub rule_suppression_s: BTreeMap<String, u64>,
    /// Rule ids that never fire.
    pub disabled_rules: Vec<String>,
    /// Event ids kept as evidence per alert.
    pub max_evidence: usize,
    /// Suppression keys remembered (least recently used forgotten first, counted).
    pub max_suppression_keys: usize,
    /// Path templating.
    pub templating: TemplatingConfig,
    /// Endpoint inventory.
    pub inventory: InventoryConfig,
    /// OpenAPI spec diff.
    pub spec: SpecConfig,
    /// Per-endpoint baselines.
    pub baseline: BaselineConfig,
    /// Authentication failure bursts.
    pub auth: AuthConfig,
    /// Object id enumeration (BOLA).
    pub bola: BolaConfig,
    /// Secrets in URLs.
    pub url_secrets: UrlSecretsConfig,
    /// Sensitive data in headers and bodies.
    pub sensitive: SensitiveConfig,
    /// Third parties: new external destinations, partner behaviour.
    pub third_party: ThirdPartyConfig,
    /// TLS: encrypted services and the posture rules.
    pub tls: TlsAnalyticsConfig,
    /// HTTP/2 attack indicators.
    pub http2: Http2AnalyticsConfig,
}

/// Thresholds of the HTTP/2 attack indicators (`[analytics.http2]`), per connection.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Http2AnalyticsConfig {
    /// Streams a client resets before any response (APITAP-H2-001), when they are at
    /// least half its streams...
    pub rapid_reset_streams: u32,
    /// ...at this rate or more over the connection's life (per second).
    pub rapid_reset_per_second: u64,
    /// Frames one header block may take before it is a CONTINUATION flood
    /// (APITAP-H2-002).
    pub continuation_frames: u32,
    /// SETTINGS (or PING) frames from a client (APITAP-H2-003)...
    pub control_frames: u32,
    /// ...at this rate or more (per second): keepalive pings on a long-lived connection
    /// stay below it.
    pub control_frames_per_second: u64,
    /// Streams open at once past which a client abuses streams (APITAP-H2-005), when the
    /// server advertised no lower SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_open_streams: u32,
}

impl Default for Http2AnalyticsConfig {
    fn default() -> Self {
        Http2AnalyticsConfig {
            rapid_reset_streams: 100,
            rapid_reset_per_second: 10,
            continuation_frames: 100,
            control_frames: 100,
            control_frames_per_second: 10,
            max_open_streams: 1000,
        }
    }
}

/// TLS: the inventory of encrypted services and the client fingerprints learned per host.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsAnalyticsConfig {
    /// Encrypted services (server name or address, port) kept in the inventory; more are
    /// counted (`tls_services_overflow`).
    pub max_services: usize,
    /// Hosts whose client fingerprints are learned (least recently used forgotten first,
    /// counted: `tls_fingerprint_hosts_evicted`).
    pub max_fingerprint_hosts: usize,
}

impl Default for TlsAnalyticsConfig {
    fn default() -> Self {
        TlsAnalyticsConfig {
            max_services: 10_000,
            max_fingerprint_hosts: 10_000,
        }
    }
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig {
            enabled: true,
            mode: AnalyticsMode::Local,
            learning_period_s: 600,
            suppression_window_s: 3600,
            rule_suppression_s: BTreeMap::new(),
            disabled_rules: Vec::new(),
            max_evidence: 20,
            max_suppression_keys: 100_000,
            templating: TemplatingConfig::default(),
            inventory: InventoryConfig::default(),
            spec: SpecConfig::default(),
            baseline: BaselineConfig::default(),
            auth: AuthConfig::default(),
            bola: BolaConfig::default(),
            url_secrets: UrlSecretsConfig::default(),
            sensitive: SensitiveConfig::default(),
            third_party: ThirdPartyConfig::default(),
            tls: TlsAnalyticsConfig::default(),
            http2: Http2AnalyticsConfig::default(),
        }
    }
}

/// Path templating.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TemplatingConfig {
    /// Typed placeholders (`{id}`, `{uuid}`, `{hex}`, `{token}`, `{date}`, `{email}`);
    /// `false`: every placeholder is `{id}`. Learned variable segments are `{param}`.
    pub typed_placeholders: bool,
    /// A literal segment position (per host, method, parent template, position) becomes
    /// `{param}` once it has seen more than this many distinct values.
    pub variable_after_distinct: usize,
    /// Positions (0 = first segment) below this never become `{param}` (so scanners
    /// cannot fold a whole host into `/{param}`).
    pub learn_min_depth: usize,
    /// Segment positions tracked while learning (least recently used forgotten first).
    pub max_learned_positions: usize,
}

impl Default for TemplatingConfig {
    fn default() -> Self {
        TemplatingConfig {
            typed_placeholders: true,
            variable_after_distinct: 50,
            learn_min_depth: 1,
            max_learned_positions: 10_000,
        }
    }
}

/// Endpoint inventory.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InventoryConfig {
    /// Endpoints kept; transactions of further endpoints are counted as overflow.
    pub max_endpoints: usize,
    /// Distinct clients remembered per endpoint (beyond: the count is a lower bound).
    pub max_clients_per_endpoint: usize,
    /// Distinct values kept per endpoint field (content types, query parameter names,
    /// status codes, auth schemes).
    pub max_values_per_field: usize,
    /// Record endpoints that were only ever answered 404 (scanners make many).
    pub include_404: bool,
    /// File the inventory is loaded from at start and saved to at exit (and every
    /// `save_interval_s` of a live run), so a sensor keeps it across restarts; empty: none.
    pub state_file: String,
    /// Live runs: wall-clock seconds between inventory saves (0: only at exit).
    pub save_interval_s: u64,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            max_endpoints: 10_000,
            max_clients_per_endpoint: 256,
            max_values_per_field: 32,
            include_404: false,
            state_file: String::new(),
            save_interval_s: 300,
        }
    }
}

/// OpenAPI spec diff.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpecConfig {
    /// OpenAPI 3 document (JSON or YAML) to diff traffic against; empty: no spec
    /// (`--spec` overrides). Read by the sensor, re-read on SIGHUP.
    pub path: String,
    /// Hosts (Host header, or server IP as text) the spec describes; empty: every host.
    pub hosts: Vec<String>,
    /// Response statuses that do not make an undocumented request a shadow API (the
    /// endpoint does not exist).
    pub shadow_ignore_status: Vec<u16>,
}

impl Default for SpecConfig {
    fn default() -> Self {
        SpecConfig {
            path: String::new(),
            hosts: Vec::new(),
            shadow_ignore_status: vec![404, 405, 501],
        }
    }
}

/// Per-endpoint baselines (EWMA mean and variance over buckets).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineConfig {
    /// Bucket length (one minute by default).
    pub bucket_s: u64,
    /// Buckets an endpoint must have been observed for before it alerts (besides
    /// `learning_period_s`).
    pub min_buckets: u32,
    /// EWMA weight of a new bucket, (0, 1].
    pub ewma_alpha: f64,
    /// A value must exceed mean + `sigma` * stddev.
    pub sigma: f64,
    /// Rate spike: bucket requests >= `rate_factor` * mean ...
    pub rate_factor: f64,
    /// ... and >= this many requests in the bucket.
    pub rate_min_requests: u64,
    /// Error burst: at least this many errors (of the class) in the bucket ...
    pub error_min_errors: u64,
    /// ... and the error ratio at least this much above its mean (0-1).
    pub error_min_ratio_delta: f64,
    /// Latency spike: bucket mean latency >= `latency_factor` * baseline mean ...
    pub latency_factor: f64,
    /// ... and >= this many milliseconds ...
    pub latency_min_ms: u64,
    /// ... over at least this many timed requests.
    pub latency_min_requests: u64,
    /// Response-size jump: bucket mean response body >= `size_factor` * baseline mean ...
    pub size_factor: f64,
    /// ... and >= this many bytes.
    pub size_min_bytes: u64,
    /// Empty buckets folded into the rate baseline after a long quiet gap (bound on work).
    pub max_gap_buckets: u64,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            bucket_s: 60,
            min_buckets: 5,
            ewma_alpha: 0.1,
            sigma: 4.0,
            rate_factor: 3.0,
            rate_min_requests: 60,
            error_min_errors: 10,
            error_min_ratio_delta: 0.25,
            latency_factor: 3.0,
            latency_min_ms: 250,
            latency_min_requests: 10,
            size_factor: 4.0,
            size_min_bytes: 65_536,
            max_gap_buckets: 1440,
        }
    }
}

/// Authentication failure bursts (401/403 per client).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Sliding window.
    pub window_s: u64,
    /// Failures on login-like endpoints within the window (APITAP-AUTH-001).
    pub login_failures: usize,
    /// Failures on any endpoint within the window (APITAP-AUTH-002).
    pub any_failures: usize,
    /// A path containing one of these (lower case) is login-like.
    pub login_keywords: Vec<String>,
    /// Clients tracked (least recently used forgotten first, counted).
    pub max_clients: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            window_s: 300,
            login_failures: 10,
            any_failures: 50,
            login_keywords: ["login", "signin", "sign-in", "auth", "token", "session"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            max_clients: 10_000,
        }
    }
}

/// Object id enumeration (BOLA).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BolaConfig {
    /// Sliding window.
    pub window_s: u64,
    /// Distinct object ids of one templated endpoint requested by one client in the window.
    pub distinct_ids: usize,
    /// (client, endpoint) pairs tracked (least recently used forgotten first, counted).
    pub max_keys: usize,
}

impl Default for BolaConfig {
    fn default() -> Self {
        BolaConfig {
            window_s: 300,
            distinct_ids: 100,
            max_keys: 10_000,
        }
    }
}

/// Secrets in URLs.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UrlSecretsConfig {
    /// Query parameter names (lower case, `-` read as `_`) whose non-empty value is a secret.
    pub param_names: Vec<String>,
}

impl Default for UrlSecretsConfig {
    fn default() -> Self {
        UrlSecretsConfig {
            param_names: [
                "api_key",
                "apikey",
                "key",
                "token",
                "access_token",
                "refresh_token",
                "id_token",
                "auth",
                "password",
                "passwd",
                "pwd",
                "secret",
                "client_secret",
                "sig",
                "signature",
                "session",
                "sessionid",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        }
    }
}

/// Sensitive data in headers and bodies.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SensitiveConfig {
    /// Kinds looked for: `card_number`, `email`, `ssn`, `aws_access_key_id`, `jwt`,
    /// `private_key`.
    pub kinds: Vec<String>,
    /// Bytes scanned from the start of each body (after decoding); the rest is not read,
    /// and bodies cut here are counted (`bodies_truncated`). A body captured only for the
    /// scan is captured and decoded no further.
    pub max_scan_bytes: usize,
    /// Scan header values too (except `skip_headers`).
    pub scan_headers: bool,
    /// Capture JSON, form, XML and text bodies for this scan even when
    /// `http.include_body_for` does not list them; such bodies are scanned, never written
    /// into events. Captured bodies are always scanned.
    pub scan_bodies: bool,
    /// Headers never scanned (they carry credentials by design).
    pub skip_headers: Vec<String>,
}

impl Default for SensitiveConfig {
    fn default() -> Self {
        SensitiveConfig {
            kinds: SensitiveKind::ALL
                .iter()
                .map(|k| k.name().to_string())
                .collect(),
            max_scan_bytes: 4_096,
            scan_headers: true,
            scan_bodies: true,
            skip_headers: apitap_core::CREDENTIAL_HEADERS
                .iter()
                .chain(&["x-csrf-token", "x-xsrf-token"])
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// Third parties.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ThirdPartyConfig {
    /// Internal networks (CIDR). Empty: the new-destination rule is off.
    pub internal_cidrs: Vec<String>,
    /// Partner networks (CIDR); each CIDR is one partner. Empty: partner rules are off.
    pub partner_cidrs: Vec<String>,
    /// Destinations remembered (beyond: counted, not remembered).
    pub max_destinations: usize,
    /// (partner, endpoint) pairs remembered from learning (beyond: counted).
    pub max_partner_endpoints: usize,
    /// Partner 401/403 answers within `auth.window_s` that fire APITAP-THIRDPARTY-003.
    pub partner_auth_failures: usize,
}

impl Default for ThirdPartyConfig {
    fn default() -> Self {
        ThirdPartyConfig {
            internal_cidrs: Vec::new(),
            partner_cidrs: Vec::new(),
            max_destinations: 10_000,
            max_partner_endpoints: 10_000,
            partner_auth_failures: 3,
        }
    }
}

impl AnalyticsConfig {
    /// Checks ranges, rule ids, kinds and CIDRs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        const DAY_S: u64 = 86_400;
        const YEAR_S: u64 = 365 * DAY_S;
        const MANY: u64 = 10_000_000;
        let (t, i, b) = (&self.templating, &self.inventory, &self.baseline);
        let (auth, bola, tp) = (&self.auth, &self.bola, &self.third_party);
        let u = |v: usize| v as u64;
        apitap_core::bounds::check_ranges::<u64>(&[
            (
                "analytics.learning_period_s",
                self.learning_period_s,
                0..=YEAR_S,
            ),
            (
                "analytics.suppression_window_s",
                self.suppression_window_s,
                1..=YEAR_S,
            ),
            ("analytics.max_evidence", u(self.max_evidence), 1..=1000),
            (
                "analytics.max_suppression_keys",
                u(self.max_suppression_keys),
                1..=MANY,
            ),
            (
                "analytics.templating.variable_after_distinct",
                u(t.variable_after_distinct),
                1..=1_000_000,
            ),
            (
                "analytics.templating.learn_min_depth",
                u(t.learn_min_depth),
                0..=64,
            ),
            (
                "analytics.templating.max_learned_positions",
                u(t.max_learned_positions),
                1..=MANY,
            ),
            (
                "analytics.inventory.max_endpoints",
                u(i.max_endpoints),
                1..=MANY,
            ),
            (
                "analytics.inventory.max_clients_per_endpoint",
                u(i.max_clients_per_endpoint),
                1..=1_000_000,
            ),
            (
                "analytics.inventory.max_values_per_field",
                u(i.max_values_per_field),
                1..=10_000,
            ),
            (
                "analytics.inventory.save_interval_s",
                i.save_interval_s,
                0..=DAY_S,
            ),
            ("analytics.baseline.bucket_s", b.bucket_s, 1..=DAY_S),
            (
                "analytics.baseline.min_buckets",
                u64::from(b.min_buckets),
                1..=100_000,
            ),
            (
                "analytics.baseline.rate_min_requests",
                b.rate_min_requests,
                0..=1 << 32,
            ),
            (
                "analytics.baseline.error_min_errors",
                b.error_min_errors,
                0..=1 << 32,
            ),
            (
                "analytics.baseline.latency_min_ms",
                b.latency_min_ms,
                0..=DAY_S * 1000,
            ),
            (
                "analytics.baseline.latency_min_requests",
                b.latency_min_requests,
                0..=1 << 32,
            ),
            (
                "analytics.baseline.size_min_bytes",
                b.size_min_bytes,
                0..=1 << 40,
            ),
            (
                "analytics.baseline.max_gap_buckets",
                b.max_gap_buckets,
                1..=100_000,
            ),
            ("analytics.auth.window_s", auth.window_s, 1..=DAY_S),
            (
                "analytics.auth.login_failures",
                u(auth.login_failures),
                1..=1_000_000,
            ),
            (
                "analytics.auth.any_failures",
                u(auth.any_failures),
                1..=1_000_000,
            ),
            ("analytics.auth.max_clients", u(auth.max_clients), 1..=MANY),
            ("analytics.bola.window_s", bola.window_s, 1..=DAY_S),
            (
                "analytics.bola.distinct_ids",
                u(bola.distinct_ids),
                1..=1_000_000,
            ),
            ("analytics.bola.max_keys", u(bola.max_keys), 1..=MANY),
            (
                "analytics.tls.max_services",
                u(self.tls.max_services),
                1..=MANY,
            ),
            (
                "analytics.tls.max_fingerprint_hosts",
                u(self.tls.max_fingerprint_hosts),
                1..=MANY,
            ),
            (
                "analytics.http2.rapid_reset_streams",
                u64::from(self.http2.rapid_reset_streams),
                1..=1_000_000,
            ),
            (
                "analytics.http2.rapid_reset_per_second",
                self.http2.rapid_reset_per_second,
                0..=1_000_000,
            ),
            (
                "analytics.http2.continuation_frames",
                u64::from(self.http2.continuation_frames),
                2..=1_000_000,
            ),
            (
                "analytics.http2.control_frames",
                u64::from(self.http2.control_frames),
                1..=1_000_000,
            ),
            (
                "analytics.http2.control_frames_per_second",
                self.http2.control_frames_per_second,
                0..=1_000_000,
            ),
            (
                "analytics.http2.max_open_streams",
                u64::from(self.http2.max_open_streams),
                1..=1_000_000,
            ),
            (
                "analytics.sensitive.max_scan_bytes",
                u(self.sensitive.max_scan_bytes),
                1..=64 << 20,
            ),
            (
                "analytics.third_party.max_destinations",
                u(tp.max_destinations),
                1..=MANY,
            ),
            (
                "analytics.third_party.max_partner_endpoints",
                u(tp.max_partner_endpoints),
                1..=MANY,
            ),
            (
                "analytics.third_party.partner_auth_failures",
                u(tp.partner_auth_failures),
                1..=1_000_000,
            ),
        ])
        .map_err(ConfigError)?;
        for (rule, s) in &self.rule_suppression_s {
            apitap_core::bounds::check_range(
                &format!("analytics.rule_suppression_s.{rule}"),
                *s,
                // At least a second, as for suppression_window_s: an alert's id is its rule,
                // keys and packet time, so two alerts of one rule and key at one instant
                // would share it.
                1..=YEAR_S,
            )
            .map_err(ConfigError)?;
        }
        apitap_core::bounds::check_ranges::<f64>(&[
            ("analytics.baseline.ewma_alpha", b.ewma_alpha, 0.0..=1.0),
            ("analytics.baseline.sigma", b.sigma, 0.0..=1000.0),
            ("analytics.baseline.rate_factor", b.rate_factor, 0.0..=1e6),
            (
                "analytics.baseline.latency_factor",
                b.latency_factor,
                0.0..=1e6,
            ),
            ("analytics.baseline.size_factor", b.size_factor, 0.0..=1e6),
            (
                "analytics.baseline.error_min_ratio_delta",
                b.error_min_ratio_delta,
                0.0..=1.0,
            ),
        ])
        .map_err(ConfigError)?;
        if b.ewma_alpha <= 0.0 {
            return err("analytics.baseline.ewma_alpha must be more than 0".into());
        }
        for id in self
            .disabled_rules
            .iter()
            .chain(self.rule_suppression_s.keys())
        {
            if Rule::from_id(id).is_none() {
                return err(format!("unknown rule id {id:?}"));
            }
        }
        for k in &self.sensitive.kinds {
            if SensitiveKind::from_name(k).is_none() {
                return err(format!("unknown sensitive.kinds entry {k:?}"));
            }
        }
        for c in self
            .third_party
            .internal_cidrs
            .iter()
            .chain(&self.third_party.partner_cidrs)
        {
            Cidr::parse(c)?;
        }
        Ok(())
    }
}

/// An IP network (`10.0.0.0/8`, `2001:db8::/32`; a bare address is a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix` or a bare address.
    pub fn parse(s: &str) -> Result<Cidr, ConfigError> {
        let bad = || ConfigError(format!("invalid CIDR {s:?}"));
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { net, prefix })
    }

    /// Whether `ip` is inside (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_validate_and_unknown_fields_fail() {
        AnalyticsConfig::default().validate().unwrap();
        let c: AnalyticsConfig = serde_json::from_str(r#"{"bola":{"distinct_ids":7}}"#).unwrap();
        assert_eq!(c.bola.distinct_ids, 7);
        assert_eq!(c.bola.window_s, 300);
        assert!(serde_json::from_str::<AnalyticsConfig>(r#"{"bola":{"nope":1}}"#).is_err());
        assert!(serde_json::from_str::<AnalyticsConfig>(r#"{"nope":1}"#).is_err());
    }

    #[test]
    fn validate_rejects_bad_values() {
        let mut c = AnalyticsConfig::default();
        c.baseline.ewma_alpha = 0.0;
        assert!(c.validate().is_err());
        let c = AnalyticsConfig {
            disabled_rules: vec!["APITAP-NOPE".into()],
            ..AnalyticsConfig::default()
        };
        assert!(c.validate().is_err());
        let mut c = AnalyticsConfig::default();
        c.third_party.internal_cidrs = vec!["10.0.0.0/33".into()];
        assert!(c.validate().is_err());
        let mut c = AnalyticsConfig::default();
        c.sensitive.kinds = vec!["iban".into()];
        assert!(c.validate().is_err());
        let mut c = AnalyticsConfig::default();
        c.bola.distinct_ids = 0;
        assert!(c.validate().is_err());
        // A window of 0 would let one rule and key fire twice at one packet time, with one id.
        let mut c = AnalyticsConfig::default();
        c.rule_suppression_s
            .insert("APITAP-URLSECRET-001".into(), 0);
        assert!(c.validate().is_err());
        c.rule_suppression_s
            .insert("APITAP-URLSECRET-001".into(), 1);
        c.validate().unwrap();
    }

    #[test]
    fn cidr() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        let host = Cidr::parse("192.0.2.7").unwrap();
        assert!(host.contains("192.0.2.7".parse().unwrap()));
        assert!(!host.contains("192.0.2.8".parse().unwrap()));
        assert!(Cidr::parse("nope/8").is_err());
    }
}
