//! Decoding per link type, skips and drops by reason, and no panic on any bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use apitap_core::Merge;
use apitap_core::{PacketMeta, PacketRef, Side, TcpFlags, Timestamp};
use apitap_wire::{decode, DecodeStats, LinkType, Skip, UdpTunnels};
use etherparse::{LinuxSllPacketType, PacketBuilder, VlanId};
use proptest::prelude::*;

const SRC: [u8; 4] = [10, 0, 0, 2];
const DST: [u8; 4] = [10, 0, 0, 1];
const SRC6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const DST6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

fn at() -> PacketRef {
    PacketRef {
        index: 7,
        ts: Timestamp(1_000),
    }
}

/// An IPv4/TCP packet (no link header) from 10.0.0.2:40000 to 10.0.0.1:80.
fn ip_tcp(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(SRC, DST, 64)
        .tcp(40000, 80, 1000, 1024)
        .ack(5)
        .psh()
        .write(&mut out, payload)
        .unwrap();
    out
}

/// An IPv6/TCP packet (no link header) from [2001:db8::2]:40000 to [2001:db8::1]:80.
fn ip6_tcp(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv6(SRC6, DST6, 64)
        .tcp(40000, 80, 7, 100)
        .write(&mut out, payload)
        .unwrap();
    out
}

fn eth(ip: &[u8], ether_type: [u8; 2]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&ether_type);
    f.extend_from_slice(ip);
    f
}

fn with_prefix(prefix: &[u8], ip: &[u8]) -> Vec<u8> {
    let mut f = prefix.to_vec();
    f.extend_from_slice(ip);
    f
}

/// The captured payload of `m` in `frame`.
fn payload<'a>(frame: &'a [u8], m: &PacketMeta) -> &'a [u8] {
    &frame[m.payload_offset as usize..][..m.payload_len as usize]
}

/// Decodes one frame that must be TCP.
fn tcp(link: LinkType, frame: &[u8]) -> PacketMeta {
    let mut stats = DecodeStats::default();
    let m = decode(link, frame, at(), &UdpTunnels::default(), &mut stats)
        .unwrap_or_else(|| panic!("{link:?} gave no TCP record: {stats:?}"));
    assert_eq!((stats.packets, stats.tcp), (1, 1));
    assert_eq!(stats.bytes, frame.len() as u64);
    m
}

/// Decodes one frame that must not be TCP; returns the only drop reason it was counted under.
fn dropped(link: LinkType, frame: &[u8]) -> &'static str {
    let mut stats = DecodeStats::default();
    let r = decode(link, frame, at(), &UdpTunnels::default(), &mut stats);
    assert!(r.is_none(), "{link:?}: {r:?}");
    assert_eq!((stats.packets, stats.tcp), (1, 0));
    let reasons: Vec<_> = stats.drops().filter(|(_, n)| *n > 0).collect();
    assert_eq!(reasons.len(), 1, "{stats:?}");
    assert_eq!(reasons[0].1, 1);
    reasons[0].0
}

