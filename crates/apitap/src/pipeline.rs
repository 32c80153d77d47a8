//! The replay pipeline: a reader/decoder (the calling thread), N flow workers fed by a
//! symmetric flow hash over bounded channels, and a sink thread that restores one
//! deterministic order.
//!
//! ```text
//! reader+decode --batches--> worker 0..N --events+watermark--> reorder+sink
//!        ^------- recycled batches ------'
//! ```
//! Shutdown is by disconnection: the reader drops its senders at end of input, workers
//! close their flows and send a final watermark, the sink drains and flushes.

use crate::analysis::AnalyticsOutcome;
use crate::config::Config;
use crate::reorder::{Reorder, ReorderStats};
use crate::stats::RunSummary;
use crate::stats::WorkerStats;
use crate::telemetry::{OutputSnapshot, Shared};
use crate::worker::{Finished, Record, Worker, WorkerOutput};
use anyhow::{anyhow, Context, Result};
use apitap_core::EncodedEvent;
use apitap_core::Merge;
use apitap_core::{PacketBatch, PacketMeta, PacketRef, Timestamp};
use apitap_event::{Encoder, EncoderConfig, Redactor};
use apitap_sink::{KafkaSink, KafkaStats, LineSink};
use apitap_wire::{Decoder, FileSource, RawPacket};
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

/// From this many workers up, the raw-byte scan (sensitive data, URL secrets, auth
/// schemes) runs on the workers instead of the analytics thread. The analytics thread is
/// the one serial stage and the scan was about half of it, but moving it only pays once
/// each worker's share is below that thread's. Callgrind on the ab sample: with 2 workers
/// the busiest worker would grow from 565 M to 683 M instructions (slower); with 4 the
/// longest thread falls from the analytics thread's 447 M to a worker's 363 M.
const SCAN_ON_WORKERS_FROM: usize = 4;

/// Where events go.
pub enum Output {
    /// JSON lines to standard output.
    Stdout,
    /// JSON lines to a file (created or truncated).
    File(PathBuf),
}

/// Builds the event encoder from the config.
pub fn encoder(cfg: &Config) -> Result<Encoder> {
    Ok(Encoder::new(EncoderConfig {
        sensor: cfg.output.sensor_name.clone(),
        redactor: Redactor::new(&cfg.output.redact_headers, cfg.redact_key()?)
            .with_fields(&cfg.output.redact_fields),
        format: cfg.output.format,
        body_content_for: Some(cfg.http.include_body_for.clone()),
        typed_placeholders: cfg.analytics.templating.typed_placeholders,
    }))
}

/// Replays capture files through the whole pipeline. Returns the run summary; input and
/// output errors that happen after start-up are recorded in it (events before them are
/// still written). Errors before any packet is read (bad file, bad config, unreachable
/// Kafka) are returned.
///
/// `output` is the JSON-lines output; `None` writes none (Kafka only).
pub fn replay(inputs: &[PathBuf], output: Option<Output>, cfg: &Config) -> Result<RunSummary> {
    replay_with_progress(inputs, output, cfg, false)
}

/// [`replay`], with a progress bar on stderr when `progress` is set (bytes read, packets/s,
/// events/s).
pub fn replay_with_progress(
    inputs: &[PathBuf],
    output: Option<Output>,
    cfg: &Config,
    progress: bool,
) -> Result<RunSummary> {
    replay_with_analytics(inputs, output, cfg, progress, false).map(|(summary, _)| summary)
}

/// [`replay_with_progress`] that also returns what the analytics leave (`None` when they
/// are off); `collect_alerts` keeps every alert in it (`apitap check`).
pub fn replay_with_analytics(
    inputs: &[PathBuf],
    output: Option<Output>,
    cfg: &Config,
    progress: bool,
    collect_alerts: bool,
) -> Result<(RunSummary, Option<AnalyticsOutcome>)> {
    let mut source = FileSource::open(inputs)?;
    let lines = open_output(output.as_ref())?;
    // A missing or world-readable key log is a start-up error.
    let keylog = crate::keylog::open(&cfg.tls)?;
    let released = Arc::new(AtomicU64::new(0));
    let mut pipeline = Pipeline::start(
        cfg,
        lines,
        None,
        Arc::clone(&released),
        Backpressure::Wait,
        collect_alerts,
        keylog,
    )?;

    let mut summary = RunSummary {
        files: inputs.len(),
        ..RunSummary::default()
    };
    let bar = progress.then(|| Progress::new(source.total_file_bytes(), released));
    let read = read_files(&mut source, &mut pipeline.feeder, bar.as_ref());
    if let Some(bar) = &bar {
        bar.finish();
    }
    summary.warnings.extend(source.warnings());
    if let Err(e) = read {
        summary.input_error = Some(format!("{e:#}"));
    }
    let outcome = pipeline.finish(&mut summary)?;
    Ok((summary, outcome))
}

