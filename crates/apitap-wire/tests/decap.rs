//! Tunnels: GRE, GRE in UDP, ERSPAN I/II/III, VXLAN, VXLAN-GPE, GENEVE, GTP-U, Teredo,
//! IP-in-IP, IPv6-in-IP; VLAN and tunnel carried with the packet; configured ports; depth
//! bound; every failure counted under its reason and tunnel kind; fragments inside tunnels
//! reassembled with the tunnel kept.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use apitap_core::{Encap, PacketMeta, PacketRef, Timestamp, Tunnel, TunnelKind};
use apitap_wire::{decode, DecodeStats, Decoder, DefragLimits, LinkType, Skip, UdpTunnels};
use etherparse::PacketBuilder;
use proptest::prelude::*;

fn at() -> PacketRef {
    PacketRef {
        index: 3,
        ts: Timestamp(5_000),
    }
}

/// IPv4/TCP 10.0.0.2:40000 -> 10.0.0.1:80 carrying `payload`.
fn ip_tcp(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
        .tcp(40000, 80, 1000, 1024)
        .write(&mut out, payload)
        .unwrap();
    out
}

fn ip6_tcp(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv6(
        [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        64,
    )
    .tcp(40000, 80, 7, 100)
    .write(&mut out, payload)
    .unwrap();
    out
}

/// Ethernet header with `ether_type`, then `body`.
fn eth(ether_type: u16, body: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ether_type.to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// An 802.1Q-tagged Ethernet header.
fn eth_vlan(vid: u16, ether_type: u16, body: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x81, 0x00];
    f.extend_from_slice(&(0x2000 | vid).to_be_bytes());
    f.extend_from_slice(&ether_type.to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// An outer IPv4 header (protocol `proto`, outer addresses 192.0.2.1 -> 192.0.2.2).
fn outer4(proto: u8, body: &[u8]) -> Vec<u8> {
    let total = (20 + body.len()) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 1, 0, 0, 64, proto, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
    h.extend_from_slice(body);
    h
}

fn udp(dst: u16, body: &[u8]) -> Vec<u8> {
    udp_ports(49152, dst, body)
}

fn udp_ports(src: u16, dst: u16, body: &[u8]) -> Vec<u8> {
    let mut u = src.to_be_bytes().to_vec();
    u.extend_from_slice(&dst.to_be_bytes());
    u.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(body);
    u
}

/// GRE with optional checksum, key and sequence number.
fn gre(proto: u16, csum: bool, key: Option<u32>, seq: Option<u32>, body: &[u8]) -> Vec<u8> {
    let mut flags = 0u8;
    if csum {
        flags |= 0x80;
    }
    if key.is_some() {
        flags |= 0x20;
    }
    if seq.is_some() {
        flags |= 0x10;
    }
    let mut g = vec![flags, 0];
    g.extend_from_slice(&proto.to_be_bytes());
    if csum {
        g.extend_from_slice(&[0, 0, 0, 0]);
    }
    if let Some(k) = key {
        g.extend_from_slice(&k.to_be_bytes());
    }
    if let Some(s) = seq {
        g.extend_from_slice(&s.to_be_bytes());
    }
    g.extend_from_slice(body);
    g
}

fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut v = vec![0x08, 0, 0, 0];
    v.extend_from_slice(&(vni << 8).to_be_bytes());
    v.extend_from_slice(inner);
    v
}

fn geneve(vni: u32, opt_words: u8, proto: u16, inner: &[u8]) -> Vec<u8> {
    let mut g = vec![opt_words & 0x3f, 0];
    g.extend_from_slice(&proto.to_be_bytes());
    g.extend_from_slice(&(vni << 8).to_be_bytes());
    g.extend(std::iter::repeat_n(0xab, usize::from(opt_words) * 4));
    g.extend_from_slice(inner);
    g
}

fn erspan2(session: u16, inner: &[u8]) -> Vec<u8> {
    let mut e = vec![0x10, 0x00];
    e.extend_from_slice(&(session & 0x3ff).to_be_bytes());
    e.extend_from_slice(&[0, 0, 0, 9]);
    e.extend_from_slice(inner);
    gre(0x88be, false, None, Some(1), &e)
}

fn erspan3(session: u16, platform: bool, frame_type: u8, inner: &[u8]) -> Vec<u8> {
    let mut e = vec![0x20, 0x00];
    e.extend_from_slice(&(session & 0x3ff).to_be_bytes());
    e.extend_from_slice(&[1, 2, 3, 4]); // timestamp
    e.extend_from_slice(&[0, 0]); // SGT
    e.push((frame_type & 0x1f) << 2);
    e.push(u8::from(platform));
    if platform {
        e.extend_from_slice(&[0x0c, 0, 0, 0, 0, 0, 0, 0]);
    }
    e.extend_from_slice(inner);
    gre(0x22eb, false, None, Some(1), &e)
}

/// ERSPAN type II with the VLAN field set.
fn erspan2_vlan(session: u16, vlan: u16, inner: &[u8]) -> Vec<u8> {
    let mut g = erspan2(session, inner);
    // GRE (4 bytes) and sequence number (4), then the ERSPAN header.
    g[8..10].copy_from_slice(&(0x1000 | vlan).to_be_bytes());
    g
}

/// VXLAN-GPE: flags I and P, `next` protocol.
fn vxlan_gpe(vni: u32, next: u8, inner: &[u8]) -> Vec<u8> {
    let mut v = vec![0x0c, 0, 0, next];
    v.extend_from_slice(&(vni << 8).to_be_bytes());
    v.extend_from_slice(inner);
    v
}

/// A GTP-U G-PDU; `ext` extension headers of one 4-byte word each (type 0x85).
fn gtpu(teid: u32, ext: usize, inner: &[u8]) -> Vec<u8> {
    let mut opt = Vec::new();
    if ext > 0 {
        opt.extend_from_slice(&[0, 0, 0, 0x85]);
        for i in 0..ext {
            let next = if i + 1 == ext { 0 } else { 0x85 };
            opt.extend_from_slice(&[1, 0x10, 9, next]);
        }
    }
    let mut g = vec![if ext > 0 { 0x34 } else { 0x30 }, 0xff];
    g.extend_from_slice(&((opt.len() + inner.len()) as u16).to_be_bytes());
    g.extend_from_slice(&teid.to_be_bytes());
    g.extend_from_slice(&opt);
    g.extend_from_slice(inner);
    g
}

/// IPv6/TCP between a Teredo client (2001:0:...) and a native peer.
fn teredo_ip6(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv6(
        [
            0x20, 1, 0, 0, 0x41, 0x36, 0xe3, 0x78, 0x80, 0, 0x63, 0xbf, 0x3f, 0xff, 0xfd, 0xd2,
        ],
        [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x68],
        64,
    )
    .tcp(40000, 80, 7, 100)
    .write(&mut out, payload)
    .unwrap();
    out
}

/// Teredo indicators: authentication (client id "c1", 2-byte value, nonce, confirmation)
/// and origin.
fn teredo_indicators(auth: bool, origin: bool) -> Vec<u8> {
    let mut t = Vec::new();
    if auth {
        t.extend_from_slice(&[0, 1, 2, 2, b'c', b'1', 0xaa, 0xbb]);
        t.extend_from_slice(&[1; 8]);
        t.push(0);
    }
    if origin {
        t.extend_from_slice(&[0, 0, 0x12, 0x34, 0x3f, 0xff, 0xfd, 0xfe]);
    }
    t
}

const PAYLOAD: &[u8] = b"GET / HTTP/1.1\r\n\r\n";

/// Decodes a frame that must give the inner TCP segment; checks key, payload and encap.
fn inner_tcp(frame: &[u8], encap: Encap) -> PacketMeta {
    let mut stats = DecodeStats::default();
    let m = decode(
        LinkType::Ethernet,
        frame,
        at(),
        &UdpTunnels::default(),
        &mut stats,
    )
    .unwrap_or_else(|| panic!("no TCP: {stats:?}"));
    assert_eq!((stats.packets, stats.tcp), (1, 1));
    let start = m.payload_offset as usize;
    assert_eq!(&frame[start..start + m.payload_len as usize], PAYLOAD);
    assert_eq!(m.payload_wire_len as usize, PAYLOAD.len());
    assert_eq!(m.key.endpoint(m.from).port, 40000);
    assert_eq!(m.encap, encap);
    m
}

fn tunnel(kind: TunnelKind, id: Option<u32>) -> Encap {
    Encap {
        vlan: None,
        tunnel: Some(Tunnel { kind, id }),
    }
}

fn dropped(frame: &[u8]) -> &'static str {
    let mut stats = DecodeStats::default();
    assert!(decode(
        LinkType::Ethernet,
        frame,
        at(),
        &UdpTunnels::default(),
        &mut stats
    )
    .is_none());
    let reasons: Vec<_> = stats.drops().filter(|(_, n)| *n > 0).collect();
    assert_eq!(reasons.len(), 1, "{stats:?}");
    reasons[0].0
}

#[test]
fn gre_carrying_ip_with_every_option() {
    let ip = ip_tcp(PAYLOAD);
    let plain = inner_tcp(&eth(0x0800, &ip), Encap::default());
    for (csum, key, seq) in [
        (false, None, None),
        (true, None, None),
        (false, Some(1234), None),
        (false, None, Some(9)),
        (true, Some(77), Some(9)),
    ] {
        let f = eth(0x0800, &outer4(47, &gre(0x0800, csum, key, seq, &ip)));
        let m = inner_tcp(&f, tunnel(TunnelKind::Gre, key));
        assert_eq!((m.key, m.from, m.seq), (plain.key, plain.from, plain.seq));
    }
    // IPv6 inside.
    let f = eth(
        0x0800,
        &outer4(47, &gre(0x86dd, false, None, None, &ip6_tcp(PAYLOAD))),
    );
    let m = inner_tcp(&f, tunnel(TunnelKind::Gre, None));
    assert!(m.key.lo.ip.is_ipv6());
}

#[test]
fn gre_transparent_ethernet() {
    let inner = eth_vlan(55, 0x0800, &ip_tcp(PAYLOAD));
    let f = eth(
        0x0800,
        &outer4(47, &gre(0x6558, false, Some(5), None, &inner)),
    );
    // The VLAN tag inside the tunnel is not the observer's ingress VLAN.
    inner_tcp(&f, tunnel(TunnelKind::Gre, Some(5)));
}

#[test]
fn gre_failures_are_counted() {
    let ip = ip_tcp(PAYLOAD);
    let mut v1 = gre(0x880b, false, Some(1), None, &ip);
    v1[1] = 1; // PPTP enhanced GRE
    assert_eq!(
        dropped(&eth(0x0800, &outer4(47, &v1))),
        "tunnel_unsupported"
    );
    let mut routing = gre(0x0800, false, None, None, &ip);
    routing[0] |= 0x40;
    assert_eq!(
        dropped(&eth(0x0800, &outer4(47, &routing))),
        "tunnel_unsupported"
    );
    let mut recur = gre(0x0800, false, None, None, &ip);
    recur[0] |= 0x03;
    assert_eq!(
        dropped(&eth(0x0800, &outer4(47, &recur))),
        "tunnel_malformed"
    );
    let other = gre(0x0806, false, None, None, &ip);
    assert_eq!(
        dropped(&eth(0x0800, &outer4(47, &other))),
        "tunnel_unsupported"
    );
    // Key announced but cut off; checksum announced, header cut.
    let keyed = gre(0x0800, false, Some(1), None, &[]);
    assert_eq!(
        dropped(&eth(0x0800, &outer4(47, &keyed[..6]))),
        "tunnel_truncated"
    );
    let csum = gre(0x0800, true, None, None, &[]);
    assert_eq!(
        dropped(&eth(0x0800, &outer4(47, &csum[..6]))),
        "tunnel_truncated"
    );
    // GRE header present, inner IP missing.
    let empty = gre(0x0800, false, None, None, &[]);
    assert_eq!(dropped(&eth(0x0800, &outer4(47, &empty))), "truncated");
}

#[test]
fn erspan_type_ii_and_iii() {
    let inner = eth(0x0800, &ip_tcp(PAYLOAD));
    let f = eth(0x0800, &outer4(47, &erspan2(0x123, &inner)));
    inner_tcp(&f, tunnel(TunnelKind::ErspanII, Some(0x123)));
    for platform in [false, true] {
        let f = eth(0x0800, &outer4(47, &erspan3(77, platform, 0, &inner)));
        inner_tcp(&f, tunnel(TunnelKind::ErspanIII, Some(77)));
    }
    // IP frame type (2) is decoded, other types are not; a version that does not match the
    // type is malformed.
    let f = eth(
        0x0800,
        &outer4(47, &erspan3(77, false, 2, &ip_tcp(PAYLOAD))),
    );
    inner_tcp(&f, tunnel(TunnelKind::ErspanIII, Some(77)));
    let f = eth(0x0800, &outer4(47, &erspan3(77, false, 1, &inner)));
    assert_eq!(dropped(&f), "tunnel_unsupported");
    let mut bad = erspan2(1, &inner);
    bad[8] = 0x20;
    assert_eq!(dropped(&eth(0x0800, &outer4(47, &bad))), "tunnel_malformed");
    let mut bad3 = erspan3(1, false, 0, &inner);
    bad3[8] = 0x10;
    assert_eq!(
        dropped(&eth(0x0800, &outer4(47, &bad3))),
        "tunnel_malformed"
    );
    // Cut inside the ERSPAN header, inside the platform subheader, inside the inner
    // Ethernet header.
    let full = eth(0x0800, &outer4(47, &erspan3(1, true, 0, &inner)));
    let gre_at = 14 + 20 + 8;
    for cut in [gre_at + 5, gre_at + 12 + 4, gre_at + 20 + 10] {
        let mut f = full[..cut].to_vec();
        let total = (cut - 14) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        assert_eq!(dropped(&f), "tunnel_truncated", "cut at {cut}");
    }
}

#[test]
fn vxlan_and_vlan_outside() {
    let inner = eth(0x0800, &ip_tcp(PAYLOAD));
    let f = eth(0x0800, &outer4(17, &udp(4789, &vxlan(1234, &inner))));
    inner_tcp(&f, tunnel(TunnelKind::Vxlan, Some(1234)));
    let f = eth_vlan(
        100,
        0x0800,
        &outer4(17, &udp(4789, &vxlan(0xabcdef, &inner))),
    );
    inner_tcp(
        &f,
        Encap {
            vlan: Some(100),
            tunnel: Some(Tunnel {
                kind: TunnelKind::Vxlan,
                id: Some(0xabcdef),
            }),
        },
    );
    // QinQ: the outermost tag is the one kept.
    let qinq = {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x88, 0xa8, 0x00, 0x0a];
        f.extend_from_slice(&eth_vlan(20, 0x0800, &ip_tcp(PAYLOAD))[12..]);
        f
    };
    inner_tcp(
        &qinq,
        Encap {
            vlan: Some(10),
            tunnel: None,
        },
    );
    // A priority tag (VID 0) is no VLAN: the next tag's id is the VLAN.
    let prio = {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x81, 0x00, 0x20, 0x00];
        f.extend_from_slice(&eth_vlan(30, 0x0800, &ip_tcp(PAYLOAD))[12..]);
        f
    };
    inner_tcp(
        &prio,
        Encap {
            vlan: Some(30),
            tunnel: None,
        },
    );
    // I flag missing; cut in the VXLAN header; cut in the inner Ethernet header.
    let mut no_i = vxlan(1, &inner);
    no_i[0] = 0;
    assert_eq!(
        dropped(&eth(0x0800, &outer4(17, &udp(4789, &no_i)))),
        "tunnel_malformed"
    );
    let v = vxlan(1, &inner);
    assert_eq!(
        dropped(&eth(0x0800, &outer4(17, &udp(4789, &v[..5])))),
        "tunnel_truncated"
    );
    assert_eq!(
        dropped(&eth(0x0800, &outer4(17, &udp(4789, &v[..8 + 10])))),
        "tunnel_truncated"
    );
    // Other UDP is still UDP.
    assert_eq!(dropped(&eth(0x0800, &outer4(17, &udp(53, &v)))), "udp");
}

