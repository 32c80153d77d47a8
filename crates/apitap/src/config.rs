//! `sensor.toml`: every bound and timeout of the sensor, with defaults.
//!
//! Unknown keys are errors (typos must not silently fall back to defaults). Units are in the
//! names (`_ms`, `_bytes`).

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Bodies captured for the sensitive-data scan of the analytics.
const SCANNED_MEDIA_TYPES: &[&str] = &[
    "application/json",
    "application/x-www-form-urlencoded",
    "application/xml",
    "text/plain",
    "text/csv",
    "text/xml",
];

/// The whole configuration file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Threads and queues.
    pub pipeline: PipelineConfig,
    /// Flow table.
    pub flow: FlowConfig,
    /// TCP reassembly.
    pub reassembly: apitap_flow::ReassemblyConfig,
    /// IPv4/IPv6 fragment reassembly (in the reader, before sharding).
    pub defrag: DefragConfig,
    /// Tunnels over UDP: which ports carry which.
    pub decode: DecodeConfig,
    /// HTTP parsing.
    pub http: apitap_http::HttpConfig,
    /// The session layer: protocol layers per connection.
    pub session: SessionConfig,
    /// TLS parsing.
    pub tls: apitap_tls::TlsConfig,
    /// Event content.
    pub output: OutputConfig,
    /// Kafka output; present (or `--kafka`) turns it on.
    pub kafka: Option<apitap_sink::KafkaConfig>,
    /// Live capture (`apitap run`).
    pub capture: CaptureConfig,
    /// The long-running service (`apitap run`): privileges, metrics, logs.
    pub daemon: DaemonConfig,
    /// API-security analytics: inventory, spec diff, baselines, detectors, alerts.
    pub analytics: apitap_analytics::AnalyticsConfig,
    /// `apitap analyze`: the central analytics over the events of many sensors.
    pub analyze: AnalyzeConfig,
}

/// `apitap analyze`: reading and ordering the events of many sensors.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyzeConfig {
    /// Packet time one source may trail the others and still be processed in time order;
    /// events later than that are processed at once and counted (`late`).
    pub allowed_lateness_ms: u64,
    /// Events held back for ordering; beyond it the oldest go early (`forced_early`).
    pub max_buffered_events: usize,
    /// Bytes of event lines held back for ordering; beyond it the oldest go early
    /// (`forced_early`).
    pub max_buffered_bytes: usize,
    /// Longest event line read; longer ones are skipped (`skipped_too_long`).
    pub max_event_bytes: usize,
    /// Events timed more than this ahead of the wall clock are skipped
    /// (`skipped_future`): one bad clock must not push every window forward.
    pub max_future_s: u64,
    /// `--kafka`: the consumer group of the centre's members.
    pub group_id: String,
    /// `--kafka`: how often (wall time) a member waits for its alerts' delivery and then
    /// commits the offsets of the events behind them.
    pub commit_interval_ms: u64,
    /// `--kafka`: a partition at its end for this long (wall time) stops holding back the
    /// others (`partitions_idled`); its next event opens it again.
    pub idle_partition_ms: u64,
    /// `--kafka`: alert ids read back from the alerts topic when a member (re)builds its
    /// state, so that it does not publish them again (`known_alerts_overflow`).
    pub max_known_alerts: usize,
}

impl Default for AnalyzeConfig {
    fn default() -> Self {
        AnalyzeConfig {
            allowed_lateness_ms: 10_000,
            max_buffered_events: 200_000,
            max_buffered_bytes: 256 << 20,
            max_event_bytes: 4 << 20,
            max_future_s: 3600,
            group_id: "apitap-analyze".into(),
            commit_interval_ms: 1000,
            idle_partition_ms: 5000,
            max_known_alerts: 1_000_000,
        }
    }
}