/// Opens the JSON-lines output.
pub(crate) fn open_output(output: Option<&Output>) -> Result<Option<LineSink>> {
    Ok(match output {
        None => None,
        Some(Output::Stdout) => Some(LineSink::stdout()),
        Some(Output::File(path)) => Some(
            LineSink::create(path)
                .with_context(|| format!("cannot create output file {}", path.display()))?,
        ),
    })
}

/// What the reader does when a worker's queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backpressure {
    /// Wait (replay: a file must not lose packets).
    Wait,
    /// Drop the batch and count its packets (live: the kernel ring must keep draining).
    Drop,
}

/// Running worker and sink threads, fed through [`Feeder`] by the calling thread.
pub(crate) struct Pipeline {
    /// Hands packets to the workers.
    pub feeder: Feeder,
    /// The feeders of the other capture readers (`capture.reader_threads` above 1 on a live
    /// run), each for its own thread; they share `feeder`'s packet numbering.
    pub reader_feeders: Vec<Feeder>,
    workers: Vec<thread::JoinHandle<WorkerStats>>,
    sink: thread::JoinHandle<SinkResult>,
    /// The TLS key logs, when configured; on a live sensor, the thread following them.
    keylog: Option<KeyLogState>,
}

/// The key logs of a run: the shared handle, and the follower thread with its stop flag.
struct KeyLogState {
    handle: apitap_tls::keylog::KeyLogHandle,
    follower: Option<(Arc<std::sync::atomic::AtomicBool>, thread::JoinHandle<()>)>,
    warnings: Vec<String>,
}

