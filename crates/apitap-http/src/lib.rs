//! HTTP/1.x and HTTP/2 (with gRPC) stream parsers and transaction pairing for apitap.
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
//! - [`h2`]: HTTP/2 ([`H2Conn`], one transaction per stream), HPACK, gRPC message counts.
//!   It shares the `[http]` bounds, body capture and counters with HTTP/1.x.

mod body;
pub mod config;
mod conn;
pub mod h2;
mod head;
pub mod sniff;
pub mod stats;

pub use config::HttpConfig;
pub use conn::HttpConn;
pub use h2::H2Conn;
pub use sniff::probe;
pub use stats::HttpStats;
