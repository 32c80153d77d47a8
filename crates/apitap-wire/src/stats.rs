//! Decode counters: every frame is counted once, as TCP or under one skip reason.

use crate::defrag::DefragStats;
use apitap_core::Merge;

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

macro_rules! skips {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, )*) => {
        /// Why a frame yields no TCP segment.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Skip {
            $( $(#[$doc])* $variant, )*
        }

        impl Skip {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Skip] = &[$(Skip::$variant,)*];

            /// Stable snake_case name, as in the summary and the metrics' `reason` label.
            pub fn name(self) -> &'static str {
                match self {
                    $( Skip::$variant => $name, )*
                }
            }
        }
    };
}

skips! {
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
}

/// Frames skipped, one count per [`Skip`] reason; serialised as a map by reason name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skipped([u64; Skip::ALL.len()]);

impl Skipped {
    /// Frames skipped for `reason`.
    pub fn get(&self, reason: Skip) -> u64 {
        self.0.get(reason as usize).copied().unwrap_or(0)
    }

    /// Every reason and its count, zeros included, in [`Skip::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Skip::ALL.iter().map(|&r| (r.name(), self.get(r)))
    }

    /// Frames skipped for any reason.
    pub fn total(&self) -> u64 {
        self.0.iter().fold(0, |a, &n| a.saturating_add(n))
    }

    pub(crate) fn count(&mut self, reason: Skip) {
        if let Some(c) = self.0.get_mut(reason as usize) {
            *c = c.saturating_add(1);
        }
    }
}

impl Merge for Skipped {
    fn merge(&mut self, other: &Skipped) {
        self.0.merge(&other.0);
    }
}

impl serde::Serialize for Skipped {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

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
