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

use crate::config::Config;
use crate::stats::RunSummary;
use crate::worker::{Worker, WorkerOutput};
use anyhow::{anyhow, Context, Result};
use apitap_core::{PacketBatch, PacketRef};
use apitap_sink::{
    Encoder, EncoderConfig, KafkaSink, KafkaStats, LineSink, Redactor, Reorder, ReorderStats,
};
use apitap_wire::{decode, DecodeStats, FileSource};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

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
        redactor: Redactor::new(&cfg.output.redact_headers, cfg.redact_key()?),
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
    let mut source = FileSource::open(inputs)?;
    let encoder = encoder(cfg)?;
    let lines = match &output {
        None => None,
        Some(Output::Stdout) => Some(LineSink::stdout()),
        Some(Output::File(path)) => Some(
            LineSink::create(path)
                .with_context(|| format!("cannot create output file {}", path.display()))?,
        ),
    };
    let kafka = match &cfg.kafka {
        None => None,
        Some(k) => Some(KafkaSink::new(k, sensor_id(cfg).as_str())?),
    };

    let workers = cfg.worker_count();
    let max_flows_per_worker = cfg.flow.max_flows.div_ceil(workers).max(1);
    let (out_tx, out_rx) = bounded::<WorkerOutput>(workers * 4);
    let (recycle_tx, recycle_rx) =
        bounded::<PacketBatch>(workers * (cfg.pipeline.worker_queue_batches + 2));

    let released = Arc::new(AtomicU64::new(0));
    let sink_handle = thread::Builder::new()
        .name("apitap-sink".into())
        .spawn({
            let reorder_max = cfg.pipeline.reorder_max_events;
            let released = Arc::clone(&released);
            move || run_sink(out_rx, lines, kafka, workers, reorder_max, &released)
        })
        .context("cannot start sink thread")?;

    let mut senders = Vec::with_capacity(workers);
    let mut handles = Vec::with_capacity(workers);
    for id in 0..workers {
        let (tx, rx) = bounded::<PacketBatch>(cfg.pipeline.worker_queue_batches);
        let worker = Worker::new(id, cfg, encoder.clone(), max_flows_per_worker);
        let out = out_tx.clone();
        let recycle = recycle_tx.clone();
        let handle = thread::Builder::new()
            .name(format!("apitap-worker-{id}"))
            .spawn(move || worker.run(rx, recycle, out))
            .context("cannot start worker thread")?;
        senders.push(tx);
        handles.push(handle);
    }
    drop(out_tx);
    drop(recycle_tx);

    let mut summary = RunSummary {
        files: inputs.len(),
        ..RunSummary::default()
    };
    let bar = progress.then(|| Progress::new(source.total_file_bytes(), released));
    let read = read_loop(
        &mut source,
        &senders,
        &recycle_rx,
        cfg,
        &mut summary.decode,
        bar.as_ref(),
    );
    if let Some(bar) = &bar {
        bar.finish();
    }
    summary.warnings.extend(source.warnings().iter().cloned());
    if let Err(e) = read {
        summary.input_error = Some(format!("{e:#}"));
    }
    drop(senders);

    for handle in handles {
        let stats = handle
            .join()
            .map_err(|_| anyhow!("a flow worker panicked"))?;
        summary.workers.add(&stats);
    }
    let sink_result = sink_handle
        .join()
        .map_err(|_| anyhow!("the sink thread panicked"))?;
    summary.reorder = sink_result.reorder;
    summary.events_written = sink_result.written;
    summary.bytes_written = sink_result.bytes;
    summary.output_error = sink_result.error;
    summary.kafka = sink_result.kafka;
    Ok(summary)
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

