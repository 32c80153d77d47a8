//! Counters of a run and the summary printed at its end.

use crate::reorder::ReorderStats;
use apitap_core::{Anomaly, HttpTransaction, IncompleteReason};
use apitap_flow::ReassemblyStats;
use apitap_http::HttpStats;
use apitap_wire::DecodeStats;
use serde_json::{json, Map, Value};

/// Counters of one flow worker (summed over workers for the summary).
#[derive(Clone, Debug, Default)]
pub struct WorkerStats {
    /// TCP packets processed.
    pub packets: u64,
    /// TCP payload bytes processed.
    pub payload_bytes: u64,
    /// Packets without payload or SYN for a connection not tracked (ignored).
    pub packets_without_flow: u64,
    /// Connections created.
    pub flows_created: u64,
    /// Connections closed by FIN/RST.
    pub flows_closed: u64,
    /// Connections closed after `flow.idle_timeout_ms` without packets.
    pub flows_idle_expired: u64,
    /// Connections evicted because the flow table was full (`flow.max_flows`).
    pub flows_evicted: u64,
    /// Connections closed because a new SYN reused their 5-tuple.
    pub flows_reused: u64,
    /// Times the out-of-order memory cap made a connection give up its holes.
    pub reassembly_memcap_flushes: u64,
    /// Most out-of-order bytes one worker held at once.
    pub ooo_bytes_peak: u64,
    /// Connections still open at the end of input.
    pub flows_open_at_end: u64,
    /// Connections whose client was known from the handshake.
    pub role_from_handshake: u64,
    /// Connections whose client was guessed from the first payload.
    pub role_from_payload: u64,
    /// Connections whose client was guessed from the ports.
    pub role_from_port: u64,
    /// Bytes lost to gaps before a connection's roles were known.
    pub gap_bytes_before_role: u64,
    /// Transactions emitted.
    pub transactions: u64,
    /// Transactions with both halves complete.
    pub transactions_complete: u64,
    /// Transactions placed where they completed, not where they started, because they took
    /// longer than `pipeline.reorder_window_packets`.
    pub transactions_keyed_late: u64,
    /// Incomplete transactions by reason (index: `IncompleteReason::ALL`).
    pub incomplete: [u64; 8],
    /// Transactions carrying each anomaly (index: `Anomaly` discriminant).
    pub anomalies: [u64; 32],
    /// TCP reassembly counters.
    pub reassembly: ReassemblyStats,
    /// HTTP parser counters.
    pub http: HttpStats,
}

impl WorkerStats {
    /// Counts one emitted transaction.
    pub fn count_transaction(&mut self, tx: &HttpTransaction) {
        self.transactions += 1;
        match tx.incomplete {
            None => self.transactions_complete += 1,
            Some(reason) => {
                if let Some(slot) = IncompleteReason::ALL
                    .iter()
                    .position(|r| *r == reason)
                    .and_then(|i| self.incomplete.get_mut(i))
                {
                    *slot += 1;
                }
            }
        }
        for a in tx.anomalies.iter() {
            if let Some(slot) = self.anomalies.get_mut(a as usize) {
                *slot += 1;
            }
        }
    }

