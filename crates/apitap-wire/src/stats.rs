//! Decode counters: every frame is counted once, as TCP or under one skip reason.

use crate::defrag::DefragStats;
use apitap_core::counters::ByName;

apitap_core::counters! {
    /// Decode counters. Every frame is counted in `packets` and in exactly one of `tcp` or
    /// a skip reason (see [`DecodeStats::drops`]). A fragment that completes an IP datagram
    /// is counted by what the reassembled datagram turned out to be; the other fragments
    /// are counted as `ip_fragment` (held for reassembly or dropped by it, see `defrag`).
    pub struct DecodeStats {
        /// Frames seen by [`crate::decode::decode_frame`].
        pub packets: u64,
        /// Captured bytes of those frames (not the length on the wire).
        pub bytes: u64,
        /// TCP segments decoded and returned.
        pub tcp: u64,
        /// Frames that yield no TCP segment, by reason.
        pub skipped: Skipped,
        /// IP fragment reassembly counters (see [`crate::defrag`]).
        pub defrag: DefragStats,
    }
}

apitap_core::named_enum! {
    /// Why a frame yields no TCP segment.
    pub enum Skip {
    /// UDP datagrams (not analysed).
    Udp = "udp",
    /// Other IP transports: ICMP, ICMPv6, IGMP, ESP, ...
    OtherTransport = "other_transport",
    /// Frames that do not carry IPv4/IPv6: ARP, LLDP, STP, other ether types.
    NonIp = "non_ip",
    /// IPv4/IPv6 fragments (more-fragments set or a non-zero offset): held for reassembly,
    /// dropped by it, or (reassembly off) not reassembled.
    IpFragment = "ip_fragment",
    /// Frames captured too short for the headers they announce.
    Truncated = "truncated",
    /// Frames whose headers are invalid (bad IP header length or version, TCP data offset
    /// below 5, lengths that contradict each other, too many link-layer encapsulations).
    Malformed = "malformed",
    /// Frames whose capture ends inside a tunnel header (GRE, ERSPAN, VXLAN, GENEVE, or
    /// the Ethernet header they carry).
    TunnelTruncated = "tunnel_truncated",
    /// Frames with an invalid tunnel header: GRE reserved bits set, VXLAN without the I
    /// flag, GENEVE version other than 0, ERSPAN version that does not match its type.
    TunnelMalformed = "tunnel_malformed",
    /// Tunnels not decoded: GRE version 1 (PPTP) or with routing, GRE/GENEVE payload
    /// protocols other than IPv4, IPv6, MPLS, Ethernet and ERSPAN; ERSPAN III frame types
    /// other than Ethernet.
    TunnelUnsupported = "tunnel_unsupported",
    /// Frames nested in more than [`crate::decap::MAX_TUNNEL_DEPTH`] tunnels.
    TooDeep = "encap_too_deep",
    /// 802.11 data frames with the Protected flag (WEP/WPA encrypted): not decrypted.
    WlanProtected = "wlan_protected",
    }
}

/// Frames skipped, one count per [`Skip`] reason; serialised as a map by reason name.
pub type Skipped = ByName<Skip, { Skip::ALL.len() }>;

impl DecodeStats {
    /// Every skip reason by its stable name, zeros included, in a fixed order (see
    /// [`Skip::ALL`]). Their sum plus `tcp` equals `packets`.
    pub fn drops(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.skipped.iter()
    }

    /// Counts a frame that [`crate::decode::decode_frame`] returned as
    /// [`crate::Decoded::Fragment`] and that did not complete a datagram (held for
    /// reassembly, dropped by it, or reassembly off).
    pub fn count_fragment(&mut self) {
        self.skipped.count(Skip::IpFragment);
    }

    pub(crate) fn count(&mut self, skip: Skip) {
        self.skipped.count(skip);
    }
}
