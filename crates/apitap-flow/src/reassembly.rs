//! TCP stream reassembly for one connection.
//!
//! Each side's bytes are delivered in sequence order. In-order segments are passed through
//! without copying; only out-of-order data is buffered, within configured bounds. Overlaps
//! keep the first copy seen (first-wins) and count differing bytes. A hole becomes a
//! [`StreamEvent::Gap`] when the peer acknowledges past it, when the out-of-order buffer
//! is full, or when the connection ends: bytes are never dropped silently.

use crate::seq::Seq;
use apitap_core::{Side, TcpFlags};
use std::collections::VecDeque;

/// Segments further ahead of the next expected byte than this are out of any plausible
/// window (corrupt or forged) and dropped, counted as `out_of_window`.
const MAX_WINDOW: i64 = 64 << 20;

/// Reassembly bounds (`[reassembly]` in sensor.toml).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReassemblyConfig {
    /// Out-of-order bytes buffered per direction; past it the hole becomes a gap (counted).
    pub max_ooo_bytes_per_direction: usize,
    /// Out-of-order segments buffered per direction.
    pub max_ooo_segments_per_direction: usize,
    /// Out-of-order bytes buffered by all connections together (split evenly across flow
    /// workers). When exceeded, the connection that just grew has its holes declared gaps
    /// and its buffer delivered (counted as `reassembly.memcap_flushes`).
    pub memcap_bytes: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        ReassemblyConfig {
            max_ooo_bytes_per_direction: 262_144,
            max_ooo_segments_per_direction: 512,
            memcap_bytes: 512 << 20,
        }
    }
}

/// Reassembly counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Segments seen (with or without payload).
    pub segments: u64,
    /// Segments delivered straight through, in order.
    pub in_order_segments: u64,
    /// Segments buffered because they arrived ahead of a hole.
    pub ooo_segments_buffered: u64,
    /// Segments whose data had all been seen already (dropped).
    pub retransmitted_segments: u64,
    /// Segments partly overlapping data already delivered or buffered (trimmed).
    pub partial_overlaps: u64,
    /// Overlaps whose bytes differ from the copy kept (first copy wins): an evasion sign.
    pub overlap_conflicts: u64,
    /// Times the out-of-order buffer was full and the hole in front of it was declared a gap.
    pub ooo_overflow_flushes: u64,
    /// Segments too far ahead of the stream to be plausible (dropped).
    pub out_of_window: u64,
    /// Gaps reported.
    pub gaps: u64,
    /// Bytes reported as gaps.
    pub gap_bytes: u64,
    /// Payload bytes missing because the capture's snap length cut the frame.
    pub truncated_payload_bytes: u64,
    /// Payload bytes after a RST or beyond a FIN (ignored).
    pub data_after_close: u64,
}

impl ReassemblyStats {
    /// Adds another set of counters.
    pub fn add(&mut self, o: &ReassemblyStats) {
        self.segments += o.segments;
        self.in_order_segments += o.in_order_segments;
        self.ooo_segments_buffered += o.ooo_segments_buffered;
        self.retransmitted_segments += o.retransmitted_segments;
        self.partial_overlaps += o.partial_overlaps;
        self.overlap_conflicts += o.overlap_conflicts;
        self.ooo_overflow_flushes += o.ooo_overflow_flushes;
        self.out_of_window += o.out_of_window;
        self.gaps += o.gaps;
        self.gap_bytes += o.gap_bytes;
        self.truncated_payload_bytes += o.truncated_payload_bytes;
        self.data_after_close += o.data_after_close;
    }
}

/// One TCP segment as decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Sender.
    pub from: Side,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (valid when `flags.ack()`).
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Payload length on the wire; the captured payload may be shorter.
    pub wire_len: u32,
}

/// What reassembly hands to the application layer, per side, in stream order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEvent<'a> {
    /// In-order bytes sent by `side`.
    Data {
        /// Sender.
        side: Side,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// `len` bytes sent by `side` that will never be seen.
    Gap {
        /// Sender.
        side: Side,
        /// Missing byte count.
        len: u64,
    },
    /// `side` finished sending; everything it sent before has been delivered.
    Fin {
        /// Sender.
        side: Side,
    },
    /// `side` reset the connection.
    Reset {
        /// Sender.
        side: Side,
    },
}

