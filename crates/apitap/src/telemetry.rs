//! State shared between the threads of a live sensor: counter snapshots each stage
//! publishes (for `/metrics`, `/health` and the periodic log line) and the settings a
//! SIGHUP can change while running.
//!
//! Stages publish copies of their own counters at their own pace (workers at each clock
//! tick, the sink twice a second, the reader once a second), so the hot path never touches
//! a shared cache line per packet.

use crate::reorder::ReorderStats;
use crate::stats::{RunSummary, WorkerStats};
use apitap_core::Merge;
use apitap_event::Encoder;
use apitap_sink::KafkaStats;
use apitap_wire::{DecodeStats, InterfaceStats};
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// What a worker publishes at each tick.
#[derive(Clone, Debug, Default)]
pub struct WorkerSnapshot {
    /// Its counters so far.
    pub stats: WorkerStats,
    /// Connections tracked now.
    pub active_flows: u64,
    /// Out-of-order bytes buffered now.
    pub buffered_bytes: u64,
    /// Transactions waiting for their response now.
    pub open_transactions: u64,
}

/// What the reader publishes.
#[derive(Clone, Debug, Default)]
pub struct InputSnapshot {
    /// Decode counters.
    pub decode: DecodeStats,
    /// Per-interface counters, kernel drops included.
    pub interfaces: Vec<InterfaceStats>,
    /// Packets dropped because a worker queue was full.
    pub queue_dropped_packets: u64,
}

/// What the sink publishes.
#[derive(Clone, Debug, Default)]
pub struct OutputSnapshot {
    /// Events written to the JSON-lines output.
    pub written: u64,
    /// Bytes written to it.
    pub bytes: u64,
    /// Reorder counters.
    pub reorder: ReorderStats,
    /// Kafka counters, when Kafka is on.
    pub kafka: Option<KafkaStats>,
    /// The output error, once one happened.
    pub error: Option<String>,
    /// Analytics counters, when the analytics run.
    pub analytics: Option<apitap_analytics::AnalyticsStats>,
}

/// Shared between the reader, workers, sink and the metrics endpoint.
pub struct Shared {
    started: Instant,
    workers: Vec<Mutex<WorkerSnapshot>>,
    input: Mutex<InputSnapshot>,
    output: Mutex<OutputSnapshot>,
    /// Set when the reader stops (capture failure or shutdown): `/health` turns 503.
    pub stopping: AtomicBool,
    /// Wall-clock seconds (Unix) when the reader last received a packet.
    pub last_packet_unix_s: AtomicU64,
    encoder: Mutex<Encoder>,
    /// The workers' raw-byte scan, when a reload replaced it.
    scan: Mutex<Option<apitap_analytics::EdgeScan>>,
    /// Changes whenever the encoder or the scan settings do.
    worker_settings_generation: AtomicU64,
    analytics_reload: Mutex<Option<apitap_analytics::Analytics>>,
}

