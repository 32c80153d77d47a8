//! Alerts, the rule catalogue and the ECS-style alert JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use serde_json::{json, Map, Value};

/// Every rule the analytics can fire. Ids are stable; see [`Rule::id`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// Traffic to an endpoint the OpenAPI spec does not document.
    ShadowEndpoint,
    /// Traffic to an operation the spec marks `deprecated: true`, answered 2xx.
    DeprecatedOperation,
    /// An older API version (`/v1/` while the spec documents `/v2/`) still answering 2xx.
    SupersededVersion,
    /// A response status the spec does not document for the operation (no `default`).
    UndocumentedStatus,
    /// Request rate of an endpoint far above its baseline.
    RateSpike,
    /// Server error (5xx) ratio of an endpoint far above its baseline.
    ServerErrorBurst,
    /// Client error (4xx) ratio of an endpoint far above its baseline.
    ClientErrorBurst,
    /// Mean latency of an endpoint far above its baseline.
    LatencySpike,
    /// Mean response size of an endpoint far above its baseline.
    ResponseSizeJump,
    /// Burst of 401/403 answers to one client on login-like endpoints.
    LoginFailureBurst,
    /// Burst of 401/403 answers to one client on any endpoint.
    AuthFailureBurst,
    /// One client requesting many distinct object ids of one endpoint.
    ObjectEnumeration,
    /// Secrets (API keys, tokens, passwords) in the URL.
    SecretInUrl,
    /// Sensitive data in a response (headers or body).
    SensitiveDataResponse,
    /// Sensitive data in a request (headers or body).
    SensitiveDataRequest,
    /// Server software and version disclosed in a response banner.
    VersionBanner,
    /// An internal client contacting an external destination never seen before.
    NewExternalDestination,
    /// A partner network calling an endpoint it never used during learning.
    PartnerNewEndpoint,
    /// Authentication failures of a partner network.
    PartnerAuthFailures,
    /// A TLS connection negotiated SSL 3.0, TLS 1.0 or TLS 1.1.
    TlsDeprecatedProtocol,
    /// A TLS connection negotiated a weak cipher suite (NULL, EXPORT, anon, RC4, DES, 3DES).
    TlsWeakCipher,
    /// A server presented a certificate expired or not yet valid at packet time.
    TlsCertificateInvalidDates,
    /// A server presented a certificate whose names do not cover the SNI.
    TlsCertificateNameMismatch,
    /// A TLS client fingerprint (JA4) never seen for a host, after the learning period.
    TlsNewClientFingerprint,
    /// A client reset many HTTP/2 streams before any response (rapid reset, CVE-2023-44487).
    Http2RapidReset,
    /// A header block over a great many CONTINUATION frames (CVE-2024-27316).
    Http2ContinuationFlood,
    /// A client flooded SETTINGS or PING frames.
    Http2ControlFrameFlood,
    /// HTTP/2 header blocks that decode to far more than their wire size.
    Http2HpackBomb,
    /// More concurrent HTTP/2 streams than allowed, or invalid stream ids.
    Http2StreamAbuse,
}

/// The OWASP API Security Top 10 (2023) categories used by the rules.
pub const OWASP_2023: &[(&str, &str)] = &[
    ("API1:2023", "Broken Object Level Authorization"),
    ("API2:2023", "Broken Authentication"),
    ("API3:2023", "Broken Object Property Level Authorization"),
    ("API4:2023", "Unrestricted Resource Consumption"),
    ("API5:2023", "Broken Function Level Authorization"),
    (
        "API6:2023",
        "Unrestricted Access to Sensitive Business Flows",
    ),
    ("API7:2023", "Server Side Request Forgery"),
    ("API8:2023", "Security Misconfiguration"),
    ("API9:2023", "Improper Inventory Management"),
    ("API10:2023", "Unsafe Consumption of APIs"),
];

impl Rule {
    /// This rule's bit in a set of rules kept as a `u32`.
    pub fn bit(self) -> u32 {
        const _: () = assert!(Rule::ALL.len() <= 32, "rule sets are u32 bit masks");
        1 << (self as u32)
    }

