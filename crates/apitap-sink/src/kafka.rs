//! Kafka output: at-least-once delivery of events and alerts through broker outages.
//!
//! Events enter a bounded queue owned by the sink; a pump moves them into librdkafka
//! (whose own queue is kept small) and librdkafka's delivery reports say what was
//! delivered. A message librdkafka gives up on (after its retries and
//! `delivery_timeout_ms`) goes back to the front of the queue and is retried. While the
//! broker is down the queue fills; past its bound the oldest or the newest events are
//! dropped (configurable) and every drop is counted. Capture never waits on Kafka.

use crate::event::EncodedEvent;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig,
};
use rdkafka::ClientContext;
use serde::Deserialize;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Which events a full queue gives up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropPolicy {
    /// Drop the oldest queued event to make room (keeps the most recent activity).
    #[default]
    OldestFirst,
    /// Refuse the new event (keeps the earliest activity).
    NewestFirst,
}

/// TLS settings (librdkafka `ssl.*`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificate(s) to verify the brokers (PEM file).
    pub ca_file: Option<PathBuf>,
    /// Client certificate for mutual TLS (PEM file).
    pub cert_file: Option<PathBuf>,
    /// Client private key for mutual TLS (PEM file).
    pub key_file: Option<PathBuf>,
    /// Password of the private key.
    pub key_password: Option<String>,
}

/// SASL settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// `[kafka]` in sensor.toml.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Topic for transaction events.
    pub events_topic: String,
    /// Topic for alerts.
    pub alerts_topic: String,
    /// Kafka client id.
    pub client_id: String,
    /// `none`, `gzip`, `snappy` or `lz4` (`zstd` is not in this build).
    pub compression: String,
    /// `all`, `1` or `0`.
    pub acks: String,
    /// How long librdkafka waits to fill a batch.
    pub linger_ms: u64,
    /// Messages per batch.
    pub batch_num_messages: u32,
    /// Largest message accepted by the producer.
    pub message_max_bytes: u32,
    /// Events held while the broker is slow or down.
    pub queue_max_messages: usize,
    /// Bytes held while the broker is slow or down.
    pub queue_max_bytes: usize,
    /// What a full queue drops.
    pub drop_policy: DropPolicy,
    /// Time librdkafka keeps retrying a message before handing it back for requeueing.
    pub delivery_timeout_ms: u64,
    /// Time given to deliver what is queued at shutdown.
    pub flush_timeout_ms: u64,
    /// Time allowed at start-up to reach a broker (0: do not check).
    pub connect_timeout_ms: u64,
    /// TLS, when set (`security.protocol` becomes `ssl`, or `sasl_ssl` with SASL).
    pub tls: Option<TlsConfig>,
    /// SASL, when set.
    pub sasl: Option<SaslConfig>,
    /// Extra librdkafka properties, passed through. One that a setting above controls is a
    /// config error.
    pub options: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            events_topic: "apitap.events".into(),
            alerts_topic: "apitap.alerts".into(),
            client_id: "apitap".into(),
            compression: "lz4".into(),
            acks: "all".into(),
            linger_ms: 20,
            batch_num_messages: 10_000,
            message_max_bytes: 1_000_000,
            queue_max_messages: 100_000,
            queue_max_bytes: 256 << 20,
            drop_policy: DropPolicy::OldestFirst,
            delivery_timeout_ms: 30_000,
            flush_timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
            tls: None,
            sasl: None,
            options: BTreeMap::new(),
        }
    }
}

/// Kafka start-up errors.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    /// A setting is invalid.
    #[error("kafka config: {0}")]
    Config(String),
    /// librdkafka refused the configuration.
    #[error("kafka client: {0}")]
    Client(String),
    /// No broker answered within `connect_timeout_ms`.
    #[error("cannot reach Kafka brokers {brokers}: {msg}")]
    Unreachable {
        /// The brokers tried.
        brokers: String,
        /// librdkafka's reason.
        msg: String,
    },
}

/// librdkafka properties the typed settings own.
const OWNED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "client.id",
    "compression.type",
    "compression.codec",
    "acks",
    "request.required.acks",
    "linger.ms",
    "queue.buffering.max.ms",
    "batch.num.messages",
    "message.max.bytes",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "security.protocol",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.key.password",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
];