#[test]
fn geneve_with_options() {
    let inner = eth(0x0800, &ip_tcp(PAYLOAD));
    for words in [0, 2, 63] {
        let f = eth(
            0x0800,
            &outer4(17, &udp(6081, &geneve(5678, words, 0x6558, &inner))),
        );
        inner_tcp(&f, tunnel(TunnelKind::Geneve, Some(5678)));
    }
    let f = eth(
        0x0800,
        &outer4(17, &udp(6081, &geneve(9, 1, 0x0800, &ip_tcp(PAYLOAD)))),
    );
    inner_tcp(&f, tunnel(TunnelKind::Geneve, Some(9)));
    let mut v1 = geneve(1, 0, 0x6558, &inner);
    v1[0] |= 0x40;
    assert_eq!(
        dropped(&eth(0x0800, &outer4(17, &udp(6081, &v1)))),
        "tunnel_malformed"
    );
    let nsh = geneve(1, 0, 0x894f, &inner);
    assert_eq!(
        dropped(&eth(0x0800, &outer4(17, &udp(6081, &nsh)))),
        "tunnel_unsupported"
    );
    // Options longer than what was captured.
    let long = geneve(1, 8, 0x6558, &[]);
    assert_eq!(
        dropped(&eth(0x0800, &outer4(17, &udp(6081, &long[..20])))),
        "tunnel_truncated"
    );
}

