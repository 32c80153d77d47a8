//! Bounded IPv4/IPv6 fragment reassembly, run by the reader before sharding so that all
//! fragments of a datagram meet in one place, and the reassembled datagram is decoded like
//! any packet (its flow key comes from the reassembled TCP header).
//!
//! Bounds, all counted when they bite:
//! - a datagram not complete `timeout_ms` of **packet time** after its first fragment is
//!   dropped (`timed_out`);
//! - at most `max_datagrams` datagrams are in progress: a new one evicts the oldest
//!   (`evicted`);
//! - at most `max_fragments` fragments per datagram: one more drops the datagram
//!   (`too_many_fragments`);
//! - at most `max_bytes` held over all datagrams: the oldest others are evicted to make room
//!   (`evicted`), and a datagram that alone does not fit is dropped (`evicted`);
//! - a datagram longer than IP allows (65,535 bytes) is dropped (`too_big`).
//!
//! Overlaps: **the first copy of a byte wins**. A fragment that covers bytes already held
//! contributes only the bytes not yet held, and is counted in `overlaps` (an attacker's
//! rewrite of a held range, as in the classic Teardrop/Rose-style evasions, does not change
//! what is reassembled). Fragments with impossible offsets or lengths (not a multiple of 8
//! before the last one, past the end the last fragment fixed, a second, different end, an
//! IPv4/IPv6 header that does not parse, a capture that cut the fragment short) are dropped
//! and counted in `bad_fragments`.
//!
//! Datagrams are keyed by source, destination, identification, protocol (IPv4) and the
//! VLAN/tunnel they arrived in, so equal private address spaces in two tunnels never mix.
//! The reassembled datagram carries the IPv4 header (or IPv6 header and the extension
//! headers before the fragment header) of the fragment at offset 0, with the lengths and
//! the fragment fields fixed up.

use crate::decap::Decap;
use apitap_core::Timestamp;
use hashlink::LinkedHashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Reassembly bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefragLimits {
    /// Packet-time milliseconds a datagram may take from its first fragment to complete.
    pub timeout_ms: u64,
    /// Datagrams in progress at once.
    pub max_datagrams: usize,
    /// Fragments of one datagram.
    pub max_fragments: usize,
    /// Bytes held over all datagrams in progress.
    pub max_bytes: usize,
}

impl Default for DefragLimits {
    fn default() -> Self {
        DefragLimits {
            timeout_ms: 30_000,
            max_datagrams: 4096,
            max_fragments: 64,
            max_bytes: 16 << 20,
        }
    }
}

apitap_core::counters! {
    /// Reassembly counters.
    pub struct DefragStats {
        /// Fragments handed to reassembly.
        pub fragments: u64,
        /// Datagrams reassembled.
        pub reassembled: u64,
        /// Fragments that overlapped bytes already held (first wins; not a drop).
        pub overlaps: u64,
        /// Datagrams dropped incomplete after `timeout_ms`.
        pub timed_out: u64,
        /// Datagrams dropped to stay within `max_datagrams` or `max_bytes`.
        pub evicted: u64,
        /// Datagrams dropped for having more than `max_fragments` fragments.
        pub too_many_fragments: u64,
        /// Datagrams dropped for being longer than IP allows.
        pub too_big: u64,
        /// Fragments dropped for impossible offsets or lengths, or headers that do not parse.
        pub bad_fragments: u64,
        /// Fragments discarded in all (those of dropped datagrams included).
        pub fragments_dropped: u64,
    }
}

/// Largest IP datagram (IPv4 total length, IPv6 payload length).
const MAX_IP_LEN: usize = 65_535;
/// IPv6 extension headers walked before the fragment header.
const MAX_V6_EXTENSIONS: usize = 8;

/// Which datagram a fragment belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    /// IPv4 protocol (0 for IPv6, whose key is source, destination and id).
    proto: u8,
    decap: Decap,
}

