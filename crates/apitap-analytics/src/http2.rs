//! HTTP/2 attack indicators, one HTTP/2 connection at a time (OWASP API4, unrestricted
//! resource consumption): rapid reset (CVE-2023-44487), CONTINUATION floods
//! (CVE-2024-27316), SETTINGS and PING floods, HPACK bombs, stream abuse. Each rule reads
//! the connection's record; none needs state across connections.

use crate::alert::{Alert, Rule};
use crate::config::Http2AnalyticsConfig;
use crate::emit::Finding;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// One HTTP/2 connection as the analytics sees it (built by the pipeline from the
/// connection's record).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Http2Record {
    /// First byte, packet time (Unix ns).
    pub ts_ns: i64,
    /// Last byte, packet time (Unix ns).
    pub end_ns: i64,
    /// Id of the connection event (`event.id`), the alert's evidence.
    pub event_id: String,
    /// The client.
    pub client: Option<SocketAddr>,
    /// The server.
    pub server: Option<SocketAddr>,
    /// Streams opened.
    pub streams: u32,
    /// Most streams open at once.
    pub max_open_streams: u32,
    /// The server's SETTINGS_MAX_CONCURRENT_STREAMS.
    pub server_max_concurrent_streams: Option<u32>,
    /// Streams the client reset before any response began.
    pub rapid_resets: u32,
    /// Client HEADERS on stream ids a client may not open.
    pub stream_id_errors: u32,
    /// Most frames one header block took.
    pub longest_header_block_frames: u32,
    /// Header blocks flagged as HPACK bombs.
    pub hpack_bombs: u32,
    /// Largest decoded header list and its block's wire size.
    pub largest_header_list: (u64, u64),
    /// SETTINGS frames from the client.
    pub client_settings: u32,
    /// PING frames from the client.
    pub client_pings: u32,
}

impl Http2Record {
    /// `count` over the connection's lifetime, per second (a connection shorter than a
    /// second counts as one second).
    fn per_second(&self, count: u32) -> u64 {
        let secs = (self.end_ns.saturating_sub(self.ts_ns) / 1_000_000_000).max(1);
        u64::from(count) / secs.unsigned_abs()
    }
}

/// Appends what the HTTP/2 rules find on the connection `r`.
pub(crate) fn observe(r: &Http2Record, cfg: &Http2AnalyticsConfig, out: &mut Vec<Finding>) {
    let who = r.client.map_or_else(String::new, |c| c.ip().to_string());
    let target = r.server.map_or_else(String::new, |s| s.to_string());
    let key = |rule: &str| format!("{who}|{target}|{rule}");
    let rate = r.per_second(r.rapid_resets);
    if r.rapid_resets >= cfg.rapid_reset_streams
        && rate >= cfg.rapid_reset_per_second
        && u64::from(r.rapid_resets) * 2 >= u64::from(r.streams)
    {
        let mut a = alert(
            r,
            Rule::Http2RapidReset,
            format!(
                "{who} reset {} of {} HTTP/2 streams to {target} before any response ({rate}/s): the rapid-reset pattern (CVE-2023-44487)",
                r.rapid_resets, r.streams
            ),
        );
        a.count = u64::from(r.rapid_resets);
        a.counts.insert("streams".into(), u64::from(r.streams));
        a.details.insert("per_second".into(), rate.into());
        out.push(Finding::new(a, key("reset")));
    }
    if r.longest_header_block_frames >= cfg.continuation_frames {
        let mut a = alert(
            r,
            Rule::Http2ContinuationFlood,
            format!(
                "{who} sent a header block of {} frames to {target} (CONTINUATION flood, CVE-2024-27316)",
                r.longest_header_block_frames
            ),
        );
        a.count = u64::from(r.longest_header_block_frames);
        out.push(Finding::new(a, key("continuation")));
    }
    for (kind, count) in [("SETTINGS", r.client_settings), ("PING", r.client_pings)] {
        let rate = r.per_second(count);
        if count >= cfg.control_frames && rate >= cfg.control_frames_per_second {
            let mut a = alert(
                r,
                Rule::Http2ControlFrameFlood,
                format!("{who} sent {count} {kind} frames to {target} ({rate}/s)"),
            );
            a.count = u64::from(count);
            a.details.insert("frame_type".into(), kind.into());
            a.details.insert("per_second".into(), rate.into());
            out.push(Finding::new(a, key(kind)));
        }
    }
    if r.hpack_bombs > 0 {
        let (decoded, wire) = r.largest_header_list;
        let mut a = alert(
            r,
            Rule::Http2HpackBomb,
            format!(
                "{who} sent {} HTTP/2 header blocks to {target} that decode to far more than their size (largest {decoded} bytes from {wire})",
                r.hpack_bombs
            ),
        );
        a.count = u64::from(r.hpack_bombs);
        a.counts.insert("decoded_bytes".into(), decoded);
        a.counts.insert("wire_bytes".into(), wire);
        out.push(Finding::new(a, key("hpack")));
    }
    let limit = r
        .server_max_concurrent_streams
        .map_or(cfg.max_open_streams, |m| m.min(cfg.max_open_streams));
    if r.stream_id_errors > 0 || r.max_open_streams > limit {
        let mut a = alert(
            r,
            Rule::Http2StreamAbuse,
            format!(
                "{who} misused HTTP/2 streams to {target}: {} at once (limit {limit}), {} on ids a client may not open",
                r.max_open_streams, r.stream_id_errors
            ),
        );
        a.count = u64::from(r.stream_id_errors.max(1));
        a.counts
            .insert("max_open_streams".into(), u64::from(r.max_open_streams));
        a.counts
            .insert("stream_id_errors".into(), u64::from(r.stream_id_errors));
        a.details.insert("limit".into(), limit.into());
        out.push(Finding::new(a, key("streams")));
    }
}

