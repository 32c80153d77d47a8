//! Flow table and TCP stream reassembly for apitap.
//!
//! - [`TcpConn`] turns the segments of one connection into in-order byte streams per side,
//!   with gaps reported explicitly ([`StreamEvent`]).
//! - [`FlowTable`] is the bounded connection map with least-recently-active eviction.

pub mod reassembly;
pub mod seq;
pub mod table;

pub use reassembly::{ReassemblyConfig, ReassemblyStats, Segment, StreamEvent, TcpConn};
pub use seq::Seq;
pub use table::FlowTable;