/// One fragment, parsed.
struct Frag<'a> {
    key: Key,
    /// Offset of `data` in the datagram's fragmentable part.
    offset: usize,
    more: bool,
    data: &'a [u8],
    /// IPv4 header, or IPv6 header plus the extension headers before the fragment header.
    header: &'a [u8],
    /// IPv6: index in `header` of the next-header byte that names the fragment header, and
    /// the protocol after the fragment header.
    v6: Option<(usize, u8)>,
}

/// A datagram in progress.
struct Datagram {
    first: Timestamp,
    /// Header of the fragment at offset 0 (empty until it arrives).
    header: Vec<u8>,
    v6: Option<(usize, u8)>,
    /// The fragmentable part; bytes outside `have` are not meaningful.
    data: Vec<u8>,
    /// Received ranges, sorted and disjoint (touching ranges merged).
    have: Vec<(usize, usize)>,
    /// Length of the fragmentable part, once the last fragment has arrived.
    end: Option<usize>,
    fragments: u64,
}

impl Datagram {
    fn cost(&self) -> usize {
        self.header.len().saturating_add(self.data.len())
    }

    fn complete(&self) -> bool {
        !self.header.is_empty()
            && self
                .end
                .is_some_and(|end| self.have.as_slice() == [(0, end)])
    }

    /// Copies the bytes of `[start, start + bytes.len())` not held yet (first wins) and
    /// records the range. True when some of it was held already.
    fn insert(&mut self, start: usize, bytes: &[u8]) -> bool {
        let end = start.saturating_add(bytes.len());
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        let mut overlap = false;
        let mut pos = start;
        for &(s, e) in &self.have {
            if e <= pos {
                continue;
            }
            if s >= end {
                break;
            }
            if s > pos {
                copy(&mut self.data, bytes, start, pos, s);
            }
            overlap = true;
            pos = pos.max(e);
            if pos >= end {
                break;
            }
        }
        if pos < end {
            copy(&mut self.data, bytes, start, pos, end);
        }
        // Merge the new range in.
        let mut merged = (start, end);
        self.have.retain(|&(s, e)| {
            if e < merged.0 || s > merged.1 {
                true
            } else {
                merged = (merged.0.min(s), merged.1.max(e));
                false
            }
        });
        let at = self.have.partition_point(|&(s, _)| s < merged.0);
        self.have.insert(at, merged);
        overlap
    }
}

/// Copies `bytes[from - start .. to - start]` to `data[from..to]`.
fn copy(data: &mut [u8], bytes: &[u8], start: usize, from: usize, to: usize) {
    let src = bytes.get(from.saturating_sub(start)..to.saturating_sub(start));
    if let (Some(dst), Some(src)) = (data.get_mut(from..to), src) {
        dst.copy_from_slice(src);
    }
}

/// Why a fragment was not taken.
enum Bad {
    /// Impossible offsets or lengths, or headers that do not parse.
    Fragment,
    /// Longer than IP allows.
    TooBig,
}

fn be16(d: &[u8], at: usize) -> Option<u16> {
    d.get(at..)?
        .first_chunk::<2>()
        .map(|b| u16::from_be_bytes(*b))
}

fn parse(ip: &[u8], decap: Decap) -> Result<Frag<'_>, Bad> {
    match ip.first().map(|b| b >> 4) {
        Some(4) => parse_v4(ip, decap),
        Some(6) => parse_v6(ip, decap),
        _ => Err(Bad::Fragment),
    }
}

fn parse_v4(ip: &[u8], decap: Decap) -> Result<Frag<'_>, Bad> {
    let h = ip.first_chunk::<20>().ok_or(Bad::Fragment)?;
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if ihl < 20 || total < ihl || ip.len() < total {
        // A capture that cut the fragment short cannot be reassembled.
        return Err(Bad::Fragment);
    }
    let flags_offset = u16::from_be_bytes([h[6], h[7]]);
    let offset = usize::from(flags_offset & 0x1fff) * 8;
    let more = flags_offset & 0x2000 != 0;
    let data = ip.get(ihl..total).ok_or(Bad::Fragment)?;
    let header = ip.get(..ihl).ok_or(Bad::Fragment)?;
    let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
    let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
    Ok(Frag {
        key: Key {
            src: IpAddr::V4(src),
            dst: IpAddr::V4(dst),
            id: u32::from(u16::from_be_bytes([h[4], h[5]])),
            proto: h[9],
            decap,
        },
        offset,
        more,
        data,
        header,
        v6: None,
    })
}