#[test]
fn ip_in_ip_and_ipv6_in_ip() {
    let f = eth(0x0800, &outer4(4, &ip_tcp(PAYLOAD)));
    inner_tcp(&f, tunnel(TunnelKind::IpIp, None));
    let f = eth(0x0800, &outer4(41, &ip6_tcp(PAYLOAD)));
    let m = inner_tcp(&f, tunnel(TunnelKind::Ip6Ip, None));
    assert!(m.key.lo.ip.is_ipv6());
    // Protocol 41 with an IPv4 packet inside: the version does not match.
    assert_eq!(
        dropped(&eth(0x0800, &outer4(41, &ip_tcp(PAYLOAD)))),
        "malformed"
    );
}

#[test]
fn outermost_tunnel_is_reported_and_depth_is_bounded() {
    // VXLAN inside GRE: the GRE is reported.
    let inner = eth(0x0800, &ip_tcp(PAYLOAD));
    let vx = outer4(17, &udp(4789, &vxlan(3, &inner)));
    let f = eth(0x0800, &outer4(47, &gre(0x0800, false, Some(8), None, &vx)));
    inner_tcp(&f, tunnel(TunnelKind::Gre, Some(8)));
    // IP-in-IP nested 4 deep is fine; 5 deep is dropped.
    let mut ip = ip_tcp(PAYLOAD);
    for _ in 0..4 {
        ip = outer4(4, &ip);
    }
    inner_tcp(&eth(0x0800, &ip), tunnel(TunnelKind::IpIp, None));
    ip = outer4(4, &ip);
    assert_eq!(dropped(&eth(0x0800, &ip)), "encap_too_deep");
}