#[test]
fn ethernet_ipv4_tcp_fills_every_field() {
    let frame = eth(&ip_tcp(b"GET / HTTP/1.1\r\n\r\n"), [0x08, 0x00]);
    let m = tcp(LinkType::Ethernet, &frame);
    assert_eq!(m.at, at());
    assert_eq!(m.key.proto, 6);
    assert_eq!(m.key.endpoint(m.from).to_string(), "10.0.0.2:40000");
    assert_eq!(m.key.endpoint(m.from.other()).to_string(), "10.0.0.1:80");
    assert_eq!(m.seq, 1000);
    assert_eq!(m.ack, 5);
    assert_eq!(m.window, 1024);
    assert_eq!(m.flags.0, TcpFlags::ACK | TcpFlags::PSH);
    assert_eq!(payload(&frame, &m), b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(m.payload_offset, 14 + 20 + 20);
    assert_eq!(m.payload_wire_len, m.payload_len);
}

#[test]
fn every_flag_bit_is_kept() {
    let mut ip = Vec::new();
    PacketBuilder::ipv4(SRC, DST, 64)
        .tcp(1, 2, 3, 4)
        .fin()
        .syn()
        .rst()
        .psh()
        .ack(9)
        .urg(1)
        .ece()
        .cwr()
        .ns()
        .write(&mut ip, b"")
        .unwrap();
    let m = tcp(LinkType::Raw, &ip);
    assert_eq!(m.flags.0, 0xff, "NS is not in the low byte");
    assert!(m.flags.fin() && m.flags.syn() && m.flags.rst() && m.flags.ack());
}

#[test]
fn both_directions_share_the_key_and_have_opposite_sides() {
    let a = eth(&ip_tcp(b"x"), [0x08, 0x00]);
    let mut b_ip = Vec::new();
    PacketBuilder::ipv4(DST, SRC, 64)
        .tcp(80, 40000, 1, 1024)
        .write(&mut b_ip, b"y")
        .unwrap();
    let b = eth(&b_ip, [0x08, 0x00]);
    let ma = tcp(LinkType::Ethernet, &a);
    let mb = tcp(LinkType::Ethernet, &b);
    assert_eq!(ma.key, mb.key);
    assert_eq!(ma.from, mb.from.other());
    // 10.0.0.1:80 is the lower endpoint.
    assert_eq!(ma.from, Side::Hi);
    assert_eq!(mb.from, Side::Lo);
}

#[test]
fn vlan_qinq_and_every_tag_type() {
    let ip = ip_tcp(b"abc");
    // Built with etherparse: one 802.1Q tag, and QinQ.
    let mut single = Vec::new();
    PacketBuilder::ethernet2([1; 6], [2; 6])
        .single_vlan(VlanId::try_new(42).unwrap())
        .ipv4(SRC, DST, 64)
        .tcp(40000, 80, 1, 1)
        .write(&mut single, b"abc")
        .unwrap();
    let mut double = Vec::new();
    PacketBuilder::ethernet2([1; 6], [2; 6])
        .double_vlan(VlanId::try_new(1).unwrap(), VlanId::try_new(2).unwrap())
        .ipv4(SRC, DST, 64)
        .tcp(40000, 80, 1, 1)
        .write(&mut double, b"abc")
        .unwrap();
    assert_eq!(&double[12..14], &[0x88, 0xa8], "etherparse writes 802.1ad");
    for (frame, tags) in [(single, 1), (double, 2)] {
        let m = tcp(LinkType::Ethernet, &frame);
        assert_eq!(payload(&frame, &m), b"abc");
        assert_eq!(m.payload_offset as usize, 14 + 4 * tags + 40);
    }
    // By hand: three tags, 0x9100 outside, then 0x8100, then 0x88a8.
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x91, 0x00, 0x00, 0x2a, 0x81, 0x00, 0x00, 0x2b]);
    f.extend_from_slice(&[0x88, 0xa8, 0x00, 0x2c, 0x08, 0x00]);
    f.extend_from_slice(&ip);
    let m = tcp(LinkType::Ethernet, &f);
    assert_eq!(m.payload_offset as usize, 14 + 12 + 40);
    // Nine tags are more than any real network stacks: malformed, not a loop.
    let mut f = vec![0u8; 12];
    for _ in 0..9 {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x01]);
    }
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    assert_eq!(dropped(LinkType::Ethernet, &f), "malformed");
    // A tag cut short.
    assert_eq!(
        dropped(
            LinkType::Ethernet,
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x81, 0, 0]
        ),
        "truncated"
    );
}

