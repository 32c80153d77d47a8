//! Counters of a run and the summary printed at its end.

use crate::reorder::ReorderStats;
use apitap_core::counters::ByName;
use apitap_core::{Anomaly, HttpTransaction, IncompleteReason, Peak};
use apitap_flow::ReassemblyStats;
use apitap_session::SessionStats;
use apitap_wire::DecodeStats;
use serde::Serialize;
use serde_json::{json, Value};

apitap_core::counters! {
    /// Counters of one flow worker (merged over workers for the summary).
    pub struct WorkerStats {
        /// TCP packets processed.
        pub packets: u64,
        /// TCP payload bytes processed.
        pub payload_bytes: u64,
        /// Connections.
        pub flows: FlowCounts,
        /// Times the out-of-order memory cap made a connection give up its holes.
        pub reassembly_memcap_flushes: u64,
        /// Most out-of-order bytes one worker held at once.
        pub ooo_bytes_peak: Peak,
        /// Most bytes of unfinished heads one worker's parsers held at once.
        pub parser_bytes_peak: Peak,
        /// TCP reassembly counters.
        pub reassembly: ReassemblyStats,
        /// Session counters: roles, protocol layers, the parsers' own counters.
        pub session: SessionStats,
        /// Transactions emitted.
        pub transactions: TransactionCounts,
    }
}

apitap_core::counters! {
    /// Connections of a worker.
    pub struct FlowCounts {
        /// Connections created.
        pub created: u64,
        /// Connections closed by FIN/RST.
        pub closed: u64,
        /// Connections closed after `flow.idle_timeout_ms` without packets.
        pub idle_expired: u64,
        /// Connections evicted because the flow table was full (`flow.max_flows`).
        pub evicted: u64,
        /// Connections closed because a new SYN reused their 5-tuple.
        pub reused: u64,
        /// Connections still open at the end of input.
        pub open_at_end: u64,
        /// Packets without payload or SYN for a connection not tracked (ignored).
        pub packets_without_flow: u64,
    }
}

apitap_core::counters! {
    /// Transactions a worker emitted.
    pub struct TransactionCounts {
        /// Transactions emitted.
        pub total: u64,
        /// Transactions with both halves complete.
        pub complete: u64,
        /// Transactions placed where they completed, not where they started, because they
        /// took longer than `pipeline.reorder_window_packets`.
        pub keyed_late: u64,
        /// Incomplete transactions by reason.
        pub incomplete: ByName<IncompleteReason, { IncompleteReason::ALL.len() }>,
        /// Transactions carrying each anomaly.
        pub anomalies: ByName<Anomaly, { Anomaly::ALL.len() }>,
    }
}

impl WorkerStats {
    /// Counts one emitted transaction.
    pub fn count_transaction(&mut self, tx: &HttpTransaction) {
        let t = &mut self.transactions;
        t.total += 1;
        match tx.incomplete {
            None => t.complete += 1,
            Some(reason) => t.incomplete.count(reason),
        }
        for a in tx.anomalies.iter() {
            t.anomalies.count(a);
        }
    }
}

/// Everything a run reports at its end.
#[derive(Debug, Default)]
pub struct RunSummary {
    /// Input files read.
    pub files: usize,
    /// Decode counters.
    pub decode: DecodeStats,
    /// Worker counters, summed.
    pub workers: WorkerStats,
    /// Reorder counters.
    pub reorder: ReorderStats,
    /// Events written by the output sink.
    pub events_written: u64,
    /// Bytes written by the output sink.
    pub bytes_written: u64,
    /// Non-fatal input problems (e.g. a truncated last packet).
    pub warnings: Vec<String>,
    /// What reading the TLS key logs found, when there were any.
    pub keylog: Option<apitap_tls::keylog::KeyLogStats>,
    /// Fatal input error that stopped reading early (events before it were still written).
    pub input_error: Option<String>,
    /// Output error (e.g. disk full, closed pipe).
    pub output_error: Option<String>,
    /// Kafka sink counters, when Kafka was on.
    pub kafka: Option<apitap_sink::KafkaStats>,
    /// Live capture: per-interface counters (empty for a replay).
    pub interfaces: Vec<apitap_wire::InterfaceStats>,
    /// Live capture: decoded packets dropped because a worker queue was full.
    pub queue_dropped_packets: u64,
    /// Live capture: frames each reader thread read (`capture.reader_threads`).
    pub reader_packets: Vec<u64>,
    /// Frames dropped as SPAN duplicates (`pipeline.dedup_window_us`).
    pub duplicates_dropped: u64,
    /// Replay: times the reader waited for the worker queues to drain because the reorder
    /// stage held more than `pipeline.reorder_pause_events` events.
    pub reader_pauses: u64,
    /// Analytics counters, when the analytics ran.
    pub analytics: Option<apitap_analytics::AnalyticsStats>,
}

