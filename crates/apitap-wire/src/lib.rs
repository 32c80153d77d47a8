//! Packet sources and decoding for apitap.
//!
//! - [`source`]: pcap/pcapng files through libpcap, several merged in timestamp order.
//! - [`live`]: live interfaces through libpcap, polled by one thread.
//! - [`decode`]: link, IP and TCP headers to the [`apitap_core::PacketMeta`] record, once.

pub mod decode;
pub mod live;
pub mod source;

pub use decode::{decode, DecodeStats, LinkType};
pub use live::{list_interfaces, CaptureOptions, InterfaceStats, LiveSource};
pub use source::{FileSource, RawPacket, WireError};
