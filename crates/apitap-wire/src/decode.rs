//! Link/IP/TCP decoding into the [`PacketMeta`] record ("decode once").
//!
//! The link layer (Ethernet with VLAN/QinQ tags, LLC/SNAP, MPLS and PPPoE; Linux cooked
//! v1/v2; BSD null/loop; raw IP) is read here with checked slicing: it is a few fixed
//! offsets, and doing it by hand lets every encapsulation end in the same place. From the IP
//! header on, etherparse's lax slicer does the work: it bounds the IP payload by the length
//! the header claims (so Ethernet trailer padding never becomes TCP payload) and accepts
//! datagrams that the snap length cut short.
//!
//! Nothing here allocates; every frame is counted exactly once, either in
//! [`DecodeStats::tcp`] or under one skip/drop reason.

use apitap_core::{Endpoint, FlowKey, PacketMeta, PacketRef, TcpFlags};
use etherparse::err::packet::SliceError;
use etherparse::err::{Layer, LenError};
use etherparse::{IpNumber, LaxNetSlice, LaxSlicedPacket, LenSource, TransportSlice};
use std::net::IpAddr;

/// Link types we decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// Ethernet II (DLT_EN10MB 1), with 802.1Q / 802.1ad / QinQ tags, LLC/SNAP, MPLS and
    /// PPPoE session encapsulations.
    Ethernet,
    /// Linux cooked capture v1 (DLT_LINUX_SLL 113): 16-byte header, protocol at offset 14.
    LinuxSll,
    /// Linux cooked capture v2 (DLT_LINUX_SLL2 276): 20-byte header, protocol at offset 0.
    LinuxSll2,
    /// Raw IP, version from the first nibble (DLT_RAW 12/14, LINKTYPE_RAW 101).
    Raw,
    /// Raw IPv4 only (LINKTYPE_IPV4 228).
    Ipv4,
    /// Raw IPv6 only (LINKTYPE_IPV6 229).
    Ipv6,
    /// BSD loopback (DLT_NULL 0): 4-byte address family in the capturing host's byte order.
    Null,
    /// OpenBSD loopback (DLT_LOOP 108): 4-byte address family in network byte order.
    Loop,
}

impl LinkType {
    /// Maps a pcap link-type code to a supported link type; `None` when unsupported.
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

    /// Stable short name for messages and counters (e.g. `"ethernet"`, `"linux_sll2"`).
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
/// skip/drop reason (see [`DecodeStats::drops`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Frames seen by [`decode`].
    pub packets: u64,
    /// Captured bytes of those frames (not the length on the wire).
    pub bytes: u64,
    /// TCP segments decoded and returned.
    pub tcp: u64,
    /// UDP datagrams (not analysed).
    pub skipped_udp: u64,
    /// Other IP transports: ICMP, ICMPv6, IGMP, ESP, GRE, ...
    pub skipped_other_transport: u64,
    /// Frames that do not carry IPv4/IPv6: ARP, LLDP, STP, other ether types.
    pub skipped_non_ip: u64,
    /// IPv4/IPv6 fragments (more-fragments set or a non-zero offset): not reassembled.
    pub ip_fragments: u64,
    /// Frames captured too short for the headers they announce.
    pub truncated: u64,
    /// Frames whose headers are invalid (bad IP header length or version, TCP data offset
    /// below 5, lengths that contradict each other, too many encapsulation layers).
    pub malformed: u64,
}

impl DecodeStats {
    /// Adds every counter of `other` to this one.
    pub fn add(&mut self, other: &DecodeStats) {
        self.packets = self.packets.saturating_add(other.packets);
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.tcp = self.tcp.saturating_add(other.tcp);
        self.skipped_udp = self.skipped_udp.saturating_add(other.skipped_udp);
        self.skipped_other_transport = self
            .skipped_other_transport
            .saturating_add(other.skipped_other_transport);
        self.skipped_non_ip = self.skipped_non_ip.saturating_add(other.skipped_non_ip);
        self.ip_fragments = self.ip_fragments.saturating_add(other.ip_fragments);
        self.truncated = self.truncated.saturating_add(other.truncated);
        self.malformed = self.malformed.saturating_add(other.malformed);
    }

