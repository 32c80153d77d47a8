//! Link/IP/TCP decoding into the [`PacketMeta`] record ("decode once").
//!
//! The link layer (Ethernet with VLAN/QinQ tags, LLC/SNAP, MPLS and PPPoE; Linux cooked
//! v1/v2; BSD null/loop; raw IP) is read here with checked slicing: it is a few fixed
//! offsets, and doing it by hand lets every encapsulation end in the same place. From the IP
//! header on, etherparse's lax slicer does the work: it bounds the IP payload by the length
//! the header claims (so Ethernet trailer padding never becomes TCP payload) and accepts
//! datagrams that the snap length cut short.
//!
//! Tunnels are followed to the innermost TCP segment, whose 5-tuple is the flow key: GRE
//! (IPv4, IPv6, MPLS or transparent Ethernet inside, optional checksum/key/sequence),
//! ERSPAN type II and III (over GRE), VXLAN (UDP 4789), GENEVE (UDP 6081), IPv4-in-IP
//! (protocol 4) and IPv6-in-IP (protocol 41), at most [`MAX_TUNNEL_DEPTH`] deep. The
//! outermost VLAN id (outside any tunnel) and the outermost tunnel (kind and VNI, key or
//! session id) travel with the packet in [`PacketMeta::encap`].
//!
//! IP fragments are handed back by [`decode_frame`] for reassembly (see [`crate::defrag`]);
//! the reassembled datagram goes through [`decode_reassembled`].
//!
//! Nothing here allocates; every frame is counted exactly once, either in
//! [`DecodeStats::tcp`] or under one skip/drop reason.

use apitap_core::{Encap, Endpoint, FlowKey, PacketMeta, PacketRef, TcpFlags, Tunnel, TunnelKind};
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
/// skip/drop reason (see [`DecodeStats::drops`]). A fragment that completes an IP datagram
/// is counted by what the reassembled datagram turned out to be; the other fragments are
/// counted in `ip_fragments` (held for reassembly or dropped by it, see `defrag`).
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
    /// Other IP transports: ICMP, ICMPv6, IGMP, ESP, ...
    pub skipped_other_transport: u64,
    /// Frames that do not carry IPv4/IPv6: ARP, LLDP, STP, other ether types.
    pub skipped_non_ip: u64,
    /// IPv4/IPv6 fragments (more-fragments set or a non-zero offset): held for reassembly,
    /// dropped by it, or (reassembly off) not reassembled.
    pub ip_fragments: u64,
    /// Frames captured too short for the headers they announce.
    pub truncated: u64,
    /// Frames whose headers are invalid (bad IP header length or version, TCP data offset
    /// below 5, lengths that contradict each other, too many link-layer encapsulations).
    pub malformed: u64,
    /// Frames whose capture ends inside a tunnel header (GRE, ERSPAN, VXLAN, GENEVE, or
    /// the Ethernet header they carry).
    pub tunnel_truncated: u64,
    /// Frames with an invalid tunnel header: GRE reserved bits set, VXLAN without the
    /// I flag, GENEVE version other than 0, ERSPAN version that does not match its type.
    pub tunnel_malformed: u64,
    /// Tunnels we do not decode: GRE version 1 (PPTP) or with routing, GRE/GENEVE payload
    /// protocols other than IPv4, IPv6, MPLS, Ethernet and ERSPAN; ERSPAN III frame
    /// types other than Ethernet.
    pub tunnel_unsupported: u64,
    /// Frames nested in more than [`MAX_TUNNEL_DEPTH`] tunnels.
    pub encap_too_deep: u64,
    /// IP fragment reassembly counters (see [`crate::defrag`]).
    pub defrag: crate::defrag::DefragStats,
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
        self.tunnel_truncated = self.tunnel_truncated.saturating_add(other.tunnel_truncated);
        self.tunnel_malformed = self.tunnel_malformed.saturating_add(other.tunnel_malformed);
        self.tunnel_unsupported = self
            .tunnel_unsupported
            .saturating_add(other.tunnel_unsupported);
        self.encap_too_deep = self.encap_too_deep.saturating_add(other.encap_too_deep);
        self.defrag.add(&other.defrag);
    }

    /// Every skip/drop counter by its stable snake_case reason name, zeros included, in a
    /// fixed order: `udp`, `other_transport`, `non_ip`, `ip_fragment`, `truncated`,
    /// `malformed`, `tunnel_truncated`, `tunnel_malformed`, `tunnel_unsupported`,
    /// `encap_too_deep`. Their sum plus `tcp` equals `packets`.
    pub fn drops(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("udp", self.skipped_udp),
            ("other_transport", self.skipped_other_transport),
            ("non_ip", self.skipped_non_ip),
            ("ip_fragment", self.ip_fragments),
            ("truncated", self.truncated),
            ("malformed", self.malformed),
            ("tunnel_truncated", self.tunnel_truncated),
            ("tunnel_malformed", self.tunnel_malformed),
            ("tunnel_unsupported", self.tunnel_unsupported),
            ("encap_too_deep", self.encap_too_deep),
        ]
        .into_iter()
    }

    /// Counts a frame that [`decode_frame`] returned as [`Decoded::Fragment`] and that did
    /// not complete a datagram (held for reassembly, dropped by it, or reassembly off).
    pub fn count_fragment(&mut self) {
        self.ip_fragments = self.ip_fragments.saturating_add(1);
    }

    fn count(&mut self, skip: Skip) {
        let c = match skip {
            Skip::Udp => &mut self.skipped_udp,
            Skip::OtherTransport => &mut self.skipped_other_transport,
            Skip::NonIp => &mut self.skipped_non_ip,
            Skip::Truncated => &mut self.truncated,
            Skip::Malformed => &mut self.malformed,
            Skip::TunnelTruncated => &mut self.tunnel_truncated,
            Skip::TunnelMalformed => &mut self.tunnel_malformed,
            Skip::TunnelUnsupported => &mut self.tunnel_unsupported,
            Skip::TooDeep => &mut self.encap_too_deep,
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
    Truncated,
    Malformed,
    TunnelTruncated,
    TunnelMalformed,
    TunnelUnsupported,
    TooDeep,
}

/// Tunnels (GRE, ERSPAN, VXLAN, GENEVE, IP-in-IP) followed per frame; one more is counted
/// as `encap_too_deep`.
pub const MAX_TUNNEL_DEPTH: u8 = 4;

/// What decapsulation learned on the way to a packet: the outermost VLAN id and tunnel,
/// and how many tunnels deep the packet sits. Small and `Copy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Decap {
    /// Outermost VLAN id and tunnel.
    pub encap: Encap,
    /// Tunnels entered so far.
    pub depth: u8,
}