#[derive(Debug, Default)]
struct Stream {
    /// Initial sequence number from this side's SYN.
    isn: Option<Seq>,
    /// Next expected sequence number, once known.
    next: Option<Seq>,
    /// Out-of-order segments, sorted, not overlapping each other, all after `next`.
    ooo: VecDeque<(Seq, Vec<u8>)>,
    ooo_bytes: usize,
    /// Sequence number of a FIN seen, not yet reached.
    fin: Option<Seq>,
    fin_done: bool,
    /// Highest acknowledgement the peer sent for this stream.
    acked: Option<Seq>,
}

/// Both directions of one TCP connection.
#[derive(Debug, Default)]
pub struct TcpConn {
    streams: [Stream; 2],
    client: Option<Side>,
    syn_seen: bool,
    reset: bool,
}

/// Emits events and keeps the counters in step.
struct Out<'e, F: FnMut(StreamEvent<'_>)> {
    emit: &'e mut F,
    stats: &'e mut ReassemblyStats,
}

impl<F: FnMut(StreamEvent<'_>)> Out<'_, F> {
    fn data(&mut self, side: Side, bytes: &[u8]) {
        if !bytes.is_empty() {
            (self.emit)(StreamEvent::Data { side, bytes });
        }
    }
    fn gap(&mut self, side: Side, len: u64) {
        if len > 0 {
            self.stats.gaps += 1;
            self.stats.gap_bytes += len;
            (self.emit)(StreamEvent::Gap { side, len });
        }
    }
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl TcpConn {
    /// A connection with nothing seen yet.
    pub fn new() -> TcpConn {
        TcpConn::default()
    }

    /// The client, when the handshake told: the sender of a SYN, or the receiver of a
    /// SYN+ACK.
    pub fn client_side(&self) -> Option<Side> {
        self.client
    }

    /// A SYN was seen from either side.
    pub fn saw_syn(&self) -> bool {
        self.syn_seen
    }

    /// Out-of-order bytes buffered now.
    pub fn buffered_bytes(&self) -> usize {
        self.streams.iter().map(|s| s.ooo_bytes).sum()
    }

    /// Whether a segment opens a new connection on this 5-tuple (port reuse): a SYN
    /// without ACK from a side that already sent a different SYN, or that already sent data,
    /// or after the connection closed. A retransmitted SYN is not new.
    pub fn is_new_connection(&self, seg: &Segment) -> bool {
        if !seg.flags.syn() || seg.flags.ack() {
            return false;
        }
        let st = &self.streams[seg.from.index()];
        match st.isn {
            Some(isn) => isn != Seq(seg.seq) || self.reset || st.fin.is_some(),
            None => st.next.is_some() || self.reset,
        }
    }

    /// RST seen, or both sides' FIN delivered.
    pub fn is_finished(&self) -> bool {
        self.reset || self.streams.iter().all(|s| s.fin_done)
    }

    /// Processes one segment; `payload` is the captured payload (possibly shorter than
    /// `seg.wire_len`). Events go to `emit` in stream order.
    pub fn on_segment<F: FnMut(StreamEvent<'_>)>(
        &mut self,
        seg: &Segment,
        payload: &[u8],
        cfg: &ReassemblyConfig,
        stats: &mut ReassemblyStats,
        emit: &mut F,
    ) {
        stats.segments += 1;
        let side = seg.from;
        let mut out = Out { emit, stats };
        if self.reset {
            out.stats.data_after_close += u64::from(seg.wire_len);
            return;
        }
        if seg.flags.rst() {
            self.reset = true;
            (out.emit)(StreamEvent::Reset { side });
            return;
        }

        let mut data_seq = Seq(seg.seq);
        if seg.flags.syn() {
            self.syn_seen = true;
            if self.client.is_none() {
                self.client = Some(if seg.flags.ack() { side.other() } else { side });
            }
            let st = &mut self.streams[side.index()];
            if st.next.is_none() {
                st.next = Some(Seq(seg.seq).plus(1));
                st.isn = Some(Seq(seg.seq));
            }
            data_seq = Seq(seg.seq).plus(1);
        }

        // The peer's acknowledgement can prove that a hole in its stream was lost.
        if seg.flags.ack() {
            let peer = side.other();
            let ack = Seq(seg.ack);
            let pst = &mut self.streams[peer.index()];
            if pst.acked.is_none_or(|a| ack.after(a)) {
                pst.acked = Some(ack);
            }
            Self::gap_acked_holes(pst, peer, ack, &mut out);
        }

        let st = &mut self.streams[side.index()];
        let wire_len = seg.wire_len.max(len32(payload.len()));
        if st.next.is_none() {
            if wire_len == 0 && !seg.flags.fin() {
                return;
            }
            // Midstream pickup: the first segment seen starts the stream.
            st.next = Some(data_seq);
        }
        if st.fin_done {
            out.stats.data_after_close += u64::from(wire_len);
            return;
        }
        if wire_len > 0 {
            Self::add_data(st, side, data_seq, payload, wire_len, cfg, &mut out);
        }
        if seg.flags.fin() && st.fin.is_none() {
            st.fin = Some(data_seq.plus(wire_len));
        }
        Self::check_fin(st, side, &mut out);
    }

    /// End of the connection: holes become gaps, buffered bytes are delivered, a pending
    /// FIN fires. A second call emits nothing.
    pub fn flush<F: FnMut(StreamEvent<'_>)>(
        &mut self,
        _cfg: &ReassemblyConfig,
        stats: &mut ReassemblyStats,
        emit: &mut F,
    ) {
        let mut out = Out { emit, stats };
        for side in [Side::Lo, Side::Hi] {
            let st = &mut self.streams[side.index()];
            let Some(mut next) = st.next else {
                continue;
            };
            while let Some((seq, _)) = st.ooo.front() {
                let seq = *seq;
                if seq.after(next) {
                    out.gap(side, seq.diff(next).unsigned_abs());
                    st.next = Some(seq);
                }
                Self::drain(st, side, &mut out);
                next = st.next.unwrap_or(next);
            }
            // Bytes the peer acknowledged but the capture never showed.
            let end = match (st.fin, st.acked) {
                (Some(fin), _) => Some(fin),
                (None, Some(acked)) => Some(acked),
                (None, None) => None,
            };
            if let Some(end) = end {
                if end.after(next) && end.diff(next) <= MAX_WINDOW && !st.fin_done {
                    out.gap(side, end.diff(next).unsigned_abs());
                    st.next = Some(end);
                }
            }
            Self::check_fin(st, side, &mut out);
        }
    }

    /// Memory pressure: declares the holes in front of buffered data gaps and delivers the
    /// data, without ending the connection (later segments are processed as usual).
    pub fn flush_buffered<F: FnMut(StreamEvent<'_>)>(
        &mut self,
        stats: &mut ReassemblyStats,
        emit: &mut F,
    ) {
        let mut out = Out { emit, stats };
        for side in [Side::Lo, Side::Hi] {
            let st = &mut self.streams[side.index()];
            while let (Some(next), Some((seq, _))) = (st.next, st.ooo.front()) {
                let seq = *seq;
                if seq.after(next) {
                    out.gap(side, seq.diff(next).unsigned_abs());
                    st.next = Some(seq);
                }
                Self::drain(st, side, &mut out);
            }
            Self::check_fin(st, side, &mut out);
        }
    }

    fn check_fin<F: FnMut(StreamEvent<'_>)>(st: &mut Stream, side: Side, out: &mut Out<'_, F>) {
        if let (Some(fin), Some(next), false) = (st.fin, st.next, st.fin_done) {
            if !fin.after(next) {
                st.fin_done = true;
                (out.emit)(StreamEvent::Fin { side });
            }
        }
    }

    /// Declares holes of `st` that the peer acknowledged past as gaps, delivering the
    /// buffered data behind them.
    fn gap_acked_holes<F: FnMut(StreamEvent<'_>)>(
        st: &mut Stream,
        side: Side,
        ack: Seq,
        out: &mut Out<'_, F>,
    ) {
        while let (Some(next), Some((first, _))) = (st.next, st.ooo.front()) {
            let first = *first;
            if first.after(ack) || !first.after(next) {
                break;
            }
            out.gap(side, first.diff(next).unsigned_abs());
            st.next = Some(first);
            Self::drain(st, side, out);
        }
        Self::check_fin(st, side, out);
    }

    /// Places `wire_len` bytes starting at `seq` (of which `payload` was captured).
    fn add_data<F: FnMut(StreamEvent<'_>)>(
        st: &mut Stream,
        side: Side,
        mut seq: Seq,
        mut payload: &[u8],
        wire_len: u32,
        cfg: &ReassemblyConfig,
        out: &mut Out<'_, F>,
    ) {
        let missing_tail = wire_len.saturating_sub(len32(payload.len()));
        if missing_tail > 0 {
            out.stats.truncated_payload_bytes += u64::from(missing_tail);
        }
        let mut first_pass = true;
        loop {
            let Some(next) = st.next else { return };
            let rel = seq.diff(next);
            if rel < 0 {
                let skip = rel.unsigned_abs();
                let total = payload.len() as u64 + u64::from(missing_tail);
                if skip >= total {
                    if first_pass {
                        out.stats.retransmitted_segments += 1;
                    }
                    return;
                }
                if first_pass {
                    out.stats.partial_overlaps += 1;
                }
                let cut = usize::try_from(skip)
                    .unwrap_or(usize::MAX)
                    .min(payload.len());
                payload = payload.get(cut..).unwrap_or(&[]);
                seq = seq.plus(len32(cut));
                if payload.is_empty() {
                    // Only the snap-length-truncated tail is left.
                    Self::deliver_missing_tail(st, side, seq, missing_tail, out);
                    return;
                }
                first_pass = false;
                continue;
            }
            if rel > MAX_WINDOW {
                out.stats.out_of_window += 1;
                return;
            }
            if rel == 0 {
                // In order. Deliver up to the first buffered segment straight from the
                // caller's slice; buffered data beyond that point was there first.
                let room = st
                    .ooo
                    .front()
                    .map(|(s, _)| usize::try_from(s.diff(next)).unwrap_or(usize::MAX))
                    .unwrap_or(usize::MAX);
                let take = payload.len().min(room);
                let (now, rest) = payload.split_at(take);
                if first_pass {
                    out.stats.in_order_segments += 1;
                }
                out.data(side, now);
                st.next = Some(next.plus(len32(take)));
                if rest.is_empty() {
                    Self::deliver_missing_tail(st, side, next.plus(len32(take)), missing_tail, out);
                    Self::drain(st, side, out);
                    return;
                }
                Self::count_conflicts(st, next.plus(len32(take)), rest, out);
                Self::drain(st, side, out);
                payload = rest;
                seq = next.plus(len32(take));
                first_pass = false;
                continue;
            }
            // Ahead of a hole: buffer, within bounds.
            if payload.is_empty() {
                // Nothing captured of it; the hole it leaves is reported later.
                return;
            }
            let fits = st.ooo_bytes.saturating_add(payload.len())
                <= cfg.max_ooo_bytes_per_direction
                && st.ooo.len() < cfg.max_ooo_segments_per_direction;
            if fits {
                if first_pass {
                    out.stats.ooo_segments_buffered += 1;
                }
                Self::insert_first_wins(st, seq, payload, out);
                return;
            }
            out.stats.ooo_overflow_flushes += 1;
            let target = match st.ooo.front() {
                Some((first, _)) if first.before(seq) => *first,
                _ => seq,
            };
            out.gap(side, target.diff(next).unsigned_abs());
            st.next = Some(target);
            Self::drain(st, side, out);
            first_pass = false;
        }
    }

    /// After in-order data whose captured part ended at `at`: the part the snap length cut
    /// off is a gap.
    fn deliver_missing_tail<F: FnMut(StreamEvent<'_>)>(
        st: &mut Stream,
        side: Side,
        at: Seq,
        missing: u32,
        out: &mut Out<'_, F>,
    ) {
        if missing == 0 || st.next != Some(at) {
            return;
        }
        out.gap(side, u64::from(missing));
        st.next = Some(at.plus(missing));
        // Buffered data the gap covers is superseded by it; drain trims it.
    }

    /// Delivers buffered segments that have become contiguous with `next`.
    fn drain<F: FnMut(StreamEvent<'_>)>(st: &mut Stream, side: Side, out: &mut Out<'_, F>) {
        while let (Some(next), Some((first, _))) = (st.next, st.ooo.front()) {
            let rel = first.diff(next);
            if rel > 0 {
                break;
            }
            let Some((seq, bytes)) = st.ooo.pop_front() else {
                break;
            };
            st.ooo_bytes = st.ooo_bytes.saturating_sub(bytes.len());
            let skip = usize::try_from(next.diff(seq)).unwrap_or(usize::MAX);
            if let Some(rest) = bytes.get(skip..) {
                out.data(side, rest);
                st.next = Some(next.plus(len32(rest.len())));
            }
        }
    }

    /// Counts bytes of `data` at `seq` that overlap buffered data with different values.
    fn count_conflicts<F: FnMut(StreamEvent<'_>)>(
        st: &Stream,
        seq: Seq,
        data: &[u8],
        out: &mut Out<'_, F>,
    ) {
        let end = seq.plus(len32(data.len()));
        for (bseq, bytes) in &st.ooo {
            let bend = bseq.plus(len32(bytes.len()));
            if !bseq.before(end) {
                break;
            }
            if !bend.after(seq) {
                continue;
            }
            let lo = if bseq.after(seq) { *bseq } else { seq };
            let hi = if bend.before(end) { bend } else { end };
            let n = usize::try_from(hi.diff(lo)).unwrap_or(0);
            let a0 = usize::try_from(lo.diff(seq)).unwrap_or(0);
            let b0 = usize::try_from(lo.diff(*bseq)).unwrap_or(0);
            let a = data.get(a0..a0.saturating_add(n));
            let b = bytes.get(b0..b0.saturating_add(n));
            if a != b {
                out.stats.overlap_conflicts += 1;
            }
        }
    }

    /// Buffers the parts of `data` at `seq` that no buffered segment covers yet.
    fn insert_first_wins<F: FnMut(StreamEvent<'_>)>(
        st: &mut Stream,
        seq: Seq,
        data: &[u8],
        out: &mut Out<'_, F>,
    ) {
        let end = seq.plus(len32(data.len()));
        let overlaps = st
            .ooo
            .iter()
            .any(|(b, bytes)| b.before(end) && b.plus(len32(bytes.len())).after(seq));
        if overlaps {
            out.stats.partial_overlaps += 1;
            Self::count_conflicts(st, seq, data, out);
        }
        // Walk the buffer, filling the holes between buffered segments with new bytes.
        let mut cursor = seq;
        let mut i = 0;
        while cursor.before(end) {
            let (hole_end, next_i) = match st.ooo.get(i) {
                Some((b, bytes)) => {
                    let bend = b.plus(len32(bytes.len()));
                    if !bend.after(cursor) {
                        i += 1;
                        continue;
                    }
                    if !b.after(cursor) {
                        // Covered by a buffered segment: skip past it.
                        cursor = bend;
                        i += 1;
                        continue;
                    }
                    (if b.before(end) { *b } else { end }, i + 1)
                }
                None => (end, i + 1),
            };
            let from = usize::try_from(cursor.diff(seq)).unwrap_or(0);
            let to = usize::try_from(hole_end.diff(seq)).unwrap_or(0);
            if let Some(piece) = data.get(from..to) {
                if !piece.is_empty() {
                    st.ooo.insert(i, (cursor, piece.to_vec()));
                    st.ooo_bytes += piece.len();
                }
            }
            cursor = hole_end;
            i = next_i;
        }
    }
}
