//! Sensitive data exposure: card numbers, emails, national ids, cloud keys, JWTs, private
//! keys in the headers and body samples of one direction (see [`crate::sensitive`]).
//! One suppression key per kind, so a new kind on the same endpoint still fires.

use super::{Detector, TxContext};
use crate::alert::Rule;
use crate::emit::{Finding, Gate};
use crate::inventory::media_type;
use crate::record::{Headers, TxRecord};
use crate::sensitive::{Scanner, SensitiveKind};
use foldhash::HashSet;
use serde_json::json;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Which way the scanned data went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// In requests (the client sent it).
    Request,
    /// In responses (the API exposed it).
    Response,
}

/// The sensitive-data detector of one direction.
pub(crate) struct Exposure {
    flow: Flow,
    scan: SensitiveScan,
}

impl Exposure {
    pub(crate) fn new(flow: Flow, scan: SensitiveScan) -> Exposure {
        Exposure { flow, scan }
    }

    pub(crate) fn counters(&self) -> ScanCounters {
        self.scan.counters
    }

    /// Counts by kind in this direction's headers and body sample.
    pub(crate) fn scan(&mut self, tx: &TxRecord) -> BTreeMap<SensitiveKind, u64> {
        match self.flow {
            Flow::Request => self.scan.scan(
                &tx.request_headers,
                tx.request_body.as_deref(),
                tx.request_body_cut,
                tx.request_content_type.as_deref(),
            ),
            Flow::Response => self.scan.scan(
                &tx.response_headers,
                tx.response_body.as_deref(),
                tx.response_body_cut,
                tx.response_content_type.as_deref(),
            ),
        }
    }

    /// The rule of this direction.
    pub(crate) fn rule(&self) -> Rule {
        match self.flow {
            Flow::Request => Rule::SensitiveDataRequest,
            Flow::Response => Rule::SensitiveDataResponse,
        }
    }
}

impl Detector for Exposure {
    fn observe(&mut self, cx: &TxContext<'_>, gate: &mut Gate, out: &mut Vec<Finding>) {
        let rule = self.rule();
        let dir = match self.flow {
            Flow::Request => "request",
            Flow::Response => "response",
        };
        if gate.is_disabled(rule) {
            return;
        }
        let tx = cx.tx;
        // A sensor in edge mode scanned the raw bytes already.
        let counts = match (&tx.findings, self.flow) {
            (Some(f), Flow::Request) => Cow::Borrowed(&f.request_sensitive),
            (Some(f), Flow::Response) => Cow::Borrowed(&f.response_sensitive),
            (None, _) => Cow::Owned(self.scan(tx)),
        };
        if counts.is_empty() {
            return;
        }
        // A leaky endpoint exposes on every response: nothing is built while every kind
        // found is within its suppression window.
        if !counts
            .keys()
            .any(|k| gate.allowed(rule, &[cx.scoped, k.name()], tx.ts_ns))
        {
            gate.count_suppressed();
            return;
        }
        let severity = counts
            .keys()
            .map(|k| k.severity())
            .max()
            .unwrap_or(rule.default_severity());
        let names: Vec<&str> = counts.keys().map(|k| k.name()).collect();
        let mut alert = cx.alert(
            rule,
            format!(
                "Sensitive data in the {dir} of {}: {} (values not recorded)",
                cx.endpoint,
                names.join(", ")
            ),
        );
        if self.flow == Flow::Request {
            alert.client = Some(tx.client.ip());
            alert.severity = severity.saturating_sub(10).max(1);
        } else {
            alert.severity = severity;
        }
        alert.count = counts.values().sum();
        alert.counts = counts
            .iter()
            .map(|(k, v)| (k.name().to_string(), *v))
            .collect();
        alert.details.insert("direction".into(), json!(dir));
        let keys = counts
            .keys()
            .map(|k| format!("{}|{}", cx.scoped, k.name()))
            .collect();
        out.push(Finding { alert, keys });
    }
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