#[test]
fn llc_snap_mpls_and_pppoe() {
    let ip = ip_tcp(b"abc");
    // 802.3 length + LLC/SNAP with the ether type OUI.
    let mut snap = vec![0u8; 12];
    snap.extend_from_slice(&(8 + ip.len() as u16).to_be_bytes());
    snap.extend_from_slice(&[0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00]);
    snap.extend_from_slice(&ip);
    assert_eq!(payload(&snap, &tcp(LinkType::Ethernet, &snap)), b"abc");
    // Spanning tree (LLC 42 42 03) is not IP.
    let mut stp = vec![0u8; 12];
    stp.extend_from_slice(&[0, 38, 0x42, 0x42, 0x03, 0, 0, 0, 0, 0]);
    assert_eq!(dropped(LinkType::Ethernet, &stp), "non_ip");
    // MPLS, two labels, IPv4 after the bottom of stack.
    let mpls = eth(
        &with_prefix(&[0, 0x01, 0x00, 0x40, 0, 0x02, 0x01, 0x40], &ip),
        [0x88, 0x47],
    );
    assert_eq!(payload(&mpls, &tcp(LinkType::Ethernet, &mpls)), b"abc");
    // MPLS carrying Ethernet behind a pseudowire control word: not decoded.
    let pw = eth(&[0, 0x01, 0x01, 0x40, 0, 0, 0, 0, 1, 2, 3, 4], [0x88, 0x47]);
    assert_eq!(dropped(LinkType::Ethernet, &pw), "non_ip");
    // PPPoE session with a two-byte and a compressed one-byte PPP protocol, over a VLAN.
    let len = (ip.len() as u16 + 2).to_be_bytes();
    let pppoe = eth(
        &with_prefix(&[0x11, 0, 0x12, 0x34, len[0], len[1], 0x00, 0x21], &ip),
        [0x88, 0x64],
    );
    assert_eq!(payload(&pppoe, &tcp(LinkType::Ethernet, &pppoe)), b"abc");
    let pfc = with_prefix(
        &[0; 12],
        &with_prefix(
            &[0x81, 0, 0, 5, 0x88, 0x64, 0x11, 0, 0x12, 0x34, 0, 0, 0x21],
            &ip,
        ),
    );
    assert_eq!(payload(&pfc, &tcp(LinkType::Ethernet, &pfc)), b"abc");
    let ip6 = ip6_tcp(b"v6");
    let pppoe6 = eth(
        &with_prefix(&[0x11, 0, 0x12, 0x34, 0, 0, 0x00, 0x57], &ip6),
        [0x88, 0x64],
    );
    assert_eq!(payload(&pppoe6, &tcp(LinkType::Ethernet, &pppoe6)), b"v6");
    // PPP link control is not IP.
    let lcp = eth(&[0x11, 0, 0x12, 0x34, 0, 4, 0xc0, 0x21, 1, 1], [0x88, 0x64]);
    assert_eq!(dropped(LinkType::Ethernet, &lcp), "non_ip");
}

#[test]
fn ipv6_with_extension_header() {
    let tcp6 = ip6_tcp(b"hello");
    // Splice a hop-by-hop options header (8 bytes) between the IPv6 header and TCP.
    let mut ip = tcp6[..40].to_vec();
    ip[6] = 0; // next header: hop-by-hop
    let payload_len = u16::from_be_bytes([ip[4], ip[5]]) + 8;
    ip[4..6].copy_from_slice(&payload_len.to_be_bytes());
    ip.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
    ip.extend_from_slice(&tcp6[40..]);
    let frame = eth(&ip, [0x86, 0xdd]);
    let m = tcp(LinkType::Ethernet, &frame);
    assert_eq!(payload(&frame, &m), b"hello");
    assert_eq!(m.payload_offset as usize, 14 + 40 + 8 + 20);
    assert!(m.key.lo.ip.is_ipv6());
    assert_eq!(m.key.endpoint(m.from).to_string(), "[2001:db8::2]:40000");
    // The same cut inside the TCP payload keeps the wire length.
    let m = tcp(LinkType::Ethernet, &frame[..frame.len() - 2]);
    assert_eq!((m.payload_len, m.payload_wire_len), (3, 5));
    // And cut inside the extension header: truncated.
    assert_eq!(
        dropped(LinkType::Ethernet, &frame[..14 + 40 + 4]),
        "truncated"
    );
}

#[test]
fn ethernet_padding_is_not_payload() {
    let mut frame = eth(&ip_tcp(b""), [0x08, 0x00]);
    frame.extend_from_slice(&[0xee; 6]); // minimum frame size padding
    let m = tcp(LinkType::Ethernet, &frame);
    assert_eq!((m.payload_len, m.payload_wire_len), (0, 0));
    let ip6 = ip6_tcp(b"ab");
    let mut frame = eth(&ip6, [0x86, 0xdd]);
    frame.extend_from_slice(&[0xee; 4]);
    let m = tcp(LinkType::Ethernet, &frame);
    assert_eq!(payload(&frame, &m), b"ab");
    assert_eq!(m.payload_wire_len, 2);
}