    /// Every skip/drop counter by its stable snake_case reason name, zeros included, in a
    /// fixed order: `udp`, `other_transport`, `non_ip`, `ip_fragment`, `truncated`,
    /// `malformed`. Their sum plus `tcp` equals `packets`.
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

    fn count(&mut self, skip: Skip) {
        let c = match skip {
            Skip::Udp => &mut self.skipped_udp,
            Skip::OtherTransport => &mut self.skipped_other_transport,
            Skip::NonIp => &mut self.skipped_non_ip,
            Skip::Fragment => &mut self.ip_fragments,
            Skip::Truncated => &mut self.truncated,
            Skip::Malformed => &mut self.malformed,
        };
        *c = c.saturating_add(1);
    }
}

/// Why a frame yields no TCP record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Skip {
    Udp,
    OtherTransport,
    NonIp,
    Fragment,
    Truncated,
    Malformed,
}

/// Where the IP header starts in the frame, and the IP version the link layer announced.
struct IpStart {
    offset: usize,
    version: Option<u8>,
}

/// Encapsulation layers (VLAN tags, MPLS labels, LLC/SNAP, PPPoE) followed per frame
/// before giving up as malformed.
const MAX_LINK_LAYERS: usize = 8;

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;
const ETH_QINQ_OLD: u16 = 0x9100;
const ETH_MPLS_UC: u16 = 0x8847;
const ETH_MPLS_MC: u16 = 0x8848;
const ETH_PPPOE_SESSION: u16 = 0x8864;

fn be16(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..)?.first_chunk::<2>()?;
    Some(u16::from_be_bytes(*b))
}

/// Follows ether types from `offset` (the first byte after the ether type field) to the IP
/// header.
fn ether_payload(data: &[u8], mut ether_type: u16, mut offset: usize) -> Result<IpStart, Skip> {
    for _ in 0..MAX_LINK_LAYERS {
        match ether_type {
            ETH_IPV4 => {
                return Ok(IpStart {
                    offset,
                    version: Some(4),
                })
            }
            ETH_IPV6 => {
                return Ok(IpStart {
                    offset,
                    version: Some(6),
                })
            }
            ETH_VLAN | ETH_QINQ | ETH_QINQ_OLD => {
                // TCI (2 bytes), then the inner ether type.
                ether_type = be16(data, offset.saturating_add(2)).ok_or(Skip::Truncated)?;
                offset = offset.saturating_add(4);
            }
            ETH_MPLS_UC | ETH_MPLS_MC => return mpls(data, offset),
            ETH_PPPOE_SESSION => {
                // ver/type, code, session id, length (6 bytes), then the PPP protocol: two
                // bytes, or one when compressed (RFC 1661 PFC: an odd first byte).
                let at = offset.saturating_add(6);
                let first = *data.get(at).ok_or(Skip::Truncated)?;
                let (proto, len) = if first & 1 == 1 {
                    (u16::from(first), 1)
                } else {
                    (be16(data, at).ok_or(Skip::Truncated)?, 2)
                };
                let version = match proto {
                    0x0021 => 4,
                    0x0057 => 6,
                    _ => return Err(Skip::NonIp),
                };
                return Ok(IpStart {
                    offset: at.saturating_add(len),
                    version: Some(version),
                });
            }
            0..=1500 => {
                // IEEE 802.3 length field: 802.2 LLC follows. Only SNAP (AA AA 03) with an
                // ether-type OUI (RFC 1042, 802.1H) carries an ether type.
                let llc = data.get(offset..).unwrap_or_default();
                match llc.first_chunk::<3>() {
                    None => return Err(Skip::Truncated),
                    Some([0xaa, 0xaa, 0x03]) => {}
                    Some(_) => return Err(Skip::NonIp),
                }
                match llc.get(3..6) {
                    None => return Err(Skip::Truncated),
                    Some([0, 0, 0] | [0, 0, 0xf8]) => {}
                    Some(_) => return Err(Skip::NonIp),
                }
                ether_type = be16(data, offset.saturating_add(6)).ok_or(Skip::Truncated)?;
                offset = offset.saturating_add(8);
            }
            _ => return Err(Skip::NonIp),
        }
    }
    Err(Skip::Malformed)
}

