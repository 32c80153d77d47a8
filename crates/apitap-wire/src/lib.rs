//! Packet sources and decoding for apitap.
//!
//! - [`source`]: pcap/pcapng files through libpcap, several merged in timestamp order.
//! - [`decode`]: link, IP and TCP headers to the [`apitap_core::PacketMeta`] record, once.

pub mod decode;
pub mod source;

pub use decode::{decode, DecodeStats, LinkType};
pub use source::{FileSource, RawPacket, WireError};
