//! Tunnels followed to the packet inside: VXLAN, GENEVE, GRE (with ERSPAN type II and
//! III). Each one entered counts against [`crate::decap::MAX_TUNNEL_DEPTH`].

use crate::decap::Decap;
use crate::link::{ether_payload, IpStart, ETH_IPV4, ETH_IPV6, ETH_MPLS_MC, ETH_MPLS_UC};
use crate::stats::Skip;
use apitap_core::TunnelKind;

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
pub(crate) fn vxlan(data: &[u8], at: usize, decap: &mut Decap) -> Result<IpStart, Skip> {
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
pub(crate) fn geneve(data: &[u8], at: usize, decap: &mut Decap) -> Result<IpStart, Skip> {
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
pub(crate) fn gre(data: &[u8], at: usize, decap: &mut Decap) -> Result<IpStart, Skip> {
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
