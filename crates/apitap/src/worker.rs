//! A flow worker: owns one shard of the flow table, reassembles TCP, hands each
//! connection's stream to its session (which parses it), encodes events, and tells the
//! reorder stage how far its output has progressed.

use crate::config::Config;
use crate::reorder::Keyed;
use crate::stats::WorkerStats;
use crate::telemetry::{Shared, WorkerSnapshot};
use apitap_analytics::{EdgeScan, TxRecord};
use apitap_core::{
    Encap, EncodedEvent, FinishCause, FlowKey, HttpTransaction, PacketBatch, PacketMeta, PacketRef,
    SortKey, Timestamp, TlsConnection,
};
use apitap_event::{event_id, Encoder, FlowContext, FlowSeed};
use apitap_flow::{FlowTable, ReassemblyConfig, ReassemblyStats, Segment, StreamEvent, TcpConn};
use apitap_session::{Session, SessionConfig, SessionCx, SessionStats};
use crossbeam_channel::{Receiver, Sender};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A finished transaction (or TLS connection): its event, and its analytics record when
/// the analytics run.
pub struct Finished {
    /// The encoded event.
    pub event: EncodedEvent,
    /// What the analytics see of it.
    pub record: Option<Record>,
}

/// What the analytics see of one event.
pub enum Record {
    /// An HTTP transaction.
    Tx(Box<TxRecord>),
    /// A TLS connection.
    Tls(Box<apitap_analytics::TlsRecord>),
    /// An HTTP/2 connection.
    Http2(Box<apitap_analytics::Http2Record>),
}

impl Keyed for Finished {
    fn sort_key(&self) -> SortKey {
        self.event.key
    }
}

/// What a worker sends to the reorder stage after each batch.
pub struct WorkerOutput {
    /// Worker number.
    pub worker: usize,
    /// Transactions finished in this batch, any order.
    pub events: Vec<Finished>,
    /// No later message from this worker carries a key below this.
    pub watermark: SortKey,
}

/// Per-connection state.
struct Flow {
    tcp: TcpConn,
    /// Roles and parsers; a parser is allocated with the first payload byte, so a flow
    /// that never carries data (a SYN flood, a port scan) costs only its TCP state.
    session: Session,
    ctx: Option<FlowContext>,
    first_packet: u64,
    /// Names the flow in `flow_id`: the SYN's sequence number, or the time of the first
    /// packet seen.
    seed: FlowSeed,
    /// Keys under which this flow's open transactions sit in the open-transaction index.
    open: Vec<SortKey>,
    /// VLAN and tunnel of the flow's first packet, reported with its events.
    encap: Encap,
    /// The session's buffered bytes as last counted into the worker's `parser_bytes`.
    parser_counted: usize,
}

/// Everything a worker needs besides the flow table (split so a flow can be borrowed from
/// the table while the rest is borrowed mutably).
struct Env {
    reassembly: ReassemblyConfig,
    session: SessionConfig,
    encoder: Encoder,
    /// Build an analytics record for every transaction (the analytics are on).
    /// The raw-byte scan of every transaction, when it runs on the workers (the analytics
    /// are on and there are 4 workers or more): the analytics thread then takes
    /// findings, not bodies.
    scan: Option<EdgeScan>,
    /// Build an analytics record for every transaction (the analytics are on).
    records: bool,
    idle_ns: u64,
    tx_timeout_ns: u64,
    reorder_window: u64,
    /// Out-of-order bytes this worker may buffer over all its flows.
    ooo_memcap: usize,
    /// Bytes of unfinished heads this worker's parsers may buffer over all its flows.
    parser_memcap: usize,
    /// Bytes they buffer now.
    parser_bytes: usize,
    /// Out-of-order bytes buffered now over all flows.
    ooo_bytes: usize,
    stats: WorkerStats,
    reassembly_stats: ReassemblyStats,
    session_stats: SessionStats,
    txs: Vec<HttpTransaction>,
    /// TLS connection records the last session call produced.
    tls: Vec<TlsConnection>,
    /// HTTP/2 connection records the last session call produced.
    http2: Vec<apitap_core::Http2Connection>,
    events: Vec<Finished>,
    /// Every open transaction of every flow: drives the watermark and transaction
    /// timeouts.
    open: BTreeMap<SortKey, (Timestamp, FlowKey)>,
    /// Scratch list for [`Env::sync_open`].
    scratch: Vec<(SortKey, Timestamp)>,
}

