//! `apitap run`: the replay pipeline fed from live interfaces, as a long-running service.
//!
//! Start-up order matters: open the capture (needs CAP_NET_RAW), the output file and the
//! metrics socket; then drop privileges while the process still has one thread; only then
//! start workers, the sink (and Kafka client) and the telemetry thread.
//!
//! Time: packet time is wall time on a live link. When the link is quiet the reader ticks
//! the workers once a second with the wall clock, so idle flows and transactions still time
//! out.

use crate::config::Config;
use crate::pipeline::Feeder;
use crate::pipeline::{encoder, open_output, Backpressure, Output, Pipeline};
use crate::privileges::drop_privileges;
use crate::stats::RunSummary;
use crate::telemetry::{InputSnapshot, Shared};
use anyhow::{Context, Result};
use apitap_core::{Merge, Timestamp};
use apitap_wire::{CaptureOptions, Fanout, InterfaceStats, LiveSource};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Command-line settings that override the config file (kept so a reload applies them
/// again).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `-i`: interfaces.
    pub interfaces: Vec<String>,
    /// `--bpf`.
    pub bpf: Option<String>,
    /// `--kafka`: brokers.
    pub kafka: Option<String>,
    /// `--user`.
    pub user: Option<String>,
    /// `--metrics-addr`.
    pub metrics_addr: Option<String>,
    /// `--workers`.
    pub workers: Option<usize>,
    /// `--reader-threads`.
    pub reader_threads: Option<usize>,
    /// `--allow-root`.
    pub allow_root: bool,
    /// `--log-format`.
    pub log_format: Option<String>,
    /// `--spec`.
    pub spec: Option<PathBuf>,
    /// `--keylog`: key log files added to `tls.keylog_files`.
    pub keylog: Vec<PathBuf>,
}

impl Overrides {
    /// Applies the overrides to a config read from file.
    pub fn apply(&self, cfg: &mut Config) {
        cfg.tls
            .keylog_files
            .extend(self.keylog.iter().map(|p| p.display().to_string()));
        if !self.interfaces.is_empty() {
            cfg.capture.interfaces = self.interfaces.clone();
        }
        if let Some(b) = &self.bpf {
            cfg.capture.bpf = b.clone();
        }
        if let Some(k) = &self.kafka {
            cfg.kafka.get_or_insert_with(Default::default).brokers = k.clone();
        }
        if let Some(u) = &self.user {
            cfg.daemon.user = Some(u.clone());
        }
        if let Some(m) = &self.metrics_addr {
            cfg.daemon.metrics_addr = m.clone();
        }
        if let Some(w) = self.workers {
            cfg.pipeline.workers = w.max(1);
        }
        if let Some(r) = self.reader_threads {
            cfg.capture.reader_threads = r;
        }
        if self.allow_root {
            cfg.daemon.allow_root = true;
        }
        if let Some(f) = &self.log_format {
            cfg.daemon.log_format = f.clone();
        }
        if let Some(spec) = &self.spec {
            cfg.analytics.spec.path = spec.display().to_string();
        }
    }
}

/// How a live run was started.
pub struct LiveRun {
    /// The effective configuration (file plus overrides).
    pub cfg: Config,
    /// The config file, re-read on SIGHUP.
    pub config_path: Option<PathBuf>,
    /// Command-line overrides, applied again on SIGHUP.
    pub overrides: Overrides,
    /// JSON-lines output, if any.
    pub output: Option<Output>,
}

