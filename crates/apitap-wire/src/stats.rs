//! Decode counters: every frame is counted once, as TCP or under one skip reason.

use crate::defrag::DefragStats;

/// Decode counters. Every frame is counted in `packets` and in exactly one of `tcp` or a
/// skip/drop reason (see [`DecodeStats::drops`]). A fragment that completes an IP datagram
/// is counted by what the reassembled datagram turned out to be; the other fragments are
/// counted in `ip_fragments` (held for reassembly or dropped by it, see `defrag`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Frames seen by [`crate::decode::decode_frame`].
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
    /// Frames nested in more than [`crate::decap::MAX_TUNNEL_DEPTH`] tunnels.
    pub encap_too_deep: u64,
    /// IP fragment reassembly counters (see [`crate::defrag`]).
    pub defrag: DefragStats,
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

    /// Counts a frame that [`crate::decode::decode_frame`] returned as [`crate::Decoded::Fragment`] and that did
    /// not complete a datagram (held for reassembly, dropped by it, or reassembly off).
    pub fn count_fragment(&mut self) {
        self.ip_fragments = self.ip_fragments.saturating_add(1);
    }

    pub(crate) fn count(&mut self, skip: Skip) {
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
pub(crate) enum Skip {
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