#[test]
fn snaplen_truncated_payload_keeps_wire_length() {
    let frame = eth(&ip_tcp(&[b'a'; 100]), [0x08, 0x00]);
    let cut = &frame[..frame.len() - 60];
    let m = tcp(LinkType::Ethernet, cut);
    assert_eq!(m.payload_len, 40);
    assert_eq!(m.payload_wire_len, 100);
    assert_eq!(m.payload_offset as usize + 40, cut.len());
}

#[test]
fn tso_capture_with_zero_ip_length_uses_the_captured_length() {
    let mut ip = ip_tcp(&[b'z'; 3000]);
    ip[2..4].copy_from_slice(&[0, 0]);
    let m = tcp(LinkType::Raw, &ip);
    assert_eq!((m.payload_len, m.payload_wire_len), (3000, 3000));
}

#[test]
fn every_link_type() {
    let ip = ip_tcp(b"data");
    let ip6 = ip6_tcp(b"data");
    let mut sll = Vec::new();
    PacketBuilder::linux_sll(LinuxSllPacketType::HOST, 6, [1, 2, 3, 4, 5, 6, 0, 0])
        .ipv4(SRC, DST, 64)
        .tcp(40000, 80, 1000, 1024)
        .write(&mut sll, b"data")
        .unwrap();
    let sll_prefix = |proto: [u8; 2]| {
        let mut p = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
        p.extend_from_slice(&proto);
        p
    };
    let sll2_prefix = |proto: [u8; 2]| {
        let mut p = proto.to_vec();
        p.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0]);
        p
    };
    let cases: Vec<(LinkType, Vec<u8>)> = vec![
        (LinkType::Ethernet, eth(&ip, [0x08, 0x00])),
        (LinkType::Ethernet, eth(&ip6, [0x86, 0xdd])),
        (LinkType::LinuxSll, sll),
        (
            LinkType::LinuxSll,
            with_prefix(&sll_prefix([0x86, 0xdd]), &ip6),
        ),
        (
            LinkType::LinuxSll2,
            with_prefix(&sll2_prefix([0x08, 0x00]), &ip),
        ),
        (
            LinkType::LinuxSll2,
            with_prefix(&sll2_prefix([0x86, 0xdd]), &ip6),
        ),
        (LinkType::Raw, ip.clone()),
        (LinkType::Raw, ip6.clone()),
        (LinkType::Ipv4, ip.clone()),
        (LinkType::Ipv6, ip6.clone()),
        (LinkType::Null, with_prefix(&2u32.to_le_bytes(), &ip)),
        (LinkType::Null, with_prefix(&2u32.to_be_bytes(), &ip)),
        (LinkType::Null, with_prefix(&24u32.to_le_bytes(), &ip6)),
        (LinkType::Null, with_prefix(&28u32.to_le_bytes(), &ip6)),
        (LinkType::Null, with_prefix(&30u32.to_be_bytes(), &ip6)),
        (LinkType::Null, with_prefix(&10u32.to_le_bytes(), &ip6)),
        (LinkType::Loop, with_prefix(&2u32.to_be_bytes(), &ip)),
        (LinkType::Loop, with_prefix(&24u32.to_be_bytes(), &ip6)),
    ];
    for (link, frame) in cases {
        let m = tcp(link, &frame);
        assert_eq!(payload(&frame, &m), b"data", "{link:?}");
        assert_eq!(m.payload_wire_len, 4);
        assert_eq!(m.key.endpoint(m.from).port, 40000);
    }
    // Too short for the link header itself.
    for (link, short) in [
        (LinkType::Ethernet, 13),
        (LinkType::LinuxSll, 15),
        (LinkType::LinuxSll2, 19),
        (LinkType::Null, 3),
        (LinkType::Loop, 3),
        (LinkType::Raw, 0),
        (LinkType::Ipv4, 0),
        (LinkType::Ipv6, 0),
    ] {
        assert_eq!(dropped(link, &vec![0u8; short]), "truncated", "{link:?}");
    }
    // Link header only, nothing after it.
    assert_eq!(
        dropped(LinkType::LinuxSll2, &sll2_prefix([8, 0])),
        "truncated"
    );
    assert_eq!(dropped(LinkType::Null, &2u32.to_le_bytes()), "truncated");
    // Other families and protocols are not IP.
    assert_eq!(
        dropped(LinkType::Null, &with_prefix(&7u32.to_le_bytes(), &ip)),
        "non_ip"
    );
    assert_eq!(
        dropped(
            LinkType::LinuxSll,
            &with_prefix(&sll_prefix([8, 6]), &[0; 28])
        ),
        "non_ip"
    );
    // The link layer and the IP version nibble disagree.
    assert_eq!(dropped(LinkType::Ipv4, &ip6), "malformed");
    assert_eq!(dropped(LinkType::Ipv6, &ip), "malformed");
    assert_eq!(dropped(LinkType::Ethernet, &eth(&ip6, [8, 0])), "malformed");
    assert_eq!(
        dropped(LinkType::Null, &with_prefix(&2u32.to_le_bytes(), &ip6)),
        "malformed"
    );
}

