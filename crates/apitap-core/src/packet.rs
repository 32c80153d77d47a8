//! The decoded packet record ("decode once"): what the capture/decode stage hands to flow
//! workers. Later stages never re-parse link, IP or TCP headers.

use crate::flow::{FlowKey, Side};
use crate::time::PacketRef;

/// TCP flag bits as on the wire (low byte of the flags field).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN bit.
    pub const FIN: u8 = 0x01;
    /// SYN bit.
    pub const SYN: u8 = 0x02;
    /// RST bit.
    pub const RST: u8 = 0x04;
    /// PSH bit.
    pub const PSH: u8 = 0x08;
    /// ACK bit.
    pub const ACK: u8 = 0x10;

    /// FIN set.
    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    /// SYN set.
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    /// RST set.
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    /// ACK set.
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
}

crate::named_enum! {
    /// A tunnel the packet arrived in (decapsulated by the decoder); its name is written in
    /// `apitap.tunnel.type`.
    pub enum TunnelKind {
        /// GRE (RFC 2784/2890) carrying IPv4, IPv6, MPLS or transparent Ethernet (0x6558).
        Gre = "gre",
        /// GRE in UDP (RFC 8086, UDP port 4754).
        GreUdp = "gre_udp",
        /// ERSPAN type I (GRE protocol 0x88be without a sequence number, no ERSPAN header).
        ErspanI = "erspan_i",
        /// ERSPAN type II (GRE protocol 0x88be).
        ErspanII = "erspan_ii",
        /// ERSPAN type III (GRE protocol 0x22eb), carrying Ethernet or IP.
        ErspanIII = "erspan_iii",
        /// VXLAN (RFC 7348, UDP port 4789).
        Vxlan = "vxlan",
        /// VXLAN-GPE (generic protocol extension, UDP port 4790): IPv4, IPv6, Ethernet or
        /// MPLS inside.
        VxlanGpe = "vxlan_gpe",
        /// GENEVE (RFC 8926, UDP port 6081).
        Geneve = "geneve",
        /// GTP-U (3GPP TS 29.281, GTPv1 user plane, UDP port 2152): IPv4/IPv6 inside.
        GtpU = "gtpu",
        /// Teredo (RFC 4380, IPv6 in UDP; port 3544, or found by its shape on any port).
        Teredo = "teredo",
        /// IPv4 in IP (IP protocol 4).
        IpIp = "ipip",
        /// IPv6 in IP (IP protocol 41, e.g. 6in4).
        Ip6Ip = "ip6ip",
    }
}

/// The outermost tunnel of a packet: its kind and its identifier (VXLAN/GENEVE VNI, GRE
/// key, ERSPAN session id, GTP-U tunnel endpoint id) when the header has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tunnel {
    /// Encapsulation.
    pub kind: TunnelKind,
    /// VNI, GRE key, ERSPAN session id or GTP-U TEID.
    pub id: Option<u32>,
}

/// Where a packet was seen: the outermost VLAN id and the outermost tunnel. Small and
/// `Copy`, so it travels with every packet without allocating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Encap {
    /// VLAN id (12 bits) of the outermost 802.1Q/802.1ad tag.
    pub vlan: Option<u16>,
    /// The outermost tunnel.
    pub tunnel: Option<Tunnel>,
}

/// One decoded TCP segment. Its payload lives in the owning [`PacketBatch`]'s arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketMeta {
    /// Global index and capture time.
    pub at: PacketRef,
    /// Canonical flow key (inner 5-tuple).
    pub key: FlowKey,
    /// Which endpoint of `key` sent this segment.
    pub from: Side,
    /// TCP sequence number.
    pub seq: u32,
    /// TCP acknowledgement number (meaningful when the ACK flag is set).
    pub ack: u32,
    /// TCP flags.
    pub flags: TcpFlags,
    /// Advertised window (unscaled).
    pub window: u16,
    /// Offset of the TCP payload in the batch arena.
    pub payload_offset: u32,
    /// TCP payload length as captured (may be less than on the wire if snaplen cut it).
    pub payload_len: u32,
    /// TCP payload length the IP header claims; larger than `payload_len` when truncated.
    pub payload_wire_len: u32,
    /// Outermost VLAN id and tunnel the segment arrived in.
    pub encap: Encap,
}

/// A batch of packets for one worker: records plus one shared payload arena, reused
/// between batches so the hot path does not allocate per packet.
#[derive(Debug, Default)]
pub struct PacketBatch {
    /// Packet records in read order.
    pub packets: Vec<PacketMeta>,
    /// Payload bytes of all packets, back to back.
    pub arena: Vec<u8>,
    /// Newest packet the reader had read when the batch was sent: every packet of this
    /// worker up to it is in this batch or an earlier one.
    pub clock: PacketRef,
    /// `clock` is a tick: a point fixed by the global packet count (the same for any worker
    /// count) where workers run their timeouts.
    pub tick: bool,
}

impl PacketBatch {
    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.packets.clear();
        self.arena.clear();
        self.tick = false;
    }

    /// Appends a packet whose payload is `payload`; sets the record's offset and length.
    pub fn push(&mut self, mut meta: PacketMeta, payload: &[u8]) {
        meta.payload_offset = u32::try_from(self.arena.len()).unwrap_or(u32::MAX);
        meta.payload_len = u32::try_from(payload.len()).unwrap_or(0);
        self.arena.extend_from_slice(payload);
        self.packets.push(meta);
    }

    /// The payload of `meta` (empty if the record does not belong to this batch).
    pub fn payload(&self, meta: &PacketMeta) -> &[u8] {
        let start = meta.payload_offset as usize;
        let end = start.saturating_add(meta.payload_len as usize);
        self.arena.get(start..end).unwrap_or(&[])
    }
}
