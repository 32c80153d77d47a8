//! Kafka output: at-least-once delivery of events and alerts through broker outages.
//!
//! Events enter a bounded queue owned by the sink; a pump moves them into librdkafka
//! (whose own queue is kept small) and librdkafka's delivery reports say what was
//! delivered. A message librdkafka gives up on (after its retries and
//! `delivery_timeout_ms`) goes back to the front of the queue and is retried. While the
//! broker is down the queue fills; past its bound the oldest or the newest events are
//! dropped (configurable) and every drop is counted. Capture never waits on Kafka: the
//! sink's loop never blocks on the network; whether the brokers are back is asked by a
//! thread of its own ([`Prober`]), whose answer the loop reads.

mod config;

pub use config::{DropPolicy, KafkaConfig, KafkaSetupError, SaslConfig, TlsConfig};

use apitap_core::{EncodedEvent, Level, Peak};
use config::in_flight_cap;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig,
};
use rdkafka::ClientContext;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

apitap_core::counters! {
    /// Kafka sink counters.
    pub struct KafkaStats {
        /// Events handed to the sink.
        pub produced: u64,
        /// Copies of authentication failure events queued for the auth failures topic
        /// (edge mode); once queued they count in the other counters like events.
        pub auth_failure_copies: u64,
        /// Copies not sent: no room in the queue (a copy never pushes an event out), or
        /// the topic is missing or not allowed (logged once).
        pub auth_failure_copies_dropped: u64,
        /// Events the broker acknowledged.
        pub delivered: u64,
        /// Deliveries that failed and were queued again.
        pub retried: u64,
        /// Delivery failures reported by librdkafka (each is retried, or dropped at shutdown).
        pub failed: u64,
        /// Events dropped because the queue was full.
        pub dropped: u64,
        /// Events larger than `message_max_bytes` (dropped).
        pub too_large: u64,
        /// Events not delivered when the sink closed.
        pub undelivered_at_close: u64,
        /// Events queued now (sink queue plus librdkafka).
        pub queue_depth: Level,
        /// Largest queue depth seen.
        pub queue_depth_max: Peak,
        /// Sum of delivery latencies (enqueue to acknowledgement), microseconds.
        pub delivery_latency_us_sum: u64,
        /// Largest delivery latency, microseconds.
        pub delivery_latency_us_max: Peak,
    }
}

struct Queued {
    topic: Topic,
    key: String,
    payload: Vec<u8>,
    enqueued: Instant,
}

/// Which topic a queued message goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Topic {
    Events,
    Alerts,
    AuthFailures,
}

#[derive(Default)]
struct Reports {
    delivered: Vec<(Instant, usize)>,
    /// Copies the broker refused for good (their sizes): dropped, not queued again.
    copies_refused: Vec<usize>,
    // The boxes are librdkafka delivery opaques; they are queued again as they are.
    #[allow(clippy::vec_box)]
    failed: Vec<Box<Queued>>,
}

/// Collects delivery reports and broker-down errors; called from `poll` on the sink's own
/// thread.
struct Context {
    reports: Mutex<Reports>,
    all_brokers_down: AtomicBool,
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.all_brokers_down.store(true, Ordering::Relaxed);
        } else {
            tracing::debug!("librdkafka: {error}: {reason}");
        }
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = Box<Queued>;

    fn delivery(&self, result: &DeliveryResult<'_>, queued: Self::DeliveryOpaque) {
        if let Ok(mut r) = self.reports.lock() {
            match result {
                Ok(_) => r.delivered.push((queued.enqueued, queued.payload.len())),
                Err((e, _)) if queued.topic == Topic::AuthFailures && refused_for_good(e) => {
                    r.copies_refused.push(queued.payload.len());
                }
                Err(_) => r.failed.push(queued),
            }
        }
    }
}

/// A delivery error that sending again cannot mend (the topic is missing or not allowed).
fn refused_for_good(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::TopicAuthorizationFailed
        )
    )
}

/// The headers of every message apitap produces: `apitap-sensor` (who saw it) and
/// `apitap-schema` (the event schema version).
pub fn message_headers(sensor: &str) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: "apitap-sensor",
            value: Some(sensor),
        })
        .insert(Header {
            key: "apitap-schema",
            value: Some(apitap_core::output::SCHEMA_VERSION),
        })
}

