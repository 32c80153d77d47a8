//! Kafka settings (`[kafka]` in sensor.toml) and their translation into librdkafka
//! properties; apitap's own keys may not be set again in `options`.

use rdkafka::config::ClientConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

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
    /// Edge mode: topic that also gets every authentication failure event, keyed by
    /// client (the centre's per-client auth bursts read it); empty: none.
    pub auth_failures_topic: String,
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
            auth_failures_topic: "apitap.auth-failures".into(),
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
pub(super) fn in_flight_cap(cfg: &KafkaConfig) -> usize {
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
        if [&self.events_topic, &self.alerts_topic].contains(&&self.auth_failures_topic) {
            return bad(
                "auth_failures_topic must differ from events_topic and alerts_topic (its copies would be counted twice)"
                    .into(),
            );
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
        // librdkafka's own limits for linger.ms, batch.num.messages and message.max.bytes;
        // the timeouts are kept where a deadline computed from them cannot overflow.
        apitap_core::bounds::check_ranges::<u64>(&[
            ("kafka.linger_ms", self.linger_ms, 0..=900_000),
            (
                "kafka.batch_num_messages",
                u64::from(self.batch_num_messages),
                1..=1_000_000,
            ),
            (
                "kafka.message_max_bytes",
                u64::from(self.message_max_bytes),
                1000..=1_000_000_000,
            ),
            (
                "kafka.queue_max_messages",
                self.queue_max_messages as u64,
                1..=10_000_000,
            ),
            (
                "kafka.queue_max_bytes",
                self.queue_max_bytes as u64,
                1..=1 << 36,
            ),
            (
                "kafka.delivery_timeout_ms",
                self.delivery_timeout_ms,
                1..=86_400_000,
            ),
            (
                "kafka.flush_timeout_ms",
                self.flush_timeout_ms,
                0..=3_600_000,
            ),
            (
                "kafka.connect_timeout_ms",
                self.connect_timeout_ms,
                0..=600_000,
            ),
        ])
        .map_err(KafkaSetupError::Config)?;
        for key in self.options.keys() {
            if OWNED_PROPERTIES.contains(&key.as_str()) {
                return bad(format!(
                    "options.{key:?} clashes with a [kafka] setting; set that instead"
                ));
            }
        }
        let mut c = ClientConfig::new();
        c.set("compression.type", &self.compression)
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
        self.connection(&mut c)?;
        Ok(c)
    }

    /// The librdkafka configuration of a consumer reading the topics: the brokers, client
    /// id, TLS, SASL and extra options of the producer's, no producer settings.
    pub fn consumer_config(&self) -> Result<ClientConfig, KafkaSetupError> {
        if self.brokers.trim().is_empty() {
            return Err(KafkaSetupError::Config("brokers is empty".into()));
        }
        let mut c = ClientConfig::new();
        self.connection(&mut c)?;
        Ok(c)
    }

    /// What every client needs: brokers, client id, security and the extra options.
    fn connection(&self, c: &mut ClientConfig) -> Result<(), KafkaSetupError> {
        let bad = |m: String| Err(KafkaSetupError::Config(m));
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id);
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
        Ok(())
    }
}