fn parse_v6(ip: &[u8], decap: Decap) -> Result<Frag<'_>, Bad> {
    let h = ip.first_chunk::<40>().ok_or(Bad::Fragment)?;
    let end = 40 + usize::from(u16::from_be_bytes([h[4], h[5]]));
    if ip.len() < end {
        return Err(Bad::Fragment);
    }
    let mut next = h[6];
    let mut next_at = 6;
    let mut pos = 40;
    for _ in 0..MAX_V6_EXTENSIONS {
        match next {
            // Hop-by-hop, routing, destination options: part of the unfragmentable part.
            0 | 43 | 60 => {
                let len = (usize::from(*ip.get(pos + 1).ok_or(Bad::Fragment)?) + 1) * 8;
                next = *ip.get(pos).ok_or(Bad::Fragment)?;
                next_at = pos;
                pos = pos.saturating_add(len);
                if pos > end {
                    return Err(Bad::Fragment);
                }
            }
            _ => break,
        }
    }
    if next != 44 {
        return Err(Bad::Fragment);
    }
    let f = ip
        .get(pos..end)
        .and_then(|f| f.first_chunk::<8>())
        .ok_or(Bad::Fragment)?;
    let offset_flags = u16::from_be_bytes([f[2], f[3]]);
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(h.get(8..24).ok_or(Bad::Fragment)?);
    dst.copy_from_slice(h.get(24..40).ok_or(Bad::Fragment)?);
    Ok(Frag {
        key: Key {
            src: IpAddr::V6(Ipv6Addr::from(src)),
            dst: IpAddr::V6(Ipv6Addr::from(dst)),
            id: u32::from_be_bytes([f[4], f[5], f[6], f[7]]),
            proto: 0,
            decap,
        },
        offset: usize::from(offset_flags >> 3) * 8,
        more: offset_flags & 1 != 0,
        data: ip.get(pos + 8..end).ok_or(Bad::Fragment)?,
        header: ip.get(..pos).ok_or(Bad::Fragment)?,
        v6: Some((next_at, f[0])),
    })
}

/// The reassembler. Its memory is bounded by [`DefragLimits`].
pub struct Defrag {
    limits: DefragLimits,
    /// Datagrams in progress, oldest first.
    map: LinkedHashMap<Key, Datagram>,
    /// Bytes held over all datagrams.
    bytes: usize,
}

impl Defrag {
    /// A reassembler within `limits`.
    pub fn new(limits: DefragLimits) -> Defrag {
        Defrag {
            limits,
            map: LinkedHashMap::new(),
            bytes: 0,
        }
    }

    /// Datagrams in progress.
    pub fn in_progress(&self) -> usize {
        self.map.len()
    }

    /// Bytes held over all datagrams in progress.
    pub fn bytes_held(&self) -> usize {
        self.bytes
    }

    fn timeout_ns(&self) -> u64 {
        self.limits.timeout_ms.saturating_mul(1_000_000)
    }

    /// Drops the datagrams whose first fragment is more than `timeout_ms` older than `now`
    /// (packet time). Datagrams are kept in arrival order, so this looks at the oldest only
    /// and costs nothing when none is due.
    pub fn expire(&mut self, now: Timestamp, stats: &mut DefragStats) {
        let timeout = self.timeout_ns();
        while let Some((_, d)) = self.map.front() {
            if now.nanos_since(d.first) <= timeout {
                break;
            }
            if let Some((_, d)) = self.map.pop_front() {
                stats.timed_out = stats.timed_out.saturating_add(1);
                self.discard(&d, stats);
            }
        }
    }

