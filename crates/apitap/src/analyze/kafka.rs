//! `apitap analyze --kafka`: one member of the centre's consumer group on the events topic.
//!
//! Edge sensors key their transaction events by host, so a partition holds whole hosts
//! and the member that owns it holds all of their state. The state is the log itself: at
//! start and at every change of its partitions a member builds a fresh engine and reads
//! its partitions again from their beginning (the events topic is its changelog). Alert
//! ids depend only on the alert, so before it publishes, a member reads the ids already
//! on the alerts topic and skips those: what a previous owner delivered is not sent again,
//! and what it had not delivered is. Offsets are committed only once the alerts of every
//! event below them are delivered.

use super::AnalyzeSummary;
use crate::analysis::configured_engine;
use crate::bridge::alert_event;
use crate::Config;
use anyhow::{Context, Result};
use apitap_analytics::events::{parse_event, EventInputStats, EventMerge, MergeBounds};
use apitap_analytics::{Alert, Analytics, TxRecord};
use apitap_core::{Level, Peak, SortKey};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

apitap_core::counters! {
    /// What one member of the centre did.
    pub struct MemberStats {
        /// Times the member built its state from the log: at start and whenever its
        /// partitions changed.
        pub rebuilds: u64,
        /// Partitions owned now.
        pub partitions: Level,
        /// Messages read, those read again by a rebuild included.
        pub messages: u64,
        /// Messages below the group's committed offset when read (read again to rebuild
        /// the state).
        pub replayed: u64,
        /// Alerts published.
        pub alerts_published: u64,
        /// Alerts not published because their id was already on the alerts topic.
        pub alerts_already_published: u64,
        /// Alert ids known (read back at the last rebuild, and published since).
        pub known_alerts: Level,
        /// Alert ids not remembered (`analyze.max_known_alerts`; such an alert may be
        /// published twice, with the same id).
        pub known_alerts_overflow: u64,
        /// Offset commits.
        pub commits: u64,
        /// Commits the broker refused (retried at the next interval).
        pub commit_failures: u64,
        /// Commit intervals whose alerts were not all delivered in time: nothing was
        /// committed then, and the alerts kept waiting.
        pub delivery_waits: u64,
        /// Most alerts waiting for delivery at once.
        pub alerts_waiting_max: Peak,
        /// Times an idle partition stopped holding back the others.
        pub partitions_idled: u64,
    }
}

/// What `--kafka` adds to the arguments.
pub(super) struct MemberOptions {
    pub brokers: String,
    pub exit_when_idle: Option<Duration>,
}

/// The group's rebalances: every assignment starts at the beginning of its partitions
/// (the state is rebuilt from them), and the member is told that they changed.
struct GroupContext {
    changed: AtomicBool,
}

impl ClientContext for GroupContext {
    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(&error, reason);
    }
}

/// A partition's end is reported as an error too; it is not one here.
fn log_client_error(error: &KafkaError, reason: &str) {
    if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
        tracing::warn!("librdkafka: {error}: {reason}");
    }
}

/// The context of the reader of whole topics.
struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(&error, reason);
    }
}

impl ConsumerContext for ReaderContext {}

impl ConsumerContext for GroupContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => tpl
                .set_all_offsets(Offset::Beginning)
                .and_then(|()| consumer.assign(tpl)),
            _ => consumer.unassign(),
        };
        if let Err(e) = result {
            tracing::warn!("rebalance: {e}");
        }
        self.changed.store(true, Ordering::SeqCst);
    }
}

/// Per owned partition: where reading stands.
#[derive(Default)]
struct PartitionState {
    /// The offset after the last message read.
    next: Option<i64>,
    /// The group's committed offset when the member took the partition.
    committed: Option<i64>,
    /// Offsets of the records still held by the merge (not yet through the engine).
    buffered: BTreeSet<i64>,
    /// Since when the partition has been at its end.
    at_end: Option<Instant>,
    /// What was committed last.
    last_commit: Option<i64>,
}

/// One member: the consumer, the alert producer, the engine and the merge.
struct Member<'a> {
    cfg: &'a Config,
    opts: &'a MemberOptions,
    topic: String,
    alerts_topic: String,
    consumer: BaseConsumer<GroupContext>,
    producer: BaseProducer,
    reader_config: ClientConfig,
    headers: OwnedHeaders,
    engine: Analytics,
    merge: EventMerge,
    partitions: HashMap<i32, PartitionState>,
    /// Where each buffered record came from, by event id.
    origin: HashMap<String, (i32, i64)>,
    known: HashSet<String>,
    input: EventInputStats,
    stats: MemberStats,
    joined: bool,
    last_message: Instant,
    ready: Vec<TxRecord>,
    alerts: Vec<Alert>,
}

