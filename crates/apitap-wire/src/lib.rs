//! Packet sources and decoding for apitap.
//!
//! - [`source`]: pcap/pcapng files through libpcap, several merged in timestamp order.
//! - [`offline`]: the libpcap file reader under [`source`], with a large stdio buffer.
//! - [`live`]: live interfaces through libpcap, polled by one thread.
//! - [`decode`]: link, tunnel, IP and TCP headers to the [`apitap_core::PacketMeta`]
//!   record, once.
//! - [`defrag`]: bounded IPv4/IPv6 fragment reassembly.

pub mod decode;
pub mod defrag;
pub mod live;
pub mod offline;
pub mod source;

pub use decode::{
    decode, decode_frame, decode_reassembled, Decap, DecodeStats, Decoded, Fragment, LinkType,
};
pub use defrag::{Defrag, DefragLimits, DefragStats};
pub use live::{list_interfaces, CaptureOptions, InterfaceStats, LiveSource};
pub use source::{FileSource, RawPacket, WireError};
