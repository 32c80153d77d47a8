//! Shared types for apitap: packet time, flow keys, the decoded packet record that crosses
//! threads, and the HTTP transaction that the parser hands to the encoder.
//!
//! Nothing in here parses untrusted bytes; it is plain data plus small helpers.

pub mod flow;
pub mod http;
pub mod packet;
pub mod time;

pub use flow::{Direction, Endpoint, FlowKey, Side};
pub use http::{
    Anomalies, Anomaly, CapturedBody, Head, HttpRequest, HttpResponse, HttpTransaction,
    HttpVersion, IncompleteReason, Span,
};
pub use packet::{Encap, PacketBatch, PacketMeta, TcpFlags, Tunnel, TunnelKind};
pub use time::{PacketRef, SortKey, Timestamp};