#[test]
fn link_type_codes_and_names() {
    for (code, link, name) in [
        (1, LinkType::Ethernet, "ethernet"),
        (113, LinkType::LinuxSll, "linux_sll"),
        (276, LinkType::LinuxSll2, "linux_sll2"),
        (12, LinkType::Raw, "raw"),
        (14, LinkType::Raw, "raw"),
        (101, LinkType::Raw, "raw"),
        (228, LinkType::Ipv4, "ipv4"),
        (229, LinkType::Ipv6, "ipv6"),
        (0, LinkType::Null, "null"),
        (108, LinkType::Loop, "loop"),
        (105, LinkType::Ieee80211, "ieee802_11"),
        (127, LinkType::Radiotap, "ieee802_11_radiotap"),
        (239, LinkType::Nflog, "nflog"),
        (104, LinkType::CiscoHdlc, "c_hdlc"),
    ] {
        assert_eq!(LinkType::from_linktype(code), Some(link));
        assert_eq!(link.name(), name);
    }
    for code in [-1, 2, 129, 147, i32::MAX] {
        assert_eq!(LinkType::from_linktype(code), None, "{code}");
    }
}

#[test]
fn skips_and_drops_are_counted_by_reason() {
    let mut udp = Vec::new();
    PacketBuilder::ipv4(SRC, DST, 64)
        .udp(53, 53)
        .write(&mut udp, b"q")
        .unwrap();
    assert_eq!(dropped(LinkType::Raw, &udp), "udp");
    assert_eq!(
        dropped(LinkType::Raw, &udp[..24]),
        "udp",
        "short UDP is UDP"
    );
    let mut udp6 = Vec::new();
    PacketBuilder::ipv6(SRC6, DST6, 64)
        .udp(53, 53)
        .write(&mut udp6, b"q")
        .unwrap();
    assert_eq!(dropped(LinkType::Raw, &udp6), "udp");
    let mut icmp = Vec::new();
    PacketBuilder::ipv4(SRC, DST, 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut icmp, b"p")
        .unwrap();
    assert_eq!(dropped(LinkType::Raw, &icmp), "other_transport");
    let mut icmp6 = Vec::new();
    PacketBuilder::ipv6(SRC6, DST6, 64)
        .icmpv6_echo_request(1, 1)
        .write(&mut icmp6, b"p")
        .unwrap();
    assert_eq!(dropped(LinkType::Raw, &icmp6), "other_transport");
    let mut gre = ip_tcp(b"abc");
    gre[9] = 47;
    // The TCP header read as GRE has reserved bits set.
    assert_eq!(dropped(LinkType::Raw, &gre), "tunnel_malformed");
    let mut esp = ip_tcp(b"abc");
    esp[9] = 50;
    assert_eq!(dropped(LinkType::Raw, &esp), "other_transport");
    let arp = eth(&[0u8; 28], [0x08, 0x06]);
    assert_eq!(dropped(LinkType::Ethernet, &arp), "non_ip");
    let lldp = eth(&[0u8; 30], [0x88, 0xcc]);
    assert_eq!(dropped(LinkType::Ethernet, &lldp), "non_ip");
}