/// Captures until SIGTERM/SIGINT (or a capture error), then drains: packets still in the
/// kernel ring are read, every flow is closed, pending transactions are emitted and the
/// sinks flushed. A second SIGTERM/SIGINT exits at once with status 1.
pub fn run_live(run: LiveRun) -> Result<RunSummary> {
    let LiveRun {
        mut cfg,
        config_path,
        overrides,
        output,
    } = run;
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // The first signal sets `stop`; a second one, with `stop` already set, exits.
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&stop))
            .context("cannot install signal handler")?;
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("cannot install signal handler")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .context("cannot install signal handler")?;

    let c = &cfg.capture;
    let readers = c.reader_threads.max(1);
    let mut opts = CaptureOptions {
        snaplen: i32::try_from(c.snaplen).unwrap_or(65_535),
        promiscuous: c.promiscuous,
        immediate: c.immediate_mode,
        buffer_bytes: i32::try_from(c.buffer_bytes).unwrap_or(i32::MAX),
        block_timeout_ms: i32::try_from(c.block_timeout_ms).unwrap_or(100),
        bpf: c.bpf.clone(),
        fanout: match readers {
            1 => Fanout::Off,
            _ => Fanout::New,
        },
    };
    // Every reader's handles are open before privileges go. The first reader's handles
    // start one fanout group per interface; the others join them.
    let mut source = LiveSource::open(&c.interfaces, &opts)?;
    opts.fanout = match readers {
        1 => Fanout::Off,
        _ => Fanout::Join(source.fanout_groups().to_vec()),
    };
    let mut other_sources = Vec::with_capacity(readers - 1);
    for _ in 1..readers {
        other_sources.push(LiveSource::open(&c.interfaces, &opts)?);
    }
    let metrics_listener = match cfg.daemon.metrics_addr.as_str() {
        "" => None,
        addr => {
            let l = std::net::TcpListener::bind(addr)
                .with_context(|| format!("cannot listen on daemon.metrics_addr {addr}"))?;
            l.set_nonblocking(true)
                .context("cannot make the metrics socket non-blocking")?;
            Some(l)
        }
    };
    let lines = open_output(output.as_ref())?;
    // Key logs are opened while the process may still read what only root can.
    let keylog = crate::keylog::open(&cfg.tls)?;

    let identity = drop_privileges(&cfg.daemon)?;

    let shared = Arc::new(Shared::new(cfg.worker_count(), encoder(&cfg)?));
    let released = Arc::new(AtomicU64::new(0));
    let mut pipeline = Pipeline::start(
        &cfg,
        lines,
        Some(Arc::clone(&shared)),
        released,
        Backpressure::Drop,
        false,
        keylog,
    )?;
    let poll_ms = u16::try_from(cfg.capture.block_timeout_ms.min(100)).unwrap_or(100);
    let drain_for = Duration::from_millis(u64::from(cfg.capture.block_timeout_ms) * 2 + 50);
    let reading_ended = Arc::new(AtomicBool::new(false));
    let mut other_readers = Vec::with_capacity(other_sources.len());
    for (source, feeder) in other_sources
        .into_iter()
        .zip(std::mem::take(&mut pipeline.reader_feeders))
    {
        other_readers.push(OtherReader::spawn(
            other_readers.len() + 1,
            source,
            feeder,
            ReaderControl {
                stop: Arc::clone(&stop),
                ended: Arc::clone(&reading_ended),
                shared: Arc::clone(&shared),
                poll_ms,
                drain_for,
            },
        )?);
    }
    let stats_interval = Arc::new(AtomicU64::new(cfg.daemon.stats_interval_s));
    let telemetry = crate::metrics::spawn(
        metrics_listener,
        Arc::clone(&shared),
        Arc::clone(&stats_interval),
    )?;
    // Logged once every thread runs: from here on the process is what it will stay.
    tracing::info!(
        interfaces = ?cfg.capture.interfaces,
        bpf = %cfg.capture.bpf,
        workers = cfg.worker_count(),
        readers,
        %identity,
        "capture open, privileges dropped"
    );
    // Not under systemd (no NOTIFY_SOCKET): nothing to tell.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    let mut summary = RunSummary::default();
    let mut last_tick = Instant::now();
    let mut last_publish = Instant::now();
    let mut stopping_since: Option<Instant> = None;
    loop {
        let idle_sends = !other_readers.is_empty();
        let n = match read_and_feed(
            &mut source,
            &mut pipeline.feeder,
            poll_ms,
            &shared,
            idle_sends,
        ) {
            Ok(n) => n,
            Err(e) => {
                summary.input_error = Some(e);
                break;
            }
        };
        // Another reader that ended on its own failed: its share of the traffic would go
        // to the remaining readers mid-flow, so the run ends as on a capture error.
        if !stop.load(Ordering::SeqCst) && other_readers.iter().any(OtherReader::has_ended) {
            tracing::error!("a capture reader stopped; stopping the capture");
            break;
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            if let Err(e) = pipeline.feeder.tick(Some(wall_clock())) {
                summary.input_error = Some(format!("{e:#}"));
                break;
            }
        }
        if last_publish.elapsed() >= Duration::from_secs(1) {
            last_publish = Instant::now();
            publish_input(&shared, &mut source, &pipeline, &other_readers);
        }
        if reload.swap(false, Ordering::SeqCst) {
            apply_reload(
                config_path.as_ref(),
                &overrides,
                &mut cfg,
                &shared,
                &stats_interval,
            );
        }
        if stop.load(Ordering::SeqCst) {
            let since = *stopping_since.get_or_insert_with(|| {
                tracing::info!("stopping: draining the capture");
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
                Instant::now()
            });
            // Read until the ring is empty and the kernel has handed over its partly
            // filled blocks; give up waiting for a quiet moment after five times that.
            let waited = since.elapsed();
            if (n == 0 && waited >= drain_for) || waited >= drain_for * 5 {
                break;
            }
        }
    }
    shared.stopping.store(true, Ordering::SeqCst);
    reading_ended.store(true, Ordering::SeqCst);
    let mut others = Vec::with_capacity(other_readers.len());
    for r in other_readers {
        others.push(r.join());
    }
    // The last snapshot holds every reader's final counters.
    for r in &others {
        *lock(&r.snapshot) = r.outcome.input.clone();
    }
    publish_input(&shared, &mut source, &pipeline, &others);
    summary.interfaces = source.stats();
    summary.reader_packets = vec![summary.interfaces.iter().map(|i| i.packets).sum()];
    pipeline.finish(&mut summary)?;
    // `finish` filled in the first reader's counters; the others add theirs.
    for r in others {
        let r = r.outcome;
        summary.decode.merge(&r.input.decode);
        add_interfaces(&mut summary.interfaces, &r.input.interfaces);
        summary
            .reader_packets
            .push(r.input.interfaces.iter().map(|i| i.packets).sum());
        summary.queue_dropped_packets += r.input.queue_dropped_packets;
        summary.duplicates_dropped += r.duplicates_dropped;
        if summary.input_error.is_none() {
            summary.input_error = r.error;
        }
    }
    telemetry.stop();
    tracing::info!(
        packets = summary.decode.packets,
        transactions = summary.workers.transactions.total,
        events = summary.events_written,
        "stopped"
    );
    Ok(summary)
}

