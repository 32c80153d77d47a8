//! The detectors that need raw bytes, as one scan per transaction ([`EdgeScan`]): sensitive
//! data in headers and body samples, secrets in the URL, the request's auth schemes. What
//! it finds ([`EdgeFindings`]) is all the rest of the analytics needs of the bodies,
//! credentials and secret values. It runs on a sensor's flow workers when there are 4 or
//! more (in parallel, off the one analytics thread), and otherwise in the engine, for
//! every record that comes without findings.

use crate::alert::Rule;
use crate::config::AnalyticsConfig;
use crate::detect::url_secrets::url_secrets;
use crate::inventory::{auth_schemes, media_type};
use crate::record::{EdgeFindings, Headers, TxRecord};
use crate::sensitive::{Scanner, SensitiveKind};
use foldhash::HashSet;
use std::collections::BTreeMap;

/// The scans of one transaction's raw bytes, as the analytics config asks for them. A
/// clone shares the compiled expressions (build one, clone it for each thread).
#[derive(Clone)]
pub struct EdgeScan {
    request: SensitiveScan,
    response: SensitiveScan,
    /// Query parameter names that carry secrets (lower case, `_` for `-`).
    secret_params: HashSet<String>,
    /// Rules on: sensitive data in requests, in responses, secrets in URLs.
    request_on: bool,
    response_on: bool,
    url_on: bool,
}

impl EdgeScan {
    /// The scan `cfg` asks for (unknown kinds and rule ids are left out, as
    /// [`AnalyticsConfig::validate`] refuses them).
    pub fn new(cfg: &AnalyticsConfig) -> EdgeScan {
        let kinds: Vec<SensitiveKind> = cfg
            .sensitive
            .kinds
            .iter()
            .filter_map(|k| SensitiveKind::from_name(k))
            .collect();
        let scan = SensitiveScan::new(
            &kinds,
            &cfg.sensitive.skip_headers,
            cfg.sensitive.scan_headers,
            cfg.sensitive.max_scan_bytes,
        );
        let on = |rule: Rule| {
            !cfg.disabled_rules
                .iter()
                .any(|r| Rule::from_id(r) == Some(rule))
        };
        EdgeScan {
            response: scan.clone(),
            request: scan,
            secret_params: cfg
                .url_secrets
                .param_names
                .iter()
                .map(|n| n.to_ascii_lowercase().replace('-', "_"))
                .collect(),
            request_on: on(Rule::SensitiveDataRequest),
            response_on: on(Rule::SensitiveDataResponse),
            url_on: on(Rule::SecretInUrl),
        }
    }

    /// What the raw bytes of `tx` show, and what the scan did.
    pub fn findings(&mut self, tx: &TxRecord) -> (EdgeFindings, ScanCounters) {
        let mut found = EdgeFindings::default();
        if self.request_on {
            found.request_sensitive = self.request.scan(
                &tx.request_headers,
                tx.request_body.as_deref(),
                tx.request_body_cut,
                tx.request_content_type.as_deref(),
            );
        }
        if self.response_on {
            found.response_sensitive = self.response.scan(
                &tx.response_headers,
                tx.response_body.as_deref(),
                tx.response_body_cut,
                tx.response_content_type.as_deref(),
            );
        }
        if self.url_on {
            found.url_secrets = url_secrets(tx, &self.secret_params);
        }
        found.auth_schemes = auth_schemes(tx).collect();
        let mut scanned = self.request.take_counters();
        scanned.add(&self.response.take_counters());
        (found, scanned)
    }
}

/// What the sensitive-data scan of one or more transactions did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanCounters {
    /// Body samples scanned.
    pub bodies_scanned: u64,
    /// Bytes scanned.
    pub body_bytes_scanned: u64,
    /// Body samples not scanned (binary).
    pub bodies_skipped_binary: u64,
    /// Body samples cut to `sensitive.max_scan_bytes` (or cut upstream).
    pub bodies_truncated: u64,
}

impl ScanCounters {
    /// Adds `other` to these.
    pub fn add(&mut self, other: &ScanCounters) {
        self.bodies_scanned += other.bodies_scanned;
        self.body_bytes_scanned += other.body_bytes_scanned;
        self.bodies_skipped_binary += other.bodies_skipped_binary;
        self.bodies_truncated += other.bodies_truncated;
    }
}

/// Sensitive-data scan of one direction.
#[derive(Clone)]
pub(crate) struct SensitiveScan {
    scanner: Scanner,
    skip_headers: HashSet<String>,
    scan_headers: bool,
    max_bytes: usize,
    counters: ScanCounters,
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
    /// The counters since the last call, reset.
    fn take_counters(&mut self) -> ScanCounters {
        std::mem::take(&mut self.counters)
    }

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

    /// Counts by kind in the headers and the body sample of one direction (`body_cut`:
    /// the sample is not the whole body).
    pub(crate) fn scan(
        &mut self,
        headers: &Headers,
        body: Option<&[u8]>,
        body_cut: bool,
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
                if n < body.len() || body_cut {
                    self.counters.bodies_truncated += 1;
                }
                self.counters.bodies_scanned += 1;
                self.counters.body_bytes_scanned += n as u64;
                // A match ending where a cut sample ends may go on past it: not counted.
                self.scanner
                    .scan_part(&body[..n], n < body.len() || body_cut, &mut counts);
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensitive::SensitiveKind;

    #[test]
    fn binary_bodies_are_skipped() {
        let mut s = SensitiveScan::new(&SensitiveKind::ALL, &[], true, 10);
        let c = s.scan(
            &Headers::default(),
            Some(b"a@example.com"),
            false,
            Some("image/png"),
        );
        assert!(c.is_empty());
        let c = s.scan(&Headers::default(), Some(b"\0a@example.com"), false, None);
        assert!(c.is_empty());
        assert_eq!(s.counters.bodies_skipped_binary, 2);
        // Truncation to max_bytes: the email after byte 10 is not seen.
        let c = s.scan(
            &Headers::default(),
            Some(b"0123456789 a@example.com"),
            false,
            None,
        );
        assert!(c.is_empty());
        assert_eq!(s.counters.bodies_truncated, 1);
    }

    /// A long id cut by `max_bytes` (or by the capture) to a Luhn-valid card number is no
    /// finding; a body cut upstream is counted as cut even when it fits `max_bytes`.
    #[test]
    fn tokens_cut_at_the_limit_are_not_findings() {
        let mut s = SensitiveScan::new(&SensitiveKind::ALL, &[], false, 24);
        let body = br#"{"id":  41111111111111111111}"#; // 20 digits: no card
        let json = Some("application/json");
        assert!(s
            .scan(&Headers::default(), Some(body), false, json)
            .is_empty());
        assert!(s
            .scan(&Headers::default(), Some(&body[..24]), true, json)
            .is_empty());
        assert_eq!(s.counters.bodies_truncated, 2);
        // A card that ends before the cut is one.
        let mut s = SensitiveScan::new(&SensitiveKind::ALL, &[], false, 64);
        let card = br#"{"card": 4111111111111111, "n": 1}"#;
        let c = s.scan(&Headers::default(), Some(&card[..26]), true, json);
        assert_eq!(c.get(&SensitiveKind::CardNumber), Some(&1));
    }
}
