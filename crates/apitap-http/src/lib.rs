//! HTTP/1.x stream parser and transaction pairing for apitap.
//!
//! [`HttpConn`] implements [`apitap_core::AppParser`], the contract every application
//! parser follows (after Suricata's app-layer one): it is fed reassembled bytes per
//! direction in arbitrary splits, told about holes (after which it resynchronises at the
//! next request or status line) and told when a side or the whole connection ends.
//! Requests and responses are paired first in first out; every started transaction is
//! eventually handed out, complete or with a reason. A 101 or a CONNECT tunnel hands the
//! rest of the stream on ([`apitap_core::Handoff`]).
//!
//! - [`config`], [`stats`]: bounds and counters.
//! - `conn`: the connection: pairing, and framing per direction.
//! - `head`: the head parser (httparse); `body`: capture and content decoding.
//! - [`sniff`]: the cheap first-bytes probe.

mod body;
pub mod config;
mod conn;
mod head;
pub mod sniff;
pub mod stats;

pub use config::HttpConfig;
pub use conn::HttpConn;
pub use sniff::probe;
pub use stats::HttpStats;