impl Decap {
    /// Enters a tunnel: the first one is the one reported; too many is a drop.
    fn enter(&mut self, kind: TunnelKind, id: Option<u32>) -> Result<(), Skip> {
        if self.depth >= MAX_TUNNEL_DEPTH {
            return Err(Skip::TooDeep);
        }
        self.depth += 1;
        if self.encap.tunnel.is_none() {
            self.encap.tunnel = Some(Tunnel { kind, id });
        }
        Ok(())
    }
}

/// An IP fragment found by [`decode_frame`]: where its IP header starts in the frame, and
/// what decapsulation learned before it (so the reassembled datagram is reported with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// Offset of the fragment's IPv4/IPv6 header in the frame.
    pub ip_offset: usize,
    /// VLAN, tunnel and depth outside the fragment.
    pub decap: Decap,
}

/// What [`decode_frame`] found in a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A TCP segment (counted in `tcp`).
    Tcp(PacketMeta),
    /// An IP fragment, not counted yet: see [`DecodeStats::count_fragment`] and
    /// [`decode_reassembled`].
    Fragment(Fragment),
    /// Skipped or dropped, counted under its reason.
    Dropped,
}

/// Internal result of decoding.
enum Found {
    Tcp(PacketMeta),
    Fragment(Fragment),
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
/// header. The first VLAN id outside any tunnel is recorded in `decap`.
fn ether_payload(
    data: &[u8],
    mut ether_type: u16,
    mut offset: usize,
    decap: &mut Decap,
) -> Result<IpStart, Skip> {
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
                if decap.depth == 0 && decap.encap.vlan.is_none() {
                    // VID 0 is a priority tag (no VLAN), 4095 is reserved: not recorded.
                    let vid = be16(data, offset).ok_or(Skip::Truncated)? & 0x0fff;
                    if vid != 0 && vid != 0x0fff {
                        decap.encap.vlan = Some(vid);
                    }
                }
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
fn link_layer(link: LinkType, data: &[u8], decap: &mut Decap) -> Result<IpStart, Skip> {
    match link {
        LinkType::Ethernet => {
            let ether_type = be16(data, 12).ok_or(Skip::Truncated)?;
            ether_payload(data, ether_type, 14, decap)
        }
        LinkType::LinuxSll => {
            if data.len() < 16 {
                return Err(Skip::Truncated);
            }
            let ether_type = be16(data, 14).ok_or(Skip::Truncated)?;
            ether_payload(data, ether_type, 16, decap)
        }
        LinkType::LinuxSll2 => {
            if data.len() < 20 {
                return Err(Skip::Truncated);
            }
            let ether_type = be16(data, 0).ok_or(Skip::Truncated)?;
            ether_payload(data, ether_type, 20, decap)
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
/// why not (and returns `None`). IP fragments are counted in `ip_fragments` (this entry
/// point does not reassemble; see [`decode_frame`]).
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
    match decode_frame(link, data, at, stats) {
        Decoded::Tcp(meta) => Some(meta),
        Decoded::Fragment(_) => {
            stats.count_fragment();
            None
        }
        Decoded::Dropped => None,
    }
}

/// [`decode`], except that an IP fragment is returned (uncounted) for reassembly: the
/// caller counts it with [`DecodeStats::count_fragment`] unless it completes a datagram,
/// which then goes through [`decode_reassembled`].
pub fn decode_frame(
    link: LinkType,
    data: &[u8],
    at: PacketRef,
    stats: &mut DecodeStats,
) -> Decoded {
    stats.packets = stats.packets.saturating_add(1);
    stats.bytes = stats.bytes.saturating_add(data.len() as u64);
    let mut decap = Decap::default();
    let found =
        link_layer(link, data, &mut decap).and_then(|start| decode_ip(data, start, decap, at));
    outcome(found, stats)
}

/// Decodes a datagram reassembled from the fragments of one frame's [`Fragment`]: `data`
/// starts with its IPv4/IPv6 header, `decap` is the fragment's. The frame that completed
/// the datagram is counted here (as TCP or under a drop reason), not in `packets` again.
/// A fragment inside (a fragmented packet in a reassembled tunnel) is returned as such.
pub fn decode_reassembled(
    data: &[u8],
    decap: Decap,
    at: PacketRef,
    stats: &mut DecodeStats,
) -> Decoded {
    let start = IpStart {
        offset: 0,
        version: None,
    };
    outcome(decode_ip(data, start, decap, at), stats)
}

fn outcome(found: Result<Found, Skip>, stats: &mut DecodeStats) -> Decoded {
    match found {
        Ok(Found::Tcp(meta)) => {
            stats.tcp = stats.tcp.saturating_add(1);
            Decoded::Tcp(meta)
        }
        Ok(Found::Fragment(f)) => Decoded::Fragment(f),
        Err(skip) => {
            stats.count(skip);
            Decoded::Dropped
        }
    }
}

/// Offset of `sub` (a slice of `data`) in `data`.
fn offset_in(data: &[u8], sub: &[u8]) -> Result<usize, Skip> {
    let offset = (sub.as_ptr() as usize)
        .checked_sub(data.as_ptr() as usize)
        .ok_or(Skip::Malformed)?;
    if offset
        .checked_add(sub.len())
        .is_none_or(|end| end > data.len())
    {
        return Err(Skip::Malformed);
    }
    Ok(offset)
}

/// Decodes from the IP header at `start` on, through any tunnels, to the TCP segment.
fn decode_ip(data: &[u8], start: IpStart, decap: Decap, at: PacketRef) -> Result<Found, Skip> {
    if start.version.is_none_or(|v| v == 4) {
        if let Some(meta) = plain_ipv4_tcp(data, start.offset, &decap, at) {
            return Ok(Found::Tcp(meta));
        }
    }
    decode_ip_general(data, start, decap, at)
}

/// [`decode_ip`] for any packet: every IP version, fragment, tunnel and error.
fn decode_ip_general(
    data: &[u8],
    mut start: IpStart,
    mut decap: Decap,
    at: PacketRef,
) -> Result<Found, Skip> {
    // Each turn either returns or enters a tunnel, and `Decap::enter` bounds those.
    loop {
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
            return Ok(Found::Fragment(Fragment {
                ip_offset: start.offset,
                decap,
            }));
        }

        let tcp = match &sliced.transport {
            Some(TransportSlice::Tcp(tcp)) => tcp,
            Some(TransportSlice::Udp(udp)) => {
                let payload = udp.payload();
                let at_payload = offset_in(data, payload)?;
                start = match udp.destination_port() {
                    VXLAN_PORT => vxlan(data, at_payload, &mut decap)?,
                    GENEVE_PORT => geneve(data, at_payload, &mut decap)?,
                    _ => return Err(Skip::Udp),
                };
                continue;
            }
            Some(_) => return Err(Skip::OtherTransport),
            None => {
                let inner = match ip_payload.ip_number {
                    IpNumber::GRE => Some(TunnelKind::Gre),
                    IpNumber::IPV4 => Some(TunnelKind::IpIp),
                    IpNumber::IPV6 => Some(TunnelKind::Ip6Ip),
                    _ => None,
                };
                if let (Some(kind), None) = (inner, &sliced.stop_err) {
                    let at_payload = offset_in(data, ip_payload.payload)?;
                    start = match kind {
                        TunnelKind::IpIp => {
                            decap.enter(kind, None)?;
                            IpStart {
                                offset: at_payload,
                                version: Some(4),
                            }
                        }
                        TunnelKind::Ip6Ip => {
                            decap.enter(kind, None)?;
                            IpStart {
                                offset: at_payload,
                                version: Some(6),
                            }
                        }
                        _ => gre(data, at_payload, &mut decap)?,
                    };
                    continue;
                }
                return Err(match &sliced.stop_err {
                    // A short or odd header of a transport we skip anyway counts as that
                    // transport.
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
        let offset = offset_in(data, payload)?;
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
        return Ok(Found::Tcp(PacketMeta {
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
            encap: decap.encap,
        }));
    }
}

/// The common case, decoded with etherparse's fixed-header slices instead of the full lax
/// walk: an unfragmented IPv4 datagram, its total length inside the capture, carrying a
/// whole TCP header. Anything else is `None` and takes the general path, which gives the
/// same result for these packets (held by a property test).
fn plain_ipv4_tcp(
    data: &[u8],
    ip_offset: usize,
    decap: &Decap,
    at: PacketRef,
) -> Option<PacketMeta> {
    let ip = data.get(ip_offset..)?;
    let v4 = etherparse::Ipv4HeaderSlice::from_slice(ip).ok()?;
    if v4.protocol() != IpNumber::TCP || v4.is_fragmenting_payload() {
        return None;
    }
    let header_len = v4.slice().len();
    let total = usize::from(v4.total_len());
    // Length 0 (TSO) and lengths past the capture take the general path.
    let ip_payload = ip.get(header_len..total)?;
    let tcp = etherparse::TcpHeaderSlice::from_slice(ip_payload).ok()?;
    let payload_start = ip_offset + header_len + tcp.slice().len();
    let payload_len = total - header_len - tcp.slice().len();
    let (key, from) = FlowKey::from_packet(
        Endpoint {
            ip: IpAddr::V4(v4.source_addr()),
            port: tcp.source_port(),
        },
        Endpoint {
            ip: IpAddr::V4(v4.destination_addr()),
            port: tcp.destination_port(),
        },
        6,
    );
    let payload_len = u32::try_from(payload_len).ok()?;
    Some(PacketMeta {
        at,
        key,
        from,
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        // Byte 13 of the TCP header: CWR ECE URG ACK PSH RST SYN FIN.
        flags: TcpFlags(tcp.slice().get(13).copied().unwrap_or(0)),
        window: tcp.window_size(),
        payload_offset: u32::try_from(payload_start).ok()?,
        payload_len,
        payload_wire_len: payload_len,
        encap: decap.encap,
    })
}

/// VXLAN destination port (RFC 7348).
pub const VXLAN_PORT: u16 = 4789;
/// GENEVE destination port (RFC 8926).
pub const GENEVE_PORT: u16 = 6081;

const GRE_TEB: u16 = 0x6558;
const GRE_ERSPAN_II: u16 = 0x88be;
const GRE_ERSPAN_III: u16 = 0x22eb;

/// The `N` bytes of a tunnel header at `at`, or tunnel truncation.
fn tunnel_bytes<const N: usize>(data: &[u8], at: usize) -> Result<&[u8; N], Skip> {
    data.get(at..)
        .and_then(|d| d.first_chunk::<N>())
        .ok_or(Skip::TunnelTruncated)
}

/// An Ethernet frame carried in a tunnel, starting at `at`: follows it to the IP header.
fn inner_ethernet(data: &[u8], at: usize, decap: &mut Decap) -> Result<IpStart, Skip> {
    let header = tunnel_bytes::<14>(data, at)?;
    let ether_type = u16::from_be_bytes([header[12], header[13]]);
    ether_payload(data, ether_type, at.saturating_add(14), decap)
}

/// VXLAN (RFC 7348): flags (I = 0x08 must be set), 3 reserved bytes, 24-bit VNI, 1
/// reserved byte; then an Ethernet frame.
fn vxlan(data: &[u8], at: usize, decap: &mut Decap) -> Result<IpStart, Skip> {
    let h = tunnel_bytes::<8>(data, at)?;
    if h[0] & 0x08 == 0 {
        return Err(Skip::TunnelMalformed);
    }
    let vni = u32::from_be_bytes([0, h[4], h[5], h[6]]);
    decap.enter(TunnelKind::Vxlan, Some(vni))?;
    inner_ethernet(data, at.saturating_add(8), decap)
}

/// GENEVE (RFC 8926): version (2 bits, 0) and option length (6 bits, in 4-byte words),
/// flags, protocol type, 24-bit VNI, reserved; then the options and the payload
/// (Ethernet for 0x6558; IPv4 and IPv6 are decoded too).
fn geneve(data: &[u8], at: usize, decap: &mut Decap) -> Result<IpStart, Skip> {
    let h = tunnel_bytes::<8>(data, at)?;
    if h[0] >> 6 != 0 {
        return Err(Skip::TunnelMalformed);
    }
    let header_len = 8 + usize::from(h[0] & 0x3f) * 4;
    let protocol = u16::from_be_bytes([h[2], h[3]]);
    let vni = u32::from_be_bytes([0, h[4], h[5], h[6]]);
    let inner = at.saturating_add(header_len);
    if data.len() < inner {
        return Err(Skip::TunnelTruncated);
    }
    decap.enter(TunnelKind::Geneve, Some(vni))?;
    match protocol {
        GRE_TEB => inner_ethernet(data, inner, decap),
        ETH_IPV4 | ETH_IPV6 => ether_payload(data, protocol, inner, decap),
        _ => Err(Skip::TunnelUnsupported),
    }
}

/// GRE (RFC 2784, with the key and sequence number of RFC 2890): flags and version, the
/// protocol, then optional checksum (+ reserved), key and sequence number. Carries IPv4,
/// IPv6, MPLS, Ethernet (0x6558) or ERSPAN type II/III.
fn gre(data: &[u8], at: usize, decap: &mut Decap) -> Result<IpStart, Skip> {
    let h = tunnel_bytes::<4>(data, at)?;
    let (flags, version) = (h[0], h[1]);
    if version & 0x07 != 0 || flags & 0x40 != 0 {
        // Version 1 is PPTP's enhanced GRE; R (0x40) announces RFC 1701 source routing.
        return Err(Skip::TunnelUnsupported);
    }
    if flags & 0x0f != 0 || version & 0xf8 != 0 {
        // Strict source route and recursion control (RFC 1701), reserved bits.
        return Err(Skip::TunnelMalformed);
    }
    let protocol = u16::from_be_bytes([h[2], h[3]]);
    let has_checksum = flags & 0x80 != 0;
    let has_key = flags & 0x20 != 0;
    let has_seq = flags & 0x10 != 0;
    let key_at = at.saturating_add(if has_checksum { 8 } else { 4 });
    let key = if has_key {
        Some(u32::from_be_bytes(*tunnel_bytes::<4>(data, key_at)?))
    } else {
        None
    };
    let header_len =
        4 + 4 * (usize::from(has_checksum) + usize::from(has_key) + usize::from(has_seq));
    let inner = at.saturating_add(header_len);
    if data.len() < inner {
        return Err(Skip::TunnelTruncated);
    }
    match protocol {
        GRE_ERSPAN_II => {
            // Ver (4 bits, 1), VLAN (12), CoS (3), En (2), T (1), session id (10),
            // reserved (12), index (20).
            let e = tunnel_bytes::<8>(data, inner)?;
            if e[0] >> 4 != 1 {
                return Err(Skip::TunnelMalformed);
            }
            let session = u16::from_be_bytes([e[2], e[3]]) & 0x03ff;
            decap.enter(TunnelKind::ErspanII, Some(u32::from(session)))?;
            inner_ethernet(data, inner.saturating_add(8), decap)
        }
        GRE_ERSPAN_III => {
            // Ver (4 bits, 2), VLAN (12), CoS (3), BSO (2), T (1), session id (10),
            // timestamp (32), SGT (16), P (1), FT (5), hardware id (6), D (1), Gra (2),
            // O (1); with O set an 8-byte platform-specific subheader follows.
            let e = tunnel_bytes::<12>(data, inner)?;
            if e[0] >> 4 != 2 {
                return Err(Skip::TunnelMalformed);
            }
            let session = u16::from_be_bytes([e[2], e[3]]) & 0x03ff;
            let frame_type = (e[10] >> 2) & 0x1f;
            let subheader = if e[11] & 0x01 != 0 { 8 } else { 0 };
            let frame = inner.saturating_add(12 + subheader);
            if data.len() < frame {
                return Err(Skip::TunnelTruncated);
            }
            if frame_type != 0 {
                // 0 is Ethernet; 2 (IP) and the others are not decoded.
                return Err(Skip::TunnelUnsupported);
            }
            decap.enter(TunnelKind::ErspanIII, Some(u32::from(session)))?;
            inner_ethernet(data, frame, decap)
        }
        GRE_TEB => {
            decap.enter(TunnelKind::Gre, key)?;
            inner_ethernet(data, inner, decap)
        }
        ETH_IPV4 | ETH_IPV6 | ETH_MPLS_UC | ETH_MPLS_MC => {
            decap.enter(TunnelKind::Gre, key)?;
            ether_payload(data, protocol, inner, decap)
        }
        _ => Err(Skip::TunnelUnsupported),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An IPv4 header (with `options` 4-byte words) and a TCP header (data offset `doff`),
    /// then `payload` bytes; `total_len` and the fragment field as given.
    fn ipv4_tcp(
        options: usize,
        total_len: Option<u16>,
        frag: u16,
        protocol: u8,
        doff: u8,
        payload: usize,
        noise: &[u8],
    ) -> Vec<u8> {
        let ihl = 5 + options;
        let tcp_len = usize::from(doff.max(5)) * 4;
        let len = ihl * 4 + tcp_len + payload;
        let mut p: Vec<u8> = noise.iter().copied().cycle().take(len).collect();
        p.resize(len, 0x5a);
        p[0] = 0x40 | u8::try_from(ihl).unwrap();
        let total = total_len.unwrap_or(u16::try_from(len).unwrap());
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[6..8].copy_from_slice(&frag.to_be_bytes());
        p[9] = protocol;
        let t = ihl * 4;
        p[t + 12] = (doff << 4) | (p[t + 12] & 0x0f);
        p
    }

    proptest! {
        /// Wherever the fast path answers, the general path gives the same segment; and
        /// it does answer for the plain packets it is for.
        #[test]
        fn plain_ipv4_tcp_is_the_general_path(
            options in 0usize..=10,
            total_delta in prop_oneof![Just(None), (-64i32..64).prop_map(Some)],
            frag in prop_oneof![Just(0u16), Just(0x4000u16), any::<u16>()],
            protocol in prop_oneof![Just(6u8), any::<u8>()],
            doff in prop_oneof![Just(5u8), 0u8..16],
            payload in 0usize..200,
            noise in proptest::collection::vec(any::<u8>(), 1..64),
            cut in 0usize..8,
            at_offset in 0usize..4,
        ) {
            let base = ipv4_tcp(options, None, frag, protocol, doff, payload, &noise);
            let total = total_delta.map(|d| {
                u16::try_from((base.len() as i32 + d).clamp(0, 65535)).unwrap()
            });
            let pkt = ipv4_tcp(options, total, frag, protocol, doff, payload, &noise);
            let mut data = vec![0xeeu8; at_offset];
            data.extend_from_slice(&pkt[..pkt.len().saturating_sub(cut)]);
            let at = PacketRef::default();
            let start = IpStart { offset: at_offset, version: None };
            let fast = plain_ipv4_tcp(&data, at_offset, &Decap::default(), at);
            let general = decode_ip_general(&data, start, Decap::default(), at);
            if let Some(meta) = fast {
                match general {
                    Ok(Found::Tcp(g)) => prop_assert_eq!(meta, g),
                    _ => prop_assert!(false, "fast path decoded what the general path did not"),
                }
            }
            let plain = total_delta.is_none()
                && cut == 0
                && frag & 0x3fff == 0
                && protocol == 6
                && doff >= 5;
            if plain {
                prop_assert!(fast.is_some(), "a plain IPv4/TCP packet took the slow path");
            }
        }
    }
}