/// Skips an MPLS label stack; IP follows the bottom label when its first nibble says so.
fn mpls(data: &[u8], mut offset: usize) -> Result<IpStart, Skip> {
    for _ in 0..MAX_LINK_LAYERS {
        let [_, _, exp_bos, _] = *data
            .get(offset..)
            .and_then(|d| d.first_chunk::<4>())
            .ok_or(Skip::Truncated)?;
        offset = offset.saturating_add(4);
        if exp_bos & 0x01 != 0 {
            // Bottom of stack: no protocol field, guess by the IP version nibble. Anything
            // else (pseudowire control word 0, Ethernet over MPLS) is not decoded.
            let first = data.get(offset).ok_or(Skip::Truncated)?;
            return match first >> 4 {
                4 | 6 => Ok(IpStart {
                    offset,
                    version: None,
                }),
                _ => Err(Skip::NonIp),
            };
        }
    }
    Err(Skip::Malformed)
}

/// Reads the link header of `link` and finds the IP header.
fn link_layer(link: LinkType, data: &[u8]) -> Result<IpStart, Skip> {
    match link {
        LinkType::Ethernet => {
            let ether_type = be16(data, 12).ok_or(Skip::Truncated)?;
            ether_payload(data, ether_type, 14)
        }
        LinkType::LinuxSll => {
            if data.len() < 16 {
                return Err(Skip::Truncated);
            }
            let ether_type = be16(data, 14).ok_or(Skip::Truncated)?;
            ether_payload(data, ether_type, 16)
        }
        LinkType::LinuxSll2 => {
            if data.len() < 20 {
                return Err(Skip::Truncated);
            }
            let ether_type = be16(data, 0).ok_or(Skip::Truncated)?;
            ether_payload(data, ether_type, 20)
        }
        LinkType::Raw => Ok(IpStart {
            offset: 0,
            version: None,
        }),
        LinkType::Ipv4 => Ok(IpStart {
            offset: 0,
            version: Some(4),
        }),
        LinkType::Ipv6 => Ok(IpStart {
            offset: 0,
            version: Some(6),
        }),
        LinkType::Null | LinkType::Loop => {
            let af = *data.first_chunk::<4>().ok_or(Skip::Truncated)?;
            let family = if link == LinkType::Loop {
                u32::from_be_bytes(af)
            } else {
                // DLT_NULL is in the byte order of the capturing host, which the file does
                // not record: families are small numbers, so take the order that gives one.
                let le = u32::from_le_bytes(af);
                if le <= 0xffff {
                    le
                } else {
                    u32::from_be_bytes(af)
                }
            };
            let version = match family {
                2 => 4,
                // AF_INET6: Linux 10, OpenBSD/NetBSD 24, FreeBSD 28, macOS/iOS 30.
                10 | 24 | 28 | 30 => 6,
                _ => return Err(Skip::NonIp),
            };
            Ok(IpStart {
                offset: 4,
                version: Some(version),
            })
        }
    }
}

/// Decodes one captured frame of link type `link` into a TCP record, or counts in `stats`
/// why not (and returns `None`).
///
/// In the returned record, `payload_offset`/`payload_len` locate the captured TCP payload
/// within `data` (never outside it, never including link-layer trailer padding), and
/// `payload_wire_len` is the payload length the IP header implies (larger than
/// `payload_len` when the snap length cut the frame; equal to it when the IP header gives
/// no usable length, as with TSO captures or jumbograms).
pub fn decode(
    link: LinkType,
    data: &[u8],
    at: PacketRef,
    stats: &mut DecodeStats,
) -> Option<PacketMeta> {
    stats.packets = stats.packets.saturating_add(1);
    stats.bytes = stats.bytes.saturating_add(data.len() as u64);
    match decode_tcp(link, data, at) {
        Ok(meta) => {
            stats.tcp = stats.tcp.saturating_add(1);
            Some(meta)
        }
        Err(skip) => {
            stats.count(skip);
            None
        }
    }
}