/// Fragments an IPv4 packet (no options) into pieces of `size` bytes (multiple of 8).
fn fragments(ip: &[u8], size: usize) -> Vec<Vec<u8>> {
    let data = &ip[20..];
    data.chunks(size)
        .enumerate()
        .map(|(i, c)| {
            let mut f = ip[..20].to_vec();
            f[2..4].copy_from_slice(&((20 + c.len()) as u16).to_be_bytes());
            let more = (i + 1) * size < data.len();
            let fo = (i * size / 8) as u16 | if more { 0x2000 } else { 0 };
            f[6..8].copy_from_slice(&fo.to_be_bytes());
            f.extend_from_slice(c);
            f
        })
        .collect()
}

/// What the reader does: every frame through the [`Decoder`] (duplicates off).
fn through_defrag(frames: &[Vec<u8>]) -> (Vec<PacketMeta>, Vec<Vec<u8>>, DecodeStats) {
    through_decoder(frames, 0)
}

fn through_decoder(
    frames: &[Vec<u8>],
    dedup_window_us: u64,
) -> (Vec<PacketMeta>, Vec<Vec<u8>>, DecodeStats) {
    let mut decoder = Decoder::new(
        UdpTunnels::default(),
        dedup_window_us,
        Some(DefragLimits::default()),
    );
    let mut metas = Vec::new();
    let mut buffers = Vec::new();
    for f in frames {
        if let Some((m, bytes)) = decoder.frame(LinkType::Ethernet, f, at()) {
            metas.push(m);
            buffers.push(bytes.to_vec());
        }
    }
    (metas, buffers, decoder.stats().clone())
}