/// Produces events and alerts to Kafka.
pub struct KafkaSink {
    producer: BaseProducer<Context>,
    cfg: KafkaConfig,
    queue: VecDeque<Box<Queued>>,
    queue_bytes: usize,
    in_flight: usize,
    in_flight_bytes: usize,
    in_flight_cap: usize,
    headers: OwnedHeaders,
    stats: KafkaStats,
    last_poll: Instant,
    /// Brokers are down: nothing is handed to librdkafka until one answers again with the
    /// topics present (a restarted broker may have lost them).
    paused: bool,
    /// Asks the brokers, off the sink's thread, whether they are back.
    prober: Prober,
    /// The auth failures topic refused a copy (logged once).
    warned_copies: bool,
}

impl KafkaSink {
    /// Connects (checking that a broker answers within `connect_timeout_ms`).
    pub fn new(cfg: &KafkaConfig, sensor: &str) -> Result<KafkaSink, KafkaSetupError> {
        let producer: BaseProducer<Context> = cfg
            .client_config()?
            .create_with_context(Context {
                reports: Mutex::new(Reports::default()),
                all_brokers_down: AtomicBool::new(false),
            })
            .map_err(|e| KafkaSetupError::Client(e.to_string()))?;
        if cfg.connect_timeout_ms > 0 {
            producer
                .client()
                .fetch_metadata(None, Duration::from_millis(cfg.connect_timeout_ms))
                .map_err(|e| KafkaSetupError::Unreachable {
                    brokers: cfg.brokers.clone(),
                    msg: e.to_string(),
                })?;
        }
        let headers = message_headers(sensor);
        Ok(KafkaSink {
            producer,
            cfg: cfg.clone(),
            queue: VecDeque::new(),
            queue_bytes: 0,
            in_flight: 0,
            in_flight_bytes: 0,
            in_flight_cap: in_flight_cap(cfg),
            headers,
            stats: KafkaStats::default(),
            last_poll: Instant::now(),
            paused: false,
            prober: Prober::start(cfg)?,
            warned_copies: false,
        })
    }

    /// Queues one event (never blocks; may drop per the drop policy, counted).
    pub fn send(&mut self, ev: EncodedEvent) {
        self.stats.produced += 1;
        if ev.json.len() > self.cfg.message_max_bytes as usize {
            self.stats.too_large += 1;
            return;
        }
        let copy = ev
            .client_key
            .filter(|_| !self.cfg.auth_failures_topic.is_empty())
            .map(|client| Queued {
                topic: Topic::AuthFailures,
                key: format!("{client:016x}"),
                payload: ev.json.clone(),
                enqueued: Instant::now(),
            });
        let queued = Box::new(Queued {
            topic: if ev.alert {
                Topic::Alerts
            } else {
                Topic::Events
            },
            key: format!("{:016x}", ev.endpoint_hash),
            payload: ev.json,
            enqueued: Instant::now(),
        });
        let kept = self.enqueue(queued);
        if let Some(copy) = copy {
            // The copy follows its event, and only where there is room: it never pushes
            // an event out.
            let len = copy.payload.len();
            if kept
                && self.queue.len() + self.in_flight < self.cfg.queue_max_messages
                && self.queue_bytes + self.in_flight_bytes + len <= self.cfg.queue_max_bytes
            {
                self.stats.auth_failure_copies += 1;
                self.queue_bytes += len;
                self.queue.push_back(Box::new(copy));
                self.update_depth();
            } else {
                self.stats.auth_failure_copies_dropped += 1;
            }
        }
        self.pump();
        if self.last_poll.elapsed() >= Duration::from_millis(50) {
            self.poll(Duration::ZERO);
        }
    }

    /// The bounds count everything not yet delivered: the sink's queue and the messages
    /// inside librdkafka. Only the sink's queue can give up its oldest event. False when
    /// `q` itself was dropped.
    fn enqueue(&mut self, q: Box<Queued>) -> bool {
        let len = q.payload.len();
        while self.queue.len() + self.in_flight >= self.cfg.queue_max_messages
            || self.queue_bytes + self.in_flight_bytes + len > self.cfg.queue_max_bytes
        {
            let oldest = match self.cfg.drop_policy {
                DropPolicy::OldestFirst => self.queue.pop_front(),
                DropPolicy::NewestFirst => None,
            };
            match oldest {
                Some(old) => {
                    self.queue_bytes -= old.payload.len();
                    self.count_drop(&old);
                }
                None => {
                    self.stats.dropped += 1;
                    return false;
                }
            }
        }
        self.queue_bytes += len;
        self.queue.push_back(q);
        self.update_depth();
        true
    }

