//! `apitap analyze --kafka`: one member of the centre's consumer group on the events topic.
//!
//! Edge sensors key their transaction events by host, so a partition holds whole hosts
//! and the member that owns it holds all of their state. The state is the log itself: at
//! start and at every change of its partitions a member builds a fresh engine and reads
//! its partitions again from their beginning (the events topic is its changelog). Alert
//! ids depend only on the alert, so before it publishes, a member reads the ids already
//! on the alerts topic and skips those: what a previous owner delivered is not sent again,
//! and what it had not delivered is (ids published while it read them back may come
//! twice, identical). Offsets are committed only once the alerts of every event below
//! them are delivered; as every (re)build reads from the beginning, they are the group's
//! progress for monitoring, not where a member resumes. That needs the whole history on
//! the events topic (`retention.ms = -1`, or a retention longer than any state matters);
//! a member that finds the head of a partition gone says so (`history_truncated`).
//!
//! State with another key is repartitioned: the per-client auth bursts read the auth
//! failures topic (keyed by client), in a second group of the same process.

use super::{admit, bounds, AnalyzeSummary};
use crate::analysis::configured_engine;
use crate::bridge::alert_event;
use crate::Config;
use anyhow::{Context, Result};
use apitap_analytics::events::{parse_event, EventInputStats, EventMerge};
use apitap_analytics::{Alert, Analytics, Rule, TxRecord};
use apitap_core::{Level, Peak, SortKey};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeSet, HashMap};
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
        /// Alerts the broker refused for good (too large, not authorised; each logged).
        pub alerts_failed: u64,
        /// Alert ids known (read back at the last rebuild, and published since).
        pub known_alerts: Level,
        /// Alert ids not kept (`analyze.max_known_alerts`): the oldest read back at a
        /// rebuild, and ids published while full. Such an alert may be published twice,
        /// with the same id.
        pub known_alerts_overflow: u64,
        /// Offset commits requested (asynchronous; failures in `commit_failures`).
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
        /// Partitions found at a rebuild with their head deleted (retention): the state
        /// lacks what was there.
        pub history_truncated: u64,
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
    /// The last assignment gave this member no partition (more members than partitions):
    /// settled, with nothing to read.
    assigned_none: AtomicBool,
    /// The group gave partitions that could not be taken: the member stops.
    assign_failed: AtomicBool,
    /// Offset commits the broker refused (asynchronous commits report here).
    commits_failed: std::sync::atomic::AtomicU64,
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
        let assigning = err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
        self.assigned_none
            .store(assigning && tpl.count() == 0, Ordering::SeqCst);
        let result = if assigning {
            tpl.set_all_offsets(Offset::Beginning)
                .and_then(|()| consumer.assign(tpl))
        } else {
            consumer.unassign()
        };
        if let Err(e) = result {
            tracing::error!("rebalance: {e}");
            self.assign_failed.store(true, Ordering::SeqCst);
        }
        self.changed.store(true, Ordering::SeqCst);
    }

    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!("offset commit: {e}");
            self.commits_failed.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Delivery reports of the alerts: what the broker refused for good (the producer never
/// gives up on its own: `message.timeout.ms = 0`).
struct AlertDelivery {
    refused: std::sync::Mutex<Vec<String>>,
}

impl ClientContext for AlertDelivery {
    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(&error, reason);
    }
}

impl rdkafka::producer::ProducerContext for AlertDelivery {
    type DeliveryOpaque = Box<String>;

    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, id: Box<String>) {
        if let Err((e, _)) = result {
            tracing::error!(alert = %id, "the broker refused an alert: {e}");
            if let Ok(mut refused) = self.refused.lock() {
                refused.push(*id);
            }
        }
    }
}

/// Alert ids known to be on the alerts topic, the newest `cap` of them.
struct KnownIds {
    ids: hashlink::LinkedHashSet<String>,
    cap: usize,
}

