//! Link/IP/TCP decoding into the [`PacketMeta`] record ("decode once").
//!
//! Link headers that etherparse does not cover (BSD null/loop, Linux SLL2) are read here
//! with checked slicing; from the ether type or IP header on, etherparse's lax slicer does
//! the work, which also accepts frames cut short by the snap length.

use apitap_core::{Endpoint, FlowKey, PacketMeta, PacketRef, TcpFlags};
use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};
use std::net::IpAddr;

/// Link types we decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// Ethernet II (DLT_EN10MB), with 802.1Q / QinQ tags.
    Ethernet,
    /// Linux cooked capture v1 (DLT_LINUX_SLL).
    LinuxSll,
    /// Linux cooked capture v2 (DLT_LINUX_SLL2).
    LinuxSll2,
    /// Raw IP, version from the first nibble (DLT_RAW 12/14, LINKTYPE_RAW 101).
    Raw,
    /// Raw IPv4 (LINKTYPE_IPV4 228).
    Ipv4,
    /// Raw IPv6 (LINKTYPE_IPV6 229).
    Ipv6,
    /// BSD loopback, 4-byte address family in host byte order (DLT_NULL 0).
    Null,
    /// OpenBSD loopback, 4-byte address family in network byte order (DLT_LOOP 108).
    Loop,
}

impl LinkType {
    /// Maps a pcap link-type code to a supported link type.
    pub fn from_linktype(code: i32) -> Option<LinkType> {
        Some(match code {
            1 => LinkType::Ethernet,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            12 | 14 | 101 => LinkType::Raw,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            0 => LinkType::Null,
            108 => LinkType::Loop,
            _ => return None,
        })
    }

    /// Short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            LinkType::Ethernet => "ethernet",
            LinkType::LinuxSll => "linux_sll",
            LinkType::LinuxSll2 => "linux_sll2",
            LinkType::Raw => "raw",
            LinkType::Ipv4 => "ipv4",
            LinkType::Ipv6 => "ipv6",
            LinkType::Null => "null",
            LinkType::Loop => "loop",
        }
    }
}

/// Decode counters. Every frame is counted in `packets` and in exactly one of `tcp` or a
/// skip/drop reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Frames read.
    pub packets: u64,
    /// Captured bytes read.
    pub bytes: u64,
    /// TCP segments decoded and passed on.
    pub tcp: u64,
    /// UDP datagrams (not analysed yet).
    pub skipped_udp: u64,
    /// Other IP transports (ICMP, ...).
    pub skipped_other_transport: u64,
    /// Frames that are not IPv4/IPv6 (ARP, LLDP, ...).
    pub skipped_non_ip: u64,
    /// IP fragments (reassembly not implemented yet).
    pub ip_fragments: u64,
    /// Frames too short for the headers they announce.
    pub truncated: u64,
    /// Frames whose headers are invalid.
    pub malformed: u64,
}

impl DecodeStats {
    /// Adds another set of counters.
    pub fn add(&mut self, o: &DecodeStats) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.tcp += o.tcp;
        self.skipped_udp += o.skipped_udp;
        self.skipped_other_transport += o.skipped_other_transport;
        self.skipped_non_ip += o.skipped_non_ip;
        self.ip_fragments += o.ip_fragments;
        self.truncated += o.truncated;
        self.malformed += o.malformed;
    }

    /// Every skip/drop counter by reason name (zeros included).
    pub fn drops(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("udp", self.skipped_udp),
            ("other_transport", self.skipped_other_transport),
            ("non_ip", self.skipped_non_ip),
            ("ip_fragment", self.ip_fragments),
            ("truncated", self.truncated),
            ("malformed", self.malformed),
        ]
        .into_iter()
    }
}