    /// Counts an auth failure copy the broker refused (when sent, or on delivery); the
    /// first one is logged.
    fn copy_refused(&mut self, why: &dyn std::fmt::Display) {
        self.stats.auth_failure_copies_dropped += 1;
        if !self.warned_copies {
            self.warned_copies = true;
            tracing::warn!(
                topic = %self.cfg.auth_failures_topic,
                "the broker refuses auth failure copies ({why}): dropping them (counted in kafka.auth_failure_copies_dropped); create the topic, or set kafka.auth_failures_topic = \"\""
            );
        }
    }

    /// Counts a queued message given up for room: an event, or a copy.
    fn count_drop(&mut self, q: &Queued) {
        if q.topic == Topic::AuthFailures {
            self.stats.auth_failure_copies_dropped += 1;
        } else {
            self.stats.dropped += 1;
        }
    }

    fn update_depth(&mut self) {
        let depth = (self.queue.len() + self.in_flight) as u64;
        self.stats.queue_depth = Level(depth);
        self.stats.queue_depth_max.raise(depth);
    }

    /// Moves queued events into librdkafka while it has room.
    fn pump(&mut self) {
        if self.paused {
            return;
        }
        while self.in_flight < self.in_flight_cap {
            let Some(q) = self.queue.pop_front() else {
                break;
            };
            let topic = match q.topic {
                Topic::Events => self.cfg.events_topic.as_str(),
                Topic::Alerts => self.cfg.alerts_topic.as_str(),
                Topic::AuthFailures => self.cfg.auth_failures_topic.as_str(),
            };
            let len = q.payload.len();
            // The record borrows key and payload from the box that travels with it as the
            // delivery opaque, so copy them out first.
            let key = q.key.clone();
            let payload = q.payload.clone();
            let record = BaseRecord::with_opaque_to(topic, q)
                .key(&key)
                .payload(&payload)
                .headers(self.headers.clone());
            match self.producer.send(record) {
                Ok(()) => {
                    self.queue_bytes -= len;
                    self.in_flight += 1;
                    self.in_flight_bytes += len;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), record)) => {
                    self.queue.push_front(record.delivery_opaque);
                    break;
                }
                Err((e, record)) if record.delivery_opaque.topic == Topic::AuthFailures => {
                    // A copy the broker cannot take now is dropped, never left to hold
                    // up the events behind it.
                    self.queue_bytes -= len;
                    self.copy_refused(&e);
                }
                Err((_, record)) => {
                    // Not retriable as is (e.g. unknown topic when auto-create is off):
                    // count, keep it queued and stop pumping for now.
                    self.stats.failed += 1;
                    self.queue.push_front(record.delivery_opaque);
                    break;
                }
            }
        }
        self.update_depth();
    }

    /// Serves delivery reports for up to `timeout`, requeueing failures; pauses while the
    /// brokers are down and resumes once one answers with the topics in place.
    pub fn poll(&mut self, timeout: Duration) {
        self.producer.poll(timeout);
        self.last_poll = Instant::now();
        if self
            .producer
            .context()
            .all_brokers_down
            .swap(false, Ordering::Relaxed)
            && !self.paused
        {
            self.paused = true;
            tracing::warn!(
                brokers = %self.cfg.brokers,
                queued = self.queue.len() + self.in_flight,
                bound = self.cfg.queue_max_messages,
                "Kafka brokers unreachable: queueing events; past the bound they are dropped ({:?})",
                self.cfg.drop_policy
            );
            // Take back what librdkafka holds: it comes back as failed deliveries and is
            // queued again, so it is resent only once the topics exist on the broker.
            self.producer
                .purge(PurgeConfig::default().queue().inflight());
            self.producer.poll(Duration::ZERO);
            self.prober.ask();
        }
        if self.paused && self.prober.ready() {
            self.paused = false;
            tracing::warn!(
                queued = self.queue.len(),
                dropped = self.stats.dropped,
                "Kafka brokers reachable again: sending queued events"
            );
        }
        let reports = match self.producer.context().reports.lock() {
            Ok(mut r) => std::mem::take(&mut *r),
            Err(_) => return,
        };
        let now = Instant::now();
        for (enqueued, len) in reports.delivered {
            self.in_flight = self.in_flight.saturating_sub(1);
            self.in_flight_bytes = self.in_flight_bytes.saturating_sub(len);
            self.stats.delivered += 1;
            let us = u64::try_from(now.duration_since(enqueued).as_micros()).unwrap_or(u64::MAX);
            self.stats.delivery_latency_us_sum =
                self.stats.delivery_latency_us_sum.saturating_add(us);
            self.stats.delivery_latency_us_max.raise(us);
        }
        for len in reports.copies_refused {
            self.in_flight = self.in_flight.saturating_sub(1);
            self.in_flight_bytes = self.in_flight_bytes.saturating_sub(len);
            self.copy_refused(&"no such topic, or not allowed");
        }
        for failed in reports.failed.into_iter().rev() {
            self.in_flight = self.in_flight.saturating_sub(1);
            self.in_flight_bytes = self.in_flight_bytes.saturating_sub(failed.payload.len());
            self.stats.failed += 1;
            self.stats.retried += 1;
            self.queue_bytes += failed.payload.len();
            self.queue.push_front(failed);
        }
        // Requeued failures stay within the bound already counted for them.
        while self.queue.len() + self.in_flight > self.cfg.queue_max_messages {
            let dropped = match self.cfg.drop_policy {
                DropPolicy::OldestFirst => self.queue.pop_front(),
                DropPolicy::NewestFirst => self.queue.pop_back(),
            };
            if let Some(d) = dropped {
                self.queue_bytes -= d.payload.len();
                self.count_drop(&d);
            }
        }
        self.pump();
    }

    /// Delivers what is queued within `flush_timeout_ms`; what is left is counted as
    /// undelivered. Returns the final counters.
    pub fn close(mut self) -> KafkaStats {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.flush_timeout_ms);
        while (self.in_flight > 0 || !self.queue.is_empty()) && Instant::now() < deadline {
            self.poll(Duration::from_millis(50));
        }
        self.prober.stop();
        self.stats.undelivered_at_close = (self.queue.len() + self.in_flight) as u64;
        self.update_depth();
        self.stats.clone()
    }

    /// Counters so far.
    pub fn stats(&self) -> &KafkaStats {
        &self.stats
    }
}