#[test]
fn ip_fragments_are_counted() {
    let mut first = ip_tcp(b"abcdefgh");
    first[6] |= 0x20; // more fragments
    assert_eq!(dropped(LinkType::Raw, &first), "ip_fragment");
    let mut later = ip_tcp(b"abcdefgh");
    later[6..8].copy_from_slice(&[0x00, 0x03]); // offset 24, last fragment
    assert_eq!(dropped(LinkType::Raw, &later), "ip_fragment");
    let mut df = ip_tcp(b"abcdefgh");
    df[6] = 0x40; // don't fragment: a whole datagram
    tcp(LinkType::Raw, &df);
    // IPv6 fragment header, more fragments set.
    let tcp6 = ip6_tcp(b"hello");
    let mut ip = tcp6[..40].to_vec();
    ip[6] = 44;
    let len = u16::from_be_bytes([ip[4], ip[5]]) + 8;
    ip[4..6].copy_from_slice(&len.to_be_bytes());
    ip.extend_from_slice(&[6, 0, 0x00, 0x01, 0, 0, 0, 1]);
    ip.extend_from_slice(&tcp6[40..]);
    assert_eq!(dropped(LinkType::Raw, &ip), "ip_fragment");
    // An atomic fragment (offset 0, no more fragments) is a whole datagram.
    let last = ip.len() - tcp6[40..].len() - 8 + 3;
    ip[last] = 0x00;
    let m = tcp(LinkType::Raw, &ip);
    assert_eq!(payload(&ip, &m), b"hello");
}

#[test]
fn truncated_and_malformed_headers() {
    let good = ip_tcp(b"abc");
    // Capture ends inside the IPv4 header, inside the options, inside the TCP header.
    assert_eq!(dropped(LinkType::Raw, &good[..10]), "truncated");
    let mut opts = good.clone();
    opts[0] = 0x46;
    assert_eq!(dropped(LinkType::Raw, &opts[..22]), "truncated");
    assert_eq!(dropped(LinkType::Raw, &good[..30]), "truncated");
    assert_eq!(dropped(LinkType::Ipv6, &ip6_tcp(b"abc")[..39]), "truncated");
    assert_eq!(dropped(LinkType::Ipv6, &ip6_tcp(b"abc")[..50]), "truncated");
    // TCP data offset below 5, and beyond what the segment holds.
    let mut bad_offset = good.clone();
    bad_offset[20 + 12] = 0x10;
    assert_eq!(dropped(LinkType::Raw, &bad_offset), "malformed");
    // (The IP length says the segment is 20 bytes, the data offset says 60: malformed. With
    // a total length that allows it, a capture that ends first is truncated.)
    let mut long_offset = ip_tcp(b"");
    long_offset[20 + 12] = 0xf0;
    assert_eq!(dropped(LinkType::Raw, &long_offset), "malformed");
    long_offset[2..4].copy_from_slice(&80u16.to_be_bytes());
    assert_eq!(dropped(LinkType::Raw, &long_offset), "truncated");
    // IHL below 5; total length below the header; total length inside the TCP header
    // (the captured bytes after it are padding, not a TCP header).
    let mut bad_ihl = good.clone();
    bad_ihl[0] = 0x41;
    assert_eq!(dropped(LinkType::Raw, &bad_ihl), "malformed");
    let mut small_total = good.clone();
    small_total[2..4].copy_from_slice(&12u16.to_be_bytes());
    assert_eq!(dropped(LinkType::Raw, &small_total), "malformed");
    let mut short_total = good.clone();
    short_total[2..4].copy_from_slice(&30u16.to_be_bytes());
    assert_eq!(dropped(LinkType::Raw, &short_total), "malformed");
    // Version nibble neither 4 nor 6 on a raw link.
    let mut v5 = good.clone();
    v5[0] = 0x55;
    assert_eq!(dropped(LinkType::Raw, &v5), "malformed");
}