/// Runs one member until it is stopped (SIGTERM, SIGINT) or, with `exit_when_idle`, until
/// every partition it owns has been at its end that long; only then does it close its
/// baseline windows (the end of the input).
pub(super) fn member(cfg: &Config, opts: &MemberOptions) -> Result<(AnalyzeSummary, Analytics)> {
    let mut kafka = cfg.kafka.clone().unwrap_or_default();
    kafka.brokers = opts.brokers.clone();
    let mut group = kafka.consumer_config()?;
    group
        .set("group.id", &cfg.analyze.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer<GroupContext> = group
        .create_with_context(GroupContext {
            changed: AtomicBool::new(false),
        })
        .context("cannot create the Kafka consumer")?;
    consumer
        .subscribe(&[kafka.events_topic.as_str()])
        .context("cannot subscribe to the events topic")?;
    let mut producer_config = kafka.client_config()?;
    // An alert is never given up while the member runs: during an outage it waits, and
    // the offsets behind it are not committed.
    producer_config.set("message.timeout.ms", "0");
    let producer: BaseProducer = producer_config
        .create()
        .context("cannot create the Kafka producer")?;
    let mut reader_config = kafka.consumer_config()?;
    reader_config
        .set("group.id", format!("{}-reader", cfg.analyze.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    let sensor = cfg.output.sensor_name.as_str();
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "apitap-sensor",
            value: Some(sensor),
        })
        .insert(Header {
            key: "apitap-schema",
            value: Some(apitap_core::output::SCHEMA_VERSION),
        });
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("cannot install the signal handlers")?;
    }
    let mut m = Member {
        cfg,
        opts,
        topic: kafka.events_topic.clone(),
        alerts_topic: kafka.alerts_topic.clone(),
        consumer,
        producer,
        reader_config,
        headers,
        engine: configured_engine(cfg)?,
        merge: EventMerge::new(0, bounds(cfg)),
        partitions: HashMap::new(),
        origin: HashMap::new(),
        known: HashSet::new(),
        input: EventInputStats::default(),
        stats: MemberStats::default(),
        joined: false,
        last_message: Instant::now(),
        ready: Vec::new(),
        alerts: Vec::new(),
    };
    let ended = m.run(&stop)?;
    if ended {
        m.finish()?;
    }
    m.close()?;
    let summary = AnalyzeSummary {
        input: m.input,
        analytics: m.engine.stats(),
        member: Some(m.stats),
    };
    Ok((summary, m.engine))
}

fn bounds(cfg: &Config) -> MergeBounds {
    let z = &cfg.analyze;
    MergeBounds {
        allowed_lateness_ns: i64::try_from(z.allowed_lateness_ms.saturating_mul(1_000_000))
            .unwrap_or(i64::MAX),
        max_buffered: z.max_buffered_events,
        max_buffered_bytes: z.max_buffered_bytes,
    }
}