/// Publishes the input counters of every reader, summed.
fn publish_input(
    shared: &Shared,
    source: &mut LiveSource,
    pipeline: &Pipeline,
    others: &[impl AsRef<Mutex<InputSnapshot>>],
) {
    let mut snap = InputSnapshot {
        decode: pipeline.feeder.decoder.stats().clone(),
        interfaces: source.stats(),
        queue_dropped_packets: pipeline.feeder.queue_dropped_packets(),
    };
    for r in others {
        let other = lock(r.as_ref());
        snap.decode.merge(&other.decode);
        add_interfaces(&mut snap.interfaces, &other.interfaces);
        snap.queue_dropped_packets += other.queue_dropped_packets;
    }
    shared.publish_input(snap);
}

/// Adds the counters of another reader's handles on the same interfaces, in the same order.
/// Not `interface_dropped`: libpcap reads it from the interface, so every handle reports
/// the same drops.
fn add_interfaces(into: &mut [InterfaceStats], other: &[InterfaceStats]) {
    for (a, b) in into.iter_mut().zip(other) {
        a.packets += b.packets;
        a.bytes += b.bytes;
        a.kernel_dropped += b.kernel_dropped;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a reader thread shares with the run.
struct ReaderControl {
    /// SIGTERM/SIGINT.
    stop: Arc<AtomicBool>,
    /// The first reader has stopped (signal or capture error): drain and end.
    ended: Arc<AtomicBool>,
    shared: Arc<Shared>,
    poll_ms: u16,
    drain_for: Duration,
}

/// What a reader thread counted.
#[derive(Default)]
struct ReaderOutcome {
    input: InputSnapshot,
    duplicates_dropped: u64,
    error: Option<String>,
}

/// A reader thread that has ended: its final counters.
struct EndedReader {
    outcome: ReaderOutcome,
    snapshot: Arc<Mutex<InputSnapshot>>,
}

impl AsRef<Mutex<InputSnapshot>> for EndedReader {
    fn as_ref(&self) -> &Mutex<InputSnapshot> {
        &self.snapshot
    }
}

/// One read of `source` (waiting up to `poll_ms`) into `feeder`: the packets read, or what
/// ended the reader. A read that brings packets stamps the last-packet time; one that
/// brings none sends the batches the feeder holds when `idle_sends` (with several readers,
/// so that they do not wait behind another reader's packets).
fn read_and_feed(
    source: &mut LiveSource,
    feeder: &mut Feeder,
    poll_ms: u16,
    shared: &Shared,
    idle_sends: bool,
) -> Result<usize, String> {
    let mut feed_error = None;
    let read = source.read(4096, poll_ms, &mut |raw| {
        if feed_error.is_none() {
            if let Err(e) = feeder.packet(&raw) {
                feed_error = Some(e);
            }
        }
    });
    if let Some(e) = feed_error {
        return Err(format!("{e:#}"));
    }
    let n = read.map_err(|e| {
        tracing::error!("capture failed: {e}");
        e.to_string()
    })?;
    if n > 0 {
        shared
            .last_packet_unix_s
            .store(unix_now_s(), Ordering::Relaxed);
    } else if idle_sends {
        feeder.send_pending().map_err(|e| format!("{e:#}"))?;
    }
    Ok(n)
}

/// A capture reader after the first, on its own thread: its own handles in the fanout
/// groups and its own [`Feeder`] into the shared workers.
struct OtherReader {
    thread: thread::JoinHandle<ReaderOutcome>,
    /// Its input counters, refreshed once a second.
    snapshot: Arc<Mutex<InputSnapshot>>,
}

impl OtherReader {
    fn spawn(
        id: usize,
        mut source: LiveSource,
        mut feeder: Feeder,
        ctl: ReaderControl,
    ) -> Result<OtherReader> {
        let snapshot = Arc::new(Mutex::new(InputSnapshot::default()));
        let slot = Arc::clone(&snapshot);
        let thread = thread::Builder::new()
            .name(format!("apitap-reader-{id}"))
            .spawn(move || {
                let mut out = ReaderOutcome::default();
                let mut last_tick = Instant::now();
                let mut stopping_since: Option<Instant> = None;
                loop {
                    let n = match read_and_feed(
                        &mut source,
                        &mut feeder,
                        ctl.poll_ms,
                        &ctl.shared,
                        true,
                    ) {
                        Ok(n) => n,
                        Err(e) => {
                            out.error = Some(e);
                            break;
                        }
                    };
                    if last_tick.elapsed() >= Duration::from_secs(1) {
                        last_tick = Instant::now();
                        if let Err(e) = feeder.tick(Some(wall_clock())) {
                            out.error = Some(format!("{e:#}"));
                            break;
                        }
                        *lock(&slot) = InputSnapshot {
                            decode: feeder.decoder.stats().clone(),
                            interfaces: source.stats(),
                            queue_dropped_packets: feeder.queue_dropped_packets(),
                        };
                    }
                    if ctl.stop.load(Ordering::SeqCst) || ctl.ended.load(Ordering::SeqCst) {
                        let waited = stopping_since.get_or_insert_with(Instant::now).elapsed();
                        if (n == 0 && waited >= ctl.drain_for) || waited >= ctl.drain_for * 5 {
                            break;
                        }
                    }
                }
                if let Err(e) = feeder.flush() {
                    out.error.get_or_insert_with(|| format!("{e:#}"));
                }
                out.input = InputSnapshot {
                    decode: feeder.decoder.stats().clone(),
                    interfaces: source.stats(),
                    queue_dropped_packets: feeder.queue_dropped_packets(),
                };
                out.duplicates_dropped = feeder.decoder.duplicates_dropped();
                out
            })
            .context("cannot start a capture reader thread")?;
        Ok(OtherReader { thread, snapshot })
    }

    /// Whether the thread has ended (before the run told it to: a capture error).
    fn has_ended(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the reader to drain and end; a reader that panicked counts as an error.
    fn join(self) -> EndedReader {
        let outcome = self.thread.join().unwrap_or_else(|_| ReaderOutcome {
            error: Some("a capture reader thread panicked".into()),
            ..ReaderOutcome::default()
        });
        EndedReader {
            outcome,
            snapshot: self.snapshot,
        }
    }
}

impl AsRef<Mutex<InputSnapshot>> for OtherReader {
    fn as_ref(&self) -> &Mutex<InputSnapshot> {
        &self.snapshot
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Now, as a packet timestamp.
fn wall_clock() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_parts(
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        i64::from(d.subsec_nanos()),
    )
}

/// SIGHUP: re-reads the config file and applies what can change while running (event
/// content and redaction, the stats log interval, analytics thresholds and the spec); says which changes need a restart.
fn apply_reload(
    path: Option<&PathBuf>,
    overrides: &Overrides,
    running: &mut Config,
    shared: &Shared,
    stats_interval: &AtomicU64,
) {
    let Some(path) = path else {
        tracing::warn!("SIGHUP: nothing to reload (started without --config)");
        return;
    };
    let mut new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("SIGHUP: config not reloaded, keeping the running one: {e:#}");
            return;
        }
    };
    overrides.apply(&mut new);
    if let Err(e) = new.validate() {
        tracing::error!("SIGHUP: config not reloaded, keeping the running one: {e:#}");
        return;
    }
    let mut applied = Vec::new();
    if new.output != running.output {
        match encoder(&new) {
            Ok(enc) => {
                shared.set_encoder(enc);
                running.output = new.output.clone();
                applied.push("output");
            }
            Err(e) => tracing::error!("SIGHUP: output settings not applied: {e:#}"),
        }
    }
    if new.daemon.stats_interval_s != running.daemon.stats_interval_s {
        stats_interval.store(new.daemon.stats_interval_s, Ordering::Relaxed);
        running.daemon.stats_interval_s = new.daemon.stats_interval_s;
        applied.push("daemon.stats_interval_s");
    }
    // The spec file may have changed even when the config did not: always re-read it.
    if new.analytics.enabled && running.analytics.enabled {
        match crate::analysis::configured_engine(&new) {
            Ok(engine) => {
                shared.set_analytics(engine);
                shared.set_scan(apitap_analytics::EdgeScan::new(&new.analytics));
                running.analytics = new.analytics.clone();
                applied.push("analytics");
            }
            Err(e) => tracing::error!("SIGHUP: analytics settings not applied: {e:#}"),
        }
    }
    let mut restart = Vec::new();
    if new.analytics.enabled != running.analytics.enabled {
        restart.push("analytics.enabled");
    }
    if new.pipeline != running.pipeline {
        restart.push("pipeline");
    }
    if new.flow != running.flow {
        restart.push("flow");
    }
    if new.reassembly != running.reassembly {
        restart.push("reassembly");
    }
    if new.http != running.http {
        restart.push("http");
    }
    if new.kafka != running.kafka {
        restart.push("kafka");
    }
    if new.capture != running.capture {
        restart.push("capture");
    }
    if new.daemon != running.daemon {
        restart.push("daemon (except stats_interval_s)");
    }
    tracing::info!(
        applied = ?applied,
        needs_restart = ?restart,
        "SIGHUP: config reloaded from {}",
        path.display()
    );
}