/// Locks a snapshot; a thread that panicked while holding it left a complete value, so
/// poisoning is ignored.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// State for `workers` workers, starting with `encoder`.
    pub fn new(workers: usize, encoder: Encoder) -> Shared {
        Shared {
            started: Instant::now(),
            workers: (0..workers)
                .map(|_| Mutex::new(WorkerSnapshot::default()))
                .collect(),
            input: Mutex::new(InputSnapshot::default()),
            output: Mutex::new(OutputSnapshot::default()),
            stopping: AtomicBool::new(false),
            last_packet_unix_s: AtomicU64::new(0),
            encoder: Mutex::new(encoder),
            scan: Mutex::new(None),
            worker_settings_generation: AtomicU64::new(0),
            analytics_reload: Mutex::new(None),
        }
    }

    /// Seconds since start.
    pub fn uptime_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Worker `id` publishes its counters.
    pub fn publish_worker(&self, id: usize, snap: WorkerSnapshot) {
        if let Some(slot) = self.workers.get(id) {
            *lock(slot) = snap;
        }
    }

    /// The reader publishes its counters.
    pub fn publish_input(&self, snap: InputSnapshot) {
        *lock(&self.input) = snap;
    }

    /// The sink publishes its counters.
    pub fn publish_output(&self, snap: OutputSnapshot) {
        *lock(&self.output) = snap;
    }

    /// Replaces the event encoder (SIGHUP with new redaction settings).
    pub fn set_encoder(&self, encoder: Encoder) {
        *lock(&self.encoder) = encoder;
        self.worker_settings_generation
            .fetch_add(1, Ordering::Release);
    }

    /// Replaces the workers' raw-byte scan (SIGHUP with new analytics settings).
    pub fn set_scan(&self, scan: apitap_analytics::EdgeScan) {
        *lock(&self.scan) = Some(scan);
        self.worker_settings_generation
            .fetch_add(1, Ordering::Release);
    }

    /// The generation of the workers' settings; changes when [`Shared::set_encoder`] or
    /// [`Shared::set_scan`] runs.
    pub fn worker_settings_generation(&self) -> u64 {
        self.worker_settings_generation.load(Ordering::Acquire)
    }

    /// A copy of the scan [`Shared::set_scan`] left (`None`: the start-up one).
    pub fn scan(&self) -> Option<apitap_analytics::EdgeScan> {
        lock(&self.scan).clone()
    }

    /// Hands a reconfigured analytics engine (SIGHUP) to the sink thread.
    pub fn set_analytics(&self, engine: apitap_analytics::Analytics) {
        *lock(&self.analytics_reload) = Some(engine);
    }

    /// The engine [`Shared::set_analytics`] left, once.
    pub fn take_analytics(&self) -> Option<apitap_analytics::Analytics> {
        lock(&self.analytics_reload).take()
    }

    /// A copy of the current encoder.
    pub fn encoder(&self) -> Encoder {
        lock(&self.encoder).clone()
    }

    /// The run summary as of the latest snapshots.
    pub fn summary(&self) -> RunSummary {
        let input = lock(&self.input).clone();
        let output = lock(&self.output).clone();
        let mut summary = RunSummary {
            decode: input.decode,
            interfaces: input.interfaces,
            queue_dropped_packets: input.queue_dropped_packets,
            reorder: output.reorder,
            events_written: output.written,
            bytes_written: output.bytes,
            output_error: output.error,
            kafka: output.kafka,
            analytics: output.analytics,
            ..RunSummary::default()
        };
        for w in &self.workers {
            summary.workers.merge(&lock(w).stats);
        }
        summary
    }

    /// Gauges of the moment, summed over workers: active flows, buffered bytes, open
    /// transactions.
    pub fn gauges(&self) -> WorkerSnapshot {
        let mut g = WorkerSnapshot::default();
        for w in &self.workers {
            let w = lock(w);
            g.active_flows += w.active_flows;
            g.buffered_bytes += w.buffered_bytes;
            g.open_transactions += w.open_transactions;
        }
        g
    }

    /// Prometheus text exposition (format 0.0.4) of every counter.
    pub fn prometheus(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let g = self.gauges();
        gauge(
            &mut out,
            "apitap_uptime_seconds",
            "Seconds since start.",
            self.uptime_s(),
        );
        gauge(
            &mut out,
            "apitap_flows_active",
            "TCP connections tracked now.",
            g.active_flows as f64,
        );
        gauge(
            &mut out,
            "apitap_reassembly_buffered_bytes",
            "Out-of-order bytes buffered now.",
            g.buffered_bytes as f64,
        );
        gauge(
            &mut out,
            "apitap_transactions_open",
            "Requests waiting for their response now.",
            g.open_transactions as f64,
        );
        render_summary(&mut out, &self.summary().to_json());
        out
    }
}