/// Live capture (`apitap run`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// Interfaces to capture on (`-i` overrides).
    pub interfaces: Vec<String>,
    /// BPF filter applied in the kernel (`--bpf` overrides); empty captures everything.
    pub bpf: String,
    /// Bytes kept of each frame.
    pub snaplen: u32,
    /// Promiscuous mode (needed on a SPAN/TAP port).
    pub promiscuous: bool,
    /// Deliver each packet at once instead of in kernel blocks (TPACKET_V3 block
    /// delivery is off then; lower latency, more CPU).
    pub immediate_mode: bool,
    /// Kernel ring size per interface.
    pub buffer_bytes: u32,
    /// How long the kernel may hold a partly filled block before handing it over.
    pub block_timeout_ms: u32,
    /// Reader threads per run: above 1, each opens every interface again and the kernel
    /// spreads packets over them by flow (a `PACKET_FANOUT` group in hash mode).
    pub reader_threads: usize,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            interfaces: Vec::new(),
            bpf: String::new(),
            snaplen: 65_535,
            promiscuous: true,
            immediate_mode: false,
            buffer_bytes: 64 << 20,
            block_timeout_ms: 100,
            reader_threads: 1,
        }
    }
}

/// The long-running service.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// User to switch to once the capture is open (when started as root).
    pub user: Option<String>,
    /// Group to switch to; default: the user's primary group.
    pub group: Option<String>,
    /// Keep running as root when no `user` is set (not recommended).
    pub allow_root: bool,
    /// Address of the Prometheus `/metrics` and `/health` endpoint; empty turns it off.
    pub metrics_addr: String,
    /// Seconds between one-line stats in the log; 0 turns them off.
    pub stats_interval_s: u64,
    /// Log format: "text" or "json".
    pub log_format: String,
    /// Log filter (tracing syntax, e.g. "info" or "apitap=debug"); `APITAP_LOG` overrides.
    pub log_level: String,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            user: None,
            group: None,
            allow_root: false,
            metrics_addr: "127.0.0.1:9187".into(),
            stats_interval_s: 60,
            log_format: "text".into(),
            log_level: "info".into(),
        }
    }
}

/// Threads and queues.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Flow worker threads; 0 means one per available core.
    pub workers: usize,
    /// Packets per batch sent from the reader to a worker.
    pub batch_packets: usize,
    /// A batch is also sent once it holds this many payload bytes, so the memory the worker
    /// queues hold is bounded in bytes (at most about `worker_queue_batches` × this per
    /// worker), whatever the packet sizes.
    pub batch_bytes: usize,
    /// Batches queued per worker before the reader waits (replay) or drops (live).
    pub worker_queue_batches: usize,
    /// Events held by the reorder stage before it releases them out of order (counted).
    pub reorder_max_events: usize,
    /// Replay: while the reorder stage holds more events than this (one worker ran ahead
    /// of another), the reader pauses until the worker queues drain; counted as
    /// `output.reader_pauses`. Bounds memory without reordering anything. 0 = never pause.
    pub reorder_pause_events: usize,
    /// Events are ordered by request start, except a transaction that completes more than
    /// this many packets after it started: it is placed where it completed, so one slow
    /// transaction cannot hold back (and make the sensor buffer) everything after it.
    pub reorder_window_packets: u64,
    /// Packets between clock ticks broadcast to all workers (drives timeouts and output).
    pub tick_packets: u64,
    /// A frame identical to one seen less than this many microseconds before is a SPAN
    /// duplicate and is dropped (counted); 0 turns the filter off.
    pub dedup_window_us: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            workers: 0,
            batch_packets: 256,
            batch_bytes: 128 * 1024,
            worker_queue_batches: 64,
            reorder_max_events: 100_000,
            reorder_pause_events: 4096,
            reorder_window_packets: 32_768,
            tick_packets: 8192,
            dedup_window_us: 1000,
        }
    }
}