impl Pipeline {
    /// Starts the sink thread (JSON lines and/or Kafka) and the flow workers. `shared`
    /// carries live telemetry and reloadable settings (`None` for a replay).
    pub fn start(
        cfg: &Config,
        lines: Option<LineSink>,
        shared: Option<Arc<Shared>>,
        released: Arc<AtomicU64>,
        backpressure: Backpressure,
        collect_alerts: bool,
        keylog: Option<crate::keylog::Opened>,
    ) -> Result<Pipeline> {
        let with_keys;
        let cfg = match &keylog {
            Some(crate::keylog::Opened { handle, .. }) => {
                let mut c = cfg.clone();
                c.tls.keys = handle.clone();
                with_keys = c;
                &with_keys
            }
            None => cfg,
        };
        let keylog = match keylog {
            None => None,
            Some(crate::keylog::Opened {
                handle,
                follower,
                warnings,
            }) => {
                // A replay reads the files once; a live sensor follows them.
                let follower = match shared.is_some() {
                    true => {
                        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
                        let thread = follower
                            .spawn(Arc::clone(&stop))
                            .context("cannot start the key log thread")?;
                        Some((stop, thread))
                    }
                    false => None,
                };
                Some(KeyLogState {
                    handle,
                    follower,
                    warnings,
                })
            }
        };
        let encoder = encoder(cfg)?;
        let kafka = match &cfg.kafka {
            None => None,
            Some(k) => Some(KafkaSink::new(k, sensor_id(cfg).as_str())?),
        };
        let analytics = crate::analysis::Stage::new(cfg, collect_alerts)?;
        let workers = cfg.worker_count();
        let max_flows_per_worker = cfg.flow.max_flows.div_ceil(workers).max(1);
        let (out_tx, out_rx) = bounded::<WorkerOutput>(workers * 4);
        let held = Arc::new(AtomicUsize::new(0));
        let (recycle_tx, recycle_rx) =
            bounded::<PacketBatch>(workers * (cfg.pipeline.worker_queue_batches + 2));

        let sink = thread::Builder::new()
            .name("apitap-sink".into())
            .spawn({
                let reorder_max = cfg.pipeline.reorder_max_events;
                let shared = shared.clone();
                let held = Arc::clone(&held);
                move || {
                    run_sink(
                        out_rx,
                        &held,
                        Outputs {
                            lines,
                            kafka,
                            analytics,
                            error: None,
                        },
                        workers,
                        reorder_max,
                        &released,
                        shared,
                    )
                }
            })
            .context("cannot start sink thread")?;

        let mut senders = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        // Compiled once; each worker's clone shares the expressions.
        let scan = (cfg.analytics.enabled && workers >= SCAN_ON_WORKERS_FROM)
            .then(|| apitap_analytics::EdgeScan::new(&cfg.analytics));
        for id in 0..workers {
            let (tx, rx) = bounded::<PacketBatch>(cfg.pipeline.worker_queue_batches);
            let worker = Worker::new(id, cfg, encoder.clone(), scan.clone(), max_flows_per_worker)
                .with_shared(shared.clone());
            let out = out_tx.clone();
            let recycle = recycle_tx.clone();
            let handle = thread::Builder::new()
                .name(format!("apitap-worker-{id}"))
                .spawn(move || worker.run(rx, recycle, out))
                .context("cannot start worker thread")?;
            senders.push(tx);
            handles.push(handle);
        }
        // A replay has one reader; a live run may have several, numbering packets from one
        // counter so their order keys interleave as the packets arrived.
        let readers = match shared.is_some() {
            true => cfg.capture.reader_threads.max(1),
            false => 1,
        };
        let shared_index = (readers > 1).then(|| Arc::new(AtomicU64::new(0)));
        let mut feeders = Vec::with_capacity(readers);
        for _ in 0..readers {
            feeders.push(Feeder {
                decoder: Decoder::new(
                    cfg.decode.udp_tunnels()?,
                    cfg.pipeline.dedup_window_us,
                    cfg.defrag.enabled.then(|| cfg.defrag.limits()),
                ),
                shards: Shards {
                    batches: (0..senders.len()).map(|_| PacketBatch::default()).collect(),
                    senders: senders.clone(),
                    recycle: recycle_rx.clone(),
                    clock: PacketRef::default(),
                    batch_packets: cfg.pipeline.batch_packets,
                    batch_bytes: cfg.pipeline.batch_bytes,
                    backpressure,
                    held: Arc::clone(&held),
                    pause_above: match cfg.pipeline.reorder_pause_events {
                        0 => usize::MAX,
                        n => n,
                    },
                    reader_pauses: 0,
                    queue_dropped_packets: 0,
                },
                index: 0,
                shared_index: shared_index.clone(),
                tick_packets: cfg.pipeline.tick_packets,
            });
        }
        drop(senders);
        let mut feeders = feeders.into_iter();
        let feeder = feeders.next().context("no capture reader")?;
        Ok(Pipeline {
            keylog,
            feeder,
            reader_feeders: feeders.collect(),
            workers: handles,
            sink,
        })
    }

    /// Delivers what is buffered, lets the workers close every flow and the sink flush,
    /// and fills in the summary. Returns what the analytics leave.
    pub fn finish(mut self, summary: &mut RunSummary) -> Result<Option<AnalyticsOutcome>> {
        // Everything read so far counts, even after an input error.
        if let Err(e) = self.feeder.flush() {
            summary.input_error.get_or_insert_with(|| format!("{e:#}"));
        }
        summary.decode = self.feeder.decoder.stats().clone();
        summary.queue_dropped_packets = self.feeder.queue_dropped_packets();
        summary.reader_pauses = self.feeder.reader_pauses();
        summary.duplicates_dropped = self.feeder.decoder.duplicates_dropped();
        // The workers end when every feeder is gone (the other readers' too, if unused).
        drop(self.feeder);
        drop(self.reader_feeders);
        for handle in self.workers {
            let stats = handle
                .join()
                .map_err(|_| anyhow!("a flow worker panicked"))?;
            summary.workers.merge(&stats);
        }
        let sink = self
            .sink
            .join()
            .map_err(|_| anyhow!("the sink thread panicked"))?;
        summary.reorder = sink.reorder;
        summary.analytics = sink.analytics;
        if let Some(e) = sink.inventory_save_error {
            summary
                .warnings
                .push(format!("cannot save the inventory: {e}"));
        }
        if let Some(k) = self.keylog {
            if let Some((stop, thread)) = k.follower {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                let _ = thread.join();
            }
            summary.warnings.extend(k.warnings);
            summary.keylog = Some(k.handle.stats());
        }
        summary.events_written = sink.written;
        summary.bytes_written = sink.bytes;
        summary.output_error = sink.error;
        summary.kafka = sink.kafka;
        Ok(sink.outcome)
    }
}