/// One flow worker.
pub struct Worker {
    id: usize,
    table: FlowTable<Flow>,
    env: Env,
    /// Live sensor: where counters are published and reloaded settings come from.
    shared: Option<Arc<Shared>>,
    settings_generation: u64,
}

impl Worker {
    /// A worker holding at most `max_flows` connections; `scan` scans every transaction's
    /// raw bytes for the analytics (`None` when they are off or the analytics thread
    /// scans).
    pub fn new(
        id: usize,
        cfg: &Config,
        encoder: Encoder,
        scan: Option<EdgeScan>,
        max_flows: usize,
    ) -> Worker {
        Worker {
            id,
            table: FlowTable::new(max_flows.max(1)),
            env: Env {
                reassembly: cfg.reassembly.clone(),
                session: SessionConfig {
                    http: cfg.effective_http(),
                    tls: cfg.tls.clone(),
                    max_depth: cfg.session.max_depth,
                },
                encoder,
                scan,
                records: cfg.analytics.enabled,
                idle_ns: cfg.flow.idle_timeout_ms.saturating_mul(1_000_000),
                tx_timeout_ns: cfg.http.transaction_timeout_ms.saturating_mul(1_000_000),
                reorder_window: cfg.pipeline.reorder_window_packets.max(1),
                ooo_memcap: cfg.reassembly.memcap_bytes / cfg.worker_count().max(1),
                ooo_bytes: 0,
                parser_memcap: cfg.http.head_memcap_bytes / cfg.worker_count().max(1),
                parser_bytes: 0,
                stats: WorkerStats::default(),
                reassembly_stats: ReassemblyStats::default(),
                session_stats: SessionStats::default(),
                txs: Vec::new(),
                tls: Vec::new(),
                http2: Vec::new(),
                events: Vec::new(),
                open: BTreeMap::new(),
                scratch: Vec::new(),
            },
            shared: None,
            settings_generation: 0,
        }
    }

    /// Publishes counters to, and takes reloaded settings from, `shared` (live sensor).
    pub fn with_shared(mut self, shared: Option<Arc<Shared>>) -> Worker {
        self.settings_generation = shared
            .as_ref()
            .map_or(0, |s| s.worker_settings_generation());
        self.shared = shared;
        self
    }

    /// Counters so far.
    fn stats(&self) -> WorkerStats {
        let mut stats = self.env.stats.clone();
        stats.reassembly = self.env.reassembly_stats.clone();
        stats.session = self.env.session_stats.clone();
        stats
    }

    /// Live: publishes counters.
    fn sync_shared(&mut self) {
        let Some(shared) = &self.shared else {
            return;
        };
        shared.publish_worker(
            self.id,
            WorkerSnapshot {
                stats: self.stats(),
                active_flows: self.table.len() as u64,
                buffered_bytes: self.env.ooo_bytes as u64,
                open_transactions: self.env.open.len() as u64,
            },
        );
    }

    /// Live: picks up a reloaded encoder and scan (SIGHUP). Checked before every batch
    /// (one atomic load), not only on ticks, which a full queue may drop.
    fn take_reloaded_settings(&mut self) {
        let Some(shared) = &self.shared else {
            return;
        };
        let generation = shared.worker_settings_generation();
        if generation != self.settings_generation {
            self.settings_generation = generation;
            if let (Some(scan), Some(new)) = (&mut self.env.scan, shared.scan()) {
                *scan = new;
            }
            self.env.encoder = shared.encoder();
        }
    }