/// Messages librdkafka may hold at once; the rest waits in the sink's own queue, where
/// the drop policy applies.
const IN_FLIGHT_MAX: usize = 20_000;

/// Messages handed to librdkafka at once: small next to the queue bound, so that the drop
/// policy has a queue to act on.
fn in_flight_cap(cfg: &KafkaConfig) -> usize {
    (cfg.queue_max_messages / 2).clamp(1, IN_FLIGHT_MAX)
}

impl KafkaConfig {
    /// Checks the settings and builds the librdkafka configuration.
    pub fn client_config(&self) -> Result<ClientConfig, KafkaSetupError> {
        let bad = |m: String| Err(KafkaSetupError::Config(m));
        if self.brokers.trim().is_empty() {
            return bad("brokers is empty".into());
        }
        if self.events_topic.is_empty() || self.alerts_topic.is_empty() {
            return bad("events_topic and alerts_topic must not be empty".into());
        }
        match self.compression.as_str() {
            "none" | "gzip" | "snappy" | "lz4" => {}
            "zstd" => {
                return bad("compression zstd is not built in; use lz4, snappy or gzip".into())
            }
            other => return bad(format!("unknown compression {other:?}")),
        }
        match self.acks.as_str() {
            "all" | "-1" | "1" | "0" => {}
            other => return bad(format!("acks must be all, 1 or 0, not {other:?}")),
        }
        if self.queue_max_messages == 0 || self.queue_max_bytes == 0 {
            return bad("queue_max_messages and queue_max_bytes must be at least 1".into());
        }
        for key in self.options.keys() {
            if OWNED_PROPERTIES.contains(&key.as_str()) {
                return bad(format!(
                    "options.{key:?} clashes with a [kafka] setting; set that instead"
                ));
            }
        }
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("compression.type", &self.compression)
            .set("acks", &self.acks)
            .set("linger.ms", self.linger_ms.to_string())
            .set("batch.num.messages", self.batch_num_messages.to_string())
            .set("message.max.bytes", self.message_max_bytes.to_string())
            .set(
                "message.timeout.ms",
                self.delivery_timeout_ms.max(1).to_string(),
            )
            .set(
                "queue.buffering.max.messages",
                in_flight_cap(self).to_string(),
            );
        let protocol = match (&self.tls, &self.sasl) {
            (None, None) => "plaintext",
            (Some(_), None) => "ssl",
            (None, Some(_)) => "sasl_plaintext",
            (Some(_), Some(_)) => "sasl_ssl",
        };
        c.set("security.protocol", protocol);
        if let Some(tls) = &self.tls {
            for (name, path, prop) in [
                ("ca_file", &tls.ca_file, "ssl.ca.location"),
                ("cert_file", &tls.cert_file, "ssl.certificate.location"),
                ("key_file", &tls.key_file, "ssl.key.location"),
            ] {
                if let Some(p) = path {
                    if !p.is_file() {
                        return bad(format!("tls.{name} {} is not a readable file", p.display()));
                    }
                    c.set(prop, p.display().to_string());
                }
            }
            if let Some(pw) = &tls.key_password {
                c.set("ssl.key.password", pw);
            }
        }
        if let Some(sasl) = &self.sasl {
            match sasl.mechanism.as_str() {
                "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512" => {}
                other => {
                    return bad(format!(
                        "sasl.mechanism {other:?} is not PLAIN or SCRAM-SHA-256/512"
                    ))
                }
            }
            c.set("sasl.mechanism", &sasl.mechanism)
                .set("sasl.username", &sasl.username)
                .set("sasl.password", &sasl.password);
        }
        for (k, v) in &self.options {
            c.set(k, v);
        }
        Ok(c)
    }
}

/// Kafka sink counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KafkaStats {
    /// Events handed to the sink.
    pub produced: u64,
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
    pub queue_depth: u64,
    /// Largest queue depth seen.
    pub queue_depth_max: u64,
    /// Sum of delivery latencies (enqueue to acknowledgement), microseconds.
    pub delivery_latency_us_sum: u64,
    /// Largest delivery latency, microseconds.
    pub delivery_latency_us_max: u64,
}

