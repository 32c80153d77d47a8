//! Shared types for apitap: packet time, flow keys, the decoded packet record that crosses
//! threads, the HTTP transaction a parser produces, and the small helpers more than one
//! stage needs (stable hash, text, URL parts, the endpoint templater's shape rules).
//!
//! Nothing in here parses untrusted packets; it is plain data plus small helpers.

pub mod bounds;
pub mod counters;
pub mod endpoint;
pub mod flow;
pub mod hash;
pub mod http;
pub mod http2;
pub mod output;
pub mod packet;
pub mod parser;
pub mod text;
pub mod time;
pub mod tls;
pub mod url;

pub use counters::{Level, Merge, Peak};
pub use flow::{Direction, Endpoint, FlowKey, Side};
pub use hash::{stable_hash, StableHasher};
pub use http::{
    Anomalies, Anomaly, CapturedBody, ContentCoding, ContentCodings, Head, HttpRequest,
    HttpResponse, HttpTransaction, HttpVersion, IncompleteReason, Span, CREDENTIAL_HEADERS,
};
pub use http2::{
    FrameCounts, GoAway, GrpcMessages, Http2Connection, Http2Stream, MessageCount, StreamReset,
};
pub use output::EncodedEvent;
pub use packet::{Encap, PacketBatch, PacketMeta, TcpFlags, Tunnel, TunnelKind};
pub use parser::{AppParser, FinishCause, Handoff, ParseCx, ParserEnv, Probe, UpgradeTo};
pub use text::utf8_lossy;
pub use time::{PacketRef, SortKey, Timestamp};
pub use tls::{Certificate, Decryption, TlsConnection, TlsHandshake};