    fn discard(&mut self, d: &Datagram, stats: &mut DefragStats) {
        self.bytes = self.bytes.saturating_sub(d.cost());
        stats.fragments_dropped = stats.fragments_dropped.saturating_add(d.fragments);
    }

    fn drop_key(&mut self, key: &Key, stats: &mut DefragStats) {
        if let Some(d) = self.map.remove(key) {
            self.discard(&d, stats);
        }
    }

    /// Evicts the oldest datagram other than `keep`; false when there is none.
    fn evict_oldest(&mut self, keep: &Key, stats: &mut DefragStats) -> bool {
        let Some(oldest) = self.map.keys().find(|k| *k != keep).copied() else {
            return false;
        };
        stats.evicted = stats.evicted.saturating_add(1);
        self.drop_key(&oldest, stats);
        true
    }

    /// Adds one fragment: `ip` starts at its IPv4/IPv6 header (the [`crate::Fragment`]
    /// offset in the frame), `decap` is what the decoder found outside it, `now` its
    /// capture time. Returns true when it completed a datagram, which is then in `out`
    /// (replaced), starting with its IP header.
    pub fn push(
        &mut self,
        ip: &[u8],
        decap: Decap,
        now: Timestamp,
        stats: &mut DefragStats,
        out: &mut Vec<u8>,
    ) -> bool {
        stats.fragments = stats.fragments.saturating_add(1);
        self.expire(now, stats);
        match self.add(ip, decap, now, stats, out) {
            Ok(done) => done,
            Err((bad, key)) => {
                stats.fragments_dropped = stats.fragments_dropped.saturating_add(1);
                match bad {
                    Bad::Fragment => stats.bad_fragments = stats.bad_fragments.saturating_add(1),
                    Bad::TooBig => {
                        stats.too_big = stats.too_big.saturating_add(1);
                        if let Some(key) = key {
                            self.drop_key(&key, stats);
                        }
                    }
                }
                false
            }
        }
    }