/// The sensor id carried in Kafka headers: `output.sensor_name`, else the host name.
fn sensor_id(cfg: &Config) -> String {
    if !cfg.output.sensor_name.is_empty() {
        return cfg.output.sensor_name.clone();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "apitap".into())
}

/// Reads every packet of the files into the pipeline.
fn read_files(
    source: &mut FileSource,
    feeder: &mut Feeder,
    progress: Option<&Progress>,
) -> Result<()> {
    loop {
        let raw = match source.next_packet() {
            Ok(Some(raw)) => raw,
            Ok(None) => return Ok(()),
            Err(e) => return Err(anyhow::Error::new(e)),
        };
        if feeder.packet(&raw)? {
            if let Some(p) = progress {
                p.update(source.read_bytes(), feeder.index);
            }
        }
    }
}

/// The reader side of the pipeline: decodes frames, shards them to the workers by a
/// symmetric flow hash, batches them, and broadcasts clock ticks.
pub(crate) struct Feeder {
    /// Frames to TCP segments: decoding, duplicates, fragment reassembly.
    pub decoder: Decoder,
    /// Batches per worker and the queues they go out on.
    shards: Shards,
    /// The index of the last frame read.
    pub index: u64,
    /// The counter several readers number their frames from (`None`: one reader).
    shared_index: Option<Arc<AtomicU64>>,
    tick_packets: u64,
}

/// The per-worker batches and the bounded queues to the workers.
pub(crate) struct Shards {
    senders: Vec<Sender<PacketBatch>>,
    recycle: Receiver<PacketBatch>,
    batches: Vec<PacketBatch>,
    clock: PacketRef,
    batch_packets: usize,
    batch_bytes: usize,
    backpressure: Backpressure,
    /// Events the reorder stage holds (published by the sink).
    held: Arc<AtomicUsize>,
    /// Replay pauses while `held` is above this.
    pause_above: usize,
    /// Times the reader paused for the worker queues to drain.
    pub reader_pauses: u64,
    /// Decoded packets dropped because a worker queue was full (live only).
    pub queue_dropped_packets: u64,
}