    /// Every rule, in catalogue order.
    pub const ALL: [Rule; 29] = [
        Rule::ShadowEndpoint,
        Rule::DeprecatedOperation,
        Rule::SupersededVersion,
        Rule::UndocumentedStatus,
        Rule::RateSpike,
        Rule::ServerErrorBurst,
        Rule::ClientErrorBurst,
        Rule::LatencySpike,
        Rule::ResponseSizeJump,
        Rule::LoginFailureBurst,
        Rule::AuthFailureBurst,
        Rule::ObjectEnumeration,
        Rule::SecretInUrl,
        Rule::SensitiveDataResponse,
        Rule::SensitiveDataRequest,
        Rule::VersionBanner,
        Rule::NewExternalDestination,
        Rule::PartnerNewEndpoint,
        Rule::PartnerAuthFailures,
        Rule::TlsDeprecatedProtocol,
        Rule::TlsWeakCipher,
        Rule::TlsCertificateInvalidDates,
        Rule::TlsCertificateNameMismatch,
        Rule::TlsNewClientFingerprint,
        Rule::Http2RapidReset,
        Rule::Http2ContinuationFlood,
        Rule::Http2ControlFrameFlood,
        Rule::Http2HpackBomb,
        Rule::Http2StreamAbuse,
    ];