#[test]
fn fragments_inside_and_outside_a_tunnel() {
    let ip = ip_tcp(PAYLOAD);
    // Inner packet fragmented inside VXLAN over a VLAN.
    let frames: Vec<Vec<u8>> = fragments(&ip, 16)
        .iter()
        .rev()
        .map(|frag| {
            eth_vlan(
                7,
                0x0800,
                &outer4(17, &udp(4789, &vxlan(42, &eth(0x0800, frag)))),
            )
        })
        .collect();
    assert_eq!(frames.len(), 3);
    let (metas, bufs, stats) = through_defrag(&frames);
    assert_eq!(metas.len(), 1);
    let m = metas[0];
    let start = m.payload_offset as usize;
    assert_eq!(&bufs[0][start..start + m.payload_len as usize], PAYLOAD);
    assert_eq!(m.encap.vlan, Some(7));
    assert_eq!(
        m.encap.tunnel.map(|t| (t.kind, t.id)),
        Some((TunnelKind::Vxlan, Some(42)))
    );
    assert_eq!(
        (
            stats.packets,
            stats.tcp,
            stats.skipped.get(Skip::IpFragment)
        ),
        (3, 1, 2)
    );
    assert_eq!(stats.defrag.reassembled, 1);

    // The outer (GRE) packet fragmented.
    let outer = outer4(47, &gre(0x0800, false, Some(99), None, &ip));
    let frames: Vec<Vec<u8>> = fragments(&outer, 24)
        .iter()
        .map(|f| eth(0x0800, f))
        .collect();
    let (metas, _, stats) = through_defrag(&frames);
    assert_eq!(metas.len(), 1);
    assert_eq!(metas[0].encap, tunnel(TunnelKind::Gre, Some(99)));
    assert_eq!(
        stats.packets,
        stats.tcp + stats.drops().map(|(_, n)| n).sum::<u64>()
    );
}

/// A fragmented packet inside a fragmented tunnel: the outer datagram is reassembled,
/// the fragment found in it goes round again, and every frame is counted once; a SPAN copy
/// of a fragment is dropped before it reaches reassembly.
#[test]
fn a_fragment_inside_a_reassembled_datagram_goes_round_again() {
    let ip = ip_tcp(PAYLOAD);
    let inner = fragments(&ip, 16);
    assert_eq!(inner.len(), 3);
    let mut frames = Vec::new();
    for (i, frag) in inner.iter().enumerate() {
        let mut outer = outer4(47, &gre(0x0800, false, Some(5), None, frag));
        // Each outer datagram its own IP id.
        outer[5] = i as u8;
        frames.extend(fragments(&outer, 24).iter().map(|f| eth(0x0800, f)));
    }
    let (metas, bufs, stats) = through_defrag(&frames);
    assert_eq!(metas.len(), 1);
    let m = metas[0];
    let start = m.payload_offset as usize;
    assert_eq!(&bufs[0][start..start + m.payload_len as usize], PAYLOAD);
    assert_eq!(m.encap, tunnel(TunnelKind::Gre, Some(5)));
    assert_eq!(stats.packets, frames.len() as u64);
    assert_eq!(
        (stats.tcp, stats.skipped.get(Skip::IpFragment)),
        (1, frames.len() as u64 - 1)
    );
    assert_eq!(
        stats.defrag.reassembled, 4,
        "three outer datagrams and the inner one"
    );

    let mut doubled = Vec::new();
    for f in &frames {
        doubled.push(f.clone());
        doubled.push(f.clone());
    }
    let mut decoder = Decoder::new(UdpTunnels::default(), 1000, Some(DefragLimits::default()));
    let found = doubled
        .iter()
        .filter(|f| decoder.frame(LinkType::Ethernet, f, at()).is_some())
        .count();
    assert_eq!(found, 1);
    assert_eq!(decoder.duplicates_dropped(), frames.len() as u64);
    assert_eq!(
        decoder.stats().defrag.overlaps,
        0,
        "copies never reach reassembly"
    );
    assert_eq!(decoder.stats().packets, doubled.len() as u64);
}

