//! Tunnels followed to the packet inside: GRE (with ERSPAN types I, II and III), and over
//! UDP: VXLAN, VXLAN-GPE, GENEVE, GTP-U, Teredo and GRE-in-UDP, on the ports
//! [`UdpTunnels`] names. Each one entered counts against [`crate::decap::MAX_TUNNEL_DEPTH`].

use crate::decap::Decap;
use crate::link::{ether_payload, IpStart, ETH_IPV4, ETH_IPV6, ETH_MPLS_MC, ETH_MPLS_UC};
use crate::stats::Skip;
use apitap_core::TunnelKind;

/// VXLAN destination port (RFC 7348).
pub const VXLAN_PORT: u16 = 4789;
/// VXLAN-GPE destination port.
pub const VXLAN_GPE_PORT: u16 = 4790;
/// GENEVE destination port (RFC 8926).
pub const GENEVE_PORT: u16 = 6081;
/// GTP-U port (3GPP TS 29.281).
pub const GTPU_PORT: u16 = 2152;
/// Teredo server port (RFC 4380).
pub const TEREDO_PORT: u16 = 3544;
/// GRE-in-UDP destination port (RFC 8086).
pub const GRE_UDP_PORT: u16 = 4754;

const GRE_TEB: u16 = 0x6558;
const GRE_ERSPAN_II: u16 = 0x88be;
const GRE_ERSPAN_III: u16 = 0x22eb;

/// Which UDP ports carry which tunnel. A datagram is matched by its destination port; by its
/// source port only for Teredo (a Teredo server answers from 3544; the other tunnels' senders
/// pick source ports freely, so an ordinary client port must not make a tunnel). A datagram
/// on no listed port is taken for Teredo when `teredo_detect` is on and it has Teredo's
/// shape (see [`teredo_shape`]), since Teredo clients talk to relays and peers on any port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpTunnels {
    ports: Vec<(u16, TunnelKind)>,
    teredo_detect: bool,
}

impl Default for UdpTunnels {
    /// The IANA ports, Teredo detection on.
    fn default() -> Self {
        UdpTunnels {
            ports: vec![
                (VXLAN_PORT, TunnelKind::Vxlan),
                (VXLAN_GPE_PORT, TunnelKind::VxlanGpe),
                (GENEVE_PORT, TunnelKind::Geneve),
                (GTPU_PORT, TunnelKind::GtpU),
                (TEREDO_PORT, TunnelKind::Teredo),
                (GRE_UDP_PORT, TunnelKind::GreUdp),
            ],
            teredo_detect: true,
        }
    }
}

impl UdpTunnels {
    /// Tunnels on the given ports (`kind`, ports) and Teredo detection as given. A kind that
    /// is not a UDP tunnel, or a port given twice, is an error naming it.
    pub fn new<'a>(
        ports: impl IntoIterator<Item = (TunnelKind, &'a [u16])>,
        teredo_detect: bool,
    ) -> Result<UdpTunnels, String> {
        let mut out: Vec<(u16, TunnelKind)> = Vec::new();
        for (kind, list) in ports {
            if !over_udp(kind) {
                return Err(format!("{} is not a UDP tunnel", kind.name()));
            }
            for &port in list {
                if let Some((_, other)) = out.iter().find(|(p, _)| *p == port) {
                    return Err(if *other == kind {
                        format!("UDP port {port} is listed twice for {}", kind.name())
                    } else {
                        format!(
                            "UDP port {port} is given to both {} and {}",
                            other.name(),
                            kind.name()
                        )
                    });
                }
                out.push((port, kind));
            }
        }
        Ok(UdpTunnels {
            ports: out,
            teredo_detect,
        })
    }

    /// The tunnel a UDP datagram between these ports carries, if any.
    #[inline]
    pub(crate) fn by_port(&self, dst: u16, src: u16) -> Option<TunnelKind> {
        let find = |port| self.ports.iter().find(|(p, _)| *p == port).map(|e| e.1);
        find(dst).or_else(|| find(src).filter(|k| *k == TunnelKind::Teredo))
    }