fn gauge(out: &mut String, name: &str, help: &str, v: f64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

/// Maps whose keys become a label, by section key.
const LABELLED: &[(&str, &str)] = &[
    ("skipped", "reason"),
    ("tunnel_truncated", "tunnel"),
    ("tunnel_malformed", "tunnel"),
    ("tunnel_unsupported", "tunnel"),
    ("incomplete", "reason"),
    ("anomalies", "anomaly"),
    ("alerts_by_rule", "rule"),
];

/// Renders every number of the summary JSON as a metric named after its path
/// (`apitap_<section>_<key>`); counters get `_total`. Values that are levels, not counts,
/// are gauges.
fn render_summary(out: &mut String, summary: &Value) {
    let Value::Object(sections) = summary else {
        return;
    };
    for (section, v) in sections {
        if section == "capture" {
            render_interfaces(out, v);
            continue;
        }
        walk(out, &format!("apitap_{section}"), v);
    }
}

fn walk(out: &mut String, prefix: &str, v: &Value) {
    let Value::Object(m) = v else {
        return;
    };
    for (k, v) in m {
        // `transactions.total` is `apitap_transactions_total`, not `..._total_total`.
        let name = if k == "total" {
            prefix.to_string()
        } else {
            format!("{prefix}_{}", sanitize(k))
        };
        match v {
            Value::Number(n) => {
                let is_gauge = is_gauge(k);
                let full = if is_gauge {
                    name
                } else {
                    format!("{name}_total")
                };
                let kind = if is_gauge { "gauge" } else { "counter" };
                let _ = writeln!(out, "# TYPE {full} {kind}\n{full} {n}");
            }
            Value::Object(inner) => {
                if let Some((_, label)) = LABELLED.iter().find(|(key, _)| key == k) {
                    let full = format!("{name}_total");
                    let _ = writeln!(out, "# TYPE {full} counter");
                    for (lv, n) in inner {
                        if let Value::Number(n) = n {
                            let _ = writeln!(out, "{full}{{{label}=\"{}\"}} {n}", escape(lv));
                        }
                    }
                } else {
                    walk(out, &name, v);
                }
            }
            _ => {}
        }
    }
}

fn render_interfaces(out: &mut String, v: &Value) {
    let Some(Value::Array(ifaces)) = v.get("interfaces") else {
        return;
    };
    for field in ["packets", "bytes", "kernel_dropped", "interface_dropped"] {
        let full = format!("apitap_capture_{field}_total");
        let _ = writeln!(out, "# TYPE {full} counter");
        for iface in ifaces {
            if let (Some(name), Some(n)) = (
                iface.get("name").and_then(Value::as_str),
                iface.get(field).and_then(Value::as_u64),
            ) {
                let _ = writeln!(out, "{full}{{interface=\"{}\"}} {n}", escape(name));
            }
        }
    }
    if let Some(n) = v.get("queue_dropped_packets").and_then(Value::as_u64) {
        let full = "apitap_capture_queue_dropped_packets_total";
        let _ = writeln!(out, "# TYPE {full} counter\n{full} {n}");
    }
}

/// Levels rather than counts.
fn is_gauge(key: &str) -> bool {
    key.contains("peak")
        || key.contains("queue_depth")
        || key.contains("latency")
        || key == "open_at_end"
        || ANALYTICS_LEVELS.contains(&key)
}

/// Analytics values that are sizes of the moment, not counts.
const ANALYTICS_LEVELS: &[&str] = &[
    "endpoints",
    "template_positions",
    "template_variables",
    "baselines",
    "auth_clients",
    "bola_keys",
    "suppression_keys",
    "destinations",
    "partner_endpoints",
];

fn sanitize(k: &str) -> String {
    k.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_summary_counter_becomes_one_metric_line() {
        let shared = Shared::new(2, Encoder::default());
        let mut w = WorkerStats::default();
        w.flows.created = 7;
        w.transactions.total = 3;
        w.transactions
            .incomplete
            .count(apitap_core::IncompleteReason::ResponseTimeout);
        w.transactions
            .incomplete
            .count(apitap_core::IncompleteReason::ResponseTimeout);
        shared.publish_worker(
            0,
            WorkerSnapshot {
                stats: w.clone(),
                active_flows: 4,
                buffered_bytes: 10,
                open_transactions: 1,
            },
        );
        shared.publish_worker(
            1,
            WorkerSnapshot {
                stats: w,
                active_flows: 1,
                ..WorkerSnapshot::default()
            },
        );
        shared.publish_input(InputSnapshot {
            interfaces: vec![InterfaceStats {
                name: "veth0".into(),
                packets: 9,
                kernel_dropped: 2,
                ..InterfaceStats::default()
            }],
            queue_dropped_packets: 5,
            ..InputSnapshot::default()
        });
        let text = shared.prometheus();
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
                .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
                .to_string()
        };
        assert_eq!(line("apitap_flows_active"), "apitap_flows_active 5");
        assert_eq!(
            line("apitap_flows_created_total"),
            "apitap_flows_created_total 14"
        );
        assert_eq!(
            line("apitap_transactions_total"),
            "apitap_transactions_total 6"
        );
        assert!(text.contains("apitap_transactions_incomplete_total{reason=\""));
        assert_eq!(
            line("apitap_capture_kernel_dropped_total"),
            "apitap_capture_kernel_dropped_total{interface=\"veth0\"} 2"
        );
        assert_eq!(
            line("apitap_capture_queue_dropped_packets_total"),
            "apitap_capture_queue_dropped_packets_total 5"
        );
        // Every sample line is `name[{labels}] number`, and every name has a TYPE.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = l.rsplit_once(' ').unwrap_or(("", ""));
            assert!(value.parse::<f64>().is_ok(), "{l}");
            let family = name.split('{').next().unwrap_or("");
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "no TYPE for {family}"
            );
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