    fn add(
        &mut self,
        ip: &[u8],
        decap: Decap,
        now: Timestamp,
        stats: &mut DefragStats,
        out: &mut Vec<u8>,
    ) -> Result<bool, (Bad, Option<Key>)> {
        let frag = parse(ip, decap).map_err(|b| (b, None))?;
        let key = frag.key;
        let len = frag.data.len();
        let end = frag.offset.saturating_add(len);
        if len == 0 || (frag.more && len % 8 != 0) {
            return Err((Bad::Fragment, None));
        }
        // The data plus the smallest header (IPv4: 20 bytes; the IPv6 payload length
        // leaves the fixed header out) must fit in an IP datagram.
        let limit = if frag.v6.is_some() {
            MAX_IP_LEN
        } else {
            MAX_IP_LEN - 20
        };
        if end > limit {
            return Err((Bad::TooBig, Some(key)));
        }

        if let Some(d) = self.map.get(&key) {
            if now.nanos_since(d.first) > self.timeout_ns() {
                // Packet time went backwards past the oldest, so `expire` missed it.
                stats.timed_out = stats.timed_out.saturating_add(1);
                self.drop_key(&key, stats);
            }
        }
        if let Some(d) = self.map.get(&key) {
            // Offsets the datagram's end rules out.
            let conflict = match (d.end, frag.more) {
                (Some(e), true) => end > e,
                (Some(e), false) => end != e,
                (None, false) => d.have.last().is_some_and(|&(_, e)| e > end),
                (None, true) => false,
            };
            if conflict {
                return Err((Bad::Fragment, None));
            }
        } else {
            while self.map.len() >= self.limits.max_datagrams.max(1) {
                if !self.evict_oldest(&key, stats) {
                    break;
                }
            }
            self.map.insert(
                key,
                Datagram {
                    first: now,
                    header: Vec::new(),
                    v6: None,
                    data: Vec::new(),
                    have: Vec::new(),
                    end: None,
                    fragments: 0,
                },
            );
        }

        // Room for the bytes this fragment adds.
        let (grow, fragments) = match self.map.get(&key) {
            Some(d) => {
                let header = if frag.offset == 0 && d.header.is_empty() {
                    frag.header.len()
                } else {
                    0
                };
                (
                    end.saturating_sub(d.data.len()).saturating_add(header),
                    d.fragments.saturating_add(1),
                )
            }
            None => (0, 0),
        };
        if fragments > self.limits.max_fragments as u64 {
            stats.too_many_fragments = stats.too_many_fragments.saturating_add(1);
            stats.fragments_dropped = stats.fragments_dropped.saturating_add(1);
            self.drop_key(&key, stats);
            return Ok(false);
        }
        while self.bytes.saturating_add(grow) > self.limits.max_bytes {
            if !self.evict_oldest(&key, stats) {
                // Alone, it does not fit.
                stats.evicted = stats.evicted.saturating_add(1);
                stats.fragments_dropped = stats.fragments_dropped.saturating_add(1);
                self.drop_key(&key, stats);
                return Ok(false);
            }
        }
        let Some(d) = self.map.get_mut(&key) else {
            return Ok(false);
        };
        let before = d.cost();
        d.fragments = fragments;
        if frag.offset == 0 && d.header.is_empty() {
            d.header.extend_from_slice(frag.header);
            d.v6 = frag.v6;
        }
        if !frag.more {
            d.end = Some(end);
        }
        if d.insert(frag.offset, frag.data) {
            stats.overlaps = stats.overlaps.saturating_add(1);
        }
        self.bytes = self.bytes.saturating_add(d.cost()).saturating_sub(before);
        if !d.complete() {
            return Ok(false);
        }
        let total = d.end.unwrap_or(0);
        if d.header
            .len()
            .saturating_sub(if d.v6.is_some() { 40 } else { 0 })
            + total
            > MAX_IP_LEN
        {
            stats.too_big = stats.too_big.saturating_add(1);
            self.drop_key(&key, stats);
            return Ok(false);
        }
        if let Some(d) = self.map.remove(&key) {
            self.bytes = self.bytes.saturating_sub(d.cost());
            build(&d, total, out);
            stats.reassembled = stats.reassembled.saturating_add(1);
            return Ok(true);
        }
        Ok(false)
    }
}

/// Writes the reassembled datagram: the offset-0 fragment's header with the lengths and
/// fragment fields fixed, then the data.
fn build(d: &Datagram, total: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&d.header);
    out.extend_from_slice(d.data.get(..total).unwrap_or(&d.data));
    let header_len = d.header.len();
    match d.v6 {
        None => {
            let len = u16::try_from(header_len + total).unwrap_or(u16::MAX);
            if let Some(f) = out.get_mut(2..4) {
                f.copy_from_slice(&len.to_be_bytes());
            }
            // Keep DF, clear MF and the offset.
            let df = be16(out, 6).unwrap_or(0) & 0x4000;
            if let Some(f) = out.get_mut(6..8) {
                f.copy_from_slice(&df.to_be_bytes());
            }
            if let Some(f) = out.get_mut(10..12) {
                f.copy_from_slice(&[0, 0]);
            }
            let sum = checksum(out.get(..header_len).unwrap_or(&[]));
            if let Some(f) = out.get_mut(10..12) {
                f.copy_from_slice(&sum.to_be_bytes());
            }
        }
        Some((next_at, next)) => {
            let len = u16::try_from(header_len.saturating_sub(40) + total).unwrap_or(u16::MAX);
            if let Some(f) = out.get_mut(4..6) {
                f.copy_from_slice(&len.to_be_bytes());
            }
            if let Some(b) = out.get_mut(next_at) {
                *b = next;
            }
        }
    }
}