/// IPv4/IPv6 fragment reassembly.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefragConfig {
    /// Reassemble fragments; off, they are counted (`ip_fragment`) and dropped.
    pub enabled: bool,
    /// A datagram not complete this long (packet time) after its first fragment is dropped.
    pub timeout_ms: u64,
    /// Datagrams in progress at once; a new one evicts the oldest.
    pub max_datagrams: usize,
    /// Fragments of one datagram; one more drops it.
    pub max_fragments: usize,
    /// Bytes held over all datagrams in progress; the oldest are evicted to make room.
    pub max_bytes: usize,
}

impl Default for DefragConfig {
    fn default() -> Self {
        let l = apitap_wire::DefragLimits::default();
        DefragConfig {
            enabled: true,
            timeout_ms: l.timeout_ms,
            max_datagrams: l.max_datagrams,
            max_fragments: l.max_fragments,
            max_bytes: l.max_bytes,
        }
    }
}

impl DefragConfig {
    /// The reassembler's limits.
    pub fn limits(&self) -> apitap_wire::DefragLimits {
        apitap_wire::DefragLimits {
            timeout_ms: self.timeout_ms,
            max_datagrams: self.max_datagrams,
            max_fragments: self.max_fragments,
            max_bytes: self.max_bytes,
        }
    }

    fn validate(&self) -> Result<()> {
        // 8191 fragment offsets of 8 bytes: no datagram needs more than 8192 fragments.
        apitap_core::bounds::check_ranges::<u64>(&[
            ("defrag.timeout_ms", self.timeout_ms, 1..=120_000),
            (
                "defrag.max_datagrams",
                self.max_datagrams as u64,
                1..=1_000_000,
            ),
            ("defrag.max_fragments", self.max_fragments as u64, 1..=8192),
            ("defrag.max_bytes", self.max_bytes as u64, 65_536..=1 << 30),
        ])
        .map_err(anyhow::Error::msg)?;
        Ok(())
    }
}

/// Tunnels over UDP (`[decode]`): the ports each one is decoded on (a datagram's
/// destination port, then its source port), since mirror setups use non-standard ones.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeConfig {
    /// VXLAN (Ethernet inside).
    pub vxlan_ports: Vec<u16>,
    /// VXLAN-GPE.
    pub vxlan_gpe_ports: Vec<u16>,
    /// GENEVE.
    pub geneve_ports: Vec<u16>,
    /// GTP-U (GTPv1 user plane).
    pub gtpu_ports: Vec<u16>,
    /// Teredo servers.
    pub teredo_ports: Vec<u16>,
    /// GRE in UDP.
    pub gre_udp_ports: Vec<u16>,
    /// Teredo between clients, relays and peers on any port, found by its shape: one IPv6
    /// packet filling the datagram, with a Teredo (2001:0::/32) or link-local address.
    pub teredo_detect: bool,
}

/// Ports one UDP tunnel may be given.
const MAX_TUNNEL_PORTS: usize = 16;

impl Default for DecodeConfig {
    fn default() -> Self {
        use apitap_wire::decode::tunnel_ports::*;
        DecodeConfig {
            vxlan_ports: vec![VXLAN],
            vxlan_gpe_ports: vec![VXLAN_GPE],
            geneve_ports: vec![GENEVE],
            gtpu_ports: vec![GTPU],
            teredo_ports: vec![TEREDO],
            gre_udp_ports: vec![GRE_UDP],
            teredo_detect: true,
        }
    }
}

