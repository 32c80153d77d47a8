//! Outputs for apitap: where encoded events and alerts go.
//!
//! - [`lines`] writes JSON lines to stdout or a file.
//! - [`kafka`] produces events and alerts to two Kafka topics, at least once, through
//!   broker outages, within bounds.
//!
//! Outputs see only [`apitap_core::EncodedEvent`]s: how an event is encoded, ordered or
//! analysed is decided before it gets here.

pub mod kafka;
pub mod lines;

pub use kafka::{message_headers, DropPolicy, KafkaConfig, KafkaSetupError, KafkaSink, KafkaStats};
pub use lines::LineSink;