    /// Runs until the reader disconnects, then closes every flow and returns the counters.
    pub fn run(
        mut self,
        batches: Receiver<PacketBatch>,
        recycle: Sender<PacketBatch>,
        out: Sender<WorkerOutput>,
    ) -> WorkerStats {
        let mut clock = PacketRef::default();
        for mut batch in batches.iter() {
            self.take_reloaded_settings();
            self.process_batch(&batch);
            clock = clock.max(batch.clock);
            if batch.tick {
                self.tick(clock);
                self.sync_shared();
            }
            let watermark = self.watermark(clock);
            self.send(&out, watermark);
            batch.clear();
            // The pool may be full or gone at shutdown; dropping the batch is fine then.
            let _ = recycle.try_send(batch);
        }
        self.finish(clock);
        self.send(&out, SortKey::MAX);
        self.sync_shared();
        self.stats()
    }

    /// Processes every packet of a batch.
    pub fn process_batch(&mut self, batch: &PacketBatch) {
        for meta in &batch.packets {
            self.on_packet(meta, batch.payload(meta));
        }
    }

    fn send(&mut self, out: &Sender<WorkerOutput>, watermark: SortKey) {
        let events = std::mem::take(&mut self.env.events);
        // The sink only goes away after all workers are done; an error means it failed,
        // and its own error is what gets reported.
        let _ = out.send(WorkerOutput {
            worker: self.id,
            events,
            watermark,
        });
    }

    /// Lowest key this worker may still emit, once it has seen every packet up to `clock`.
    ///
    /// Later emissions happen at packet index `clock` or after (a tick at `clock` may still
    /// be on its way). An open transaction keeps its start key only if it could still
    /// complete within the reorder window; otherwise it will be keyed where it completes.
    fn watermark(&self, clock: PacketRef) -> SortKey {
        let next = SortKey::at_packet(clock.index);
        let oldest_in_window = clock.index.saturating_sub(self.env.reorder_window);
        match self
            .env
            .open
            .range(SortKey::at_packet(oldest_in_window)..)
            .next()
        {
            Some((&k, _)) if k < next => k,
            _ => next,
        }
    }

    fn on_packet(&mut self, meta: &PacketMeta, payload: &[u8]) {
        let env = &mut self.env;
        env.stats.packets += 1;
        env.stats.payload_bytes += payload.len() as u64;
        let now = meta.at;
        let key = meta.key;

        // One lookup decides what becomes of a flow already in the table. Lazy idle expiry
        // is decided by this packet's time alone, so the result does not depend on how
        // often the periodic sweep runs; a new SYN on a 5-tuple still in the table means
        // the port was reused.
        let seg = segment(meta);
        let (tracked, stale) = match self.table.peek_with_last_seen(&key) {
            None => (false, None),
            Some((last, _)) if now.ts.nanos_since(last) > env.idle_ns => (true, Some(Stale::Idle)),
            Some((_, flow)) if flow.tcp.is_new_connection(&seg) => (true, Some(Stale::Reused)),
            Some(_) => (true, None),
        };
        if let Some(stale) = stale {
            if let Some(flow) = self.table.remove(&key) {
                let cause = match stale {
                    Stale::Idle => {
                        env.stats.flows.idle_expired += 1;
                        FinishCause::IdleTimeout
                    }
                    Stale::Reused => {
                        env.stats.flows.reused += 1;
                        FinishCause::ConnectionClosed
                    }
                };
                env.close(key, flow, cause, now, now.index);
            }
        }

        let in_table = tracked && stale.is_none();
        if !in_table {
            if !meta.flags.syn() && meta.payload_wire_len == 0 {
                // Pure ACK/FIN/RST of a connection we do not track: nothing to reassemble.
                env.stats.flows.packets_without_flow += 1;
                return;
            }
            let flow = Flow {
                tcp: TcpConn::new(),
                session: Session::new(),
                ctx: None,
                first_packet: now.index,
                seed: FlowSeed::of_first_packet(
                    meta.flags.syn(),
                    meta.flags.ack(),
                    meta.seq,
                    now.ts.as_nanos(),
                ),
                open: Vec::new(),
                encap: meta.encap,
                parser_counted: 0,
            };
            env.stats.flows.created += 1;
            if let Some((old_key, old)) = self.table.insert(key, now.ts, flow) {
                env.stats.flows.evicted += 1;
                env.close(old_key, old, FinishCause::ConnectionClosed, now, now.index);
            }
        }
        let Some(flow) = self.table.get_mut(&key, now.ts) else {
            return;
        };
        if meta.flags.syn() {
            flow.session
                .on_syn(meta.from, meta.flags.ack(), &mut env.session_stats);
        }
        env.segment(key, flow, &seg, meta.at, payload);
        if flow.tcp.is_finished() {
            if let Some(flow) = self.table.remove(&key) {
                env.stats.flows.closed += 1;
                env.close(key, flow, FinishCause::ConnectionClosed, now, now.index);
            }
        } else {
            env.sync_open(key, flow);
            env.encode(key, flow, now.index);
        }
    }