struct Queued {
    alert: bool,
    key: String,
    payload: Vec<u8>,
    enqueued: Instant,
}

#[derive(Default)]
struct Reports {
    delivered: Vec<(Instant, usize)>,
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
                Err(_) => r.failed.push(queued),
            }
        }
    }
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
    last_probe: Instant,
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
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "apitap-sensor",
                value: Some(sensor),
            })
            .insert(Header {
                key: "apitap-schema",
                value: Some(crate::event::SCHEMA_VERSION),
            });
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
            last_probe: Instant::now(),
        })
    }

    /// Queues one event (never blocks; may drop per the drop policy, counted).
    pub fn send(&mut self, ev: EncodedEvent) {
        self.stats.produced += 1;
        if ev.json.len() > self.cfg.message_max_bytes as usize {
            self.stats.too_large += 1;
            return;
        }
        let queued = Box::new(Queued {
            alert: ev.alert,
            key: format!("{:016x}", ev.endpoint_hash),
            payload: ev.json,
            enqueued: Instant::now(),
        });
        self.enqueue(queued);
        self.pump();
        if self.last_poll.elapsed() >= Duration::from_millis(50) {
            self.poll(Duration::ZERO);
        }
    }

    /// The bounds count everything not yet delivered: the sink's queue and the messages
    /// inside librdkafka. Only the sink's queue can give up its oldest event.
    fn enqueue(&mut self, q: Box<Queued>) {
        let len = q.payload.len();
        while self.queue.len() + self.in_flight >= self.cfg.queue_max_messages
            || self.queue_bytes + self.in_flight_bytes + len > self.cfg.queue_max_bytes
        {
            let oldest = match self.cfg.drop_policy {
                DropPolicy::OldestFirst => self.queue.pop_front(),
                DropPolicy::NewestFirst => None,
            };
            self.stats.dropped += 1;
            match oldest {
                Some(old) => self.queue_bytes -= old.payload.len(),
                None => return,
            }
        }
        self.queue_bytes += len;
        self.queue.push_back(q);
        self.update_depth();
    }

    fn update_depth(&mut self) {
        let depth = (self.queue.len() + self.in_flight) as u64;
        self.stats.queue_depth = depth;
        self.stats.queue_depth_max = self.stats.queue_depth_max.max(depth);
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
            let topic = if q.alert {
                self.cfg.alerts_topic.as_str()
            } else {
                self.cfg.events_topic.as_str()
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
        }
        if self.paused && self.last_probe.elapsed() >= Duration::from_millis(250) {
            self.last_probe = Instant::now();
            if self.topics_ready() {
                self.paused = false;
                tracing::warn!(
                    queued = self.queue.len(),
                    dropped = self.stats.dropped,
                    "Kafka brokers reachable again: sending queued events"
                );
            }
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
            self.stats.delivery_latency_us_max = self.stats.delivery_latency_us_max.max(us);
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
                self.stats.dropped += 1;
            }
        }
        self.pump();
    }

    /// Whether a broker answers and both topics exist (asking creates them where the
    /// broker auto-creates topics).
    fn topics_ready(&self) -> bool {
        [&self.cfg.events_topic, &self.cfg.alerts_topic]
            .iter()
            .all(|topic| {
                self.producer
                    .client()
                    .fetch_metadata(Some(topic), Duration::from_millis(500))
                    .is_ok_and(|md| {
                        md.topics().iter().any(|t| {
                            t.name() == topic.as_str()
                                && !t.partitions().is_empty()
                                && t.error().is_none()
                        })
                    })
            })
    }

    /// Delivers what is queued within `flush_timeout_ms`; what is left is counted as
    /// undelivered. Returns the final counters.
    pub fn close(mut self) -> KafkaStats {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.flush_timeout_ms);
        while (self.in_flight > 0 || !self.queue.is_empty()) && Instant::now() < deadline {
            self.poll(Duration::from_millis(50));
        }
        self.stats.undelivered_at_close = (self.queue.len() + self.in_flight) as u64;
        self.update_depth();
        self.stats.clone()
    }

    /// Counters so far.
    pub fn stats(&self) -> &KafkaStats {
        &self.stats
    }
}