impl Feeder {
    /// Decodes and queues one frame. Returns true when it completed a tick (every
    /// `pipeline.tick_packets` frames). Fails only when the workers are gone.
    pub fn packet(&mut self, raw: &RawPacket<'_>) -> Result<bool> {
        let index = match &self.shared_index {
            None => self.index + 1,
            Some(n) => n.fetch_add(1, Ordering::Relaxed) + 1,
        };
        self.index = index;
        let at = PacketRef { index, ts: raw.ts };
        self.shards.clock = PacketRef {
            index,
            ts: self.shards.clock.ts.max(raw.ts),
        };
        if let Some((meta, data)) = self.decoder.frame(raw.link, raw.data, at) {
            self.shards.queue(meta, data)?;
        }
        if index % self.tick_packets == 0 {
            self.tick(None)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Broadcasts a clock tick: workers run their timeouts and report their progress.
    /// `now` moves the clock to that time first (live capture on a quiet link, where
    /// packet time is wall time); a replay never passes it.
    pub fn tick(&mut self, now: Option<Timestamp>) -> Result<()> {
        if let Some(now) = now {
            self.shards.clock.ts = self.shards.clock.ts.max(now);
            self.decoder.expire(now);
        }
        for shard in 0..self.shards.batches.len() {
            if let Some(b) = self.shards.batches.get_mut(shard) {
                b.tick = true;
            }
            self.shards.send(shard)?;
        }
        Ok(())
    }

    /// Sends the batches that hold packets (a live reader with nothing to read: its
    /// packets should not wait for the next tick while other readers' go ahead).
    pub fn send_pending(&mut self) -> Result<()> {
        for shard in 0..self.shards.batches.len() {
            if self
                .shards
                .batches
                .get(shard)
                .is_some_and(|b| !b.packets.is_empty())
            {
                self.shards.send(shard)?;
            }
        }
        Ok(())
    }

    /// Sends every partly filled batch.
    pub fn flush(&mut self) -> Result<()> {
        for shard in 0..self.shards.batches.len() {
            self.shards.send(shard)?;
        }
        Ok(())
    }

    /// Times the reader paused for the worker queues to drain.
    pub fn reader_pauses(&self) -> u64 {
        self.shards.reader_pauses
    }

    /// Decoded packets dropped because a worker queue was full (live only).
    pub fn queue_dropped_packets(&self) -> u64 {
        self.shards.queue_dropped_packets
    }
}

impl Shards {
    /// Queues a decoded segment whose payload lies in `data` for its worker.
    fn queue(&mut self, meta: PacketMeta, data: &[u8]) -> Result<()> {
        let shard = (meta.key.shard_hash() % self.senders.len() as u64) as usize;
        let start = meta.payload_offset as usize;
        let payload = data
            .get(start..start.saturating_add(meta.payload_len as usize))
            .unwrap_or(&[]);
        if let Some(batch) = self.batches.get_mut(shard) {
            batch.push(meta, payload);
            if batch.packets.len() >= self.batch_packets || batch.arena.len() >= self.batch_bytes {
                self.send(shard)?;
            }
        }
        Ok(())
    }

    fn send(&mut self, shard: usize) -> Result<()> {
        let (Some(batch), Some(tx)) = (self.batches.get_mut(shard), self.senders.get(shard)) else {
            return Ok(());
        };
        let fresh = self.recycle.try_recv().unwrap_or_default();
        let mut full = std::mem::replace(batch, fresh);
        full.clock = self.clock;
        match self.backpressure {
            Backpressure::Wait => {
                if self.held.load(Ordering::Relaxed) > self.pause_above {
                    self.reader_pauses += 1;
                    self.drain_queues();
                }
                tx.send(full)
                    .map_err(|_| anyhow!("a flow worker stopped early"))
            }
            Backpressure::Drop => match tx.try_send(full) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(mut lost)) => {
                    self.queue_dropped_packets += lost.packets.len() as u64;
                    lost.clear();
                    *batch = lost;
                    Ok(())
                }
                Err(TrySendError::Disconnected(_)) => Err(anyhow!("a flow worker stopped early")),
            },
        }
    }

    /// Waits until every worker queue is empty or the reorder stage holds no more than
    /// `pause_above` events. One worker running ahead of another makes the sink hold the
    /// leader's events until the laggard's watermark passes them; waiting here lets the
    /// laggard catch up. Waiting for empty queues, not for the reorder stage, cannot
    /// deadlock: a laggard that needs more packets to advance has an empty queue.
    fn drain_queues(&self) {
        while self.held.load(Ordering::Relaxed) > self.pause_above
            && self.senders.iter().any(|s| !s.is_empty())
        {
            thread::sleep(std::time::Duration::from_micros(200));
        }
    }
}

/// The progress bar of a replay on a terminal.
struct Progress {
    bar: indicatif::ProgressBar,
    released: Arc<AtomicU64>,
    started: std::time::Instant,
}

impl Progress {
    fn new(total_bytes: u64, released: Arc<AtomicU64>) -> Progress {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(total_bytes),
            indicatif::ProgressDrawTarget::stderr_with_hz(4),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:30} {bytes}/{total_bytes} {msg} eta {eta}",
        ) {
            bar.set_style(style);
        }
        Progress {
            bar,
            released,
            started: std::time::Instant::now(),
        }
    }

    fn update(&self, bytes: u64, packets: u64) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let events = self.released.load(Ordering::Relaxed);
        self.bar.set_position(bytes);
        self.bar.set_message(format!(
            "{:.0} k packets/s {:.0} k events/s",
            packets as f64 / secs / 1e3,
            events as f64 / secs / 1e3
        ));
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

struct SinkResult {
    analytics: Option<apitap_analytics::AnalyticsStats>,
    inventory_save_error: Option<String>,
    outcome: Option<AnalyticsOutcome>,
    reorder: ReorderStats,
    written: u64,
    bytes: u64,
    error: Option<String>,
    kafka: Option<KafkaStats>,
}

/// The output sinks of the sink thread, and the analytics that watch what goes out.
struct Outputs {
    lines: Option<LineSink>,
    kafka: Option<KafkaSink>,
    analytics: Option<crate::analysis::Stage>,
    error: Option<String>,
}