impl KnownIds {
    /// Adds `id`; true when an older one was forgotten to make room (or none is kept).
    fn insert(&mut self, id: String) -> bool {
        if self.cap == 0 {
            return true;
        }
        self.ids.insert(id);
        self.ids.len() > self.cap && self.ids.pop_front().is_some()
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
    producer: BaseProducer<AlertDelivery>,
    reader_config: ClientConfig,
    /// The group's committed offsets could not be read at the last rebuild: nothing is
    /// committed until they are (a commit must not move the group back).
    offsets_unknown: bool,
    /// Alerts that the engine gave were not all handed to the producer (stopped while
    /// its queue was full): no commit may pass them.
    unsent: bool,
    /// All owned partitions have been at their end since this was logged.
    logged_at_end: bool,
    headers: OwnedHeaders,
    engine: Analytics,
    merge: EventMerge,
    partitions: HashMap<i32, PartitionState>,
    /// Where each buffered record came from, by event id.
    origin: HashMap<String, (i32, i64)>,
    known: KnownIds,
    input: EventInputStats,
    stats: MemberStats,
    joined: bool,
    last_message: Instant,
    /// When the last rebuild started, and the messages read before it (the rate logged
    /// at the end).
    rebuilt_at: (Instant, u64),
    /// When a record last went through the engine.
    last_processed: Instant,
    ready: Vec<TxRecord>,
    alerts: Vec<Alert>,
}

/// The rules that count per client across hosts: the members of the clients group run
/// them on the auth failures topic (keyed by client), the others do not.
const CLIENT_RULES: [Rule; 2] = [Rule::LoginFailureBurst, Rule::AuthFailureBurst];

/// One of the two consumer groups a member process belongs to.
struct Group {
    /// The topic it reads.
    topic: String,
    /// Its group id.
    id: String,
    /// Its share of the rules: every rule but [`CLIENT_RULES`] (the events topic, keyed by
    /// host), or only those (the auth failures topic, keyed by client).
    clients: bool,
}

/// `cfg` with the rules of the other group disabled.
fn group_config(cfg: &Config, group: &Group) -> Config {
    let mut cfg = cfg.clone();
    let theirs = Rule::ALL
        .into_iter()
        .filter(|r| CLIENT_RULES.contains(r) != group.clients);
    cfg.analytics
        .disabled_rules
        .extend(theirs.map(|r| r.id().to_string()));
    cfg
}

/// Runs one member process until it is stopped (SIGTERM, SIGINT) or, with
/// `exit_when_idle`, until every partition it owns has been at its end that long; only
/// then does it close its baseline windows (the end of the input). It is a member of two
/// groups, each on its own thread: `analyze.group_id` on the events topic (keyed by
/// host), and `<group_id>-clients` on the auth failures topic (keyed by client) for the
/// per-client auth bursts, unless `kafka.auth_failures_topic` is empty (then the first
/// runs every rule, and a client's failures count per host partition).
pub(super) fn member(cfg: &Config, opts: &MemberOptions) -> Result<(AnalyzeSummary, Analytics)> {
    let mut kafka = cfg.kafka.clone().unwrap_or_default();
    kafka.brokers = opts.brokers.clone();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("cannot install the signal handlers")?;
    }
    let hosts = Group {
        topic: kafka.events_topic.clone(),
        id: cfg.analyze.group_id.clone(),
        clients: false,
    };
    if kafka.auth_failures_topic.is_empty() {
        return group_member(cfg, opts, &kafka, &hosts, &stop);
    }
    // Without its topic the clients group would leave the auth bursts to nobody, and a
    // member that took them back into the events group would count them unlike the
    // others: refuse to start instead.
    let probe: BaseConsumer<ReaderContext> = reader_config(cfg, &kafka)?
        .create_with_context(ReaderContext)
        .context("cannot create the Kafka reader")?;
    if partitions_of(&probe, &kafka.auth_failures_topic)?.is_empty() {
        anyhow::bail!(
            "the auth failures topic {} has no partition this member can read (missing, or not authorised): create it as the events topic, or set kafka.auth_failures_topic = \"\" on the sensors and the members to count auth bursts per host partition",
            kafka.auth_failures_topic
        );
    }
    drop(probe);
    let clients = Group {
        topic: kafka.auth_failures_topic.clone(),
        id: format!("{}-clients", cfg.analyze.group_id),
        clients: true,
    };
    let (hosts_cfg, clients_cfg) = (group_config(cfg, &hosts), group_config(cfg, &clients));
    // Either failing (or panicking) stops the other: the process ends with the error.
    let run = |cfg: &Config, group: &Group| {
        let _stop_on_panic = StopOnPanic(&stop);
        let result = group_member(cfg, opts, &kafka, group, &stop);
        if result.is_err() {
            stop.store(true, Ordering::SeqCst);
        }
        result
    };
    std::thread::scope(|s| {
        let clients = std::thread::Builder::new()
            .name("apitap-analyze-clients".into())
            .spawn_scoped(s, || run(&clients_cfg, &clients))
            .context("cannot start the clients member")?;
        let hosts = run(&hosts_cfg, &hosts);
        let clients = clients
            .join()
            .map_err(|_| anyhow::anyhow!("the clients member panicked"))?;
        let (mut summary, engine) = hosts?;
        let (clients, _) = clients?;
        summary.clients = Some(Box::new(clients));
        Ok((summary, engine))
    })
}

