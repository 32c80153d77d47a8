//! Packet sources and decoding for apitap.
//!
//! - [`source`]: pcap/pcapng files and pipes, several merged in timestamp order.
//! - [`pcapfile`] and [`pcapng`]: the two file formats, read with pcap-parser; packets are
//!   borrowed from the read buffer.
//! - [`live`]: live interfaces through libpcap, polled by one thread per reader (several
//!   readers share an interface through a kernel fanout group).
//! - [`decoder`]: the reader's path from a frame to a TCP segment: [`mod@decode`], [`dedup`]
//!   and [`defrag`] in one [`Decoder`].
//! - [`mod@decode`]: link, tunnel, IP and TCP headers to the [`apitap_core::PacketMeta`]
//!   record, once.
//! - [`dedup`]: the SPAN duplicate filter.
//! - [`defrag`]: bounded IPv4/IPv6 fragment reassembly.

mod decap;
pub mod decode;
pub mod decoder;
pub mod dedup;
pub mod defrag;
mod link;
pub mod live;
pub mod pcapfile;
pub mod pcapng;
pub mod source;
mod stats;
mod tunnel;

pub use decap::Decap;
pub use decode::{
    decode, decode_frame, decode_reassembled, Decoded, Fragment, LinkType, UdpTunnels,
};
pub use decoder::Decoder;
pub use defrag::{Defrag, DefragLimits, DefragStats};
pub use live::{list_interfaces, CaptureOptions, Fanout, InterfaceStats, LiveSource};
pub use source::{FileSource, RawPacket, WireError};
pub use stats::{ByTunnel, DecodeStats, Skip, Skipped, TunnelSkips};