#[test]
fn erspan_type_i_and_the_vlan_an_erspan_header_carries() {
    let inner = eth(0x0800, &ip_tcp(PAYLOAD));
    // Type I: 0x88be without a sequence number, Ethernet straight after GRE.
    let f = eth(0x0800, &outer4(47, &gre(0x88be, false, None, None, &inner)));
    inner_tcp(&f, tunnel(TunnelKind::ErspanI, None));
    // The mirrored frame's VLAN, like an Ethernet tag; an outer tag comes first.
    let f = eth(0x0800, &outer4(47, &erspan2_vlan(5, 42, &inner)));
    let mut want = tunnel(TunnelKind::ErspanII, Some(5));
    want.vlan = Some(42);
    inner_tcp(&f, want);
    let f = eth_vlan(7, 0x0800, &outer4(47, &erspan2_vlan(5, 42, &inner)));
    want.vlan = Some(7);
    inner_tcp(&f, want);
    let mut e3 = erspan3(6, false, 0, &inner);
    e3[8..10].copy_from_slice(&0x202bu16.to_be_bytes());
    let mut want = tunnel(TunnelKind::ErspanIII, Some(6));
    want.vlan = Some(43);
    inner_tcp(&eth(0x0800, &outer4(47, &e3)), want);
}

#[test]
fn gre_in_udp() {
    let ip = ip_tcp(PAYLOAD);
    let f = eth(
        0x0800,
        &outer4(17, &udp(4754, &gre(0x0800, false, Some(9), None, &ip))),
    );
    inner_tcp(&f, tunnel(TunnelKind::GreUdp, Some(9)));
    // ERSPAN carried in GRE-in-UDP is reported as ERSPAN.
    let inner = eth(0x0800, &ip);
    let f = eth(0x0800, &outer4(17, &udp(4754, &erspan2(3, &inner))));
    inner_tcp(&f, tunnel(TunnelKind::ErspanII, Some(3)));
}

#[test]
fn vxlan_gpe_every_payload() {
    let ip = ip_tcp(PAYLOAD);
    let ip6 = ip6_tcp(PAYLOAD);
    let ether = eth(0x0800, &ip);
    let mut mpls = vec![0, 0x01, 0x01, 64];
    mpls.extend_from_slice(&ip);
    for (next, inner) in [(1u8, &ip), (2, &ip6), (3, &ether), (5, &mpls)] {
        let f = eth(0x0800, &outer4(17, &udp(4790, &vxlan_gpe(99, next, inner))));
        inner_tcp(&f, tunnel(TunnelKind::VxlanGpe, Some(99)));
    }
    // Without P the payload is Ethernet.
    let mut v = vxlan_gpe(99, 1, &ether);
    v[0] = 0x08;
    inner_tcp(
        &eth(0x0800, &outer4(17, &udp(4790, &v))),
        tunnel(TunnelKind::VxlanGpe, Some(99)),
    );
    // NSH is not decoded; version 1 and a missing I flag are malformed.
    let f = eth(0x0800, &outer4(17, &udp(4790, &vxlan_gpe(1, 4, &ip))));
    assert_eq!(dropped(&f), "tunnel_unsupported");
    for flags in [0x1c, 0x04] {
        let mut v = vxlan_gpe(1, 1, &ip);
        v[0] = flags;
        assert_eq!(
            dropped(&eth(0x0800, &outer4(17, &udp(4790, &v)))),
            "tunnel_malformed"
        );
    }
}

#[test]
fn gtpu_with_and_without_extension_headers() {
    let ip = ip_tcp(PAYLOAD);
    for ext in [0, 1, 3] {
        let f = eth(0x0800, &outer4(17, &udp(2152, &gtpu(0xabcd, ext, &ip))));
        inner_tcp(&f, tunnel(TunnelKind::GtpU, Some(0xabcd)));
    }
    let f = eth(
        0x0800,
        &outer4(17, &udp(2152, &gtpu(7, 0, &ip6_tcp(PAYLOAD)))),
    );
    inner_tcp(&f, tunnel(TunnelKind::GtpU, Some(7)));
    // An echo request carries no packet: UDP signalling.
    let mut echo = gtpu(0, 0, &[]);
    echo[1] = 1;
    assert_eq!(dropped(&eth(0x0800, &outer4(17, &udp(2152, &echo)))), "udp");
    // Version 2 is malformed, GTP' (PT 0) unsupported, an extension of length 0 malformed,
    // an extension chain cut short truncated.
    for (flags, reason) in [(0x50, "tunnel_malformed"), (0x20, "tunnel_unsupported")] {
        let mut g = gtpu(1, 0, &ip);
        g[0] = flags;
        assert_eq!(dropped(&eth(0x0800, &outer4(17, &udp(2152, &g)))), reason);
    }
    let mut g = gtpu(1, 1, &ip);
    g[12] = 0;
    assert_eq!(
        dropped(&eth(0x0800, &outer4(17, &udp(2152, &g)))),
        "tunnel_malformed"
    );
    let g = gtpu(1, 2, &[]);
    assert_eq!(
        dropped(&eth(0x0800, &outer4(17, &udp(2152, &g[..g.len() - 2])))),
        "tunnel_truncated"
    );
    // S alone: the optional word is there, its next-extension byte does not count.
    let mut g = vec![0x32, 0xff, 0, 0, 0, 0, 0, 9, 0, 1, 0, 0x85];
    g[2..4].copy_from_slice(&((4 + ip.len()) as u16).to_be_bytes());
    g.extend_from_slice(&ip);
    inner_tcp(
        &eth(0x0800, &outer4(17, &udp(2152, &g))),
        tunnel(TunnelKind::GtpU, Some(9)),
    );
}

