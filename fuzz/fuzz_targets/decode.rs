//! Fuzz target: link/IP/TCP decoding of arbitrary frames for every link type, through every
//! tunnel, with the standard UDP tunnel ports or with every UDP tunnel on one port each of
//! a few small ones and Teredo detection off. Every frame is counted once, a tunnel skip
//! once more by its kind, and a payload lies inside the frame.
#![no_main]

use apitap_core::{PacketRef, TunnelKind};
use apitap_wire::{decode, DecodeStats, LinkType, UdpTunnels};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let link = LinkType::ALL[usize::from(selector & 0x7f) % LinkType::ALL.len()];
    let tunnels = if selector & 0x80 == 0 {
        UdpTunnels::default()
    } else {
        let ports: [(TunnelKind, &[u16]); 6] = [
            (TunnelKind::Vxlan, &[1]),
            (TunnelKind::VxlanGpe, &[2]),
            (TunnelKind::Geneve, &[3]),
            (TunnelKind::GtpU, &[4]),
            (TunnelKind::Teredo, &[5]),
            (TunnelKind::GreUdp, &[6]),
        ];
        match UdpTunnels::new(ports, false) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    };
    let mut stats = DecodeStats::default();
    if let Some(m) = decode(link, frame, PacketRef::default(), &tunnels, &mut stats) {
        let end = m.payload_offset as usize + m.payload_len as usize;
        assert!(end <= frame.len());
    }
    let skipped: u64 = stats.drops().map(|(_, n)| n).sum();
    assert_eq!(stats.tcp + skipped, 1);
    let t = &stats.tunnels;
    assert!(t.truncated.total() + t.malformed.total() + t.unsupported.total() <= 1);
});