/// Whether the brokers are back, asked on a thread of its own: a metadata request to a
/// dead broker blocks for its timeout, which the sink's loop must never do. While asked
/// (after the brokers went down), it asks every 250 ms until a broker answers with both
/// topics in place.
struct Prober {
    shared: Arc<ProbeState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct ProbeState {
    /// The sink wants to know (set when the brokers went down).
    asked: AtomicBool,
    /// A broker answered with both topics since the last ask.
    ready: AtomicBool,
    stop: AtomicBool,
}

impl Prober {
    fn start(cfg: &KafkaConfig) -> Result<Prober, KafkaSetupError> {
        let client: BaseProducer = cfg
            .client_config()?
            .create()
            .map_err(|e| KafkaSetupError::Client(e.to_string()))?;
        let shared = Arc::new(ProbeState::default());
        let state = Arc::clone(&shared);
        let topics = [cfg.events_topic.clone(), cfg.alerts_topic.clone()];
        let thread = std::thread::Builder::new()
            .name("apitap-kafka-probe".into())
            .spawn(move || {
                while !state.stop.load(Ordering::Relaxed) {
                    if state.asked.load(Ordering::Relaxed)
                        && !state.ready.load(Ordering::Relaxed)
                        && topics_ready(&client, &topics)
                    {
                        state.ready.store(true, Ordering::Relaxed);
                    }
                    std::thread::park_timeout(Duration::from_millis(250));
                }
            })
            .map_err(|e| KafkaSetupError::Client(format!("cannot start the probe thread: {e}")))?;
        Ok(Prober {
            shared,
            thread: Some(thread),
        })
    }

    /// Starts asking whether the brokers are back.
    fn ask(&self) {
        self.shared.ready.store(false, Ordering::Relaxed);
        self.shared.asked.store(true, Ordering::Relaxed);
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }

    /// The brokers answered since [`Prober::ask`]; stops asking.
    fn ready(&self) -> bool {
        let ready = self.shared.ready.load(Ordering::Relaxed);
        if ready {
            self.shared.asked.store(false, Ordering::Relaxed);
        }
        ready
    }

    /// Stops the thread without waiting for a request in progress (its client ends with
    /// it).
    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a broker answers and both topics exist (asking creates them where the broker
/// auto-creates topics). Blocks up to half a second per topic.
fn topics_ready(client: &BaseProducer, topics: &[String]) -> bool {
    topics.iter().all(|topic| {
        client
            .client()
            .fetch_metadata(Some(topic), Duration::from_millis(500))
            .is_ok_and(|md| {
                md.topics().iter().any(|t| {
                    t.name() == topic.as_str() && !t.partitions().is_empty() && t.error().is_none()
                })
            })
    })
}