    /// Stable rule id (`rule.id`).
    pub fn id(self) -> &'static str {
        match self {
            Rule::ShadowEndpoint => "APITAP-SHADOW-001",
            Rule::DeprecatedOperation => "APITAP-ZOMBIE-001",
            Rule::SupersededVersion => "APITAP-ZOMBIE-002",
            Rule::UndocumentedStatus => "APITAP-DRIFT-001",
            Rule::RateSpike => "APITAP-RATE-001",
            Rule::ServerErrorBurst => "APITAP-ERROR-001",
            Rule::ClientErrorBurst => "APITAP-ERROR-002",
            Rule::LatencySpike => "APITAP-LATENCY-001",
            Rule::ResponseSizeJump => "APITAP-SIZE-001",
            Rule::LoginFailureBurst => "APITAP-AUTH-001",
            Rule::AuthFailureBurst => "APITAP-AUTH-002",
            Rule::ObjectEnumeration => "APITAP-BOLA-001",
            Rule::SecretInUrl => "APITAP-URLSECRET-001",
            Rule::SensitiveDataResponse => "APITAP-SENSITIVE-001",
            Rule::SensitiveDataRequest => "APITAP-SENSITIVE-002",
            Rule::VersionBanner => "APITAP-BANNER-001",
            Rule::NewExternalDestination => "APITAP-THIRDPARTY-001",
            Rule::PartnerNewEndpoint => "APITAP-THIRDPARTY-002",
            Rule::PartnerAuthFailures => "APITAP-THIRDPARTY-003",
            Rule::TlsDeprecatedProtocol => "APITAP-TLS-001",
            Rule::TlsWeakCipher => "APITAP-TLS-002",
            Rule::TlsCertificateInvalidDates => "APITAP-TLS-003",
            Rule::TlsCertificateNameMismatch => "APITAP-TLS-004",
            Rule::TlsNewClientFingerprint => "APITAP-TLS-005",
            Rule::Http2RapidReset => "APITAP-H2-001",
            Rule::Http2ContinuationFlood => "APITAP-H2-002",
            Rule::Http2ControlFrameFlood => "APITAP-H2-003",
            Rule::Http2HpackBomb => "APITAP-H2-004",
            Rule::Http2StreamAbuse => "APITAP-H2-005",
        }
    }

    /// The rule with this id.
    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.id() == id)
    }

    /// Short machine-friendly name (`rule.name`).
    pub fn name(self) -> &'static str {
        match self {
            Rule::ShadowEndpoint => "shadow_api_endpoint",
            Rule::DeprecatedOperation => "zombie_api_deprecated_operation",
            Rule::SupersededVersion => "zombie_api_superseded_version",
            Rule::UndocumentedStatus => "spec_drift_undocumented_status",
            Rule::RateSpike => "request_rate_spike",
            Rule::ServerErrorBurst => "server_error_burst",
            Rule::ClientErrorBurst => "client_error_burst",
            Rule::LatencySpike => "latency_spike",
            Rule::ResponseSizeJump => "response_size_jump",
            Rule::LoginFailureBurst => "login_failure_burst",
            Rule::AuthFailureBurst => "auth_failure_burst",
            Rule::ObjectEnumeration => "object_id_enumeration",
            Rule::SecretInUrl => "secret_in_url",
            Rule::SensitiveDataResponse => "sensitive_data_in_response",
            Rule::SensitiveDataRequest => "sensitive_data_in_request",
            Rule::VersionBanner => "software_version_banner",
            Rule::NewExternalDestination => "new_external_destination",
            Rule::PartnerNewEndpoint => "partner_unseen_endpoint",
            Rule::PartnerAuthFailures => "partner_auth_failures",
            Rule::TlsDeprecatedProtocol => "tls_deprecated_protocol",
            Rule::TlsWeakCipher => "tls_weak_cipher",
            Rule::TlsCertificateInvalidDates => "tls_certificate_invalid_dates",
            Rule::TlsCertificateNameMismatch => "tls_certificate_name_mismatch",
            Rule::TlsNewClientFingerprint => "tls_new_client_fingerprint",
            Rule::Http2RapidReset => "http2_rapid_reset",
            Rule::Http2ContinuationFlood => "http2_continuation_flood",
            Rule::Http2ControlFrameFlood => "http2_control_frame_flood",
            Rule::Http2HpackBomb => "http2_hpack_bomb",
            Rule::Http2StreamAbuse => "http2_stream_abuse",
        }
    }

    /// One-line description.
    pub fn description(self) -> &'static str {
        match self {
            Rule::ShadowEndpoint => "Traffic to an API endpoint that the OpenAPI specification does not document (shadow API).",
            Rule::DeprecatedOperation => "A deprecated operation of the OpenAPI specification still answers successfully (zombie API).",
            Rule::SupersededVersion => "An older API version than the one the specification documents still answers successfully (zombie API).",
            Rule::UndocumentedStatus => "An operation answered with a status code its specification does not document (spec drift).",
            Rule::RateSpike => "The request rate of an endpoint rose far above its learned baseline.",
            Rule::ServerErrorBurst => "The server error (5xx) ratio of an endpoint rose far above its learned baseline.",
            Rule::ClientErrorBurst => "The client error (4xx) ratio of an endpoint rose far above its learned baseline.",
            Rule::LatencySpike => "The mean latency of an endpoint rose far above its learned baseline.",
            Rule::ResponseSizeJump => "The mean response size of an endpoint rose far above its learned baseline (possible scraping or exfiltration).",
            Rule::LoginFailureBurst => "One client received many authentication failures on login-like endpoints (brute force or credential stuffing).",
            Rule::AuthFailureBurst => "One client received many authentication or authorization failures (401/403).",
            Rule::ObjectEnumeration => "One client requested many distinct object ids of one endpoint (BOLA enumeration).",
            Rule::SecretInUrl => "Credentials or tokens are sent in the URL, where proxies, logs and browsers keep them.",
            Rule::SensitiveDataResponse => "A response carried sensitive data (card numbers, national ids, keys, tokens, emails).",
            Rule::SensitiveDataRequest => "A request carried sensitive data (card numbers, national ids, keys, tokens, emails).",
            Rule::VersionBanner => "A response header discloses server software and its version.",
            Rule::NewExternalDestination => "An internal client contacted an external API destination not seen during learning.",
            Rule::PartnerNewEndpoint => "A partner network called an endpoint it did not use during learning.",
            Rule::PartnerAuthFailures => "A partner network received repeated authentication failures.",
            Rule::TlsDeprecatedProtocol => "A TLS connection negotiated a deprecated protocol version (SSL 3.0, TLS 1.0, TLS 1.1).",
            Rule::TlsWeakCipher => "A TLS connection negotiated a weak cipher suite (NULL, EXPORT, anonymous, RC4, DES or 3DES).",
            Rule::TlsCertificateInvalidDates => "A server presented a certificate that was expired or not yet valid when it was seen.",
            Rule::TlsCertificateNameMismatch => "A server presented a certificate whose names do not cover the server name the client asked for.",
            Rule::TlsNewClientFingerprint => "A TLS client fingerprint (JA4) never seen for this host appeared after the learning period (new client software, automation).",
            Rule::Http2RapidReset => "A client reset many HTTP/2 streams right after opening them, before any response, at a high rate (rapid reset, CVE-2023-44487).",
            Rule::Http2ContinuationFlood => "A client sent a header block spread over a great many CONTINUATION frames (CONTINUATION flood, CVE-2024-27316).",
            Rule::Http2ControlFrameFlood => "A client sent SETTINGS or PING frames at a flood rate (resource exhaustion of the server's HTTP/2 stack).",
            Rule::Http2HpackBomb => "A client sent HTTP/2 header blocks that decode to far more than their size on the wire (HPACK decompression bomb).",
            Rule::Http2StreamAbuse => "A client opened more HTTP/2 streams at once than the server allows, or used stream ids a client may not open.",
        }
    }

    /// What to do about it (SARIF `help`).
    pub fn help(self) -> &'static str {
        match self {
            Rule::ShadowEndpoint => "Document the endpoint in the OpenAPI specification or remove it; undocumented endpoints escape review, testing and deprecation.",
            Rule::DeprecatedOperation => "Find the remaining callers, migrate them and retire the operation.",
            Rule::SupersededVersion => "Retire the old API version or document it; old versions often lack the fixes of the current one.",
            Rule::UndocumentedStatus => "Document the status code in the specification or fix the implementation.",
            Rule::RateSpike => "Check the callers of the endpoint; apply rate limits and quotas per client.",
            Rule::ServerErrorBurst => "Check the service health and whether a client sends malformed or abusive input.",
            Rule::ClientErrorBurst => "Check whether a client probes or fuzzes the endpoint.",
            Rule::LatencySpike => "Check for expensive requests (large pages, heavy filters) and resource exhaustion.",
            Rule::ResponseSizeJump => "Check which client received the large responses; enforce pagination limits and field filtering.",
            Rule::LoginFailureBurst => "Block or throttle the client, enforce lockout and MFA, and check for credential stuffing lists.",
            Rule::AuthFailureBurst => "Check whether the client probes for access; throttle it.",
            Rule::ObjectEnumeration => "Verify object-level authorization on the endpoint and throttle the client.",
            Rule::SecretInUrl => "Send credentials in headers (Authorization) or bodies, never in the URL; rotate the exposed secrets.",
            Rule::SensitiveDataResponse => "Return only the properties the client needs; mask card numbers and ids; never return keys.",
            Rule::SensitiveDataRequest => "Check that the endpoint is meant to receive this data and that it is protected (TLS, scope, retention).",
            Rule::VersionBanner => "Remove or genericize the Server / X-Powered-By headers and keep the software patched.",
            Rule::NewExternalDestination => "Check that the new third-party API is approved; validate and sanitize its data.",
            Rule::PartnerNewEndpoint => "Check that the partner is allowed to call this endpoint.",
            Rule::PartnerAuthFailures => "Contact the partner: expired or leaked credentials, or misuse.",
            Rule::TlsDeprecatedProtocol => "Disable SSL 3.0, TLS 1.0 and 1.1 on the server and upgrade the clients that still need them.",
            Rule::TlsWeakCipher => "Remove the weak suites from the server's cipher list; prefer ECDHE with AES-GCM or ChaCha20-Poly1305.",
            Rule::TlsCertificateInvalidDates => "Renew the certificate (or fix the server's clock) and automate renewal.",
            Rule::TlsCertificateNameMismatch => "Issue a certificate that names the host, or check whether the client is being sent somewhere it should not go.",
            Rule::TlsNewClientFingerprint => "Check which client software this is; new tooling against an API is often automation or a scanner.",
            Rule::Http2RapidReset => "Patch the server or proxy for CVE-2023-44487, limit streams reset per connection, and block or rate-limit the client.",
            Rule::Http2ContinuationFlood => "Patch the server or proxy for the CONTINUATION flood (CVE-2024-27316) and cap header block size and frames.",
            Rule::Http2ControlFrameFlood => "Limit control frames per connection on the server or proxy and rate-limit the client.",
            Rule::Http2HpackBomb => "Cap the decoded header list size (SETTINGS_MAX_HEADER_LIST_SIZE) on the server or proxy and block the client.",
            Rule::Http2StreamAbuse => "Enforce SETTINGS_MAX_CONCURRENT_STREAMS and stream id rules on the server or proxy; check the client software.",
        }
    }

    /// OWASP API Security Top 10 (2023) category (`API1:2023`).
    pub fn owasp(self) -> &'static str {
        match self {
            Rule::ShadowEndpoint
            | Rule::DeprecatedOperation
            | Rule::SupersededVersion
            | Rule::UndocumentedStatus => "API9:2023",
            Rule::RateSpike
            | Rule::ServerErrorBurst
            | Rule::ClientErrorBurst
            | Rule::LatencySpike => "API4:2023",
            Rule::ResponseSizeJump | Rule::SensitiveDataResponse | Rule::SensitiveDataRequest => {
                "API3:2023"
            }
            Rule::LoginFailureBurst | Rule::AuthFailureBurst => "API2:2023",
            Rule::ObjectEnumeration => "API1:2023",
            Rule::SecretInUrl
            | Rule::VersionBanner
            | Rule::TlsDeprecatedProtocol
            | Rule::TlsWeakCipher
            | Rule::TlsCertificateInvalidDates
            | Rule::TlsCertificateNameMismatch => "API8:2023",
            Rule::TlsNewClientFingerprint => "API6:2023",
            Rule::Http2RapidReset
            | Rule::Http2ContinuationFlood
            | Rule::Http2ControlFrameFlood
            | Rule::Http2HpackBomb
            | Rule::Http2StreamAbuse => "API4:2023",
            Rule::NewExternalDestination | Rule::PartnerNewEndpoint | Rule::PartnerAuthFailures => {
                "API10:2023"
            }
        }
    }

    /// Name of the OWASP category.
    pub fn owasp_name(self) -> &'static str {
        let id = self.owasp();
        OWASP_2023
            .iter()
            .find(|(k, _)| *k == id)
            .map_or("", |(_, v)| v)
    }

    /// Default severity, 1-100 (some detectors raise or lower it per alert).
    pub fn default_severity(self) -> u8 {
        match self {
            Rule::ShadowEndpoint => 50,
            Rule::DeprecatedOperation => 55,
            Rule::SupersededVersion => 60,
            Rule::UndocumentedStatus => 25,
            Rule::RateSpike => 50,
            Rule::ServerErrorBurst => 45,
            Rule::ClientErrorBurst => 40,
            Rule::LatencySpike => 30,
            Rule::ResponseSizeJump => 60,
            Rule::LoginFailureBurst => 75,
            Rule::AuthFailureBurst => 55,
            Rule::ObjectEnumeration => 75,
            Rule::SecretInUrl => 65,
            Rule::SensitiveDataResponse => 60,
            Rule::SensitiveDataRequest => 50,
            Rule::VersionBanner => 20,
            Rule::NewExternalDestination => 45,
            Rule::PartnerNewEndpoint => 45,
            Rule::PartnerAuthFailures => 55,
            Rule::TlsDeprecatedProtocol => 50,
            Rule::TlsWeakCipher => 70,
            Rule::TlsCertificateInvalidDates => 60,
            Rule::TlsCertificateNameMismatch => 55,
            Rule::TlsNewClientFingerprint => 30,
            Rule::Http2RapidReset => 75,
            Rule::Http2ContinuationFlood => 70,
            Rule::Http2ControlFrameFlood => 60,
            Rule::Http2HpackBomb => 65,
            Rule::Http2StreamAbuse => 50,
        }
    }

    /// ECS `event.category` values.
    pub fn categories(self) -> &'static [&'static str] {
        match self {
            Rule::ShadowEndpoint
            | Rule::DeprecatedOperation
            | Rule::SupersededVersion
            | Rule::UndocumentedStatus => &["api", "configuration"],
            Rule::RateSpike
            | Rule::ServerErrorBurst
            | Rule::ClientErrorBurst
            | Rule::LatencySpike
            | Rule::ResponseSizeJump => &["api", "network", "intrusion_detection"],
            Rule::LoginFailureBurst | Rule::AuthFailureBurst | Rule::PartnerAuthFailures => {
                &["authentication", "intrusion_detection"]
            }
            Rule::ObjectEnumeration => &["api", "intrusion_detection"],
            Rule::SecretInUrl | Rule::SensitiveDataResponse | Rule::SensitiveDataRequest => {
                &["api", "intrusion_detection"]
            }
            Rule::VersionBanner
            | Rule::TlsDeprecatedProtocol
            | Rule::TlsWeakCipher
            | Rule::TlsCertificateInvalidDates
            | Rule::TlsCertificateNameMismatch => &["configuration", "vulnerability"],
            Rule::TlsNewClientFingerprint => &["network", "intrusion_detection"],
            Rule::Http2RapidReset
            | Rule::Http2ContinuationFlood
            | Rule::Http2ControlFrameFlood
            | Rule::Http2HpackBomb
            | Rule::Http2StreamAbuse => &["network", "intrusion_detection"],
            Rule::NewExternalDestination | Rule::PartnerNewEndpoint => {
                &["api", "network", "intrusion_detection"]
            }
        }
    }
}