#[test]
fn teredo_on_its_port_and_by_its_shape() {
    let ip6 = teredo_ip6(PAYLOAD);
    for (auth, origin) in [(false, false), (false, true), (true, true), (true, false)] {
        let mut payload = teredo_indicators(auth, origin);
        payload.extend_from_slice(&ip6);
        // From the server's port, to it, and between a client and a relay on other ports.
        for (src, dst) in [(3544, 51000), (51000, 3544), (51000, 40123)] {
            let f = eth(0x0800, &outer4(17, &udp_ports(src, dst, &payload)));
            inner_tcp(&f, tunnel(TunnelKind::Teredo, None));
        }
    }
    // Bytes after the datagram (Ethernet padding, a trailer) do not hide the shape.
    let mut f = eth(0x0800, &outer4(17, &udp_ports(51000, 40123, &ip6)));
    f.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    inner_tcp(&f, tunnel(TunnelKind::Teredo, None));
    // On 3544, something that is not IPv6 is malformed, indicators cut short truncated;
    // elsewhere it is plain UDP.
    let f = eth(0x0800, &outer4(17, &udp(3544, &ip_tcp(PAYLOAD))));
    assert_eq!(dropped(&f), "tunnel_malformed");
    let f = eth(
        0x0800,
        &outer4(17, &udp(3544, &teredo_indicators(true, true)[..10])),
    );
    assert_eq!(dropped(&f), "tunnel_truncated");
    let f = eth(0x0800, &outer4(17, &udp(40123, &ip_tcp(PAYLOAD))));
    assert_eq!(dropped(&f), "udp");
    // Off the Teredo port, IPv6 without a Teredo or link-local address, or with a length
    // that does not fill the datagram, is not taken for Teredo.
    let f = eth(0x0800, &outer4(17, &udp(40123, &ip6_tcp(PAYLOAD))));
    assert_eq!(dropped(&f), "udp");
    let mut longer = ip6.clone();
    longer.push(0);
    let f = eth(0x0800, &outer4(17, &udp(40123, &longer)));
    assert_eq!(dropped(&f), "udp");
    // Detection off: only the ports.
    let tunnels = UdpTunnels::new([(TunnelKind::Teredo, &[3544u16][..])], false).unwrap();
    let f = eth(0x0800, &outer4(17, &udp(40123, &ip6)));
    let mut stats = DecodeStats::default();
    assert!(decode(LinkType::Ethernet, &f, at(), &tunnels, &mut stats).is_none());
    assert_eq!(stats.skipped.get(Skip::Udp), 1);
}

#[test]
fn tunnel_ports_are_configured() {
    let inner = eth(0x0800, &ip_tcp(PAYLOAD));
    let on_8472 = eth(0x0800, &outer4(17, &udp(8472, &vxlan(5, &inner))));
    let on_4789 = eth(0x0800, &outer4(17, &udp(4789, &vxlan(5, &inner))));
    assert_eq!(dropped(&on_8472), "udp");
    let tunnels = UdpTunnels::new([(TunnelKind::Vxlan, &[8472u16][..])], true).unwrap();
    let mut stats = DecodeStats::default();
    let m = decode(LinkType::Ethernet, &on_8472, at(), &tunnels, &mut stats).unwrap();
    assert_eq!(m.encap, tunnel(TunnelKind::Vxlan, Some(5)));
    // 4789 is no longer VXLAN, and GENEVE is off (not listed).
    assert!(decode(LinkType::Ethernet, &on_4789, at(), &tunnels, &mut stats).is_none());
    assert_eq!(stats.skipped.get(Skip::Udp), 1);
    let e = UdpTunnels::new(
        [
            (TunnelKind::Vxlan, &[4789u16][..]),
            (TunnelKind::Geneve, &[4789u16][..]),
        ],
        true,
    )
    .unwrap_err();
    assert!(e.contains("4789") && e.contains("geneve"), "{e}");
    let e = UdpTunnels::new([(TunnelKind::Vxlan, &[4789u16, 4789][..])], true).unwrap_err();
    assert!(e.contains("listed twice"), "{e}");
    // Only Teredo is matched by source port: a client that happens to send from 4789 or
    // 2152 is plain UDP.
    for src in [4789, 2152, 4790, 4754, 6081] {
        let f = eth(0x0800, &outer4(17, &udp_ports(src, 53, &vxlan(5, &inner))));
        assert_eq!(dropped(&f), "udp", "from {src}");
    }
    assert!(UdpTunnels::new([(TunnelKind::Gre, &[1u16][..])], true).is_err());
}