/// Reads, decodes and shards every packet. Blocks when a worker queue is full: a replay
/// must not lose packets.
fn read_loop(
    source: &mut FileSource,
    senders: &[Sender<PacketBatch>],
    recycle: &Receiver<PacketBatch>,
    cfg: &Config,
    stats: &mut DecodeStats,
    progress: Option<&Progress>,
) -> Result<()> {
    let n = senders.len() as u64;
    let batch_packets = cfg.pipeline.batch_packets;
    let tick = cfg.pipeline.tick_packets;
    let mut batches: Vec<PacketBatch> =
        (0..senders.len()).map(|_| PacketBatch::default()).collect();
    let mut clock = PacketRef::default();
    let mut index: u64 = 0;

    let result = loop {
        let raw = match source.next_packet() {
            Ok(Some(raw)) => raw,
            Ok(None) => break Ok(()),
            Err(e) => break Err(anyhow::Error::new(e)),
        };
        index += 1;
        let at = PacketRef { index, ts: raw.ts };
        clock = PacketRef {
            index,
            ts: clock.ts.max(raw.ts),
        };
        if let Some(meta) = decode(raw.link, raw.data, at, stats) {
            let shard = (meta.key.shard_hash() % n) as usize;
            let start = meta.payload_offset as usize;
            let payload = raw
                .data
                .get(start..start.saturating_add(meta.payload_len as usize))
                .unwrap_or(&[]);
            if let (Some(batch), Some(tx)) = (batches.get_mut(shard), senders.get(shard)) {
                batch.push(meta, payload);
                if batch.packets.len() >= batch_packets {
                    send(batch, tx, recycle, clock)?;
                }
            }
        }
        if index % tick == 0 {
            for (batch, tx) in batches.iter_mut().zip(senders) {
                batch.tick = true;
                send(batch, tx, recycle, clock)?;
            }
            if let Some(p) = progress {
                p.update(source.read_bytes(), index);
            }
        }
    };
    // Deliver what is buffered even after an input error: everything before it counts.
    for (batch, tx) in batches.iter_mut().zip(senders) {
        send(batch, tx, recycle, clock)?;
    }
    result
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

fn send(
    batch: &mut PacketBatch,
    tx: &Sender<PacketBatch>,
    recycle: &Receiver<PacketBatch>,
    clock: PacketRef,
) -> Result<()> {
    let fresh = recycle.try_recv().unwrap_or_default();
    let mut full = std::mem::replace(batch, fresh);
    full.clock = clock;
    tx.send(full)
        .map_err(|_| anyhow!("a flow worker stopped early"))
}

struct SinkResult {
    reorder: ReorderStats,
    written: u64,
    bytes: u64,
    error: Option<String>,
    kafka: Option<KafkaStats>,
}

/// The output sinks of the sink thread.
struct Outputs {
    lines: Option<LineSink>,
    kafka: Option<KafkaSink>,
    error: Option<String>,
}

impl Outputs {
    fn release(&mut self, ev: apitap_sink::EncodedEvent) {
        if let (Some(l), None) = (self.lines.as_mut(), &self.error) {
            if let Err(e) = l.write(&ev) {
                self.error = Some(format!("cannot write events: {e}"));
            }
        }
        if let Some(k) = self.kafka.as_mut() {
            k.send(ev);
        }
    }
}

fn run_sink(
    rx: Receiver<WorkerOutput>,
    lines: Option<LineSink>,
    kafka: Option<KafkaSink>,
    workers: usize,
    reorder_max: usize,
    released: &AtomicU64,
) -> SinkResult {
    let mut reorder = Reorder::new(workers, reorder_max);
    let mut out = Outputs {
        lines,
        kafka,
        error: None,
    };
    loop {
        match rx.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(msg) => {
                reorder.push(msg.worker, msg.events, msg.watermark, &mut |ev| {
                    out.release(ev)
                });
                released.store(reorder.stats().released, Ordering::Relaxed);
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
        // Serve Kafka delivery reports even while no event arrives.
        if let Some(k) = out.kafka.as_mut() {
            k.poll(std::time::Duration::ZERO);
        }
    }
    reorder.finish(&mut |ev| out.release(ev));
    let mut error = out.error;
    let (written, bytes) = match out.lines.as_mut() {
        Some(l) => {
            if error.is_none() {
                if let Err(e) = l.flush() {
                    error = Some(format!("cannot write events: {e}"));
                }
            }
            (l.written(), l.bytes())
        }
        None => (0, 0),
    };
    SinkResult {
        reorder: reorder.stats().clone(),
        written,
        bytes,
        error,
        kafka: out.kafka.map(KafkaSink::close),
    }
}