    /// Whether a datagram on no tunnel port is tried as Teredo.
    pub(crate) fn teredo_detect(&self) -> bool {
        self.teredo_detect
    }
}

/// Whether [`UdpTunnels`] can place `kind` on a port.
fn over_udp(kind: TunnelKind) -> bool {
    matches!(
        kind,
        TunnelKind::Vxlan
            | TunnelKind::VxlanGpe
            | TunnelKind::Geneve
            | TunnelKind::GtpU
            | TunnelKind::Teredo
            | TunnelKind::GreUdp
    )
}

/// Decodes the UDP payload at `at` as a `kind` tunnel.
pub(crate) fn udp_tunnel(
    kind: TunnelKind,
    data: &[u8],
    at: usize,
    decap: &mut Decap,
) -> Result<IpStart, Skip> {
    match kind {
        TunnelKind::Vxlan => vxlan(data, at, decap),
        TunnelKind::VxlanGpe => vxlan_gpe(data, at, decap),
        TunnelKind::Geneve => geneve(data, at, decap),
        TunnelKind::GtpU => gtpu(data, at, decap),
        TunnelKind::Teredo => teredo(data, at, decap),
        _ => gre(data, at, decap, TunnelKind::GreUdp),
    }
}

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

/// An IP packet carried in a tunnel at `at`, its version from its first nibble.
fn inner_ip(data: &[u8], at: usize) -> Result<IpStart, Skip> {
    let first = data.get(at).ok_or(Skip::TunnelTruncated)?;
    match first >> 4 {
        v @ (4 | 6) => Ok(IpStart {
            offset: at,
            version: Some(v),
        }),
        _ => Err(Skip::TunnelUnsupported),
    }
}

/// VXLAN (RFC 7348): flags (I = 0x08 must be set), 3 reserved bytes, 24-bit VNI, 1
/// reserved byte; then an Ethernet frame. Reserved bits are not checked (senders set them).
pub(crate) fn vxlan(data: &[u8], at: usize, decap: &mut Decap) -> Result<IpStart, Skip> {
    decap.reading(TunnelKind::Vxlan);
    let h = tunnel_bytes::<8>(data, at)?;
    if h[0] & 0x08 == 0 {
        return Err(Skip::TunnelMalformed);
    }
    let vni = u32::from_be_bytes([0, h[4], h[5], h[6]]);
    decap.enter(TunnelKind::Vxlan, Some(vni))?;
    inner_ethernet(data, at.saturating_add(8), decap)
}

/// VXLAN-GPE (draft-ietf-nvo3-vxlan-gpe): flags (2 reserved bits, version 0, I, P, B, O),
/// 2 reserved bytes, next protocol (1 IPv4, 2 IPv6, 3 Ethernet, 4 NSH, 5 MPLS), 24-bit
/// VNI, 1 reserved byte. Without P the payload is Ethernet, as in VXLAN.
fn vxlan_gpe(data: &[u8], at: usize, decap: &mut Decap) -> Result<IpStart, Skip> {
    decap.reading(TunnelKind::VxlanGpe);
    let h = tunnel_bytes::<8>(data, at)?;
    let (flags, next) = (h[0], h[3]);
    if (flags >> 4) & 0x03 != 0 || flags & 0x08 == 0 {
        return Err(Skip::TunnelMalformed);
    }
    let vni = u32::from_be_bytes([0, h[4], h[5], h[6]]);
    let inner = at.saturating_add(8);
    let next = if flags & 0x04 == 0 { 3 } else { next };
    decap.enter(TunnelKind::VxlanGpe, Some(vni))?;
    match next {
        1 => ether_payload(data, ETH_IPV4, inner, decap),
        2 => ether_payload(data, ETH_IPV6, inner, decap),
        3 => inner_ethernet(data, inner, decap),
        5 => ether_payload(data, ETH_MPLS_UC, inner, decap),
        _ => Err(Skip::TunnelUnsupported),
    }
}