#[test]
fn tunnel_skips_are_counted_by_kind() {
    let ip = ip_tcp(PAYLOAD);
    let inner = eth(0x0800, &ip);
    let cases: Vec<(TunnelKind, Vec<u8>, &str)> = vec![
        (
            TunnelKind::Vxlan,
            outer4(17, &udp(4789, &[0x08, 0, 0])),
            "truncated",
        ),
        (
            TunnelKind::Vxlan,
            outer4(
                17,
                &udp(
                    4789,
                    &vxlan(1, &inner)[..8].iter().map(|_| 0).collect::<Vec<_>>(),
                ),
            ),
            "malformed",
        ),
        (
            TunnelKind::VxlanGpe,
            outer4(17, &udp(4790, &[0x0c, 0, 0])),
            "truncated",
        ),
        (
            TunnelKind::VxlanGpe,
            outer4(17, &udp(4790, &vxlan_gpe(1, 4, &ip))),
            "unsupported",
        ),
        (
            TunnelKind::Geneve,
            outer4(17, &udp(6081, &geneve(1, 4, 0x6558, &[])[..10])),
            "truncated",
        ),
        (
            TunnelKind::GtpU,
            outer4(17, &udp(2152, &[0x30, 0xff, 0, 0])),
            "truncated",
        ),
        (
            TunnelKind::Teredo,
            outer4(17, &udp(3544, &[0x45, 0])),
            "malformed",
        ),
        (
            TunnelKind::GreUdp,
            outer4(17, &udp(4754, &[0x00, 0x01, 0x08, 0x00])),
            "unsupported",
        ),
        (
            TunnelKind::Gre,
            outer4(47, &[0x20, 0, 0x08, 0x00]),
            "truncated",
        ),
        (
            TunnelKind::ErspanII,
            outer4(47, &erspan2(1, &inner)[..12]),
            "truncated",
        ),
        (
            TunnelKind::ErspanIII,
            outer4(47, &erspan3(1, false, 9, &inner)),
            "unsupported",
        ),
        (
            TunnelKind::ErspanI,
            outer4(47, &gre(0x88be, false, None, None, &inner[..10])),
            "truncated",
        ),
    ];
    for (kind, ip_frame, what) in cases {
        let f = eth(0x0800, &ip_frame);
        let mut stats = DecodeStats::default();
        assert!(decode(
            LinkType::Ethernet,
            &f,
            at(),
            &UdpTunnels::default(),
            &mut stats
        )
        .is_none());
        let t = &stats.tunnels;
        let by_kind = match what {
            "truncated" => &t.truncated,
            "malformed" => &t.malformed,
            _ => &t.unsupported,
        };
        assert_eq!(by_kind.get(kind), 1, "{} {what}: {stats:?}", kind.name());
        assert_eq!(
            t.truncated.total() + t.malformed.total() + t.unsupported.total(),
            1,
            "{} {what}",
            kind.name()
        );
        assert_eq!(
            stats.skipped.get(match what {
                "truncated" => Skip::TunnelTruncated,
                "malformed" => Skip::TunnelMalformed,
                _ => Skip::TunnelUnsupported,
            }),
            1
        );
    }
}

fn tunnel_frames() -> Vec<Vec<u8>> {
    let inner = eth(0x0800, &ip_tcp(PAYLOAD));
    let ip = ip_tcp(PAYLOAD);
    let mut teredo = teredo_indicators(true, true);
    teredo.extend_from_slice(&teredo_ip6(PAYLOAD));
    vec![
        eth(0x0800, &outer4(47, &gre(0x88be, false, None, None, &inner))),
        eth(0x0800, &outer4(47, &erspan2_vlan(3, 42, &inner))),
        eth(
            0x0800,
            &outer4(17, &udp(4754, &gre(0x0800, false, Some(1), None, &ip))),
        ),
        eth(0x0800, &outer4(17, &udp(4790, &vxlan_gpe(1, 1, &ip)))),
        eth(0x0800, &outer4(17, &udp(2152, &gtpu(1, 2, &ip)))),
        eth(0x0800, &outer4(17, &udp(3544, &teredo))),
        eth(0x0800, &outer4(17, &udp(40000, &teredo))),
        eth(
            0x0800,
            &outer4(47, &gre(0x0800, true, Some(1), Some(2), &ip)),
        ),
        eth(0x0800, &outer4(47, &gre(0x6558, false, None, None, &inner))),
        eth(0x0800, &outer4(47, &erspan2(3, &inner))),
        eth(0x0800, &outer4(47, &erspan3(3, true, 0, &inner))),
        eth_vlan(5, 0x0800, &outer4(17, &udp(4789, &vxlan(1, &inner)))),
        eth(
            0x0800,
            &outer4(17, &udp(6081, &geneve(1, 2, 0x6558, &inner))),
        ),
        eth(0x0800, &outer4(4, &ip)),
        eth(0x0800, &outer4(41, &ip6_tcp(PAYLOAD))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Mutated and cut tunnel frames never panic, are counted once, and a returned payload
    /// lies inside the frame.
    #[test]
    fn mutated_tunnel_frames_never_panic(
        which in 0usize..15,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
    ) {
        let mut frame = tunnel_frames()[which].clone();
        for (pos, byte) in edits {
            let p = pos % frame.len();
            frame[p] = byte;
        }
        frame.truncate(frame.len() - cut % (frame.len() + 1));
        let mut stats = DecodeStats::default();
        if let Some(m) = decode(LinkType::Ethernet, &frame, at(), &UdpTunnels::default(), &mut stats) {
            prop_assert!(m.payload_offset as usize + m.payload_len as usize <= frame.len());
        }
        prop_assert_eq!(stats.tcp + stats.drops().map(|(_, n)| n).sum::<u64>(), 1);
    }
}
