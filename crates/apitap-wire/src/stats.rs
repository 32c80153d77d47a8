//! Decode counters: every frame is counted once, as TCP or under one skip reason.

use crate::defrag::DefragStats;
use apitap_core::counters::ByName;
use apitap_core::TunnelKind;

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
        /// The tunnel skips again, by the kind of tunnel whose header failed.
        pub tunnels: TunnelSkips,
    }
}

/// Frames counted per tunnel kind.
pub type ByTunnel = ByName<TunnelKind, { TunnelKind::ALL.len() }>;

apitap_core::counters! {
    /// `tunnel_truncated`, `tunnel_malformed` and `tunnel_unsupported` by tunnel kind (each
    /// frame is also counted under its [`Skip`] reason).
    pub struct TunnelSkips {
        /// Capture ends inside the tunnel header.
        pub truncated: ByTunnel,
        /// Invalid tunnel header.
        pub malformed: ByTunnel,
        /// Valid header, payload or variant not decoded.
        pub unsupported: ByTunnel,
    }
}

apitap_core::named_enum! {
    /// Why a frame yields no TCP segment.
    pub enum Skip {
    /// UDP datagrams (not analysed), tunnel signalling included (GTP-U echo, error
    /// indication and end marker messages).
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
    /// Frames whose capture ends inside a tunnel header (or the Ethernet header it
    /// carries); also counted by kind in [`DecodeStats::tunnels`].
    TunnelTruncated = "tunnel_truncated",
    /// Frames with an invalid tunnel header: GRE reserved bits set, VXLAN without the I
    /// flag, GENEVE or VXLAN-GPE version other than 0, ERSPAN version that does not match
    /// its type, GTP version other than 1 or a GTP-U extension header of length 0, a
    /// Teredo payload that is not IPv6.
    TunnelMalformed = "tunnel_malformed",
    /// Tunnels not decoded: GRE version 1 (PPTP) or with routing; payload protocols other
    /// than IPv4, IPv6, MPLS, Ethernet and ERSPAN (NSH in VXLAN-GPE, for one); ERSPAN III
    /// frame types other than Ethernet and IP; GTP' (GTP with PT 0).
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

    pub(crate) fn count(&mut self, skip: Skip, tunnel: Option<TunnelKind>) {
        self.skipped.count(skip);
        let by_kind = match skip {
            Skip::TunnelTruncated => &mut self.tunnels.truncated,
            Skip::TunnelMalformed => &mut self.tunnels.malformed,
            Skip::TunnelUnsupported => &mut self.tunnels.unsupported,
            _ => return,
        };
        if let Some(kind) = tunnel {
            by_kind.count(kind);
        }
    }
}