impl RunSummary {
    /// The summary as one JSON object (stable keys; `--stats-json`); `/metrics` renders
    /// the same object. Every section is a stats struct serialised as it is declared.
    pub fn to_json(&self) -> Value {
        let w = &self.workers;
        let capture = (!self.interfaces.is_empty()).then(|| {
            json!({
                "interfaces": section(&self.interfaces),
                "queue_dropped_packets": self.queue_dropped_packets,
                "reader_packets": self.reader_packets,
            })
        });
        let mut reassembly = section(&w.reassembly);
        if let Value::Object(m) = &mut reassembly {
            m.insert("memcap_flushes".into(), json!(w.reassembly_memcap_flushes));
            m.insert(
                "ooo_bytes_peak_per_worker".into(),
                section(&w.ooo_bytes_peak),
            );
        }
        let mut http = section(&w.session.http);
        if let Value::Object(m) = &mut http {
            m.insert(
                "head_buffer_bytes_peak_per_worker".into(),
                section(&w.parser_bytes_peak),
            );
        }
        let mut tls = section(&w.session.tls);
        if let (Value::Object(m), Some(k)) = (&mut tls, &self.keylog) {
            m.insert("keylog".into(), section(k));
        }
        let mut summary = json!({
            "input": {
                "files": self.files,
                "packets": self.decode.packets,
                "bytes": self.decode.bytes,
                "tcp_packets": self.decode.tcp,
                "duplicates_dropped": self.duplicates_dropped,
                "skipped": section(&self.decode.skipped),
                "defrag": section(&self.decode.defrag),
                "tunnel_truncated": section(&self.decode.tunnels.truncated),
                "tunnel_malformed": section(&self.decode.tunnels.malformed),
                "tunnel_unsupported": section(&self.decode.tunnels.unsupported),
                "warnings": self.warnings,
                "error": self.input_error,
            },
            "flows": section(&w.flows),
            "reassembly": reassembly,
            "session": section(&w.session),
            "http": http,
            "tls": tls,
            "transactions": section(&w.transactions),
            "kafka": self.kafka.as_ref().map(kafka_section),
            "output": {
                "events_written": self.events_written,
                "bytes_written": self.bytes_written,
                "reorder_forced_early": self.reorder.forced_early,
                "reorder_peak_buffered": section(&self.reorder.peak_buffered),
                "reader_pauses": self.reader_pauses,
                "error": self.output_error,
            },
        });
        if let (Some(capture), Value::Object(m)) = (capture, &mut summary) {
            m.insert("capture".into(), capture);
        }
        if let (Some(a), Value::Object(m)) = (&self.analytics, &mut summary) {
            m.insert("analytics".into(), section(a));
        }
        summary
    }

    /// Human-readable summary for stderr: one section per stage, zero counters left out.
    pub fn to_text(&self) -> String {
        let mut out = String::from("apitap summary\n");
        if let Value::Object(sections) = self.to_json() {
            for (name, section) in sections {
                let mut line = String::new();
                flatten(&mut line, "", &section);
                if !line.is_empty() {
                    out.push_str(&format!("  {name:<13}{line}\n"));
                }
            }
        }
        out
    }
}

fn flatten(line: &mut String, prefix: &str, v: &Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(line, &key, v);
            }
        }
        Value::Number(n) if n.as_u64() == Some(0) => {}
        Value::Null => {}
        Value::Array(a) if a.is_empty() => {}
        Value::Array(a) => {
            for item in a {
                line.push_str(&format!(" {prefix}={item}"));
            }
        }
        other => line.push_str(&format!(" {prefix}={other}")),
    }
}

/// A stats struct as JSON. Serialising counters (numbers, maps and lists of numbers and
/// strings) cannot fail.
fn section(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Kafka counters, with the average delivery latency in place of its running sum.
fn kafka_section(k: &apitap_sink::KafkaStats) -> Value {
    let mut v = section(k);
    if let Value::Object(m) = &mut v {
        m.remove("delivery_latency_us_sum");
        let avg = k
            .delivery_latency_us_sum
            .checked_div(k.delivered)
            .unwrap_or(0);
        m.insert("delivery_latency_us_avg".into(), json!(avg));
    }
    v
}
