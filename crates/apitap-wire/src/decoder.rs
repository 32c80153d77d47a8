//! The reader's whole path from a captured frame to a TCP segment: decode (link layer,
//! tunnels, IP, TCP), drop SPAN duplicates, and reassemble IP fragments, including a
//! fragment found inside a reassembled datagram (a fragmented packet in a fragmented
//! tunnel), each round one tunnel deeper, so the loop ends.
//!
//! Every frame is counted once in [`DecodeStats`]: as TCP, under a skip reason, or as a
//! held fragment; duplicates are counted apart ([`Decoder::duplicates_dropped`]).

use crate::decap::Decap;
use crate::decode::{decode_frame, decode_reassembled, Decoded, LinkType, UdpTunnels};
use crate::dedup::Dedup;
use crate::defrag::{Defrag, DefragLimits};
use crate::stats::DecodeStats;
use apitap_core::{PacketMeta, PacketRef, Timestamp};

/// Decodes frames into TCP segments; owns the fragment reassembler and the duplicate
/// filter, and their bounded state.
pub struct Decoder {
    stats: DecodeStats,
    tunnels: UdpTunnels,
    dedup: Dedup,
    /// `None` when fragment reassembly is off (fragments are counted and dropped).
    defrag: Option<Defrag>,
    /// The last reassembled datagram, and a spare (buffers reused between datagrams).
    reassembled: Vec<u8>,
    scratch: Vec<u8>,
}

impl Decoder {
    /// A decoder that follows UDP tunnels on the ports `tunnels` names, drops duplicates
    /// within `dedup_window_us` (0: off) and reassembles fragments within `defrag`
    /// (`None`: off).
    pub fn new(tunnels: UdpTunnels, dedup_window_us: u64, defrag: Option<DefragLimits>) -> Decoder {
        Decoder {
            stats: DecodeStats::default(),
            tunnels,
            dedup: Dedup::new(dedup_window_us),
            defrag: defrag.map(Defrag::new),
            reassembled: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Decodes one frame captured at `at`. Returns the TCP segment it carries (or that the
    /// datagram it completed carries) and the bytes its payload offsets point into: the
    /// frame itself, or the reassembled datagram.
    #[inline]
    pub fn frame<'a>(
        &'a mut self,
        link: LinkType,
        data: &'a [u8],
        at: PacketRef,
    ) -> Option<(PacketMeta, &'a [u8])> {
        let decoded = decode_frame(link, data, at, &self.tunnels, &mut self.stats);
        if let Some(d) = self.defrag.as_mut() {
            // Packet-time expiry; looks at the oldest datagram only.
            d.expire(at.ts, &mut self.stats.defrag);
        }
        match decoded {
            Decoded::Tcp(meta) => {
                if self.dedup.is_duplicate(data, at.ts) {
                    None
                } else {
                    Some((meta, data))
                }
            }
            Decoded::Fragment(frag) => {
                if self.dedup.is_duplicate(data, at.ts) {
                    self.stats.count_fragment();
                    return None;
                }
                let ip = data.get(frag.ip_offset..).unwrap_or(&[]);
                self.reassemble(ip, frag.decap, at)
            }
            Decoded::Dropped => None,
        }
    }

    /// Hands the fragment starting at `ip` to reassembly; a completed datagram is decoded
    /// like a frame, with the VLAN and tunnel found outside the fragment. The frame is
    /// counted once: as a held fragment, or as what the datagram it completed holds.
    fn reassemble(
        &mut self,
        ip: &[u8],
        decap: Decap,
        at: PacketRef,
    ) -> Option<(PacketMeta, &[u8])> {
        let Some(defrag) = self.defrag.as_mut() else {
            self.stats.count_fragment();
            return None;
        };
        let mut done = defrag.push(
            ip,
            decap,
            at.ts,
            &mut self.stats.defrag,
            &mut self.reassembled,
        );
        let mut decap = decap;
        for _ in 0..=crate::decode::MAX_TUNNEL_DEPTH {
            if !done {
                self.stats.count_fragment();
                return None;
            }
            match decode_reassembled(&self.reassembled, decap, at, &self.tunnels, &mut self.stats) {
                Decoded::Tcp(meta) => return Some((meta, &self.reassembled)),
                Decoded::Fragment(inner) => {
                    let ip = self.reassembled.get(inner.ip_offset..).unwrap_or(&[]);
                    done = defrag.push(
                        ip,
                        inner.decap,
                        at.ts,
                        &mut self.stats.defrag,
                        &mut self.scratch,
                    );
                    decap = inner.decap;
                    std::mem::swap(&mut self.reassembled, &mut self.scratch);
                }
                Decoded::Dropped => return None,
            }
        }
        None
    }

    /// Expires fragment reassembly at packet time `now` (a quiet live link).
    pub fn expire(&mut self, now: Timestamp) {
        if let Some(d) = self.defrag.as_mut() {
            d.expire(now, &mut self.stats.defrag);
        }
    }

    /// Decode counters so far.
    pub fn stats(&self) -> &DecodeStats {
        &self.stats
    }

    /// Frames dropped as SPAN duplicates.
    pub fn duplicates_dropped(&self) -> u64 {
        self.dedup.dropped
    }
}