#[test]
fn stats_add_and_drop_names() {
    let mut a = DecodeStats::default();
    let names: Vec<_> = a.drops().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "udp",
            "other_transport",
            "non_ip",
            "ip_fragment",
            "truncated",
            "malformed",
            "tunnel_truncated",
            "tunnel_malformed",
            "tunnel_unsupported",
            "encap_too_deep",
            "wlan_protected"
        ]
    );
    assert!(a.drops().all(|(_, n)| n == 0));
    let frame = eth(&ip_tcp(b"x"), [8, 0]);
    decode(
        LinkType::Ethernet,
        &frame,
        at(),
        &UdpTunnels::default(),
        &mut a,
    );
    decode(
        LinkType::Ethernet,
        &frame[..5],
        at(),
        &UdpTunnels::default(),
        &mut a,
    );
    let mut b = DecodeStats::default();
    decode(
        LinkType::Ethernet,
        &frame,
        at(),
        &UdpTunnels::default(),
        &mut b,
    );
    b.merge(&a);
    assert_eq!(
        (b.packets, b.tcp, b.skipped.get(Skip::Truncated)),
        (3, 2, 1)
    );
    assert_eq!(b.bytes, 2 * frame.len() as u64 + 5);
}

fn link_strategy() -> impl Strategy<Value = LinkType> {
    proptest::sample::select(LinkType::ALL.to_vec())
}

/// Checks the decode contract on `data`: counted once, payload inside `data`.
fn check(link: LinkType, data: &[u8]) -> Result<(), TestCaseError> {
    let mut stats = DecodeStats::default();
    if let Some(m) = decode(link, data, at(), &UdpTunnels::default(), &mut stats) {
        let end = m.payload_offset as usize + m.payload_len as usize;
        prop_assert!(end <= data.len());
        prop_assert!(m.payload_wire_len >= m.payload_len);
        prop_assert_eq!(m.key.proto, 6);
    }
    let counted: u64 = stats.tcp + stats.drops().map(|(_, n)| n).sum::<u64>();
    prop_assert_eq!(counted, 1);
    prop_assert_eq!(stats.packets, 1);
    Ok(())
}