impl DecodeConfig {
    /// The decoder's port map; a port given to two tunnels, port 0 or more than 16 ports
    /// for one tunnel is an error.
    pub fn udp_tunnels(&self) -> Result<apitap_wire::UdpTunnels> {
        use apitap_core::TunnelKind as K;
        let lists: [(K, &str, &[u16]); 6] = [
            (K::Vxlan, "vxlan_ports", &self.vxlan_ports),
            (K::VxlanGpe, "vxlan_gpe_ports", &self.vxlan_gpe_ports),
            (K::Geneve, "geneve_ports", &self.geneve_ports),
            (K::GtpU, "gtpu_ports", &self.gtpu_ports),
            (K::Teredo, "teredo_ports", &self.teredo_ports),
            (K::GreUdp, "gre_udp_ports", &self.gre_udp_ports),
        ];
        for (_, name, ports) in lists {
            if ports.len() > MAX_TUNNEL_PORTS {
                bail!("decode.{name} lists more than {MAX_TUNNEL_PORTS} ports");
            }
            if ports.contains(&0) {
                bail!("decode.{name} holds port 0");
            }
        }
        apitap_wire::UdpTunnels::new(
            lists.iter().map(|(kind, _, ports)| (*kind, *ports)),
            self.teredo_detect,
        )
        .map_err(|e| anyhow::anyhow!("decode: {e}"))
    }
}

/// The session layer (`[session]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Protocol layers one connection may have: the connection itself and one more per
    /// CONNECT tunnel or 101 upgrade inside it; deeper ones are not parsed
    /// (`session.depth_exceeded`).
    pub max_depth: u8,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_depth: apitap_session::SessionConfig::default().max_depth,
        }
    }
}

/// Flow table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowConfig {
    /// Tracked TCP connections, all workers together; the least recently active is evicted
    /// (counted) when full.
    pub max_flows: usize,
    /// A connection with no packet for this long (packet time) is closed.
    pub idle_timeout_ms: u64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: 262_144,
            idle_timeout_ms: 120_000,
        }
    }
}