/// Severity label from a 1-100 severity: `low` (< 40), `medium` (< 70), `high` (< 90),
/// `critical`.
pub fn severity_label(severity: u8) -> &'static str {
    match severity {
        0..=39 => "low",
        40..=69 => "medium",
        70..=89 => "high",
        _ => "critical",
    }
}

/// One alert (or, for `apitap check`, one finding).
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// The rule that fired.
    pub rule: Rule,
    /// Packet time of the alert (Unix ns): the triggering transaction, or the end of the
    /// baseline bucket.
    pub ts_ns: i64,
    /// Severity 1-100.
    pub severity: u8,
    /// Stable id of the alert (`event.id`): a hash of the rule, key, time and sequence.
    pub id: String,
    /// The client at fault (`source.ip`), when there is one.
    pub client: Option<IpAddr>,
    /// The server concerned (`destination.ip`/`destination.port`), when there is one.
    pub server: Option<SocketAddr>,
    /// Host (`url.domain`).
    pub host: Option<String>,
    /// Endpoint (`apitap.endpoint`, `GET /users/{id}`).
    pub endpoint: Option<String>,
    /// Start of the observation window (Unix ns).
    pub window_start_ns: i64,
    /// End of the observation window (Unix ns).
    pub window_end_ns: i64,
    /// Main count (`apitap.count`): requests, failures, distinct ids... per rule.
    pub count: u64,
    /// Further counts (`apitap.counts`), e.g. `{"card_number": 2}`. Never values.
    pub counts: BTreeMap<String, u64>,
    /// Further non-sensitive details (`apitap.details`): baseline figures, spec operation.
    pub details: BTreeMap<String, Value>,
    /// Event ids of the transactions that make the evidence (capped).
    pub evidence: Vec<String>,
    /// Human-readable message.
    pub message: String,
    /// The sensors that saw the alert's endpoint (`apitap.sensors`), at the centre of a
    /// fleet; empty on a sensor itself (its `observer.name` says it).
    pub sensors: Vec<String>,
}