impl Member<'_> {
    /// The loop; true when it ended because the input did (`exit_when_idle`).
    fn run(&mut self, stop: &AtomicBool) -> Result<bool> {
        let commit_every = Duration::from_millis(self.cfg.analyze.commit_interval_ms);
        let idle_after = Duration::from_millis(self.cfg.analyze.idle_partition_ms);
        let mut last_commit = Instant::now();
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            if self
                .consumer
                .context()
                .changed
                .swap(false, Ordering::SeqCst)
            {
                self.rebuild()?;
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    if let Some(s) = self.partitions.get_mut(&p) {
                        s.at_end.get_or_insert_with(Instant::now);
                    }
                }
                Some(Err(e)) => tracing::warn!("Kafka consumer: {e}"),
                Some(Ok(msg)) => {
                    let (p, offset) = (msg.partition(), msg.offset());
                    let payload = msg.payload().unwrap_or_default().to_vec();
                    drop(msg);
                    self.take(p, offset, &payload);
                }
            }
            for (&p, s) in &mut self.partitions {
                let idle = s.at_end.is_some_and(|t| t.elapsed() >= idle_after);
                let source = usize::try_from(p).unwrap_or(usize::MAX);
                if idle && self.merge.is_open(source) {
                    self.stats.partitions_idled += 1;
                    self.merge.close(source, &mut self.input, &mut self.ready);
                }
            }
            self.process()?;
            if last_commit.elapsed() >= commit_every {
                self.commit(commit_every);
                last_commit = Instant::now();
            }
            if let Some(wait) = self.opts.exit_when_idle {
                let all_at_end = self
                    .partitions
                    .values()
                    .all(|s| s.at_end.is_some_and(|t| t.elapsed() >= wait));
                if self.joined && all_at_end && self.last_message.elapsed() >= wait {
                    return Ok(true);
                }
            }
        }
    }

    /// One message of partition `p`.
    fn take(&mut self, p: i32, offset: i64, payload: &[u8]) {
        self.last_message = Instant::now();
        self.stats.messages += 1;
        let Some(s) = self.partitions.get_mut(&p) else {
            return;
        };
        s.at_end = None;
        s.next = Some(offset + 1);
        if s.committed.is_some_and(|c| offset < c) {
            self.stats.replayed += 1;
        }
        let source = usize::try_from(p).unwrap_or(usize::MAX);
        if !self.merge.is_open(source) {
            self.merge.reopen(source);
        }
        let input = &mut self.input;
        input.lines += 1;
        if payload.len() > self.cfg.analyze.max_event_bytes {
            input.skipped_too_long += 1;
            return;
        }
        if payload.trim_ascii().is_empty() {
            return;
        }
        let future_limit = time::OffsetDateTime::now_utc().unix_timestamp_nanos()
            + i128::from(self.cfg.analyze.max_future_s) * 1_000_000_000;
        match parse_event(payload) {
            Ok(rec) if i128::from(rec.ts_ns) > future_limit => input.skipped_future += 1,
            Ok(rec) => {
                input.transactions += 1;
                let duplicates = input.duplicates;
                let id = rec.event_id.clone();
                self.merge
                    .push(source, rec, payload.len(), input, &mut self.ready);
                if input.duplicates == duplicates {
                    s.buffered.insert(offset);
                    self.origin.insert(id, (p, offset));
                }
            }
            Err(skip) => skip.count(input),
        }
    }

    /// Runs the released records through the engine and publishes their alerts.
    fn process(&mut self) -> Result<()> {
        for rec in std::mem::take(&mut self.ready) {
            if let Some((p, offset)) = self.origin.remove(&rec.event_id) {
                if let Some(s) = self.partitions.get_mut(&p) {
                    s.buffered.remove(&offset);
                }
            }
            self.engine.process_into(&rec, &mut self.alerts);
        }
        self.publish()
    }

    /// Publishes the alerts whose ids the alerts topic does not have yet.
    fn publish(&mut self) -> Result<()> {
        let sensor = self.cfg.output.sensor_name.as_str();
        for a in std::mem::take(&mut self.alerts) {
            if self.known.contains(&a.id) {
                self.stats.alerts_already_published += 1;
                continue;
            }
            let ev = alert_event(&a, SortKey::default(), sensor);
            let key = format!("{:016x}", ev.endpoint_hash);
            loop {
                let record = BaseRecord::to(&self.alerts_topic)
                    .key(&key)
                    .payload(&ev.json)
                    .headers(self.headers.clone());
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        self.producer.poll(Duration::from_millis(100));
                    }
                    Err((e, _)) => return Err(e).context("cannot publish an alert"),
                }
            }
            self.stats.alerts_published += 1;
            self.remember(a.id);
        }
        let waiting = u64::try_from(self.producer.in_flight_count()).unwrap_or(0);
        self.stats.alerts_waiting_max.raise(waiting);
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    fn remember(&mut self, id: String) {
        if self.known.len() >= self.cfg.analyze.max_known_alerts {
            self.stats.known_alerts_overflow += 1;
            return;
        }
        self.known.insert(id);
        self.stats.known_alerts = Level(self.known.len() as u64);
    }

    /// Waits up to `wait` for every alert to be delivered, then commits, per partition,
    /// the offset of the first event not yet through the engine.
    fn commit(&mut self, wait: Duration) {
        if self.producer.flush(wait).is_err() {
            self.stats.delivery_waits += 1;
            return;
        }
        let mut tpl = TopicPartitionList::new();
        let mut commits = Vec::new();
        for (&p, s) in &self.partitions {
            let Some(next) = s.next else { continue };
            let upto = s.buffered.first().copied().unwrap_or(next);
            // Never behind what the group had: a rebuild reads from the beginning.
            let upto = upto.max(s.committed.unwrap_or(0));
            if s.last_commit == Some(upto) {
                continue;
            }
            if tpl
                .add_partition_offset(&self.topic, p, Offset::Offset(upto))
                .is_ok()
            {
                commits.push((p, upto));
            }
        }
        if commits.is_empty() {
            return;
        }
        match self.consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                self.stats.commits += 1;
                for (p, upto) in commits {
                    if let Some(s) = self.partitions.get_mut(&p) {
                        s.last_commit = Some(upto);
                    }
                }
            }
            Err(e) => {
                self.stats.commit_failures += 1;
                tracing::warn!("offset commit: {e}");
            }
        }
    }

    /// A fresh engine and merge over the partitions now owned, read from their beginning.
    fn rebuild(&mut self) -> Result<()> {
        self.joined = true;
        // What the old engine found goes out before it is dropped.
        self.process()?;
        let _ = self.producer.flush(Duration::from_millis(
            self.cfg
                .kafka
                .as_ref()
                .map_or(30_000, |k| k.flush_timeout_ms),
        ));
        let owned: Vec<i32> = self
            .consumer
            .assignment()
            .map(|tpl| {
                tpl.elements_for_topic(&self.topic)
                    .iter()
                    .map(|e| e.partition())
                    .collect()
            })
            .unwrap_or_default();
        let committed: HashMap<i32, i64> = self
            .consumer
            .committed(Duration::from_secs(10))
            .map(|tpl| {
                tpl.elements_for_topic(&self.topic)
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) => Some((e.partition(), o)),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.stats.rebuilds += 1;
        self.stats.partitions = Level(owned.len() as u64);
        tracing::info!(partitions = ?owned, "analyze: building the state from the events topic");
        self.engine = configured_engine(self.cfg)?;
        let sources = owned
            .iter()
            .filter_map(|&p| usize::try_from(p).ok())
            .max()
            .map_or(0, |m| m + 1);
        self.merge = EventMerge::new(sources, bounds(self.cfg));
        let mut discard = Vec::new();
        for i in 0..sources {
            if !owned.iter().any(|&p| usize::try_from(p).ok() == Some(i)) {
                self.merge.close(i, &mut self.input, &mut discard);
            }
        }
        self.origin.clear();
        self.partitions = owned
            .iter()
            .map(|&p| {
                let s = PartitionState {
                    committed: committed.get(&p).copied(),
                    ..PartitionState::default()
                };
                (p, s)
            })
            .collect();
        let (first, ids) = self.read_back()?;
        if let Some(first) = first {
            self.engine.set_learning_start(first);
        }
        for id in ids {
            self.remember(id);
        }
        Ok(())
    }

    /// Reads the fleet's first event time (the earliest of the first events of every
    /// partition of the events topic) and the ids on the alerts topic.
    fn read_back(&mut self) -> Result<(Option<i64>, Vec<String>)> {
        let reader: BaseConsumer<ReaderContext> = self
            .reader_config
            .create_with_context(ReaderContext)
            .context("cannot create the Kafka reader")?;
        let mut first: Option<i64> = None;
        read_topic(&reader, &self.topic, Some(FIRST_EVENTS), |_, payload| {
            if let Some(rec) = payload.and_then(|p| parse_event(p).ok()) {
                first = Some(first.map_or(rec.ts_ns, |f| f.min(rec.ts_ns)));
            }
        })?;
        let mut ids = Vec::new();
        read_topic(&reader, &self.alerts_topic, None, |_, payload| {
            if let Some(id) = payload.and_then(alert_id) {
                ids.push(id);
            }
        })?;
        Ok((first, ids))
    }

    /// End of the input: what is buffered goes through, and the open windows close.
    fn finish(&mut self) -> Result<()> {
        let owned: Vec<i32> = self.partitions.keys().copied().collect();
        for p in owned {
            if let Ok(source) = usize::try_from(p) {
                self.merge.close(source, &mut self.input, &mut self.ready);
            }
        }
        self.process()?;
        self.alerts.extend(self.engine.finish());
        self.publish()
    }

    /// Delivers what waits, commits, and leaves the group.
    fn close(&mut self) -> Result<()> {
        let wait = self
            .cfg
            .kafka
            .as_ref()
            .map_or(30_000, |k| k.flush_timeout_ms);
        self.commit(Duration::from_millis(wait.max(1)));
        let waiting = self.producer.in_flight_count();
        if waiting > 0 {
            anyhow::bail!("{waiting} alerts were not delivered before the member stopped");
        }
        self.consumer.unsubscribe();
        Ok(())
    }
}

