//! Event encoding and output for apitap.
//!
//! - [`event`] turns an [`apitap_core::HttpTransaction`] into one ECS-named JSON object
//!   (serde derive over borrowed views: no intermediate `Value` tree).
//! - [`reorder`] restores the deterministic output order from several workers.
//! - [`lines`] writes JSON lines to stdout or a file.

pub mod body;
pub mod community_id;
pub mod event;
mod json;
pub mod kafka;
pub mod lines;
pub mod ocsf;
pub mod record;
pub mod reorder;

pub use community_id::community_id_v1;
pub use event::{
    endpoint_key, path_template, EncodedEvent, Encoder, EncoderConfig, EventFormat, FlowContext,
    Redactor,
};
pub use kafka::{DropPolicy, KafkaConfig, KafkaSetupError, KafkaSink, KafkaStats};
pub use lines::LineSink;
pub use record::alert_event;
pub use reorder::{Reorder, ReorderStats};