fn alert(r: &Http2Record, rule: Rule, message: String) -> Alert {
    Alert {
        rule,
        ts_ns: r.ts_ns,
        severity: rule.default_severity(),
        id: String::new(),
        client: r.client.map(|c| c.ip()),
        server: r.server,
        host: None,
        endpoint: None,
        window_start_ns: r.ts_ns,
        window_end_ns: r.end_ns,
        count: 1,
        counts: BTreeMap::new(),
        details: BTreeMap::new(),
        evidence: vec![r.event_id.clone()],
        message,
        sensors: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Http2Record {
        Http2Record {
            ts_ns: 0,
            end_ns: 1_000_000_000,
            event_id: "F0-1".into(),
            client: "10.0.0.2:40000".parse().ok(),
            server: "10.0.0.1:443".parse().ok(),
            streams: 200,
            max_open_streams: 20,
            server_max_concurrent_streams: Some(128),
            ..Http2Record::default()
        }
    }

    fn rules(r: &Http2Record) -> Vec<Rule> {
        let mut out = Vec::new();
        observe(r, &Http2AnalyticsConfig::default(), &mut out);
        out.iter().map(|f| f.alert.rule).collect()
    }

    #[test]
    fn normal_connections_fire_nothing() {
        let mut r = record();
        r.client_pings = 10;
        r.client_settings = 2;
        r.longest_header_block_frames = 2;
        assert!(rules(&r).is_empty());
        // Many pings over a long-lived connection are keepalives, not a flood.
        r.client_pings = 5000;
        r.end_ns = 3600 * 1_000_000_000;
        assert!(rules(&r).is_empty());
    }

    #[test]
    fn each_indicator_fires_its_rule() {
        let mut r = record();
        r.rapid_resets = 200;
        assert_eq!(rules(&r), [Rule::Http2RapidReset]);
        let mut r = record();
        r.longest_header_block_frames = 301;
        assert_eq!(rules(&r), [Rule::Http2ContinuationFlood]);
        let mut r = record();
        r.client_pings = 500;
        r.client_settings = 500;
        assert_eq!(
            rules(&r),
            [Rule::Http2ControlFrameFlood, Rule::Http2ControlFrameFlood]
        );
        let mut r = record();
        r.hpack_bombs = 3;
        assert_eq!(rules(&r), [Rule::Http2HpackBomb]);
        let mut r = record();
        r.max_open_streams = 129;
        assert_eq!(rules(&r), [Rule::Http2StreamAbuse]);
        let mut r = record();
        r.stream_id_errors = 1;
        assert_eq!(rules(&r), [Rule::Http2StreamAbuse]);
    }
}