/// Messages read from the start of each partition to find the fleet's first event: two
/// sensors' streams interleave within a partition, so its first message need not be its
/// earliest event.
const FIRST_EVENTS: usize = 64;

/// Reads `topic` from the beginning of every partition to its end (or `limit` messages
/// per partition), giving each payload to `f` with its partition, and `None` when a
/// partition is done. A topic that does not exist reads empty.
fn read_topic(
    reader: &BaseConsumer<ReaderContext>,
    topic: &str,
    limit: Option<usize>,
    mut f: impl FnMut(i32, Option<&[u8]>),
) -> Result<()> {
    let partitions = partitions_of(reader, topic)?;
    if partitions.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    reader.assign(&tpl)?;
    let mut open: HashMap<i32, usize> = partitions.iter().map(|&p| (p, 0)).collect();
    let mut last_progress = Instant::now();
    while !open.is_empty() {
        match reader.poll(Duration::from_millis(100)) {
            Some(Err(KafkaError::PartitionEOF(p))) => {
                if open.remove(&p).is_some() {
                    f(p, None);
                }
                last_progress = Instant::now();
            }
            Some(Ok(msg)) => {
                last_progress = Instant::now();
                let p = msg.partition();
                let Some(n) = open.get_mut(&p) else { continue };
                *n += 1;
                f(p, Some(msg.payload().unwrap_or_default()));
                if limit.is_some_and(|l| *n >= l) {
                    open.remove(&p);
                    f(p, None);
                }
            }
            Some(Err(e)) => tracing::warn!("reading {topic}: {e}"),
            None => {}
        }
        if last_progress.elapsed() > READ_STALL {
            anyhow::bail!(
                "reading {topic}: no progress for {} s",
                READ_STALL.as_secs()
            );
        }
    }
    reader.unassign()?;
    Ok(())
}