impl Outputs {
    /// Writes the event of a finished transaction, then the alerts it completed.
    fn release(&mut self, finished: Finished) {
        let Finished { mut event, record } = finished;
        let alerts = match (self.analytics.as_mut(), record) {
            (Some(a), Some(Record::Tx(record))) => a.observe(&mut event, &record),
            (Some(a), Some(Record::Tls(record))) => a.observe_tls(&event, &record),
            (Some(a), Some(Record::Http2(record))) => a.observe_http2(&event, &record),
            _ => Vec::new(),
        };
        self.write(event);
        for alert in alerts {
            self.write(alert);
        }
    }

    /// End of input: the alerts that closing the analytics windows fires.
    fn finish_analytics(&mut self) {
        let alerts = match self.analytics.as_mut() {
            Some(a) => a.finish(),
            None => Vec::new(),
        };
        for alert in alerts {
            self.write(alert);
        }
    }

    fn write(&mut self, ev: EncodedEvent) {
        if let (Some(l), None) = (self.lines.as_mut(), &self.error) {
            if let Err(e) = l.write(&ev) {
                self.error = Some(write_error(l, &e));
            }
        }
        if let Some(k) = self.kafka.as_mut() {
            k.send(ev);
        }
    }
}

fn write_error(lines: &LineSink, e: &std::io::Error) -> String {
    format!("cannot write events to {}: {e}", lines.name())
}

fn run_sink(
    rx: Receiver<WorkerOutput>,
    held: &AtomicUsize,
    mut out: Outputs,
    workers: usize,
    reorder_max: usize,
    released: &AtomicU64,
    shared: Option<Arc<Shared>>,
) -> SinkResult {
    let mut reorder: Reorder<Finished> = Reorder::new(workers, reorder_max);
    let mut last_publish = std::time::Instant::now();
    loop {
        match rx.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(msg) => {
                reorder.push(msg.worker, msg.events, msg.watermark, &mut |ev| {
                    out.release(ev)
                });
                released.store(reorder.stats().released, Ordering::Relaxed);
                held.store(reorder.buffered(), Ordering::Relaxed);
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
        // Serve Kafka delivery reports even while no event arrives.
        if let Some(k) = out.kafka.as_mut() {
            k.poll(std::time::Duration::ZERO);
        }
        // Live: make events visible in the output file and publish counters.
        if let Some(shared) = &shared {
            if let (Some(engine), Some(stage)) = (shared.take_analytics(), out.analytics.as_mut()) {
                stage.replace_engine(engine);
            }
            if let Some(stage) = out.analytics.as_mut() {
                stage.save_if_due();
            }
            if last_publish.elapsed() >= std::time::Duration::from_millis(500) {
                last_publish = std::time::Instant::now();
                if let (Some(l), None) = (out.lines.as_mut(), &out.error) {
                    if let Err(e) = l.flush() {
                        out.error = Some(write_error(l, &e));
                    }
                }
                shared.publish_output(OutputSnapshot {
                    written: out.lines.as_ref().map_or(0, LineSink::written),
                    bytes: out.lines.as_ref().map_or(0, LineSink::bytes),
                    reorder: reorder.stats().clone(),
                    kafka: out.kafka.as_ref().map(|k| k.stats().clone()),
                    error: out.error.clone(),
                    analytics: out.analytics.as_ref().map(crate::analysis::Stage::stats),
                });
            }
        }
    }
    reorder.finish(&mut |ev| out.release(ev));
    out.finish_analytics();
    let mut error = out.error;
    let (written, bytes) = match out.lines.as_mut() {
        Some(l) => {
            if error.is_none() {
                if let Err(e) = l.flush() {
                    error = Some(write_error(l, &e));
                }
            }
            (l.written(), l.bytes())
        }
        None => (0, 0),
    };
    SinkResult {
        analytics: out.analytics.as_ref().map(crate::analysis::Stage::stats),
        inventory_save_error: out.analytics.as_ref().and_then(|a| a.save_error.clone()),
        outcome: out.analytics.map(crate::analysis::Stage::into_outcome),
        reorder: reorder.stats().clone(),
        written,
        bytes,
        error,
        kafka: out.kafka.map(KafkaSink::close),
    }
}