    /// Periodic work at packet time `now`: idle flows and timed-out transactions.
    fn tick(&mut self, now: PacketRef) {
        let env = &mut self.env;
        while let Some((key, flow)) = self.table.pop_idle(now.ts, env.idle_ns) {
            env.stats.flows.idle_expired += 1;
            env.close(key, flow, FinishCause::IdleTimeout, now, now.index);
        }
        // Transactions waiting longer than the timeout: the index is ordered by start packet,
        // which follows packet time, so only its head needs looking at.
        let mut due: Vec<FlowKey> = Vec::new();
        for (_, &(ts, fk)) in env.open.iter().take(4096) {
            if now.ts.nanos_since(ts) > env.tx_timeout_ns && !due.contains(&fk) {
                due.push(fk);
                if due.len() >= 256 {
                    break;
                }
            }
        }
        for fk in due {
            if let Some(flow) = self.table.peek_mut(&fk) {
                flow.session.expire(&mut SessionCx {
                    key: &fk,
                    at: now,
                    cfg: &env.session,
                    stats: &mut env.session_stats,
                    out: &mut env.txs,
                    tls: &mut env.tls,
                    http2: &mut env.http2,
                });
                // A head cut at its timeout gave its buffer back.
                env.settle_parser(&fk, flow, now);
                env.sync_open(fk, flow);
                env.encode(fk, flow, now.index);
            }
        }
    }

    /// End of input: every flow is closed as end of capture.
    fn finish(&mut self, now: PacketRef) {
        let after_last = now.index.saturating_add(1);
        for (key, flow) in self.table.drain() {
            self.env.stats.flows.open_at_end += 1;
            self.env
                .close(key, flow, FinishCause::EndOfCapture, now, after_last);
        }
    }
}

impl Env {
    /// Feeds one segment through reassembly into the flow's session.
    fn segment(
        &mut self,
        key: FlowKey,
        flow: &mut Flow,
        seg: &Segment,
        at: PacketRef,
        payload: &[u8],
    ) {
        let before = flow.tcp.buffered_bytes();
        let Parts {
            tcp,
            reassembly,
            reassembly_stats,
            mut input,
        } = self.parts(&key, flow, at);
        tcp.on_segment(seg, payload, reassembly, reassembly_stats, &mut |ev| {
            input.event(ev)
        });
        self.settle_parser(&key, flow, at);
        let after = flow.tcp.buffered_bytes();
        self.ooo_bytes = (self.ooo_bytes + after).saturating_sub(before);
        self.stats.ooo_bytes_peak.raise(self.ooo_bytes as u64);
        if self.ooo_bytes > self.ooo_memcap && after > 0 {
            // Over the memory cap: this flow, which just grew, gives up its holes.
            self.stats.reassembly_memcap_flushes += 1;
            let Parts {
                tcp,
                reassembly_stats,
                mut input,
                ..
            } = self.parts(&key, flow, at);
            tcp.flush_buffered(reassembly_stats, &mut |ev| input.event(ev));
            self.ooo_bytes = self.ooo_bytes.saturating_sub(after);
            self.settle_parser(&key, flow, at);
        }
    }