/// `apitap inventory --kafka`: the fleet's inventory, from every event on the events
/// topic, read to its end (no group: nothing is committed, nothing published).
pub(crate) fn fleet_inventory(cfg: &Config, brokers: &str) -> Result<(Analytics, EventInputStats)> {
    let mut kafka = cfg.kafka.clone().unwrap_or_default();
    kafka.brokers = brokers.to_string();
    let mut reader_config = kafka.consumer_config()?;
    reader_config
        .set("group.id", format!("{}-reader", cfg.analyze.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    let reader: BaseConsumer<ReaderContext> = reader_config
        .create_with_context(ReaderContext)
        .context("cannot create the Kafka reader")?;
    let sources = partitions_of(&reader, &kafka.events_topic)?
        .into_iter()
        .filter_map(|p| usize::try_from(p).ok())
        .max()
        .map_or(0, |m| m + 1);
    let mut engine = configured_engine(cfg)?;
    let mut merge = EventMerge::new(sources, bounds(cfg));
    let mut input = EventInputStats::default();
    let mut ready = Vec::new();
    let mut alerts = Vec::new();
    read_topic(&reader, &kafka.events_topic, None, |p, payload| {
        let source = usize::try_from(p).unwrap_or(usize::MAX);
        match payload {
            None => merge.close(source, &mut input, &mut ready),
            Some(payload) => {
                input.lines += 1;
                match parse_event(payload) {
                    Ok(rec) => {
                        input.transactions += 1;
                        merge.push(source, rec, payload.len(), &mut input, &mut ready);
                    }
                    Err(skip) => skip.count(&mut input),
                }
            }
        }
        for rec in ready.drain(..) {
            engine.process_into(&rec, &mut alerts);
        }
        alerts.clear();
    })?;
    Ok((engine, input))
}

/// The partitions of `topic` (none when it does not exist). A broker may answer a
/// topic's first metadata request before it knows the partitions: asked again for up to
/// [`METADATA_WAIT`].
fn partitions_of(reader: &BaseConsumer<ReaderContext>, topic: &str) -> Result<Vec<i32>> {
    let deadline = Instant::now() + METADATA_WAIT;
    loop {
        let metadata = reader
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .with_context(|| format!("cannot read the metadata of {topic}"))?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        let partitions: Vec<i32> = found
            .filter(|t| t.error().is_none())
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default();
        let unknown = found.is_none_or(|t| {
            t.error().is_some_and(|e| {
                RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition
            })
        });
        if !partitions.is_empty() || unknown || Instant::now() >= deadline {
            return Ok(partitions);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How long to ask again for the partitions of a topic the broker names without them.
const METADATA_WAIT: Duration = Duration::from_secs(5);

/// How long reading a topic back may make no progress.
const READ_STALL: Duration = Duration::from_secs(30);

/// The id of an alert line (`event.id`).
fn alert_id(payload: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    Some(v.pointer("/event/id")?.as_str()?.to_string())
}
