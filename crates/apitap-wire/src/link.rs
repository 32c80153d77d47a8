//! The link layer: Ethernet with VLAN/QinQ tags, LLC/SNAP, MPLS and PPPoE; Linux cooked
//! v1/v2; BSD null/loop; raw IP; 802.11 data frames, bare or behind radiotap; Linux NFLOG;
//! Cisco HDLC. A few fixed offsets, read with checked slicing, each ending where the IP
//! header starts.

use crate::decap::Decap;
use crate::stats::Skip;

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
    /// IEEE 802.11 (LINKTYPE_IEEE802_11 105): data frames (QoS too) with LLC/SNAP;
    /// management, control and null frames carry no IP; protected frames are counted.
    Ieee80211,
    /// 802.11 behind a radiotap header (LINKTYPE_IEEE802_11_RADIOTAP 127): wireless
    /// monitoring captures.
    Radiotap,
    /// Linux netfilter log (LINKTYPE_NFLOG 239): a 4-byte header, then type-length-value
    /// attributes in the capturing host's byte order; the packet is the payload attribute.
    Nflog,
    /// Cisco HDLC (LINKTYPE_C_HDLC 104): address, control, then an ether type.
    CiscoHdlc,
}

impl LinkType {
    /// Every link type decoded.
    pub const ALL: [LinkType; 12] = [
        LinkType::Ethernet,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::Raw,
        LinkType::Ipv4,
        LinkType::Ipv6,
        LinkType::Null,
        LinkType::Loop,
        LinkType::Ieee80211,
        LinkType::Radiotap,
        LinkType::Nflog,
        LinkType::CiscoHdlc,
    ];

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
            105 => LinkType::Ieee80211,
            127 => LinkType::Radiotap,
            239 => LinkType::Nflog,
            104 => LinkType::CiscoHdlc,
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
            LinkType::Ieee80211 => "ieee802_11",
            LinkType::Radiotap => "ieee802_11_radiotap",
            LinkType::Nflog => "nflog",
            LinkType::CiscoHdlc => "c_hdlc",
        }
    }
}

/// Where the IP header starts in the frame, and the IP version the link layer announced.
pub(crate) struct IpStart {
    pub(crate) offset: usize,
    pub(crate) version: Option<u8>,
}

/// Encapsulation layers (VLAN tags, MPLS labels, LLC/SNAP, PPPoE) followed per frame
/// before giving up as malformed.
const MAX_LINK_LAYERS: usize = 8;

pub(crate) const ETH_IPV4: u16 = 0x0800;
pub(crate) const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;
const ETH_QINQ_OLD: u16 = 0x9100;
pub(crate) const ETH_MPLS_UC: u16 = 0x8847;
pub(crate) const ETH_MPLS_MC: u16 = 0x8848;
const ETH_PPPOE_SESSION: u16 = 0x8864;

pub(crate) fn be16(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..)?.first_chunk::<2>()?;
    Some(u16::from_be_bytes(*b))
}

/// Follows ether types from `offset` (the first byte after the ether type field) to the IP
/// header. The first VLAN id outside any tunnel is recorded in `decap`.
pub(crate) fn ether_payload(
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

/// An 802.11 frame at `at`: a data frame's header (three or four addresses, QoS control,
/// HT control), then LLC/SNAP and the ether type. A frame check sequence at the end does
/// not matter: the IP header's own length bounds what is read.
fn wlan(data: &[u8], at: usize, decap: &mut Decap) -> Result<IpStart, Skip> {
    let [fc0, fc1] = *data
        .get(at..)
        .and_then(|d| d.first_chunk::<2>())
        .ok_or(Skip::Truncated)?;
    let (kind, subtype) = ((fc0 >> 2) & 3, fc0 >> 4);
    // Data frames only; subtypes with bit 2 set are null data (no payload).
    if fc0 & 3 != 0 || kind != 2 || subtype & 4 != 0 {
        return Err(Skip::NonIp);
    }
    if fc1 & 0x40 != 0 {
        return Err(Skip::WlanProtected);
    }
    let mut len = 24;
    if fc1 & 3 == 3 {
        len += 6;
    }
    if subtype & 8 != 0 {
        // QoS control, and HT control when the Order bit is set.
        len += 2;
        if fc1 & 0x80 != 0 {
            len += 4;
        }
    }
    let llc = at.checked_add(len).ok_or(Skip::Malformed)?;
    match data.get(llc..llc + 6) {
        None => Err(Skip::Truncated),
        Some([0xaa, 0xaa, 0x03, 0, 0, 0] | [0xaa, 0xaa, 0x03, 0, 0, 0xf8]) => {
            let ether_type = be16(data, llc + 6).ok_or(Skip::Truncated)?;
            ether_payload(data, ether_type, llc + 8, decap)
        }
        Some(_) => Err(Skip::NonIp),
    }
}

/// NFLOG attribute type of the logged packet (NFULA_PAYLOAD).
const NFULA_PAYLOAD: u16 = 9;

/// An NFLOG record: family (AF_INET 2, AF_INET6 10), version, resource id, then
/// attributes of length (header included) and type, each padded to 4 bytes. Length and type
/// are in the capturing host's byte order, which the file does not record: attribute types
/// are small numbers, so the order is the one that reads the first type as one.
fn nflog(data: &[u8]) -> Result<IpStart, Skip> {
    let [family, ..] = *data.first_chunk::<4>().ok_or(Skip::Truncated)?;
    let version = match family {
        2 => Some(4),
        10 => Some(6),
        _ => None,
    };
    let mut at = 4usize;
    let mut little_endian = None;
    while let Some(&[l0, l1, t0, t1]) = data.get(at..).and_then(|d| d.first_chunk::<4>()) {
        let le = *little_endian.get_or_insert_with(|| {
            // Bits 15 and 14 are netlink's nested and byte-order flags.
            (1..=0xff).contains(&(u16::from_le_bytes([t0, t1]) & 0x3fff))
        });
        let (len, kind) = if le {
            (u16::from_le_bytes([l0, l1]), u16::from_le_bytes([t0, t1]))
        } else {
            (u16::from_be_bytes([l0, l1]), u16::from_be_bytes([t0, t1]))
        };
        let len = usize::from(len);
        if len < 4 {
            return Err(Skip::Malformed);
        }
        if kind & 0x3fff == NFULA_PAYLOAD {
            // A packet the snap length cut still decodes as far as it was captured.
            if data.len() <= at + 4 {
                return Err(Skip::Truncated);
            }
            return Ok(IpStart {
                offset: at + 4,
                version,
            });
        }
        at = at.saturating_add(len.next_multiple_of(4));
    }
    if at < data.len() {
        return Err(Skip::Truncated);
    }
    // No packet attribute: a log record without the packet.
    Err(Skip::NonIp)
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
pub(crate) fn link_layer(link: LinkType, data: &[u8], decap: &mut Decap) -> Result<IpStart, Skip> {
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
        LinkType::Ieee80211 => wlan(data, 0, decap),
        LinkType::Radiotap => {
            // Version 0, pad, little-endian length of the whole radiotap header.
            let [version, _, lo, hi] = *data.first_chunk::<4>().ok_or(Skip::Truncated)?;
            if version != 0 {
                return Err(Skip::Malformed);
            }
            wlan(data, usize::from(u16::from_le_bytes([lo, hi])), decap)
        }
        LinkType::Nflog => nflog(data),
        LinkType::CiscoHdlc => {
            // Address (0x0f unicast, 0x8f broadcast), control 0, protocol.
            let ether_type = be16(data, 2).ok_or(Skip::Truncated)?;
            ether_payload(data, ether_type, 4, decap)
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