    /// Counts what `flow`'s session buffers now into `parser_bytes`; when the flow grew
    /// and the worker is over its parser memcap, the flow gives its heads up. Called after
    /// every session call that can change its buffers, so the count never drifts.
    fn settle_parser(&mut self, key: &FlowKey, flow: &mut Flow, at: PacketRef) {
        let grew = self.recount_parser(flow);
        self.stats.parser_bytes_peak.raise(self.parser_bytes as u64);
        if grew && self.parser_bytes > self.parser_memcap {
            // Over the parser memcap: this flow, which just grew, gives its heads up.
            let Parts { mut input, .. } = self.parts(key, flow, at);
            input.session.shed(&mut input.cx);
            self.recount_parser(flow);
        }
    }

    /// Replaces `flow`'s last count in `parser_bytes` by what it buffers now; true if it grew.
    fn recount_parser(&mut self, flow: &mut Flow) -> bool {
        let now = flow.session.buffered_bytes();
        self.parser_bytes = (self.parser_bytes + now).saturating_sub(flow.parser_counted);
        let grew = now > flow.parser_counted;
        flow.parser_counted = now;
        grew
    }

    /// The flow's TCP state with its settings and counters, and what hands its stream
    /// events to its session.
    fn parts<'a>(&'a mut self, key: &'a FlowKey, flow: &'a mut Flow, at: PacketRef) -> Parts<'a> {
        Parts {
            tcp: &mut flow.tcp,
            reassembly: &self.reassembly,
            reassembly_stats: &mut self.reassembly_stats,
            input: SessionInput {
                session: &mut flow.session,
                cx: SessionCx {
                    key,
                    at,
                    cfg: &self.session,
                    stats: &mut self.session_stats,
                    out: &mut self.txs,
                    tls: &mut self.tls,
                    http2: &mut self.http2,
                },
            },
        }
    }

    /// Ends a flow: remaining holes become gaps, buffered bytes are delivered, pending
    /// transactions are emitted.
    /// `emit_at` is the packet index the resulting events are emitted at.
    fn close(
        &mut self,
        key: FlowKey,
        mut flow: Flow,
        cause: FinishCause,
        now: PacketRef,
        emit_at: u64,
    ) {
        self.ooo_bytes = self.ooo_bytes.saturating_sub(flow.tcp.buffered_bytes());
        self.parser_bytes = self.parser_bytes.saturating_sub(flow.parser_counted);
        {
            let Parts {
                tcp,
                reassembly,
                reassembly_stats,
                mut input,
            } = self.parts(&key, &mut flow, now);
            tcp.flush(reassembly, reassembly_stats, &mut |ev| input.event(ev));
            input.session.finish(cause, &mut input.cx);
        }
        for k in flow.open.drain(..) {
            self.open.remove(&k);
        }
        self.encode(key, &mut flow, emit_at);
    }

    /// Keeps the open-transaction index in step with the flow's open transactions.
    fn sync_open(&mut self, key: FlowKey, flow: &mut Flow) {
        self.scratch.clear();
        flow.session.open_transactions(&mut self.scratch);
        for (k, _) in self.scratch.iter_mut() {
            k.flow = flow.first_packet;
        }
        if self.scratch.len() == flow.open.len()
            && self
                .scratch
                .iter()
                .zip(&flow.open)
                .all(|((a, _), b)| a == b)
        {
            return;
        }
        for k in flow.open.drain(..) {
            self.open.remove(&k);
        }
        for &(k, ts) in &self.scratch {
            self.open.insert(k, (ts, key));
            flow.open.push(k);
        }
    }

    /// Encodes the transactions the last call produced; `emit_at` is the packet index at
    /// which they completed. A transaction that took longer than the reorder window is
    /// keyed there instead of at its start.
    ///
    /// A TLS connection record is keyed where the connection ended, so it never holds the
    /// watermark back however long the connection lives.
    fn encode(&mut self, key: FlowKey, flow: &mut Flow, emit_at: u64) {
        if self.txs.is_empty() && self.tls.is_empty() && self.http2.is_empty() {
            return;
        }
        let ctx = flow.ctx.get_or_insert_with(|| {
            // A transaction means data was seen, so the client is known; port order is
            // the fallback.
            let client = flow
                .session
                .client()
                .unwrap_or_else(|| apitap_session::role::client_by_port(&key));
            FlowContext::new(
                key.endpoint(client),
                key.endpoint(client.other()),
                flow.seed,
            )
        });
        ctx.encap = flow.encap;
        for mut tx in self.txs.drain(..) {
            tx.key.flow = flow.first_packet;
            if emit_at.saturating_sub(tx.key.packet) > self.reorder_window {
                tx.key.packet = emit_at;
                self.stats.transactions.keyed_late += 1;
            }
            self.stats.count_transaction(&tx);
            let event = self.encoder.encode_event(ctx, &tx);
            let record = self.records.then(|| {
                let id = event_id(&ctx.flow_id, tx.key.ordinal);
                let mut rec = crate::bridge::tx_record(ctx, tx, id);
                if let Some(scan) = &mut self.scan {
                    let (found, scanned) = scan.findings(&rec);
                    rec.findings = Some(Box::new(found));
                    rec.scanned = scanned;
                    // Only the scan reads bodies: they stay here.
                    rec.request_body = None;
                    rec.response_body = None;
                }
                Record::Tx(Box::new(rec))
            });
            self.events.push(Finished { event, record });
        }
        for mut c in self.tls.drain(..) {
            c.key.flow = flow.first_packet;
            let event = self.encoder.encode_tls(ctx, &c);
            let record = self.records.then(|| {
                let id = event_id(&ctx.flow_id, c.key.ordinal);
                Record::Tls(Box::new(crate::bridge::tls_record(ctx, &c, id)))
            });
            self.events.push(Finished { event, record });
        }
        for mut c in self.http2.drain(..) {
            c.key.flow = flow.first_packet;
            let event = self.encoder.encode_http2(ctx, &c);
            let record = self.records.then(|| {
                let id = event_id(&ctx.flow_id, c.key.ordinal);
                Record::Http2(Box::new(crate::bridge::http2_record(ctx, &c, id)))
            });
            self.events.push(Finished { event, record });
        }
    }
}