/// Event content.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Sensor name written to `observer.name` and `apitap.sensor`; empty leaves them out.
    pub sensor_name: String,
    /// Header names whose values are redacted (case-insensitive).
    pub redact_headers: Vec<String>,
    /// File holding the HMAC key for redacted values. Without a key, values become
    /// `[REDACTED]`; with one, `hmac:<16 hex>` so equal secrets can be correlated.
    pub redact_hmac_key_file: Option<PathBuf>,
    /// Without a key file: make a random key for this run, so redacted values correlate
    /// within the run (and not across runs). Off by default: a replay's output must be
    /// the same every time.
    pub redact_key_per_run: bool,
    /// Body fields (JSON keys at any depth, form fields) and query parameters whose values
    /// are redacted: a name matches when, lower-cased without `_`/`-`, it starts or ends
    /// with one of these.
    pub redact_fields: Vec<String>,
    /// Event layout: "ecs" (default) or "ocsf" (OCSF 1.1.0 HTTP Activity).
    pub format: apitap_event::EventFormat,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            sensor_name: String::new(),
            redact_headers: apitap_event::DEFAULT_REDACT_HEADERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            redact_hmac_key_file: None,
            redact_key_per_run: false,
            redact_fields: apitap_event::DEFAULT_REDACT_FIELDS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            format: apitap_event::EventFormat::Ecs,
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text =
            crate::files::read_capped_text(path, "config file", crate::files::MAX_CONFIG_BYTES)?;
        Config::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Parses and validates config text. Kafka settings are checked by [`Config::validate`]
    /// once command-line overrides (`--kafka`) are applied.
    pub fn parse(text: &str) -> Result<Config> {
        let cfg: Config = toml::from_str(text)?;
        cfg.validate_local()?;
        Ok(cfg)
    }

    /// The HTTP settings the workers run with: `http`, plus the media types the
    /// analytics scan for sensitive data (`analytics.sensitive.scan_bodies`).
    pub fn effective_http(&self) -> apitap_http::HttpConfig {
        let mut http = self.http.clone();
        let s = &self.analytics.sensitive;
        if self.analytics.enabled && s.scan_bodies && !s.kinds.is_empty() {
            for media in SCANNED_MEDIA_TYPES {
                if !http.include_body_for.iter().any(|m| m == media) {
                    http.include_body_for.push((*media).to_string());
                    http.scan_only_body_for.push((*media).to_string());
                }
            }
            http.max_scan_body_bytes = s.max_scan_bytes;
        }
        http
    }

    /// Checks everything, Kafka settings included.
    pub fn validate(&self) -> Result<()> {
        self.validate_local()?;
        if let Some(k) = &self.kafka {
            k.client_config()?;
        }
        Ok(())
    }

    /// Checks ranges that serde cannot (all but the Kafka settings).
    fn validate_local(&self) -> Result<()> {
        const MIB: u64 = 1 << 20;
        const DAY_MS: u64 = 86_400_000;
        let p = &self.pipeline;
        let h = &self.http;
        let r = &self.reassembly;
        let c = &self.capture;
        apitap_core::bounds::check_ranges::<u64>(&[
            ("pipeline.workers", p.workers as u64, 0..=256),
            ("pipeline.batch_packets", p.batch_packets as u64, 1..=65_536),
            ("pipeline.batch_bytes", p.batch_bytes as u64, 1..=64 * MIB),
            (
                "pipeline.worker_queue_batches",
                p.worker_queue_batches as u64,
                1..=4096,
            ),
            (
                "pipeline.reorder_max_events",
                p.reorder_max_events as u64,
                1..=10_000_000,
            ),
            (
                "pipeline.reorder_pause_events",
                p.reorder_pause_events as u64,
                0..=10_000_000,
            ),
            (
                "pipeline.reorder_window_packets",
                p.reorder_window_packets,
                1..=100_000_000,
            ),
            ("pipeline.tick_packets", p.tick_packets, 1..=100_000_000),
            ("pipeline.dedup_window_us", p.dedup_window_us, 0..=1_000_000),
            ("flow.max_flows", self.flow.max_flows as u64, 1..=16 * MIB),
            (
                "flow.idle_timeout_ms",
                self.flow.idle_timeout_ms,
                1..=DAY_MS,
            ),
            (
                "reassembly.max_ooo_bytes_per_direction",
                r.max_ooo_bytes_per_direction as u64,
                0..=64 * MIB,
            ),
            (
                "reassembly.max_ooo_segments_per_direction",
                r.max_ooo_segments_per_direction as u64,
                0..=65_536,
            ),
            (
                "reassembly.memcap_bytes",
                r.memcap_bytes as u64,
                MIB..=1 << 40,
            ),
            (
                "http.max_head_bytes",
                h.max_head_bytes as u64,
                64..=16 * MIB,
            ),
            ("http.max_headers", h.max_headers as u64, 1..=256),
            (
                "http.head_memcap_bytes",
                h.head_memcap_bytes as u64,
                MIB..=1 << 40,
            ),
            (
                "http.max_pending_requests",
                h.max_pending_requests as u64,
                1..=4096,
            ),
            (
                "http.transaction_timeout_ms",
                h.transaction_timeout_ms,
                1..=DAY_MS,
            ),
            ("http.max_non_http_bytes", h.max_non_http_bytes, 0..=1 << 30),
            ("http.max_body_bytes", h.max_body_bytes as u64, 0..=16 * MIB),
            (
                "http.max_decoded_body_bytes",
                h.max_decoded_body_bytes as u64,
                1..=64 * MIB,
            ),
            (
                "http.max_decompression_ratio",
                u64::from(h.max_decompression_ratio),
                1..=100_000,
            ),
            (
                "http.max_concurrent_streams",
                h.max_concurrent_streams as u64,
                1..=65_536,
            ),
            (
                "http.max_hpack_table_bytes",
                h.max_hpack_table_bytes as u64,
                0..=16 * MIB,
            ),
            (
                "tls.max_handshake_bytes",
                self.tls.max_handshake_bytes as u64,
                1024..=16 * MIB,
            ),
            (
                "tls.max_pending_bytes",
                self.tls.max_pending_bytes as u64,
                0..=64 * MIB,
            ),
            (
                "tls.max_keylog_connections",
                self.tls.max_keylog_connections as u64,
                1..=10_000_000,
            ),
            (
                "session.max_depth",
                u64::from(self.session.max_depth),
                1..=16,
            ),
            ("capture.snaplen", u64::from(c.snaplen), 128..=262_144),
            (
                "capture.buffer_bytes",
                u64::from(c.buffer_bytes),
                MIB..=1 << 30,
            ),
            (
                "capture.block_timeout_ms",
                u64::from(c.block_timeout_ms),
                1..=10_000,
            ),
            ("capture.reader_threads", c.reader_threads as u64, 1..=16),
            (
                "daemon.stats_interval_s",
                self.daemon.stats_interval_s,
                0..=86_400,
            ),
        ])
        .map_err(anyhow::Error::msg)?;
        if h.head_memcap_bytes / self.worker_count().max(1) < h.max_head_bytes.saturating_mul(2) {
            bail!("http.head_memcap_bytes must be at least 2 x http.max_head_bytes per worker");
        }
        if h.include_body_for.iter().any(|t| t.trim().is_empty()) {
            bail!("http.include_body_for holds an empty media type");
        }
        self.defrag.validate()?;
        self.decode.udp_tunnels()?;
        let d = &self.daemon;
        if !d.metrics_addr.is_empty() && d.metrics_addr.parse::<std::net::SocketAddr>().is_err() {
            bail!(
                "daemon.metrics_addr {:?} is not an address like 127.0.0.1:9187",
                d.metrics_addr
            );
        }
        if !matches!(d.log_format.as_str(), "text" | "json") {
            bail!("daemon.log_format must be \"text\" or \"json\"");
        }
        if tracing_subscriber::EnvFilter::try_new(&d.log_level).is_err() {
            bail!("daemon.log_level {:?} is not a valid filter", d.log_level);
        }
        self.analytics.validate()?;
        let z = &self.analyze;
        apitap_core::bounds::check_ranges::<u64>(&[
            (
                "analyze.allowed_lateness_ms",
                z.allowed_lateness_ms,
                0..=86_400_000,
            ),
            (
                "analyze.max_buffered_events",
                z.max_buffered_events as u64,
                1..=10_000_000,
            ),
            (
                "analyze.max_buffered_bytes",
                z.max_buffered_bytes as u64,
                1 << 20..=64 << 30,
            ),
            (
                "analyze.max_event_bytes",
                z.max_event_bytes as u64,
                4096..=1 << 30,
            ),
            ("analyze.max_future_s", z.max_future_s, 0..=31_536_000),
            (
                "analyze.commit_interval_ms",
                z.commit_interval_ms,
                10..=3_600_000,
            ),
            (
                "analyze.idle_partition_ms",
                z.idle_partition_ms,
                0..=86_400_000,
            ),
            (
                "analyze.max_known_alerts",
                z.max_known_alerts as u64,
                0..=100_000_000,
            ),
        ])
        .map_err(anyhow::Error::msg)?;
        if z.group_id.trim().is_empty() {
            bail!("analyze.group_id must not be empty");
        }
        if self.analytics.enabled
            && self.analytics.mode == apitap_analytics::AnalyticsMode::Edge
            && self.output.format != apitap_event::EventFormat::Ecs
        {
            bail!("analytics.mode = \"edge\" needs output.format = \"ecs\" (apitap analyze reads ECS events)");
        }
        Ok(())
    }

    /// Worker count after resolving 0 to the number of cores.
    pub fn worker_count(&self) -> usize {
        match self.pipeline.workers {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        }
    }

    /// The HMAC key for redaction, read from `output.redact_hmac_key_file`, or random
    /// for this run with `output.redact_key_per_run`.
    pub fn redact_key(&self) -> Result<Option<Vec<u8>>> {
        match &self.output.redact_hmac_key_file {
            None if self.output.redact_key_per_run => {
                let mut key = vec![0u8; 32];
                std::io::Read::read_exact(
                    &mut std::fs::File::open("/dev/urandom")
                        .context("cannot open /dev/urandom for output.redact_key_per_run")?,
                    &mut key,
                )
                .context("cannot read /dev/urandom")?;
                Ok(Some(key))
            }
            None => Ok(None),
            Some(path) => {
                let key = crate::files::read_capped(
                    path,
                    "output.redact_hmac_key_file",
                    crate::files::MAX_KEY_BYTES,
                )?;
                let key = key.trim_ascii().to_vec();
                if key.len() < 16 {
                    bail!(
                        "output.redact_hmac_key_file {} holds {} bytes; use at least 16",
                        path.display(),
                        key.len()
                    );
                }
                Ok(Some(key))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_sensor_toml_is_the_defaults() {
        let c = Config::parse(include_str!("../../../sensor.toml")).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.flow.max_flows, 262_144);
        assert_eq!(c.http.max_headers, 128);
        assert!(c.output.redact_headers.iter().any(|h| h == "authorization"));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Config::parse("[flow]\nmax_flow = 3\n").unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
        assert!(Config::parse("[nope]\n").is_err());
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        for bad in [
            "[flow]\nmax_flows = 0",
            "[http]\nmax_headers = 1000",
            "[pipeline]\nbatch_packets = 0",
            "[pipeline]\nbatch_bytes = 0",
            "[http]\nmax_head_bytes = 10",
            "[flow]\nidle_timeout_ms = -5",
            "[capture]\nsnaplen = 10",
            "[capture]\nblock_timeout_ms = 0",
            "[capture]\nbuffer_bytes = 1000",
            "[daemon]\nmetrics_addr = \"localhost\"",
            "[daemon]\nlog_format = \"xml\"",
            "[daemon]\nlog_level = \"[[[\"",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kafka_settings_are_checked() {
        let c = Config::parse("[kafka]\nbrokers = \"127.0.0.1:9092\"\n").unwrap();
        let k = c.kafka.unwrap();
        assert_eq!(k.events_topic, "apitap.events");
        assert_eq!(k.alerts_topic, "apitap.alerts");
        for bad in [
            "[kafka]\nbrokers = \"h:1\"\ncompression = \"zstd\"",
            "[kafka]\nbrokers = \"h:1\"\nacks = \"2\"",
            "[kafka]\nbrokers = \"\"",
            "[kafka]\nbrokers = \"h:1\"\n[kafka.options]\n\"linger.ms\" = \"5\"",
            "[kafka]\nbrokers = \"h:1\"\n[kafka.tls]\nca_file = \"/nonexistent/ca.pem\"",
            "[kafka]\nbrokers = \"h:1\"\nbogus = 1",
        ] {
            let err = Config::parse(bad)
                .and_then(|c| c.validate().map(|_| c))
                .err()
                .unwrap_or_else(|| panic!("accepted: {bad}"));
            assert!(!format!("{err:#}").is_empty());
        }
    }

    #[test]
    fn example_kafka_section_parses_when_uncommented() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sensor.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let start = text.find("# [kafka]").unwrap();
        let section: String = text[start..]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.starts_with('[') || l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let c = Config::parse(&section).unwrap();
        let k = c.kafka.unwrap();
        assert_eq!(k.brokers, "127.0.0.1:9092");
        assert_eq!(k.sasl.unwrap().mechanism, "SCRAM-SHA-512");
        assert_eq!(k.options.len(), 1);
        assert!(k.tls.is_some());
    }

    #[test]
    fn per_run_redaction_keys_differ_between_runs() {
        let c = Config::parse("[output]\nredact_key_per_run = true\n").unwrap();
        let a = c.redact_key().unwrap().unwrap();
        let b = c.redact_key().unwrap().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert_eq!(Config::default().redact_key().unwrap(), None);
    }

    #[test]
    fn example_sensor_toml_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sensor.toml");
        let c = Config::load(&path).unwrap();
        assert!(c.validate().is_ok());
    }
}