fn decode_tcp(link: LinkType, data: &[u8], at: PacketRef) -> Result<PacketMeta, Skip> {
    let start = link_layer(link, data)?;
    let ip = data.get(start.offset..).ok_or(Skip::Truncated)?;
    let first = ip.first().ok_or(Skip::Truncated)?;
    if start.version.is_some_and(|v| v != first >> 4) {
        // The link layer said IPv4 and the header says otherwise (or the reverse).
        return Err(Skip::Malformed);
    }
    let sliced = LaxSlicedPacket::from_ip(ip).map_err(|e| {
        use etherparse::err::ip::LaxHeaderSliceError as E;
        match e {
            E::Len(l) => len_error(&l),
            // Bad version nibble or IPv4 header length below 20 bytes.
            E::Content(_) => Skip::Malformed,
        }
    })?;

    // Addresses, and where the IP datagram ends according to its header.
    let (src_ip, dst_ip, claimed_ip_len) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            let total = usize::from(h.total_len());
            let header_len = h.slice().len();
            let claimed = if total == 0 {
                // TSO/GSO captures leave the length 0: the captured length stands.
                None
            } else if total < header_len {
                return Err(Skip::Malformed);
            } else {
                Some(total)
            };
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                claimed,
            )
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            let payload_len = usize::from(h.payload_length());
            // 0: jumbogram or TSO; the captured length stands.
            let claimed = (payload_len != 0).then(|| payload_len.saturating_add(40));
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                claimed,
            )
        }
        Some(LaxNetSlice::Arp(_)) => return Err(Skip::NonIp),
        None => return Err(Skip::Malformed),
    };
    let ip_payload = sliced.ip_payload().ok_or(Skip::Malformed)?;
    if ip_payload.fragmented {
        return Err(Skip::Fragment);
    }

    let tcp = match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => tcp,
        Some(TransportSlice::Udp(_)) => return Err(Skip::Udp),
        Some(_) => return Err(Skip::OtherTransport),
        None => {
            return Err(match &sliced.stop_err {
                // A short or odd header of a transport we skip anyway counts as that transport.
                Some((_, Layer::UdpHeader | Layer::UdpPayload)) => Skip::Udp,
                Some((_, Layer::Icmpv4 | Layer::Icmpv6 | Layer::Igmp)) => Skip::OtherTransport,
                Some((SliceError::Len(l), _)) => len_error(l),
                Some(_) => Skip::Malformed,
                None if ip_payload.ip_number == IpNumber::TCP => Skip::Truncated,
                None if ip_payload.ip_number == IpNumber::UDP => Skip::Udp,
                None => Skip::OtherTransport,
            });
        }
    };

    let payload = tcp.payload();
    let offset = (payload.as_ptr() as usize)
        .checked_sub(data.as_ptr() as usize)
        .ok_or(Skip::Malformed)?;
    let end = offset.checked_add(payload.len()).ok_or(Skip::Malformed)?;
    if end > data.len() {
        return Err(Skip::Malformed);
    }
    let wire_len = match claimed_ip_len {
        Some(len) => start
            .offset
            .saturating_add(len)
            .saturating_sub(offset)
            .max(payload.len()),
        None => payload.len(),
    };

    let src = Endpoint {
        ip: src_ip,
        port: tcp.source_port(),
    };
    let dst = Endpoint {
        ip: dst_ip,
        port: tcp.destination_port(),
    };
    let (key, from) = FlowKey::from_packet(src, dst, 6);
    // Byte 13 of the TCP header: CWR ECE URG ACK PSH RST SYN FIN.
    let flags = tcp.header_slice().get(13).copied().unwrap_or(0);
    Ok(PacketMeta {
        at,
        key,
        from,
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags: TcpFlags(flags),
        window: tcp.window_size(),
        payload_offset: u32::try_from(offset).map_err(|_| Skip::Malformed)?,
        payload_len: u32::try_from(payload.len()).map_err(|_| Skip::Malformed)?,
        payload_wire_len: u32::try_from(wire_len).unwrap_or(u32::MAX),
    })
}

/// A length error is truncation when the capture ran out, and malformed when a length
/// field of an outer header (IP total length, IPv6 payload length) left too little room.
fn len_error(e: &LenError) -> Skip {
    if e.len_source == LenSource::Slice {
        Skip::Truncated
    } else {
        Skip::Malformed
    }
}