/// Sets the stop flag when the thread it lives on panics.
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// One member of `group` (see [`member`]).
fn group_member(
    cfg: &Config,
    opts: &MemberOptions,
    kafka: &apitap_sink::KafkaConfig,
    group: &Group,
    stop: &AtomicBool,
) -> Result<(AnalyzeSummary, Analytics)> {
    let mut consumer_config = kafka.consumer_config()?;
    consumer_config
        .set("group.id", &group.id)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        // Eager assignment: the rebalance callback assigns and unassigns whole sets.
        .set("partition.assignment.strategy", "range,roundrobin");
    let consumer: BaseConsumer<GroupContext> = consumer_config
        .create_with_context(GroupContext {
            changed: AtomicBool::new(false),
            assigned_none: AtomicBool::new(false),
            assign_failed: AtomicBool::new(false),
            commits_failed: std::sync::atomic::AtomicU64::new(0),
        })
        .context("cannot create the Kafka consumer")?;
    consumer
        .subscribe(&[group.topic.as_str()])
        .with_context(|| format!("cannot subscribe to {}", group.topic))?;
    let mut producer_config = kafka.client_config()?;
    // An alert is never given up while the member runs: during an outage it waits, and
    // the offsets behind it are not committed. Delivered means on every replica.
    producer_config
        .set("message.timeout.ms", "0")
        .set("acks", "all");
    let producer: BaseProducer<AlertDelivery> = producer_config
        .create_with_context(AlertDelivery {
            refused: std::sync::Mutex::new(Vec::new()),
        })
        .context("cannot create the Kafka producer")?;
    let reader_config = reader_config(cfg, kafka)?;
    let headers = apitap_sink::message_headers(&cfg.output.sensor_name);
    let mut m = Member {
        cfg,
        opts,
        topic: group.topic.clone(),
        alerts_topic: kafka.alerts_topic.clone(),
        consumer,
        producer,
        reader_config,
        offsets_unknown: false,
        unsent: false,
        logged_at_end: false,
        headers,
        engine: configured_engine(cfg)?,
        merge: EventMerge::new(0, bounds(cfg)),
        partitions: HashMap::new(),
        origin: HashMap::new(),
        known: KnownIds {
            ids: hashlink::LinkedHashSet::new(),
            cap: cfg.analyze.max_known_alerts,
        },
        input: EventInputStats::default(),
        stats: MemberStats::default(),
        joined: false,
        last_message: Instant::now(),
        rebuilt_at: (Instant::now(), 0),
        last_processed: Instant::now(),
        ready: Vec::new(),
        alerts: Vec::new(),
    };
    let ended = m.run(stop)?;
    let read = m.stats.messages - m.rebuilt_at.1;
    let secs = m
        .last_processed
        .saturating_duration_since(m.rebuilt_at.0)
        .as_secs_f64();
    if secs > 0.0 {
        tracing::info!(
            topic = %m.topic,
            "analyze: {read} messages read and analysed since the last rebuild, in {secs:.3} s to the last event through the engine ({:.0}/s)",
            read as f64 / secs
        );
    }
    if ended {
        m.finish(stop)?;
    }
    m.close()?;
    let summary = AnalyzeSummary {
        input: m.input,
        analytics: m.engine.stats(),
        member: Some(m.stats),
        clients: None,
    };
    Ok((summary, m.engine))
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
            // Owned, so that the state can change before the message is taken.
            let polled = match self.consumer.poll(Duration::from_millis(100)) {
                None => None,
                Some(Err(KafkaError::PartitionEOF(p))) => Some((p, None)),
                Some(Err(e)) => {
                    tracing::warn!("Kafka consumer: {e}");
                    None
                }
                Some(Ok(msg)) => Some((
                    msg.partition(),
                    Some((msg.offset(), msg.payload().unwrap_or_default().to_vec())),
                )),
            };
            // A rebalance is served inside `poll`: the state follows it before anything
            // else, the message just returned included.
            if self.consumer.context().assign_failed.load(Ordering::SeqCst) {
                anyhow::bail!("the partitions the group assigned could not be taken");
            }
            if self
                .consumer
                .context()
                .changed
                .swap(false, Ordering::SeqCst)
            {
                self.rebuild(stop)?;
            }
            match polled {
                None => {}
                Some((p, None)) => {
                    if let Some(s) = self.partitions.get_mut(&p) {
                        s.at_end.get_or_insert_with(Instant::now);
                    }
                }
                Some((p, Some((offset, payload)))) => self.take(p, offset, &payload),
            }
            for (&p, s) in &mut self.partitions {
                let idle = s.at_end.is_some_and(|t| t.elapsed() >= idle_after);
                let source = usize::try_from(p).unwrap_or(usize::MAX);
                if idle && self.merge.is_open(source) {
                    self.stats.partitions_idled += 1;
                    self.merge.close(source, &mut self.input, &mut self.ready);
                }
            }
            let all_at_end =
                !self.partitions.is_empty() && self.partitions.values().all(|s| s.at_end.is_some());
            if all_at_end && !self.logged_at_end {
                tracing::info!(topic = %self.topic, "analyze: every partition at its end");
            }
            self.logged_at_end = all_at_end;
            self.process(stop)?;
            if last_commit.elapsed() >= commit_every {
                self.commit(commit_every, false);
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
        let Some(rec) = admit(self.cfg, payload, input) else {
            return;
        };
        let duplicates = input.duplicates;
        let id = rec.event_id.clone();
        self.merge
            .push(source, rec, payload.len(), input, &mut self.ready);
        if input.duplicates == duplicates {
            s.buffered.insert(offset);
            self.origin.insert(id, (p, offset));
        }
    }

    /// Runs the released records through the engine and publishes their alerts.
    fn process(&mut self, stop: &AtomicBool) -> Result<()> {
        let any = !self.ready.is_empty();
        for rec in std::mem::take(&mut self.ready) {
            if let Some((p, offset)) = self.origin.remove(&rec.event_id) {
                if let Some(s) = self.partitions.get_mut(&p) {
                    s.buffered.remove(&offset);
                }
            }
            self.engine.process_into(&rec, &mut self.alerts);
        }
        if any {
            self.last_processed = Instant::now();
        }
        self.publish(stop);
        Ok(())
    }

    /// Publishes the alerts whose ids the alerts topic does not have yet. While the
    /// producer's queue is full (a long outage) it waits, unless told to stop; then the
    /// alerts not handed over block every further commit.
    fn publish(&mut self, stop: &AtomicBool) {
        let sensor = self.cfg.output.sensor_name.as_str();
        let mut alerts = std::mem::take(&mut self.alerts).into_iter();
        'alerts: for a in alerts.by_ref() {
            // A match frees its room: a replay meets each id once.
            if self.known.ids.remove(&a.id) {
                self.stats.alerts_already_published += 1;
                continue;
            }
            let ev = alert_event(&a, SortKey::default(), sensor);
            let key = format!("{:016x}", ev.endpoint_hash);
            let mut id = Box::new(a.id.clone());
            loop {
                let record = BaseRecord::with_opaque_to(&self.alerts_topic, id)
                    .key(&key)
                    .payload(&ev.json)
                    .headers(self.headers.clone());
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        if stop.load(Ordering::Relaxed) {
                            self.unsent = true;
                            break 'alerts;
                        }
                        id = r.delivery_opaque;
                        self.producer.poll(Duration::from_millis(100));
                    }
                    Err((e, _)) => {
                        // Refused before it was queued (larger than the broker takes):
                        // counted and logged; retrying cannot help.
                        tracing::error!(alert = %a.id, rule = a.rule.id(), "cannot publish an alert: {e}");
                        self.stats.alerts_failed += 1;
                        continue 'alerts;
                    }
                }
            }
            self.stats.alerts_published += 1;
            self.remember(a.id);
        }
        if alerts.len() > 0 {
            self.unsent = true;
        }
        let waiting = u64::try_from(self.producer.in_flight_count()).unwrap_or(0);
        self.stats.alerts_waiting_max.raise(waiting);
        self.producer.poll(Duration::ZERO);
        self.take_refused();
    }

    /// Counts the alerts the broker refused, and forgets their ids (they are not on the
    /// topic: a rebuild may publish them again).
    fn take_refused(&mut self) {
        let refused = match self.producer.context().refused.lock() {
            Ok(mut r) => std::mem::take(&mut *r),
            Err(_) => return,
        };
        for id in refused {
            self.stats.alerts_failed += 1;
            self.stats.alerts_published = self.stats.alerts_published.saturating_sub(1);
            self.known.ids.remove(&id);
        }
        self.stats.known_alerts = Level(self.known.ids.len() as u64);
    }

    /// Remembers an id this member published. It never pushes out an id read back (a
    /// replay has yet to meet those); when full it is not kept.
    fn remember(&mut self, id: String) {
        if self.known.ids.len() >= self.known.cap {
            self.stats.known_alerts_overflow += 1;
        } else {
            self.known.ids.insert(id);
        }
        self.stats.known_alerts = Level(self.known.ids.len() as u64);
    }

    /// Waits up to `wait` for every alert to be delivered, then commits, per partition,
    /// the offset of the first event not yet through the engine.
    fn commit(&mut self, wait: Duration, last: bool) {
        let failed = self
            .consumer
            .context()
            .commits_failed
            .load(Ordering::SeqCst);
        if failed > self.stats.commit_failures {
            self.stats.commit_failures = failed;
            for s in self.partitions.values_mut() {
                s.last_commit = None;
            }
        }
        if self.producer.flush(wait).is_err() {
            self.stats.delivery_waits += 1;
            return;
        }
        self.take_refused();
        if self.unsent {
            return;
        }
        if self.offsets_unknown {
            // Asked briefly: this runs in the loop, and the broker may be away.
            match self.read_committed(Duration::from_millis(500)) {
                Some(committed) => {
                    for (p, s) in &mut self.partitions {
                        s.committed = committed.get(p).copied();
                    }
                    self.offsets_unknown = false;
                }
                None => return,
            }
        }
        let mut tpl = TopicPartitionList::new();
        let mut commits = Vec::new();
        for (&p, s) in &self.partitions {
            let Some(next) = s.next else { continue };
            let upto = s.buffered.first().copied().unwrap_or(next);
            // Never behind what the group had: a rebuild reads from the beginning.
            let upto = upto.max(s.committed.unwrap_or(0));
            if s.last_commit.or(s.committed) == Some(upto) {
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
        // Asynchronous in the loop: a commit to an unreachable broker must not hold up
        // the member (a failure shows in the next call, which then commits again).
        let mode = if last {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        match self.consumer.commit(&tpl, mode) {
            Ok(()) => {
                self.stats.commits += 1;
                for (p, upto) in commits {
                    if let Some(s) = self.partitions.get_mut(&p) {
                        s.last_commit = Some(upto);
                    }
                }
            }
            Err(e) => {
                tracing::warn!("offset commit: {e}");
                self.consumer
                    .context()
                    .commits_failed
                    .fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// A fresh engine and merge over the partitions now owned, read from their beginning.
    fn rebuild(&mut self, stop: &AtomicBool) -> Result<()> {
        self.last_message = Instant::now();
        self.logged_at_end = false;
        // What the old engine found goes out before it is dropped (the next owner
        // publishes what is left).
        let never = AtomicBool::new(false);
        self.publish(&never);
        let _ = self
            .producer
            .flush(Duration::from_millis(self.cfg.analyze.commit_interval_ms));
        self.take_refused();
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
        // `--exit-when-idle` waits for an assignment: between a revoke and the next one
        // the member owns nothing and is not idle; an assignment of nothing is settled.
        self.joined =
            !owned.is_empty() || self.consumer.context().assigned_none.load(Ordering::SeqCst);
        let committed = if owned.is_empty() {
            Some(HashMap::new())
        } else {
            self.read_committed(Duration::from_secs(10))
        };
        self.offsets_unknown = committed.is_none();
        let committed = committed.unwrap_or_default();
        self.stats.rebuilds += 1;
        self.rebuilt_at = (Instant::now(), self.stats.messages);
        self.stats.partitions = Level(owned.len() as u64);
        tracing::info!(topic = %self.topic, partitions = ?owned, "analyze: building the state from the log");
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
        self.unsent = false;
        if owned.is_empty() {
            return Ok(());
        }
        for &p in &owned {
            if let Ok((low, _)) =
                self.consumer
                    .fetch_watermarks(&self.topic, p, Duration::from_secs(2))
            {
                if low > 0 {
                    self.stats.history_truncated += 1;
                    tracing::warn!(
                        partition = p,
                        first_offset = low,
                        "the head of the events topic was deleted: the state lacks it (see retention.ms)"
                    );
                }
            }
        }
        self.known.ids.clear();
        let first = self.read_back(stop)?;
        if let Some(first) = first {
            self.engine.set_learning_start(first);
        }
        Ok(())
    }

    /// The group's committed offsets of the events topic, by partition (`None`: the
    /// broker did not say).
    fn read_committed(&self, timeout: Duration) -> Option<HashMap<i32, i64>> {
        let tpl = self.consumer.committed(timeout).ok()?;
        Some(
            tpl.elements_for_topic(&self.topic)
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.partition(), o)),
                    _ => None,
                })
                .collect(),
        )
    }

    /// Reads the fleet's first event time (the earliest of the first events of every
    /// partition of the events topic) and the ids on the alerts topic (the newest
    /// `analyze.max_known_alerts`).
    fn read_back(&mut self, stop: &AtomicBool) -> Result<Option<i64>> {
        let mut first: Option<i64> = None;
        read_topic(
            &self.reader_config,
            &self.topic,
            Some(FIRST_EVENTS),
            stop,
            |_, payload| {
                if let Some(rec) = payload.and_then(|p| parse_event(p).ok()) {
                    first = Some(first.map_or(rec.ts_ns, |f| f.min(rec.ts_ns)));
                }
            },
        )?;
        let (known, stats) = (&mut self.known, &mut self.stats);
        // Only the ids of this group's rules: the other group's never match here.
        let disabled = &self.cfg.analytics.disabled_rules;
        read_topic(
            &self.reader_config,
            &self.alerts_topic,
            None,
            stop,
            |_, payload| {
                if let Some(id) = payload.and_then(|p| alert_id(p, disabled)) {
                    if known.insert(id) {
                        stats.known_alerts_overflow += 1;
                    }
                }
            },
        )?;
        self.stats.known_alerts = Level(self.known.ids.len() as u64);
        Ok(first)
    }

    /// End of the input: what is buffered goes through, and the open windows close.
    fn finish(&mut self, stop: &AtomicBool) -> Result<()> {
        let owned: Vec<i32> = self.partitions.keys().copied().collect();
        for p in owned {
            if let Ok(source) = usize::try_from(p) {
                self.merge.close(source, &mut self.input, &mut self.ready);
            }
        }
        self.process(stop)?;
        self.alerts.extend(self.engine.finish());
        self.publish(stop);
        Ok(())
    }

    /// Delivers what waits, commits, and leaves the group.
    fn close(&mut self) -> Result<()> {
        let wait = self
            .cfg
            .kafka
            .as_ref()
            .map_or(30_000, |k| k.flush_timeout_ms);
        if self.unsent {
            anyhow::bail!(
                "stopped while the producer's queue was full: alerts not published (their events' offsets are not committed; the next owner publishes them)"
            );
        }
        // Failures of asynchronous commits are reported through `poll`; the last commit
        // covers every partition again, whatever an earlier one did.
        self.consumer.poll(Duration::ZERO);
        for s in self.partitions.values_mut() {
            s.last_commit = None;
        }
        self.commit(Duration::from_millis(wait.max(1)), true);
        self.stats.commit_failures = self
            .consumer
            .context()
            .commits_failed
            .load(Ordering::SeqCst);
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
/// partition is done; or until `stop`. A topic that does not exist reads empty.
fn read_topic(
    reader_config: &ClientConfig,
    topic: &str,
    limit: Option<usize>,
    stop: &AtomicBool,
    mut f: impl FnMut(i32, Option<&[u8]>),
) -> Result<()> {
    // A reader of its own per topic: a partition's end names no topic.
    let reader: BaseConsumer<ReaderContext> = reader_config
        .create_with_context(ReaderContext)
        .context("cannot create the Kafka reader")?;
    let partitions = partitions_of(&reader, topic)?;
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
    while !open.is_empty() && !stop.load(Ordering::Relaxed) {
        match reader.poll(Duration::from_millis(100)) {
            Some(Err(KafkaError::PartitionEOF(p))) => {
                if open.remove(&p).is_some() {
                    f(p, None);
                }
                last_progress = Instant::now();
            }
            Some(Ok(msg)) if msg.topic() == topic => {
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
            Some(Ok(_)) | None => {}
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
    let reader_config = reader_config(cfg, &kafka)?;
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
    let never = AtomicBool::new(false);
    read_topic(
        &reader_config,
        &kafka.events_topic,
        None,
        &never,
        |p, payload| {
            let source = usize::try_from(p).unwrap_or(usize::MAX);
            match payload {
                None => merge.close(source, &mut input, &mut ready),
                Some(payload) => {
                    if let Some(rec) = admit(cfg, payload, &mut input) {
                        merge.push(source, rec, payload.len(), &mut input, &mut ready);
                    }
                }
            }
            for rec in ready.drain(..) {
                engine.process_into(&rec, &mut alerts);
            }
            alerts.clear();
        },
    )?;
    Ok((engine, input))
}

/// The configuration of a reader of whole topics: its own group id, never committing,
/// told when it reaches a partition's end.
fn reader_config(cfg: &Config, kafka: &apitap_sink::KafkaConfig) -> Result<ClientConfig> {
    let mut reader = kafka.consumer_config()?;
    reader
        .set("group.id", format!("{}-reader", cfg.analyze.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    Ok(reader)
}

/// The partitions of `topic` (none when it does not exist). A broker may answer a
/// topic's first metadata request before it knows the partitions: asked again for up to
/// [`METADATA_WAIT`].
fn partitions_of<C: ConsumerContext>(reader: &BaseConsumer<C>, topic: &str) -> Result<Vec<i32>> {
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
fn alert_id(payload: &[u8], disabled: &[String]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let rule = v.pointer("/rule/id")?.as_str()?;
    if disabled.iter().any(|d| d == rule) {
        return None;
    }
    Some(v.pointer("/event/id")?.as_str()?.to_string())
}
