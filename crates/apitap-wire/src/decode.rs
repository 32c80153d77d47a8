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
//! ERSPAN type I, II and III (over GRE), IPv4-in-IP (protocol 4), IPv6-in-IP (protocol 41)
//! and, on the UDP ports [`UdpTunnels`] names, VXLAN (4789), VXLAN-GPE (4790), GENEVE
//! (6081), GTP-U (2152), Teredo (3544, and found by its shape on other ports) and GRE in
//! UDP (4754), at most [`MAX_TUNNEL_DEPTH`] deep. The outermost VLAN id (outside any
//! tunnel, or in an ERSPAN header) and the outermost tunnel (kind and VNI, key, session id
//! or TEID) travel with the packet in [`PacketMeta::encap`].
//!
//! IP fragments are handed back by [`decode_frame`] for reassembly (see [`crate::defrag`]);
//! the reassembled datagram goes through [`decode_reassembled`].
//!
//! Nothing here allocates; every frame is counted exactly once, either in
//! [`DecodeStats::tcp`] or under one skip/drop reason.

use crate::decap::Decap;
use crate::link::{link_layer, IpStart};
use crate::stats::{DecodeStats, Skip};
use crate::tunnel::{gre, teredo_shape, udp_tunnel};
use apitap_core::{Endpoint, FlowKey, PacketMeta, PacketRef, TcpFlags, TunnelKind};
use etherparse::err::packet::SliceError;
use etherparse::err::{Layer, LenError};
use etherparse::{IpNumber, LaxNetSlice, LaxSlicedPacket, LenSource, TransportSlice};
use std::net::IpAddr;

pub use crate::decap::MAX_TUNNEL_DEPTH;
pub use crate::link::LinkType;
pub use crate::tunnel::UdpTunnels;

/// The IANA UDP ports of the tunnels [`UdpTunnels`] decodes by default.
pub mod tunnel_ports {
    pub use crate::tunnel::{
        GENEVE_PORT as GENEVE, GRE_UDP_PORT as GRE_UDP, GTPU_PORT as GTPU, TEREDO_PORT as TEREDO,
        VXLAN_GPE_PORT as VXLAN_GPE, VXLAN_PORT as VXLAN,
    };
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

/// Why a frame yields no segment, and the tunnel whose header was read last (for the
/// per-kind tunnel counters).
struct Reject {
    skip: Skip,
    tunnel: Option<TunnelKind>,
}

impl From<Skip> for Reject {
    fn from(skip: Skip) -> Self {
        Reject { skip, tunnel: None }
    }
}

/// Decodes one captured frame of link type `link` into a TCP record, following UDP
/// tunnels on the ports `tunnels` names, or counts in `stats` why not (and returns
/// `None`). IP fragments are counted in `ip_fragments` (this entry point does not
/// reassemble; see [`decode_frame`]).
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
    tunnels: &UdpTunnels,
    stats: &mut DecodeStats,
) -> Option<PacketMeta> {
    match decode_frame(link, data, at, tunnels, stats) {
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
    tunnels: &UdpTunnels,
    stats: &mut DecodeStats,
) -> Decoded {
    stats.packets = stats.packets.saturating_add(1);
    stats.bytes = stats.bytes.saturating_add(data.len() as u64);
    let mut decap = Decap::default();
    let found = match link_layer(link, data, &mut decap) {
        Ok(start) => decode_ip(data, start, decap, at, tunnels),
        Err(skip) => Err(skip.into()),
    };
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
    tunnels: &UdpTunnels,
    stats: &mut DecodeStats,
) -> Decoded {
    let start = IpStart {
        offset: 0,
        version: None,
    };
    outcome(decode_ip(data, start, decap, at, tunnels), stats)
}

fn outcome(found: Result<Found, Reject>, stats: &mut DecodeStats) -> Decoded {
    match found {
        Ok(Found::Tcp(meta)) => {
            stats.tcp = stats.tcp.saturating_add(1);
            Decoded::Tcp(meta)
        }
        Ok(Found::Fragment(f)) => Decoded::Fragment(f),
        Err(Reject { skip, tunnel }) => {
            stats.count(skip, tunnel);
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
fn decode_ip(
    data: &[u8],
    start: IpStart,
    decap: Decap,
    at: PacketRef,
    tunnels: &UdpTunnels,
) -> Result<Found, Reject> {
    if start.version.is_none_or(|v| v == 4) {
        if let Some(meta) = plain_ipv4_tcp(data, start.offset, &decap, at) {
            return Ok(Found::Tcp(meta));
        }
    }
    let mut decap = decap;
    decode_ip_general(data, start, &mut decap, at, tunnels).map_err(|skip| Reject {
        skip,
        tunnel: decap.reading,
    })
}

/// [`decode_ip`] for any packet: every IP version, fragment, tunnel and error.
fn decode_ip_general(
    data: &[u8],
    mut start: IpStart,
    decap: &mut Decap,
    at: PacketRef,
    tunnels: &UdpTunnels,
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
            // Which tunnel header was read last is no part of the datagram's identity.
            return Ok(Found::Fragment(Fragment {
                ip_offset: start.offset,
                decap: Decap {
                    reading: None,
                    ..*decap
                },
            }));
        }

        let tcp = match &sliced.transport {
            Some(TransportSlice::Tcp(tcp)) => tcp,
            Some(TransportSlice::Udp(udp)) => {
                let at_payload = offset_in(data, udp.payload())?;
                let kind = match tunnels.by_port(udp.destination_port(), udp.source_port()) {
                    Some(kind) => kind,
                    None if tunnels.teredo_detect() && teredo_shape(udp.payload()) => {
                        TunnelKind::Teredo
                    }
                    None => return Err(Skip::Udp),
                };
                start = udp_tunnel(kind, data, at_payload, decap)?;
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
                        _ => gre(data, at_payload, decap, TunnelKind::Gre)?,
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
            let general = decode_ip_general(
                &data,
                start,
                &mut Decap::default(),
                at,
                &UdpTunnels::default(),
            );
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