/// Outcome of looking below the link layer.
enum Network<'a> {
    EtherType(EtherType, &'a [u8]),
    Ip(&'a [u8]),
    NotIp,
    Truncated,
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

fn link(link: LinkType, data: &[u8]) -> Network<'_> {
    match link {
        LinkType::Ethernet => match (be16(data, 12), data.get(14..)) {
            (Some(et), Some(rest)) => Network::EtherType(EtherType(et), rest),
            _ => Network::Truncated,
        },
        LinkType::LinuxSll => match (be16(data, 14), data.get(16..)) {
            (Some(et), Some(rest)) => Network::EtherType(EtherType(et), rest),
            _ => Network::Truncated,
        },
        LinkType::LinuxSll2 => match (be16(data, 0), data.get(20..)) {
            (Some(et), Some(rest)) => Network::EtherType(EtherType(et), rest),
            _ => Network::Truncated,
        },
        LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => Network::Ip(data),
        LinkType::Null | LinkType::Loop => {
            let (Some(af), Some(rest)) = (data.get(..4), data.get(4..)) else {
                return Network::Truncated;
            };
            let af = [af[0], af[1], af[2], af[3]];
            let family = if link == LinkType::Loop {
                u32::from_be_bytes(af)
            } else {
                // DLT_NULL is in the byte order of the capturing host: accept both.
                let le = u32::from_le_bytes(af);
                if le < 256 {
                    le
                } else {
                    u32::from_be_bytes(af)
                }
            };
            match family {
                // AF_INET, and AF_INET6 as BSDs, Linux, macOS and others number it.
                2 | 10 | 24 | 28 | 30 => Network::Ip(rest),
                _ => Network::NotIp,
            }
        }
    }
}

/// Decodes one captured frame into a TCP record, or counts why not.
///
/// `payload_offset`/`payload_len` of the result locate the captured TCP payload within
/// `data`; `payload_wire_len` is the length the IP header implies (larger when the snap
/// length cut the frame).
pub fn decode(
    link_type: LinkType,
    data: &[u8],
    at: PacketRef,
    stats: &mut DecodeStats,
) -> Option<PacketMeta> {
    stats.packets += 1;
    stats.bytes += data.len() as u64;
    let sliced = match link(link_type, data) {
        Network::EtherType(et, rest) => LaxSlicedPacket::from_ether_type(et, rest),
        Network::Ip(ip) => match LaxSlicedPacket::from_ip(ip) {
            Ok(s) => s,
            Err(e) => {
                count_ip_error(&e, stats);
                return None;
            }
        },
        Network::NotIp => {
            stats.skipped_non_ip += 1;
            return None;
        }
        Network::Truncated => {
            stats.truncated += 1;
            return None;
        }
    };
    let Some(net) = &sliced.net else {
        match &sliced.stop_err {
            Some((err, _)) => count_slice_error(err, stats),
            None => stats.skipped_non_ip += 1,
        }
        return None;
    };
    let (src_ip, dst_ip, payload) = match net {
        LaxNetSlice::Ipv4(v4) => {
            let h = v4.header();
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                v4.payload(),
            )
        }
        LaxNetSlice::Ipv6(v6) => {
            let h = v6.header();
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                v6.payload(),
            )
        }
        LaxNetSlice::Arp(_) => {
            stats.skipped_non_ip += 1;
            return None;
        }
    };
    if payload.fragmented {
        stats.ip_fragments += 1;
        return None;
    }
    let tcp = match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => tcp,
        Some(TransportSlice::Udp(_)) => {
            stats.skipped_udp += 1;
            return None;
        }
        Some(_) => {
            stats.skipped_other_transport += 1;
            return None;
        }
        None => {
            match payload.ip_number {
                etherparse::IpNumber::TCP => match &sliced.stop_err {
                    Some((err, _)) => count_slice_error(err, stats),
                    None => stats.truncated += 1,
                },
                etherparse::IpNumber::UDP => stats.skipped_udp += 1,
                _ => stats.skipped_other_transport += 1,
            }
            return None;
        }
    };

    let tcp_payload = tcp.payload();
    let header_len = tcp.header_slice().len();
    // The IP payload length the header claims, when it claims one (TSO captures and
    // jumbograms carry 0 and the captured length stands).
    let claimed = if payload.incomplete {
        ip_claimed_payload_len(net).unwrap_or(payload.payload.len())
    } else {
        payload.payload.len()
    };
    let wire_len = claimed.saturating_sub(header_len).max(tcp_payload.len());
    let offset = (tcp_payload.as_ptr() as usize).saturating_sub(data.as_ptr() as usize);
    if offset
        .checked_add(tcp_payload.len())
        .is_none_or(|end| end > data.len())
    {
        stats.malformed += 1;
        return None;
    }

    let src = Endpoint {
        ip: src_ip,
        port: tcp.source_port(),
    };
    let dst = Endpoint {
        ip: dst_ip,
        port: tcp.destination_port(),
    };
    let (key, from) = FlowKey::from_packet(src, dst, 6);
    let flags = data_flags(tcp);
    stats.tcp += 1;
    Some(PacketMeta {
        at,
        key,
        from,
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags,
        window: tcp.window_size(),
        payload_offset: u32::try_from(offset).unwrap_or(u32::MAX),
        payload_len: u32::try_from(tcp_payload.len()).unwrap_or(0),
        payload_wire_len: u32::try_from(wire_len).unwrap_or(u32::MAX),
    })
}

fn data_flags(tcp: &etherparse::TcpSlice<'_>) -> TcpFlags {
    let mut f = 0u8;
    for (set, bit) in [
        (tcp.fin(), TcpFlags::FIN),
        (tcp.syn(), TcpFlags::SYN),
        (tcp.rst(), TcpFlags::RST),
        (tcp.psh(), TcpFlags::PSH),
        (tcp.ack(), TcpFlags::ACK),
        (tcp.urg(), 0x20),
        (tcp.ece(), 0x40),
        (tcp.cwr(), 0x80),
    ] {
        if set {
            f |= bit;
        }
    }
    TcpFlags(f)
}

/// Payload length the IP header announces (after IPv4 options / IPv6 extension headers).
fn ip_claimed_payload_len(net: &LaxNetSlice<'_>) -> Option<usize> {
    match net {
        LaxNetSlice::Ipv4(v4) => {
            let h = v4.header();
            usize::from(h.total_len()).checked_sub(usize::from(h.ihl()) * 4)
        }
        LaxNetSlice::Ipv6(v6) => {
            usize::from(v6.header().payload_length()).checked_sub(v6.extensions().slice().len())
        }
        LaxNetSlice::Arp(_) => None,
    }
}

fn count_ip_error(e: &etherparse::err::ip::LaxHeaderSliceError, stats: &mut DecodeStats) {
    use etherparse::err::ip::LaxHeaderSliceError as E;
    match e {
        E::Len(_) => stats.truncated += 1,
        E::Content(etherparse::err::ip::HeaderError::UnsupportedIpVersion { .. }) => {
            stats.skipped_non_ip += 1
        }
        E::Content(_) => stats.malformed += 1,
    }
}

fn count_slice_error(e: &etherparse::err::packet::SliceError, stats: &mut DecodeStats) {
    use etherparse::err::packet::SliceError as E;
    match e {
        E::Len(_) => stats.truncated += 1,
        _ => stats.malformed += 1,
    }
}