/// Why a flow found in the table ends before a packet is fed to it.
#[derive(Clone, Copy)]
enum Stale {
    /// Idle for longer than the timeout.
    Idle,
    /// A new connection (SYN) on its 5-tuple.
    Reused,
}

fn segment(meta: &PacketMeta) -> Segment {
    Segment {
        from: meta.from,
        seq: meta.seq,
        ack: meta.ack,
        flags: meta.flags,
        wire_len: meta.payload_wire_len,
    }
}

/// One flow's TCP state, with what reassembly needs and what takes its output.
struct Parts<'a> {
    tcp: &'a mut TcpConn,
    reassembly: &'a ReassemblyConfig,
    reassembly_stats: &'a mut ReassemblyStats,
    input: SessionInput<'a>,
}

/// Hands the reassembled stream events of one flow to its session.
struct SessionInput<'a> {
    session: &'a mut Session,
    cx: SessionCx<'a>,
}

impl SessionInput<'_> {
    fn event(&mut self, ev: StreamEvent<'_>) {
        self.session.on_stream(ev, &mut self.cx);
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// Memory per idle tracked flow (no payload yet, e.g. SYN only): the table entry (key,
    /// last-seen time, flow state) plus hashlink's per-entry links and hash slot. Must stay
    /// under 1 KB (speed issue target); a flow with data adds its session's boxed layers.
    #[test]
    fn idle_flow_costs_under_one_kilobyte() {
        let entry = std::mem::size_of::<FlowKey>()
            + std::mem::size_of::<Timestamp>()
            + std::mem::size_of::<Flow>()
            + 2 * std::mem::size_of::<usize>() // linked-list pointers
            + std::mem::size_of::<usize>() * 2; // hash slot + control bytes (rounded up)
        eprintln!(
            "bytes per idle flow: {entry} (Flow {}, TcpConn {}, Session {}, FlowContext {})",
            std::mem::size_of::<Flow>(),
            std::mem::size_of::<TcpConn>(),
            std::mem::size_of::<Session>(),
            std::mem::size_of::<Option<FlowContext>>()
        );
        assert!(entry < 1024, "{entry}");
    }
}
