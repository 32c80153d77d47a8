//! Decoding per link type, skips and drops by reason, and no panic on any bytes.
#![allow(clippy::unwrap_used, missing_docs)]

use apitap_core::{PacketRef, Side, TcpFlags};
use apitap_wire::{decode, DecodeStats, LinkType};
use etherparse::{PacketBuilder, VlanId};
use proptest::prelude::*;

const SRC: [u8; 4] = [10, 0, 0, 2];
const DST: [u8; 4] = [10, 0, 0, 1];

fn at() -> PacketRef {
    PacketRef::default()
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

fn eth(ip: &[u8], ether_type: [u8; 2]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&ether_type);
    f.extend_from_slice(ip);
    f
}

#[test]
fn ethernet_ipv4_tcp() {
    let mut stats = DecodeStats::default();
    let frame = eth(&ip_tcp(b"GET / HTTP/1.1\r\n\r\n"), [0x08, 0x00]);
    let m = decode(LinkType::Ethernet, &frame, at(), &mut stats).unwrap();
    assert_eq!(m.key.endpoint(m.from).port, 40000);
    assert_eq!(m.key.endpoint(m.from.other()).port, 80);
    assert_eq!(m.seq, 1000);
    assert_eq!(m.ack, 5);
    assert!(m.flags.ack() && !m.flags.syn());
    assert_eq!(m.flags.0 & TcpFlags::PSH, TcpFlags::PSH);
    let p = &frame[m.payload_offset as usize..][..m.payload_len as usize];
    assert_eq!(p, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(m.payload_wire_len, m.payload_len);
    assert_eq!(stats.tcp, 1);
    assert_eq!(stats.packets, 1);
}

#[test]
fn both_directions_share_the_key() {
    let mut stats = DecodeStats::default();
    let a = eth(&ip_tcp(b"x"), [0x08, 0x00]);
    let mut b_ip = Vec::new();
    PacketBuilder::ipv4(DST, SRC, 64)
        .tcp(80, 40000, 1, 1024)
        .write(&mut b_ip, b"y")
        .unwrap();
    let b = eth(&b_ip, [0x08, 0x00]);
    let ma = decode(LinkType::Ethernet, &a, at(), &mut stats).unwrap();
    let mb = decode(LinkType::Ethernet, &b, at(), &mut stats).unwrap();
    assert_eq!(ma.key, mb.key);
    assert_eq!(ma.from, mb.from.other());
}

#[test]
fn vlan_and_qinq() {
    let mut stats = DecodeStats::default();
    for (builder_frame, tags) in [
        {
            let mut out = Vec::new();
            PacketBuilder::ethernet2([1; 6], [2; 6])
                .single_vlan(VlanId::try_new(42).unwrap())
                .ipv4(SRC, DST, 64)
                .tcp(40000, 80, 1, 1)
                .write(&mut out, b"abc")
                .unwrap();
            (out, 1)
        },
        {
            let mut out = Vec::new();
            PacketBuilder::ethernet2([1; 6], [2; 6])
                .double_vlan(VlanId::try_new(1).unwrap(), VlanId::try_new(2).unwrap())
                .ipv4(SRC, DST, 64)
                .tcp(40000, 80, 1, 1)
                .write(&mut out, b"abc")
                .unwrap();
            (out, 2)
        },
    ] {
        let m = decode(LinkType::Ethernet, &builder_frame, at(), &mut stats).unwrap();
        assert_eq!(m.payload_len, 3, "{tags} tags");
        assert_eq!(m.payload_offset as usize, builder_frame.len() - 3);
    }
}

#[test]
fn ipv6_with_extension_header() {
    let mut stats = DecodeStats::default();
    let src = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let dst = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let mut tcp = Vec::new();
    PacketBuilder::ipv6(src, dst, 64)
        .tcp(40000, 80, 7, 100)
        .write(&mut tcp, b"hello")
        .unwrap();
    // Splice a hop-by-hop options header (8 bytes) between the IPv6 header and TCP.
    let mut ip = tcp[..40].to_vec();
    ip[6] = 0; // next header: hop-by-hop
    let payload_len = u16::from_be_bytes([ip[4], ip[5]]) + 8;
    ip[4..6].copy_from_slice(&payload_len.to_be_bytes());
    ip.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
    ip.extend_from_slice(&tcp[40..]);
    let frame = eth(&ip, [0x86, 0xdd]);
    let m = decode(LinkType::Ethernet, &frame, at(), &mut stats).unwrap();
    assert_eq!(
        &frame[m.payload_offset as usize..][..m.payload_len as usize],
        b"hello"
    );
    assert!(m.key.lo.ip.is_ipv6());
}

#[test]
fn ethernet_padding_is_not_payload() {
    let mut stats = DecodeStats::default();
    let mut frame = eth(&ip_tcp(b""), [0x08, 0x00]);
    frame.extend_from_slice(&[0u8; 6]); // minimum frame size padding
    let m = decode(LinkType::Ethernet, &frame, at(), &mut stats).unwrap();
    assert_eq!(m.payload_len, 0);
    assert_eq!(m.payload_wire_len, 0);
}

#[test]
fn snaplen_truncated_payload_keeps_wire_length() {
    let mut stats = DecodeStats::default();
    let frame = eth(&ip_tcp(&[b'a'; 100]), [0x08, 0x00]);
    let cut = &frame[..frame.len() - 60];
    let m = decode(LinkType::Ethernet, cut, at(), &mut stats).unwrap();
    assert_eq!(m.payload_len, 40);
    assert_eq!(m.payload_wire_len, 100);
}

#[test]
fn other_link_types() {
    let ip = ip_tcp(b"data");
    let mut sll = vec![0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(&ip);
    let mut sll2 = vec![
        0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    sll2.extend_from_slice(&ip);
    let mut null_le = 2u32.to_le_bytes().to_vec();
    null_le.extend_from_slice(&ip);
    let mut loop_be = 2u32.to_be_bytes().to_vec();
    loop_be.extend_from_slice(&ip);
    for (link, frame) in [
        (LinkType::LinuxSll, sll),
        (LinkType::LinuxSll2, sll2),
        (LinkType::Raw, ip.clone()),
        (LinkType::Ipv4, ip.clone()),
        (LinkType::Null, null_le),
        (LinkType::Loop, loop_be),
    ] {
        let mut stats = DecodeStats::default();
        let m =
            decode(link, &frame, at(), &mut stats).unwrap_or_else(|| panic!("{link:?}: {stats:?}"));
        assert_eq!(
            &frame[m.payload_offset as usize..][..m.payload_len as usize],
            b"data",
            "{link:?}"
        );
    }
    assert_eq!(LinkType::from_linktype(276), Some(LinkType::LinuxSll2));
    assert_eq!(LinkType::from_linktype(147), None);
}

#[test]
fn skips_and_drops_are_counted_by_reason() {
    let mut stats = DecodeStats::default();
    let mut udp = Vec::new();
    PacketBuilder::ipv4(SRC, DST, 64)
        .udp(53, 53)
        .write(&mut udp, b"q")
        .unwrap();
    assert!(decode(LinkType::Raw, &udp, at(), &mut stats).is_none());
    let mut icmp = Vec::new();
    PacketBuilder::ipv4(SRC, DST, 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut icmp, b"p")
        .unwrap();
    assert!(decode(LinkType::Raw, &icmp, at(), &mut stats).is_none());
    let arp = eth(&[0u8; 28], [0x08, 0x06]);
    assert!(decode(LinkType::Ethernet, &arp, at(), &mut stats).is_none());
    let mut frag = ip_tcp(b"abcdefgh");
    frag[6] |= 0x20; // more fragments
    assert!(decode(LinkType::Raw, &frag, at(), &mut stats).is_none());
    assert!(decode(LinkType::Ethernet, &[0u8; 5], at(), &mut stats).is_none());
    let mut bad_offset = ip_tcp(b"abc");
    bad_offset[20 + 12] = 0x10; // TCP data offset 1 (< 5)
    assert!(decode(LinkType::Raw, &bad_offset, at(), &mut stats).is_none());
    let mut bad_ihl = ip_tcp(b"abc");
    bad_ihl[0] = 0x41; // IHL 1
    assert!(decode(LinkType::Raw, &bad_ihl, at(), &mut stats).is_none());

    assert_eq!(stats.skipped_udp, 1);
    assert_eq!(stats.skipped_other_transport, 1);
    assert_eq!(stats.skipped_non_ip, 1);
    assert_eq!(stats.ip_fragments, 1);
    assert_eq!(stats.truncated, 1);
    assert_eq!(stats.malformed, 2, "{stats:?}");
    assert_eq!(stats.packets, 7);
    assert_eq!(stats.tcp, 0);
    let total: u64 = stats.drops().map(|(_, n)| n).sum();
    assert_eq!(total, 7, "every frame is counted under exactly one reason");
}

#[test]
fn side_is_consistent_with_key() {
    let mut stats = DecodeStats::default();
    let m = decode(LinkType::Raw, &ip_tcp(b"x"), at(), &mut stats).unwrap();
    assert_eq!(m.key.endpoint(m.from).port, 40000);
    assert_eq!(
        m.from,
        if m.key.lo.port == 40000 {
            Side::Lo
        } else {
            Side::Hi
        }
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), link in 0usize..8) {
        let links = [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::Raw,
                     LinkType::Ipv4, LinkType::Ipv6, LinkType::Null, LinkType::Loop];
        let mut stats = DecodeStats::default();
        if let Some(m) = decode(links[link], &data, at(), &mut stats) {
            let end = m.payload_offset as usize + m.payload_len as usize;
            prop_assert!(end <= data.len());
            prop_assert!(m.payload_wire_len >= m.payload_len);
        }
        let counted: u64 = stats.tcp + stats.drops().map(|(_, n)| n).sum::<u64>();
        prop_assert_eq!(counted, 1);
    }

    #[test]
    fn mutated_valid_frames_never_panic(pos in 0usize..80, byte in any::<u8>(), cut in 0usize..80) {
        let mut frame = eth(&ip_tcp(b"GET / HTTP/1.1\r\n\r\n"), [0x08, 0x00]);
        let p = pos % frame.len();
        frame[p] = byte;
        frame.truncate(frame.len() - cut % frame.len());
        let mut stats = DecodeStats::default();
        let _ = decode(LinkType::Ethernet, &frame, at(), &mut stats);
        prop_assert_eq!(stats.packets, 1);
    }
}