/// The IPv4 header checksum of `header` (whose checksum field is zero).
fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in header.chunks(2) {
        let word = match pair {
            [a, b] => u16::from_be_bytes([*a, *b]),
            [a] => u16::from_be_bytes([*a, 0]),
            _ => 0,
        };
        sum = sum.wrapping_add(u32::from(word));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use etherparse::PacketBuilder;

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    /// An IPv4/TCP datagram with `n` payload bytes (a pattern).
    fn v4(n: usize, id: u16) -> Vec<u8> {
        let payload: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
            .tcp(40000, 80, 1, 1000)
            .write(&mut out, &payload)
            .unwrap();
        out[4..6].copy_from_slice(&id.to_be_bytes());
        fix_v4_checksum(&mut out);
        out
    }

    fn fix_v4_checksum(p: &mut [u8]) {
        let ihl = usize::from(p[0] & 0x0f) * 4;
        p[10..12].copy_from_slice(&[0, 0]);
        let c = checksum(&p[..ihl]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }

    /// Splits an IPv4 datagram into fragments of `size` data bytes (multiple of 8).
    fn frag_v4(dgram: &[u8], size: usize) -> Vec<Vec<u8>> {
        let ihl = usize::from(dgram[0] & 0x0f) * 4;
        let data = &dgram[ihl..];
        data.chunks(size)
            .enumerate()
            .map(|(i, chunk)| piece_v4(dgram, i * size, chunk, (i + 1) * size < data.len()))
            .collect()
    }

    fn piece_v4(dgram: &[u8], offset: usize, chunk: &[u8], more: bool) -> Vec<u8> {
        let ihl = usize::from(dgram[0] & 0x0f) * 4;
        let mut f = dgram[..ihl].to_vec();
        f.extend_from_slice(chunk);
        let total = (ihl + chunk.len()) as u16;
        f[2..4].copy_from_slice(&total.to_be_bytes());
        let df = u16::from_be_bytes([dgram[6], dgram[7]]) & 0x4000;
        let fo = (offset / 8) as u16 | if more { 0x2000 } else { 0 } | df;
        f[6..8].copy_from_slice(&fo.to_be_bytes());
        fix_v4_checksum(&mut f);
        f
    }

    fn v6(n: usize) -> Vec<u8> {
        let payload: Vec<u8> = (0..n).map(|i| (i % 253) as u8).collect();
        let mut out = Vec::new();
        PacketBuilder::ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            64,
        )
        .tcp(40000, 80, 1, 1000)
        .write(&mut out, &payload)
        .unwrap();
        out
    }

    fn frag_v6(dgram: &[u8], size: usize, id: u32) -> Vec<Vec<u8>> {
        let data = &dgram[40..];
        data.chunks(size)
            .enumerate()
            .map(|(i, chunk)| {
                let mut f = dgram[..40].to_vec();
                f[6] = 44;
                f[4..6].copy_from_slice(&((chunk.len() + 8) as u16).to_be_bytes());
                let more = (i + 1) * size < data.len();
                let fo = ((i * size / 8) as u16) << 3 | u16::from(more);
                f.extend_from_slice(&[dgram[6], 0]);
                f.extend_from_slice(&fo.to_be_bytes());
                f.extend_from_slice(&id.to_be_bytes());
                f.extend_from_slice(chunk);
                f
            })
            .collect()
    }

    fn run(d: &mut Defrag, frags: &[Vec<u8>], stats: &mut DefragStats) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut done = None;
        for (i, f) in frags.iter().enumerate() {
            if d.push(f, Decap::default(), ts(i as i64), stats, &mut out) {
                assert!(done.is_none());
                done = Some(out.clone());
            }
        }
        done
    }

    #[test]
    fn ipv4_in_order_and_reversed_and_shuffled() {
        let dgram = v4(3000, 7);
        let frags = frag_v4(&dgram, 1024);
        assert_eq!(frags.len(), 3);
        for order in [vec![0, 1, 2], vec![2, 1, 0], vec![1, 2, 0], vec![2, 0, 1]] {
            let mut d = Defrag::new(DefragLimits::default());
            let mut stats = DefragStats::default();
            let list: Vec<_> = order.iter().map(|&i| frags[i].clone()).collect();
            let got = run(&mut d, &list, &mut stats).expect("reassembled");
            assert_eq!(got, dgram, "order {order:?}");
            assert_eq!((stats.fragments, stats.reassembled), (3, 1));
            assert_eq!(d.in_progress(), 0);
            assert_eq!(d.bytes_held(), 0);
        }
    }

    #[test]
    fn ipv6_in_order_and_reversed() {
        let dgram = v6(2000);
        let frags = frag_v6(&dgram, 512, 99);
        for rev in [false, true] {
            let mut list = frags.clone();
            if rev {
                list.reverse();
            }
            let mut d = Defrag::new(DefragLimits::default());
            let mut stats = DefragStats::default();
            let got = run(&mut d, &list, &mut stats).expect("reassembled");
            assert_eq!(got, dgram);
        }
    }

    #[test]
    fn overlap_first_wins() {
        let dgram = v4(44, 1);
        let frags = frag_v4(&dgram, 32);
        assert_eq!(frags.len(), 2);
        // A rogue copy of the second half with different bytes, sent first: it wins.
        let mut rogue = frags[1].clone();
        let n = rogue.len();
        rogue[n - 4..].copy_from_slice(b"EVIL");
        // And an overlapping fragment over bytes 16..48 carrying junk, sent after.
        let junk = piece_v4(&dgram, 16, &[0xee; 32], true);
        let mut d = Defrag::new(DefragLimits::default());
        let mut stats = DefragStats::default();
        let got = run(&mut d, &[rogue, junk, frags[0].clone()], &mut stats).unwrap();
        assert_eq!(stats.overlaps, 2);
        assert!(got.ends_with(b"EVIL"));
        // Bytes 16..32 came from the junk fragment (first there), the rest from frags[0].
        assert_eq!(&got[20..20 + 16], &dgram[20..36]);
        assert_eq!(&got[36..52], &[0xee; 16]);
    }

    #[test]
    fn timeout_on_packet_time() {
        let dgram = v4(64, 2);
        let frags = frag_v4(&dgram, 32);
        let mut d = Defrag::new(DefragLimits {
            timeout_ms: 1000,
            ..DefragLimits::default()
        });
        let mut stats = DefragStats::default();
        let mut out = Vec::new();
        assert!(!d.push(&frags[0], Decap::default(), ts(0), &mut stats, &mut out));
        d.expire(ts(1000), &mut stats);
        assert_eq!(d.in_progress(), 1);
        // The second fragment comes too late: the first is gone, it starts anew.
        assert!(!d.push(&frags[1], Decap::default(), ts(1001), &mut stats, &mut out));
        assert_eq!((stats.timed_out, stats.reassembled), (1, 0));
        d.expire(ts(5000), &mut stats);
        assert_eq!(
            (stats.timed_out, d.in_progress(), d.bytes_held()),
            (2, 0, 0)
        );
        assert_eq!(stats.fragments_dropped, 2);
    }

    #[test]
    fn limits_datagrams_fragments_bytes() {
        // max_datagrams: the oldest is evicted.
        let mut d = Defrag::new(DefragLimits {
            max_datagrams: 2,
            ..DefragLimits::default()
        });
        let mut stats = DefragStats::default();
        let mut out = Vec::new();
        let firsts: Vec<_> = (0..3).map(|id| frag_v4(&v4(64, id), 48)).collect();
        for f in &firsts {
            d.push(&f[0], Decap::default(), ts(0), &mut stats, &mut out);
        }
        assert_eq!((d.in_progress(), stats.evicted), (2, 1));
        assert!(!d.push(&firsts[0][1], Decap::default(), ts(0), &mut stats, &mut out));
        assert!(d.push(&firsts[2][1], Decap::default(), ts(0), &mut stats, &mut out));

        // max_fragments.
        let mut d = Defrag::new(DefragLimits {
            max_fragments: 4,
            ..DefragLimits::default()
        });
        let mut stats = DefragStats::default();
        let frags = frag_v4(&v4(200, 9), 16);
        assert_eq!(frags.len(), 14);
        assert!(run(&mut d, &frags, &mut stats).is_none());
        // Fragments 1-4 held, the 5th drops them; 6-9 start anew, the 10th drops those.
        assert_eq!(stats.too_many_fragments, 2);
        assert_eq!(stats.fragments_dropped, 10);

        // max_bytes: room is made by evicting older datagrams; alone too large is dropped.
        let mut d = Defrag::new(DefragLimits {
            max_bytes: 3000,
            ..DefragLimits::default()
        });
        let mut stats = DefragStats::default();
        let a = frag_v4(&v4(2000, 1), 1024);
        let b = frag_v4(&v4(2000, 2), 1024);
        d.push(&a[1], Decap::default(), ts(0), &mut stats, &mut out);
        d.push(&b[1], Decap::default(), ts(0), &mut stats, &mut out);
        assert_eq!((d.in_progress(), stats.evicted), (1, 1));
        assert!(d.bytes_held() <= 3000);
        let c = frag_v4(&v4(8000, 3), 1024);
        d.push(&c[7], Decap::default(), ts(0), &mut stats, &mut out);
        assert!(d.bytes_held() <= 3000);
        assert_eq!(stats.evicted, 3);
    }

    #[test]
    fn bad_offsets_and_too_big() {
        let dgram = v4(44, 3);
        let frags = frag_v4(&dgram, 32);
        assert_eq!(frags.len(), 2);
        let mut d = Defrag::new(DefragLimits::default());
        let mut stats = DefragStats::default();
        let mut out = Vec::new();
        // Not a multiple of 8 before the last fragment.
        let odd = piece_v4(&dgram, 0, &dgram[20..33], true);
        assert!(!d.push(&odd, Decap::default(), ts(0), &mut stats, &mut out));
        assert_eq!(stats.bad_fragments, 1);
        // Last fragment fixes the end; a fragment past it, and a second end, are bad.
        assert!(!d.push(&frags[1], Decap::default(), ts(0), &mut stats, &mut out));
        let past = piece_v4(&dgram, 64, &[0; 8], true);
        assert!(!d.push(&past, Decap::default(), ts(0), &mut stats, &mut out));
        let other_end = piece_v4(&dgram, 40, &[0; 8], false);
        assert!(!d.push(&other_end, Decap::default(), ts(0), &mut stats, &mut out));
        assert_eq!(stats.bad_fragments, 3);
        assert!(d.push(&frags[0], Decap::default(), ts(0), &mut stats, &mut out));
        assert_eq!(out, dgram);
        // Past 65535 bytes.
        let huge = piece_v4(&dgram, 8191 * 8, &[0; 16], false);
        assert!(!d.push(&huge, Decap::default(), ts(0), &mut stats, &mut out));
        assert_eq!(stats.too_big, 1);
        // Garbage and truncated fragments.
        assert!(!d.push(&[0x45, 0, 0], Decap::default(), ts(0), &mut stats, &mut out));
        assert!(!d.push(
            &frags[0][..30],
            Decap::default(),
            ts(0),
            &mut stats,
            &mut out
        ));
        assert!(!d.push(&[], Decap::default(), ts(0), &mut stats, &mut out));
        assert_eq!(stats.bad_fragments, 6);
    }

    #[test]
    fn tunnels_keep_datagrams_apart() {
        let dgram = v4(64, 4);
        let frags = frag_v4(&dgram, 32);
        let mut d = Defrag::new(DefragLimits::default());
        let mut stats = DefragStats::default();
        let mut out = Vec::new();
        let other = Decap {
            encap: apitap_core::Encap {
                vlan: Some(7),
                tunnel: None,
            },
            depth: 0,
            reading: None,
        };
        assert!(!d.push(&frags[0], Decap::default(), ts(0), &mut stats, &mut out));
        assert!(!d.push(&frags[1], other, ts(0), &mut stats, &mut out));
        assert_eq!(d.in_progress(), 2);
    }
}