/// A valid TCP frame of `link` (IPv4 or IPv6).
fn valid_frame(link: LinkType, v6: bool) -> Vec<u8> {
    let ip = if link == LinkType::Ipv6 || (v6 && link != LinkType::Ipv4) {
        ip6_tcp(b"GET / HTTP/1.1\r\n\r\n")
    } else {
        ip_tcp(b"GET / HTTP/1.1\r\n\r\n")
    };
    let is6 = ip[0] >> 4 == 6;
    let et = if is6 { [0x86, 0xdd] } else { [0x08, 0x00] };
    match link {
        LinkType::Ethernet => eth(&ip, et),
        LinkType::LinuxSll => with_prefix(
            &[0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, et[0], et[1]],
            &ip,
        ),
        LinkType::LinuxSll2 => with_prefix(
            &[
                et[0], et[1], 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
            &ip,
        ),
        LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => ip,
        LinkType::Null => with_prefix(&(if is6 { 30u32 } else { 2 }).to_le_bytes(), &ip),
        LinkType::Loop => with_prefix(&(if is6 { 24u32 } else { 2 }).to_be_bytes(), &ip),
        LinkType::Ieee80211 => with_prefix(&wlan_header(et), &ip),
        LinkType::Radiotap => {
            // An 8-byte radiotap header (no fields), then the 802.11 frame.
            let mut h = vec![0, 0, 8, 0, 0, 0, 0, 0];
            h.extend_from_slice(&wlan_header(et));
            with_prefix(&h, &ip)
        }
        LinkType::Nflog => nflog_frame(&ip, is6, false),
        LinkType::CiscoHdlc => with_prefix(&[0x0f, 0, et[0], et[1]], &ip),
    }
}

/// An NFLOG record (attributes in little- or big-endian order): a packet header attribute,
/// a prefix attribute padded to 4 bytes, then the payload attribute holding `ip`.
fn nflog_frame(ip: &[u8], is6: bool, big_endian: bool) -> Vec<u8> {
    let tlv = |len: u16, kind: u16| -> Vec<u8> {
        let (l, k) = if big_endian {
            (len.to_be_bytes(), kind.to_be_bytes())
        } else {
            (len.to_le_bytes(), kind.to_le_bytes())
        };
        [l, k].concat()
    };
    let mut f = vec![if is6 { 10 } else { 2 }, 0, 0, 5];
    f.extend(tlv(8, 1));
    f.extend([0x08, 0x00, 3, 0]);
    f.extend(tlv(4 + 6, 10));
    f.extend(b"drop:\0\0\0");
    f.extend(tlv(4 + u16::try_from(ip.len()).unwrap(), 9));
    f.extend_from_slice(ip);
    f
}

/// An 802.11 QoS data frame header from the distribution system (FromDS), then LLC/SNAP
/// with ether type `et`.
fn wlan_header(et: [u8; 2]) -> Vec<u8> {
    let mut h = vec![0x88, 0x02, 0, 0];
    h.extend_from_slice(&[0x02; 18]);
    h.extend_from_slice(&[0, 0]); // sequence control
    h.extend_from_slice(&[0, 0]); // QoS control
    h.extend_from_slice(&[0xaa, 0xaa, 0x03, 0, 0, 0, et[0], et[1]]);
    h
}

#[test]
fn nflog_in_either_byte_order_and_its_bad_records() {
    let ip = ip_tcp(b"GET / HTTP/1.1\r\n\r\n");
    let ip6 = ip6_tcp(b"GET / HTTP/1.1\r\n\r\n");
    for big_endian in [false, true] {
        for (packet, is6) in [(&ip, false), (&ip6, true)] {
            let f = nflog_frame(packet, is6, big_endian);
            let m = tcp(LinkType::Nflog, &f);
            assert_eq!(payload(&f, &m), b"GET / HTTP/1.1\r\n\r\n");
        }
    }
    // The family says IPv4 and the packet is IPv6.
    let mut f = nflog_frame(&ip6, false, false);
    assert_eq!(dropped(LinkType::Nflog, &f), "malformed");
    // No payload attribute (the record ends after the prefix).
    f.truncate(4 + 8 + 12);
    assert_eq!(dropped(LinkType::Nflog, &f), "non_ip");
    // An attribute cut short, an attribute length below its own header, a short header.
    assert_eq!(dropped(LinkType::Nflog, &f[..4 + 8 + 2]), "truncated");
    let mut bad = nflog_frame(&ip, false, false);
    bad[4..6].copy_from_slice(&2u16.to_le_bytes());
    assert_eq!(dropped(LinkType::Nflog, &bad), "malformed");
    assert_eq!(dropped(LinkType::Nflog, &[2, 0]), "truncated");
    // Cisco HDLC with a protocol other than IP.
    let f = with_prefix(&[0x8f, 0, 0x80, 0x35], &ip);
    assert_eq!(dropped(LinkType::CiscoHdlc, &f), "non_ip");
}

#[test]
fn wlan_frames_that_carry_no_ip_are_counted_by_reason() {
    let ip = ip_tcp(b"data");
    let mut protected = wlan_header([0x08, 0x00]);
    protected[1] |= 0x40;
    let mut beacon = vec![0x80, 0, 0, 0];
    beacon.extend_from_slice(&[0; 40]);
    let mut null = wlan_header([0x08, 0x00]);
    null[0] = 0xc8; // QoS null
    for (frame, want) in [
        (with_prefix(&protected, &ip), Skip::WlanProtected),
        (beacon, Skip::NonIp),
        (with_prefix(&null, &ip), Skip::NonIp),
        (vec![0x88, 0x02], Skip::Truncated),
    ] {
        assert_eq!(
            dropped(LinkType::Ieee80211, &frame),
            want.name(),
            "{frame:?}"
        );
    }
    assert_eq!(
        dropped(LinkType::Radiotap, &[1, 0, 8, 0]),
        Skip::Malformed.name()
    );
    // Both decode their TCP record, radiotap with its fields skipped by length.
    for link in [LinkType::Ieee80211, LinkType::Radiotap] {
        let m = tcp(link, &valid_frame(link, false));
        assert_eq!(m.payload_len, 18);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), link in link_strategy()) {
        check(link, &data)?;
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        link in link_strategy(),
        v6 in any::<bool>(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
        tail in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut frame = valid_frame(link, v6);
        check(link, &frame)?;
        let mut stats = DecodeStats::default();
        prop_assert!(decode(link, &frame, at(), &UdpTunnels::default(), &mut stats).is_some(), "valid frame decodes");
        for (pos, byte) in edits {
            let p = pos % frame.len();
            frame[p] = byte;
        }
        frame.truncate(frame.len() - cut % (frame.len() + 1));
        frame.extend_from_slice(&tail);
        check(link, &frame)?;
    }
}