impl Alert {
    /// The severity label (`low`, `medium`, `high`, `critical`).
    pub fn severity_label(&self) -> &'static str {
        severity_label(self.severity)
    }

    /// The alert as an ECS-style JSON object (`event.kind: "alert"`).
    pub fn to_json(&self) -> Value {
        let mut event = Map::new();
        event.insert("kind".into(), json!("alert"));
        event.insert("category".into(), json!(self.rule.categories()));
        event.insert("type".into(), json!(["info"]));
        event.insert("id".into(), json!(self.id));
        event.insert("severity".into(), json!(self.severity));
        event.insert("dataset".into(), json!("apitap.alert"));

        let mut root = Map::new();
        root.insert("@timestamp".into(), json!(rfc3339_micros(self.ts_ns)));
        root.insert("event".into(), Value::Object(event));
        root.insert(
            "rule".into(),
            json!({
                "id": self.rule.id(),
                "name": self.rule.name(),
                "description": self.rule.description(),
                "category": format!("{} {}", self.rule.owasp(), self.rule.owasp_name()),
                "ruleset": "apitap",
            }),
        );
        if let Some(ip) = self.client {
            root.insert("source".into(), json!({ "ip": ip.to_string() }));
        }
        if let Some(s) = self.server {
            root.insert(
                "destination".into(),
                json!({ "ip": s.ip().to_string(), "port": s.port() }),
            );
        }
        if let Some(h) = &self.host {
            root.insert("url".into(), json!({ "domain": h }));
        }
        root.insert("message".into(), json!(self.message));

        let mut apitap = Map::new();
        apitap.insert("severity".into(), json!(self.severity_label()));
        apitap.insert("owasp".into(), json!(self.rule.owasp()));
        if let Some(e) = &self.endpoint {
            apitap.insert("endpoint".into(), json!(e));
        }
        apitap.insert(
            "window".into(),
            json!({
                "start": rfc3339_micros(self.window_start_ns),
                "end": rfc3339_micros(self.window_end_ns),
            }),
        );
        apitap.insert("count".into(), json!(self.count));
        if !self.counts.is_empty() {
            apitap.insert("counts".into(), json!(self.counts));
        }
        if !self.details.is_empty() {
            let details: Map<String, Value> = self
                .details
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            apitap.insert("details".into(), Value::Object(details));
        }
        apitap.insert("evidence".into(), json!(self.evidence));
        if !self.sensors.is_empty() {
            apitap.insert("sensors".into(), json!(self.sensors));
        }
        apitap.insert("schema_version".into(), json!("1"));
        root.insert("apitap".into(), Value::Object(apitap));
        Value::Object(root)
    }
}

/// RFC 3339 UTC timestamp with microseconds (`2024-01-31T12:00:00.123456Z`) from Unix ns.
pub fn rfc3339_micros(ts_ns: i64) -> String {
    let secs = ts_ns.div_euclid(1_000_000_000);
    let micros = ts_ns.rem_euclid(1_000_000_000) / 1000;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = String::with_capacity(27);
    let _ = write!(
        s,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    s
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_micros(1_706_702_400_123_456_789),
            "2024-01-31T12:00:00.123456Z"
        );
        assert_eq!(
            rfc3339_micros(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000Z"
        );
        assert_eq!(rfc3339_micros(-1_000), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn catalogue_is_consistent() {
        let mut ids: Vec<&str> = Rule::ALL.iter().map(|r| r.id()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), Rule::ALL.len());
        for r in Rule::ALL {
            assert_eq!(Rule::from_id(r.id()), Some(r));
            assert!(!r.owasp_name().is_empty(), "{r:?}");
            assert!((1..=100).contains(&r.default_severity()));
        }
        assert_eq!(severity_label(39), "low");
        assert_eq!(severity_label(40), "medium");
        assert_eq!(severity_label(89), "high");
        assert_eq!(severity_label(90), "critical");
    }
}
