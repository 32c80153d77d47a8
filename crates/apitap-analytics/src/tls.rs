//! TLS connections in the analytics: the posture rules (deprecated protocol, weak cipher,
//! certificate dates and names, client fingerprints new to a host) and the inventory of
//! encrypted services by server name and port.

use crate::alert::{Alert, Rule};
use crate::emit::{Finding, Gate};
use hashlink::LruCache;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// One TLS connection as the analytics sees it (built by the pipeline from the connection
/// event's record).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsRecord {
    /// The connection's first TLS byte, packet time (Unix ns); certificate dates are
    /// judged at this time.
    pub ts_ns: i64,
    /// Id of the connection event (`event.id`), the alert's evidence.
    pub event_id: String,
    /// The client.
    pub client: Option<SocketAddr>,
    /// The server.
    pub server: Option<SocketAddr>,
    /// SNI, lower case.
    pub server_name: Option<String>,
    /// Negotiated version (`"1.2"`), as ECS spells it, with its protocol (`"tls"`).
    pub version: Option<(&'static str, &'static str)>,
    /// Negotiated cipher suite, IANA name.
    pub cipher: Option<String>,
    /// Why the suite is weak, when it is (`rc4`, `3des`, ...).
    pub weak_cipher: Option<&'static str>,
    /// ALPN the server chose.
    pub alpn: Option<String>,
    /// JA4 of the ClientHello.
    pub ja4: Option<String>,
    /// The leaf certificate, when seen.
    pub certificate: Option<CertFacts>,
}

/// What the posture rules read of a certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertFacts {
    /// Validity, Unix seconds.
    pub not_before: i64,
    /// Validity, Unix seconds.
    pub not_after: i64,
    /// Subject common names (for messages).
    pub subject: Vec<String>,
    /// Whether its names cover the SNI; None without an SNI.
    pub covers_server_name: Option<bool>,
}

/// One encrypted service seen: a server name (or address) and port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsService {
    /// SNI, or the server address when the client sent none.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Connections seen.
    pub connections: u64,
    /// First and last connection, Unix ns (packet time).
    pub first_seen_ns: i64,
    /// Last connection.
    pub last_seen_ns: i64,
    /// ALPN protocols chosen.
    pub alpn: BTreeSet<String>,
    /// Versions negotiated.
    pub versions: BTreeSet<String>,
    /// Cipher suites negotiated.
    pub ciphers: BTreeSet<String>,
    /// Client JA4 fingerprints (at most [`MAX_SET`]).
    pub client_fingerprints: BTreeSet<String>,
}

/// Values kept per set of a service; more are counted in `tls_service_values_overflow`.
pub const MAX_SET: usize = 64;

/// The posture rules and the service inventory.
pub(crate) struct TlsAnalytics {
    services: BTreeMap<(String, u16), TlsService>,
    max_services: usize,
    /// JA4s seen per host, learned until the learning period ends.
    fingerprints: LruCache<String, BTreeSet<String>>,
    pub(crate) services_overflow: u64,
    pub(crate) values_overflow: u64,
    pub(crate) fingerprint_hosts_evicted: u64,
}

fn put(set: &mut BTreeSet<String>, value: Option<&str>, overflow: &mut u64) {
    if let Some(v) = value {
        if !set.contains(v) {
            if set.len() < MAX_SET {
                set.insert(v.to_string());
            } else {
                *overflow += 1;
            }
        }
    }
}

impl TlsAnalytics {
    pub(crate) fn new(max_services: usize, max_fingerprint_hosts: usize) -> TlsAnalytics {
        TlsAnalytics {
            services: BTreeMap::new(),
            max_services,
            fingerprints: LruCache::new(max_fingerprint_hosts.max(1)),
            services_overflow: 0,
            values_overflow: 0,
            fingerprint_hosts_evicted: 0,
        }
    }

    /// Encrypted services by host and port.
    pub(crate) fn services(&self) -> impl Iterator<Item = &TlsService> {
        self.services.values()
    }

