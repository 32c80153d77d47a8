//! apitap: passive API-security sensor. This library holds the pipeline behind the
//! `apitap` binary so tests and benches can drive it in-process.

pub mod alerts;
pub mod analysis;
pub mod analyze;
pub mod bridge;
pub mod cli;
pub mod config;
pub mod files;
pub mod har;
pub mod keylog;
pub mod live;
pub mod metrics;
pub mod pipeline;
pub mod privileges;
pub mod reorder;
pub mod report;
pub mod stats;
pub mod telemetry;
pub mod worker;

pub use analysis::AnalyticsOutcome;
pub use config::Config;
pub use pipeline::{replay, replay_with_analytics, replay_with_progress, Output};
pub use stats::RunSummary;