/// GENEVE (RFC 8926): version (2 bits, 0) and option length (6 bits, in 4-byte words),
/// flags, protocol type, 24-bit VNI, reserved; then the options and the payload
/// (Ethernet for 0x6558; IPv4 and IPv6 are decoded too).
pub(crate) fn geneve(data: &[u8], at: usize, decap: &mut Decap) -> Result<IpStart, Skip> {
    decap.reading(TunnelKind::Geneve);
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

/// GTP-U message type of a user packet (G-PDU).
const GTP_G_PDU: u8 = 0xff;

/// GTP-U (GTPv1, 3GPP TS 29.281): flags (version 1, PT 1, E, S, PN), message type, length,
/// TEID; with any of E, S, PN four more bytes (sequence number, N-PDU number, next
/// extension header type), then extension headers (length in 4-byte words, content, next
/// type) until type 0. A G-PDU carries an IPv4 or IPv6 packet; the other messages (echo,
/// error indication, end marker) carry none and count as UDP.
fn gtpu(data: &[u8], at: usize, decap: &mut Decap) -> Result<IpStart, Skip> {
    decap.reading(TunnelKind::GtpU);
    let h = tunnel_bytes::<8>(data, at)?;
    let (flags, message) = (h[0], h[1]);
    if flags >> 5 != 1 {
        return Err(Skip::TunnelMalformed);
    }
    if flags & 0x10 == 0 {
        // GTP' (charging), not user plane.
        return Err(Skip::TunnelUnsupported);
    }
    let teid = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    let mut inner = at.saturating_add(8);
    if flags & 0x07 != 0 {
        let optional = tunnel_bytes::<4>(data, inner)?;
        // The next extension type counts only with E set.
        let mut next = if flags & 0x04 != 0 { optional[3] } else { 0 };
        inner = inner.saturating_add(4);
        // Each extension header is at least 4 bytes, so the walk ends within the frame.
        while next != 0 {
            let words = *data.get(inner).ok_or(Skip::TunnelTruncated)?;
            if words == 0 {
                return Err(Skip::TunnelMalformed);
            }
            let end = inner.saturating_add(usize::from(words) * 4);
            next = *data.get(end - 1).ok_or(Skip::TunnelTruncated)?;
            inner = end;
        }
    }
    if message != GTP_G_PDU {
        return Err(Skip::Udp);
    }
    decap.enter(TunnelKind::GtpU, Some(teid))?;
    inner_ip(data, inner)
}

/// Teredo (RFC 4380 §5.1.1): an IPv6 packet, after an optional authentication indicator
/// (0x0001, client id length, authentication value length, client id, value, 8-byte
/// nonce, confirmation byte) and an optional origin indicator (0x0000, port, IPv4
/// address: 8 bytes).
fn teredo(data: &[u8], at: usize, decap: &mut Decap) -> Result<IpStart, Skip> {
    decap.reading(TunnelKind::Teredo);
    let inner = teredo_ipv6_at(data, at)?;
    decap.enter(TunnelKind::Teredo, None)?;
    Ok(IpStart {
        offset: inner,
        version: Some(6),
    })
}

/// Where the IPv6 packet of a Teredo payload at `at` starts, past its indicators: tunnel
/// truncation when the capture ends first, malformed when what follows is not IPv6.
fn teredo_ipv6_at(data: &[u8], mut at: usize) -> Result<usize, Skip> {
    let pair = |at: usize| {
        data.get(at..)
            .and_then(|d| d.first_chunk::<2>())
            .copied()
            .ok_or(Skip::TunnelTruncated)
    };
    if pair(at)? == [0x00, 0x01] {
        let [id_len, auth_len] = pair(at.saturating_add(2))?;
        at = at.saturating_add(4 + usize::from(id_len) + usize::from(auth_len) + 9);
    }
    if pair(at)? == [0x00, 0x00] {
        at = at.saturating_add(8);
    }
    match data.get(at) {
        None => Err(Skip::TunnelTruncated),
        Some(b) if b >> 4 == 6 => Ok(at),
        Some(_) => Err(Skip::TunnelMalformed),
    }
}

/// Whether a UDP payload (on no tunnel port) looks like Teredo: exactly one IPv6 packet,
/// its payload length filling the datagram to the byte, with a Teredo address
/// (2001:0::/32) or a link-local one (qualification bubbles) on one side.
pub(crate) fn teredo_shape(payload: &[u8]) -> bool {
    let Some(ip) = teredo_ipv6_at(payload, 0)
        .ok()
        .and_then(|i| payload.get(i..))
    else {
        return false;
    };
    let Some(h) = ip.first_chunk::<40>() else {
        return false;
    };
    let payload_len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let teredo_or_link_local = |a: &[u8]| a[..4] == [0x20, 0x01, 0, 0] || a[..2] == [0xfe, 0x80];
    payload_len + 40 == ip.len()
        && (teredo_or_link_local(&h[8..24]) || teredo_or_link_local(&h[24..40]))
}

/// GRE (RFC 2784, with the key and sequence number of RFC 2890): flags and version, the
/// protocol, then optional checksum (+ reserved), key and sequence number. Carries IPv4,
/// IPv6, MPLS, Ethernet (0x6558) or ERSPAN type I/II/III. `kind` is [`TunnelKind::Gre`],
/// or [`TunnelKind::GreUdp`] for GRE in UDP.
pub(crate) fn gre(
    data: &[u8],
    at: usize,
    decap: &mut Decap,
    kind: TunnelKind,
) -> Result<IpStart, Skip> {
    decap.reading(kind);
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
        GRE_ERSPAN_II if !has_seq => {
            // Type I has no sequence number and no ERSPAN header: Ethernet follows.
            decap.reading(TunnelKind::ErspanI);
            decap.enter(TunnelKind::ErspanI, None)?;
            inner_ethernet(data, inner, decap)
        }
        GRE_ERSPAN_II => {
            // Ver (4 bits, 1), VLAN (12), CoS (3), En (2), T (1), session id (10),
            // reserved (12), index (20).
            decap.reading(TunnelKind::ErspanII);
            let e = tunnel_bytes::<8>(data, inner)?;
            if e[0] >> 4 != 1 {
                return Err(Skip::TunnelMalformed);
            }
            erspan_vlan(e, decap);
            let session = u16::from_be_bytes([e[2], e[3]]) & 0x03ff;
            decap.enter(TunnelKind::ErspanII, Some(u32::from(session)))?;
            inner_ethernet(data, inner.saturating_add(8), decap)
        }
        GRE_ERSPAN_III => {
            // Ver (4 bits, 2), VLAN (12), CoS (3), BSO (2), T (1), session id (10),
            // timestamp (32), SGT (16), P (1), FT (5), hardware id (6), D (1), Gra (2),
            // O (1); with O set an 8-byte platform-specific subheader follows.
            decap.reading(TunnelKind::ErspanIII);
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
            if frame_type != 0 && frame_type != 2 {
                // 0 is Ethernet, 2 IP; the others are not decoded.
                return Err(Skip::TunnelUnsupported);
            }
            erspan_vlan(&[e[0], e[1]], decap);
            decap.enter(TunnelKind::ErspanIII, Some(u32::from(session)))?;
            if frame_type == 0 {
                inner_ethernet(data, frame, decap)
            } else {
                inner_ip(data, frame)
            }
        }
        GRE_TEB => {
            decap.enter(kind, key)?;
            inner_ethernet(data, inner, decap)
        }
        ETH_IPV4 | ETH_IPV6 | ETH_MPLS_UC | ETH_MPLS_MC => {
            decap.enter(kind, key)?;
            ether_payload(data, protocol, inner, decap)
        }
        _ => Err(Skip::TunnelUnsupported),
    }
}

/// The VLAN field of an ERSPAN II/III header (its first two bytes: version, VLAN): the
/// mirrored frame's VLAN, recorded like an Ethernet tag. The outermost one wins, so a tag on
/// the mirror's own transport frame comes first; 0 is none.
fn erspan_vlan(header: &[u8], decap: &mut Decap) {
    if let [hi, lo, ..] = *header {
        let vid = u16::from_be_bytes([hi, lo]) & 0x0fff;
        if decap.depth == 0 && decap.encap.vlan.is_none() && vid != 0 && vid != 0x0fff {
            decap.encap.vlan = Some(vid);
        }
    }
}
