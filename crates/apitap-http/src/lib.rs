//! HTTP/1.x stream parser and transaction pairing for apitap.
//!
//! The parser contract follows Suricata's app-layer one: it is fed reassembled bytes per
//! direction in arbitrary splits (`on_data`), told about holes (`on_gap`) after which it
//! resynchronises at the next request or status line, and told when a side or the whole
//! connection ends. Requests and responses are paired first-in first-out; every started
//! transaction is eventually emitted, complete or with a reason.

mod body;
mod conn;
mod head;
mod sniff;

pub use conn::{FinishCause, HttpConfig, HttpConn, HttpStats};
pub use sniff::sniff_direction;