    /// Adds another worker's counters.
    pub fn add(&mut self, o: &WorkerStats) {
        self.packets += o.packets;
        self.payload_bytes += o.payload_bytes;
        self.packets_without_flow += o.packets_without_flow;
        self.flows_created += o.flows_created;
        self.flows_closed += o.flows_closed;
        self.flows_idle_expired += o.flows_idle_expired;
        self.flows_evicted += o.flows_evicted;
        self.flows_reused += o.flows_reused;
        self.reassembly_memcap_flushes += o.reassembly_memcap_flushes;
        self.ooo_bytes_peak = self.ooo_bytes_peak.max(o.ooo_bytes_peak);
        self.transactions_keyed_late += o.transactions_keyed_late;
        self.flows_open_at_end += o.flows_open_at_end;
        self.role_from_handshake += o.role_from_handshake;
        self.role_from_payload += o.role_from_payload;
        self.role_from_port += o.role_from_port;
        self.gap_bytes_before_role += o.gap_bytes_before_role;
        self.transactions += o.transactions;
        self.transactions_complete += o.transactions_complete;
        for (a, b) in self.incomplete.iter_mut().zip(o.incomplete.iter()) {
            *a += b;
        }
        for (a, b) in self.anomalies.iter_mut().zip(o.anomalies.iter()) {
            *a += b;
        }
        self.reassembly.add(&o.reassembly);
        self.http.add(&o.http);
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
    /// Frames dropped as SPAN duplicates (`pipeline.dedup_window_us`).
    pub duplicates_dropped: u64,
    /// Replay: times the reader waited for the worker queues to drain because the reorder
    /// stage held more than `pipeline.reorder_pause_events` events.
    pub reader_pauses: u64,
    /// Analytics counters, when the analytics ran.
    pub analytics: Option<apitap_analytics::AnalyticsStats>,
}

impl RunSummary {
    /// The summary as one JSON object (stable keys; `--stats-json`).
    pub fn to_json(&self) -> Value {
        let w = &self.workers;
        let mut incomplete = Map::new();
        for (i, r) in IncompleteReason::ALL.iter().enumerate() {
            incomplete.insert(
                r.name().into(),
                json!(w.incomplete.get(i).copied().unwrap_or(0)),
            );
        }
        let mut anomalies = Map::new();
        for a in Anomaly::ALL {
            anomalies.insert(
                a.name().into(),
                json!(w.anomalies.get(*a as usize).copied().unwrap_or(0)),
            );
        }
        let decode_drops: Map<String, Value> = self
            .decode
            .drops()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let defrag: Map<String, Value> = self
            .decode
            .defrag
            .counters()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let mut reassembly = crate::counters::reassembly(&w.reassembly);
        if let Value::Object(m) = &mut reassembly {
            m.insert("memcap_flushes".into(), json!(w.reassembly_memcap_flushes));
            m.insert("ooo_bytes_peak_per_worker".into(), json!(w.ooo_bytes_peak));
        }
        let capture = (!self.interfaces.is_empty()).then(|| {
            let ifaces: Vec<Value> = self
                .interfaces
                .iter()
                .map(|i| {
                    json!({
                        "name": i.name,
                        "packets": i.packets,
                        "bytes": i.bytes,
                        "kernel_dropped": i.kernel_dropped,
                        "interface_dropped": i.interface_dropped,
                    })
                })
                .collect();
            json!({
                "interfaces": ifaces,
                "queue_dropped_packets": self.queue_dropped_packets,
            })
        });
        let mut summary = json!({
            "input": {
                "files": self.files,
                "packets": self.decode.packets,
                "bytes": self.decode.bytes,
                "tcp_packets": self.decode.tcp,
                "duplicates_dropped": self.duplicates_dropped,
                "skipped": decode_drops,
                "defrag": defrag,
                "warnings": self.warnings,
                "error": self.input_error,
            },
            "flows": {
                "created": w.flows_created,
                "closed": w.flows_closed,
                "idle_expired": w.flows_idle_expired,
                "evicted": w.flows_evicted,
                "reused": w.flows_reused,
                "open_at_end": w.flows_open_at_end,
                "packets_without_flow": w.packets_without_flow,
                "role_from_handshake": w.role_from_handshake,
                "role_from_payload": w.role_from_payload,
                "role_from_port": w.role_from_port,
                "gap_bytes_before_role": w.gap_bytes_before_role,
            },
            "reassembly": reassembly,
            "http": crate::counters::http(&w.http),
            "transactions": {
                "total": w.transactions,
                "complete": w.transactions_complete,
                "keyed_late": w.transactions_keyed_late,
                "incomplete": incomplete,
                "anomalies": anomalies,
            },
            "kafka": self.kafka.as_ref().map(crate::counters::kafka),
            "output": {
                "events_written": self.events_written,
                "bytes_written": self.bytes_written,
                "reorder_forced_early": self.reorder.forced_early,
                "reorder_peak_buffered": self.reorder.peak_buffered,
                "reader_pauses": self.reader_pauses,
                "error": self.output_error,
            },
        });
        if let (Some(capture), Value::Object(m)) = (capture, &mut summary) {
            m.insert("capture".into(), capture);
        }
        if let (Some(a), Value::Object(m)) = (&self.analytics, &mut summary) {
            // Serialising a struct of numbers and maps of numbers cannot fail.
            m.insert(
                "analytics".into(),
                serde_json::to_value(a).unwrap_or(Value::Null),
            );
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