    /// Loads services saved earlier.
    pub(crate) fn restore(&mut self, saved: &[TlsService]) {
        for s in saved.iter().take(self.max_services) {
            self.services.insert((s.host.clone(), s.port), s.clone());
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.services.len()
    }

    /// Records the connection in the inventory and appends what the posture rules find.
    pub(crate) fn observe(
        &mut self,
        r: &TlsRecord,
        learning: bool,
        gate: &mut Gate,
        out: &mut Vec<Finding>,
    ) {
        let host = r
            .server_name
            .clone()
            .or_else(|| r.server.map(|s| s.ip().to_string()))
            .unwrap_or_default();
        let port = r.server.map_or(0, |s| s.port());
        self.inventory(r, &host, port);
        let target = format!("{host}:{port}");
        let alert = |rule: Rule, message: String| alert(r, rule, message);
        if let Some((protocol, version)) = r.version {
            if protocol == "ssl" || matches!(version, "1.0" | "1.1") {
                let label = if protocol == "ssl" {
                    format!("SSL {version}")
                } else {
                    format!("TLS {version}")
                };
                let mut a = alert(
                    Rule::TlsDeprecatedProtocol,
                    format!("{target} negotiated deprecated {label}"),
                );
                a.details.insert("version".into(), version.into());
                a.details.insert("protocol".into(), protocol.into());
                out.push(Finding::new(a, format!("{target}|{version}")));
            }
        }
        if let (Some(why), Some(cipher)) = (r.weak_cipher, r.cipher.as_deref()) {
            let mut a = alert(
                Rule::TlsWeakCipher,
                format!("{target} negotiated the weak cipher suite {cipher} ({why})"),
            );
            a.details.insert("cipher".into(), cipher.into());
            a.details.insert("weakness".into(), why.into());
            out.push(Finding::new(a, format!("{target}|{cipher}")));
        }
        if let Some(c) = &r.certificate {
            let now = r.ts_ns.div_euclid(1_000_000_000);
            let state = if now > c.not_after {
                Some("expired")
            } else if now < c.not_before {
                Some("not_yet_valid")
            } else {
                None
            };
            if let Some(state) = state {
                let mut a = alert(
                    Rule::TlsCertificateInvalidDates,
                    format!(
                        "{target} presented a certificate ({}) that is {}",
                        c.subject.join(", "),
                        state.replace('_', " ")
                    ),
                );
                a.details.insert("state".into(), state.into());
                a.details.insert(
                    "not_before".into(),
                    crate::rfc3339_micros(secs_ns_i(c.not_before)).into(),
                );
                a.details.insert(
                    "not_after".into(),
                    crate::rfc3339_micros(secs_ns_i(c.not_after)).into(),
                );
                out.push(Finding::new(a, format!("{target}|{state}")));
            }
            if c.covers_server_name == Some(false) {
                let mut a = alert(
                    Rule::TlsCertificateNameMismatch,
                    format!(
                        "{target} presented a certificate for {} that does not name {host}",
                        c.subject.join(", ")
                    ),
                );
                a.details.insert("server_name".into(), host.clone().into());
                out.push(Finding::new(a, target.clone()));
            }
        }
        if let Some(ja4) = r.ja4.as_deref() {
            if !gate.is_disabled(Rule::TlsNewClientFingerprint) {
                self.fingerprint(&host, ja4, learning, &alert, out);
            }
        }
    }

    fn inventory(&mut self, r: &TlsRecord, host: &str, port: u16) {
        let key = (host.to_string(), port);
        if !self.services.contains_key(&key) && self.services.len() >= self.max_services {
            self.services_overflow += 1;
            return;
        }
        let s = self.services.entry(key).or_insert_with(|| TlsService {
            host: host.to_string(),
            port,
            first_seen_ns: r.ts_ns,
            ..TlsService::default()
        });
        s.connections += 1;
        s.last_seen_ns = s.last_seen_ns.max(r.ts_ns);
        let o = &mut self.values_overflow;
        put(&mut s.alpn, r.alpn.as_deref(), o);
        put(&mut s.versions, r.version.map(|v| v.1), o);
        put(&mut s.ciphers, r.cipher.as_deref(), o);
        put(&mut s.client_fingerprints, r.ja4.as_deref(), o);
    }

    fn fingerprint(
        &mut self,
        host: &str,
        ja4: &str,
        learning: bool,
        alert: &dyn Fn(Rule, String) -> Alert,
        out: &mut Vec<Finding>,
    ) {
        // A host first seen now learns its first fingerprint silently: that the host is
        // new is the inventory's and the third-party rule's news, not a client's.
        let (known, new_host) = match self.fingerprints.get_mut(host) {
            Some(set) => (set, false),
            None => {
                if self.fingerprints.len() >= self.fingerprints.capacity() {
                    self.fingerprint_hosts_evicted += 1;
                }
                self.fingerprints.insert(host.to_string(), BTreeSet::new());
                match self.fingerprints.get_mut(host) {
                    Some(set) => (set, true),
                    None => return,
                }
            }
        };
        if known.contains(ja4) {
            return;
        }
        if known.len() < MAX_SET {
            known.insert(ja4.to_string());
        } else {
            self.values_overflow += 1;
        }
        if learning || new_host {
            return;
        }
        let mut a = alert(
            Rule::TlsNewClientFingerprint,
            format!("a TLS client fingerprint never seen for {host} after learning: {ja4}"),
        );
        a.details.insert("ja4".into(), ja4.into());
        out.push(Finding::new(a, format!("{host}|{ja4}")));
    }
}

/// An alert of `rule` about the connection `r`: its time, client, server, server name, and
/// its event as the evidence.
pub(crate) fn alert(r: &TlsRecord, rule: Rule, message: String) -> Alert {
    Alert {
        rule,
        ts_ns: r.ts_ns,
        severity: rule.default_severity(),
        id: String::new(),
        client: r.client.map(|c| c.ip()),
        server: r.server,
        host: r.server_name.clone(),
        endpoint: None,
        window_start_ns: r.ts_ns,
        window_end_ns: r.ts_ns,
        count: 1,
        counts: BTreeMap::new(),
        details: BTreeMap::new(),
        evidence: vec![r.event_id.clone()],
        message,
        sensors: Vec::new(),
    }
}

fn secs_ns_i(s: i64) -> i64 {
    s.saturating_mul(1_000_000_000)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::{Analytics, AnalyticsConfig, TlsRecord};

    fn conn(ts_s: i64, sni: &str, server: &str) -> TlsRecord {
        TlsRecord {
            ts_ns: ts_s * 1_000_000_000,
            event_id: format!("F{ts_s}-0"),
            client: Some("10.0.0.5:40000".parse().unwrap()),
            server: Some(server.parse().unwrap()),
            server_name: Some(sni.to_string()),
            version: Some(("tls", "1.3")),
            ja4: Some("t13d1516h2_8daaf6152771_e5627efa2ab1".into()),
            ..TlsRecord::default()
        }
    }

    /// With no HTTP visible, a new external destination is named by its SNI.
    #[test]
    fn third_parties_are_named_by_server_name() {
        let mut cfg = AnalyticsConfig {
            learning_period_s: 10,
            ..AnalyticsConfig::default()
        };
        cfg.third_party.internal_cidrs = vec!["10.0.0.0/8".into()];
        let mut a = Analytics::new(cfg).unwrap();
        let mut out = Vec::new();
        a.process_tls(&conn(0, "api.partner.example", "203.0.113.7:443"), &mut out);
        a.process_tls(
            &conn(20, "api.partner.example", "203.0.113.7:443"),
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        a.process_tls(&conn(30, "exfil.example", "198.51.100.9:443"), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].rule.id(), "APITAP-THIRDPARTY-001");
        assert_eq!(out[0].host.as_deref(), Some("exfil.example"));
        assert_eq!(out[0].evidence, ["F30-0"]);
        // Internal servers are no third parties.
        a.process_tls(&conn(40, "intranet.example", "10.1.2.3:443"), &mut out);
        assert_eq!(out.len(), 1);
        let services = a.tls_services();
        assert_eq!(services.len(), 3);
        assert_eq!(services[0].host, "api.partner.example");
        assert_eq!(services[0].connections, 2);
    }
}
