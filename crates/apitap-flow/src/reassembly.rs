//! TCP stream reassembly for one connection.
//!
//! Each side's bytes are delivered in sequence order. In-order segments are passed through
//! without copying; only out-of-order data is buffered, within configured bounds. Overlaps
//! keep the first copy seen (first-wins) and count differing bytes. A hole becomes a
//! [`StreamEvent::Gap`] when the peer acknowledges past it, when the out-of-order buffer
//! is full, when a RST ends the connection, or at [`TcpConn::flush`]: bytes are never
//! dropped silently.
//!
//! Event guarantees, per side: `Data` and `Gap` events tile that side's byte stream in
//! order without overlap; at most one `Fin`, after which that side emits nothing; nothing
//! beyond the FIN's sequence number is delivered. A `Reset` is the last event of the
//! connection (buffered data is delivered, with gaps, just before it).

use crate::seq::Seq;
use apitap_core::{Side, TcpFlags};
use std::collections::VecDeque;

/// Segments further ahead of the next expected byte than this are out of any plausible
/// window (corrupt or forged) and dropped, counted as `out_of_window`.
const MAX_WINDOW: i64 = 64 << 20;

/// Largest segment length believed (captured or on the wire). Real TCP segments are below
/// 64 KiB (a few hundred KiB with GRO/BIG TCP captures); a larger claimed length is capped
/// so that sequence arithmetic stays far inside the 2^31 comparison range.
const MAX_SEGMENT_LEN: u32 = 1 << 20;

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

apitap_core::counters! {
    /// Reassembly counters.
    pub struct ReassemblyStats {
        /// Segments seen (with or without payload).
        pub segments: u64,
        /// Segments delivered straight from the caller's payload (possibly after trimming an
        /// already delivered prefix).
        pub in_order_segments: u64,
        /// Segments buffered because they arrived ahead of a hole.
        pub ooo_segments_buffered: u64,
        /// Segments whose data had all been seen already, delivered or buffered (dropped).
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
        /// Payload bytes missing because the capture's snap length cut the frame (these bytes
        /// are also reported as gaps, then or later).
        pub truncated_payload_bytes: u64,
        /// Payload bytes after a RST or beyond a FIN (ignored). Counts bytes, not segments.
        pub data_after_close: u64,
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
    /// `side` sent two different versions of the same bytes (a retransmission or
    /// overlapping segment whose content differs from what is buffered): an evasion
    /// indicator. The first version wins and is what gets delivered.
    OverlapConflict {
        /// Sender.
        side: Side,
    },
}

/// One direction of a connection: the bytes one side sends.
#[derive(Debug, Default)]
struct Stream {
    /// Initial sequence number from this side's SYN.
    isn: Option<Seq>,
    /// Next expected sequence number, once known (SYN or first payload seen).
    next: Option<Seq>,
    /// Out-of-order data: sorted, not overlapping or touching `next`, all after `next` and
    /// (once a FIN is known) before the FIN.
    ooo: VecDeque<(Seq, Vec<u8>)>,
    /// Bytes held in `ooo`.
    ooo_bytes: usize,
    /// Sequence number of the FIN, once seen (first plausible FIN wins).
    fin: Option<Seq>,
    /// `Fin` was emitted; nothing more is delivered for this side.
    fin_done: bool,
    /// Highest acknowledgement the peer sent for this stream.
    acked: Option<Seq>,
}

/// Both directions of one TCP connection: turns its segments into in-order byte streams.
///
/// Events for one side are emitted in that side's stream order: `Data` and `Gap` events
/// tile the stream without overlap, then at most one `Fin`. Once `Reset` is emitted the
/// connection emits nothing more.
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

/// `n` as a sequence-space length (saturating; callers keep lengths below 2^20).
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A non-negative sequence distance as a byte count (0 when negative).
fn dist(d: i64) -> usize {
    usize::try_from(d).unwrap_or(0)
}

/// End (exclusive) of a buffered segment.
fn end_of(seq: Seq, bytes: &[u8]) -> Seq {
    seq.plus(len32(bytes.len()))
}

impl Stream {
    /// `at` is at or after `next`, within the plausibility window.
    fn in_window(next: Seq, at: Seq) -> bool {
        (0..=MAX_WINDOW).contains(&at.diff(next))
    }

    /// Emits `Fin` once `next` has reached the FIN.
    fn check_fin<F: FnMut(StreamEvent<'_>)>(&mut self, side: Side, out: &mut Out<'_, F>) {
        if let (Some(fin), Some(next), false) = (self.fin, self.next, self.fin_done) {
            if !fin.after(next) {
                self.fin_done = true;
                (out.emit)(StreamEvent::Fin { side });
            }
        }
    }

    /// Delivers buffered segments that have become contiguous with `next`, trimming any
    /// prefix already delivered (or already declared a gap).
    fn drain<F: FnMut(StreamEvent<'_>)>(&mut self, side: Side, out: &mut Out<'_, F>) {
        while let (Some(next), Some((first, _))) = (self.next, self.ooo.front()) {
            if first.after(next) {
                break;
            }
            let Some((seq, bytes)) = self.ooo.pop_front() else {
                break;
            };
            self.ooo_bytes = self.ooo_bytes.saturating_sub(bytes.len());
            if let Some(rest) = bytes.get(dist(next.diff(seq))..) {
                out.data(side, rest);
                self.next = Some(next.plus(len32(rest.len())));
            }
        }
    }

    /// Declares the hole in front of the first buffered segment a gap and delivers the
    /// buffered data now contiguous. Returns false when nothing is buffered.
    fn gap_first_hole<F: FnMut(StreamEvent<'_>)>(
        &mut self,
        side: Side,
        out: &mut Out<'_, F>,
    ) -> bool {
        let (Some(next), Some((first, _))) = (self.next, self.ooo.front()) else {
            return false;
        };
        let first = *first;
        if first.after(next) {
            out.gap(side, first.diff(next).unsigned_abs());
            self.next = Some(first);
        }
        self.drain(side, out);
        true
    }

    /// Moves `next` to `to` (if ahead), reporting the skipped bytes as a gap.
    fn gap_to<F: FnMut(StreamEvent<'_>)>(&mut self, side: Side, to: Seq, out: &mut Out<'_, F>) {
        if let Some(next) = self.next {
            if to.after(next) {
                out.gap(side, to.diff(next).unsigned_abs());
                self.next = Some(to);
                self.drain(side, out);
            }
        }
    }

    /// Drops buffered bytes at or beyond the FIN (counted as data after close).
    fn trim_buffer_at(&mut self, fin: Seq, stats: &mut ReassemblyStats) {
        while let Some((seq, bytes)) = self.ooo.back_mut() {
            let end = end_of(*seq, bytes);
            if !end.after(fin) {
                break;
            }
            if seq.before(fin) {
                let keep = dist(fin.diff(*seq));
                let cut = bytes.len().saturating_sub(keep);
                bytes.truncate(keep);
                self.ooo_bytes = self.ooo_bytes.saturating_sub(cut);
                stats.data_after_close += cut as u64;
                break;
            }
            let n = bytes.len();
            self.ooo.pop_back();
            self.ooo_bytes = self.ooo_bytes.saturating_sub(n);
            stats.data_after_close += n as u64;
        }
    }

    /// Index of the first buffered segment ending after `seq`.
    fn first_ending_after(&self, seq: Seq) -> usize {
        self.ooo
            .partition_point(|(s, bytes)| !end_of(*s, bytes).after(seq))
    }

    /// Counts buffered segments overlapping `data` at `seq` with different bytes; true if
    /// there was one.
    fn count_conflicts(&self, seq: Seq, data: &[u8], stats: &mut ReassemblyStats) -> bool {
        let before = stats.overlap_conflicts;
        let end = end_of(seq, data);
        let start = self.first_ending_after(seq);
        for (bseq, bytes) in self.ooo.range(start..) {
            if !bseq.before(end) {
                break;
            }
            let bend = end_of(*bseq, bytes);
            let lo = if bseq.after(seq) { *bseq } else { seq };
            let hi = if bend.before(end) { bend } else { end };
            let n = dist(hi.diff(lo));
            let a0 = dist(lo.diff(seq));
            let b0 = dist(lo.diff(*bseq));
            if data.get(a0..a0.saturating_add(n)) != bytes.get(b0..b0.saturating_add(n)) {
                stats.overlap_conflicts += 1;
            }
        }
        stats.overlap_conflicts > before
    }

    /// Buffers the parts of `data` at `seq` that no buffered segment covers yet (the
    /// buffered copy wins). Returns the number of bytes added.
    fn insert_first_wins(&mut self, seq: Seq, data: &[u8]) -> usize {
        let end = end_of(seq, data);
        let mut i = self.first_ending_after(seq);
        let mut cursor = seq;
        let mut added = 0;
        while cursor.before(end) {
            let hole_end = match self.ooo.get(i) {
                Some((b, bytes)) if !b.after(cursor) => {
                    // Covered by a buffered segment: skip past it.
                    cursor = end_of(*b, bytes);
                    i += 1;
                    continue;
                }
                Some((b, _)) if b.before(end) => *b,
                _ => end,
            };
            let from = dist(cursor.diff(seq));
            let to = dist(hole_end.diff(seq));
            if let Some(piece) = data.get(from..to) {
                if !piece.is_empty() {
                    self.ooo.insert(i, (cursor, piece.to_vec()));
                    self.ooo_bytes += piece.len();
                    added += piece.len();
                    i += 1;
                }
            }
            cursor = hole_end;
        }
        added
    }

    /// Places `wire_len` bytes starting at `seq`, of which `payload` (a prefix) was
    /// captured. `payload.len() <= wire_len`, both below `MAX_SEGMENT_LEN`, and nothing
    /// lies beyond a known FIN.
    fn add_data<F: FnMut(StreamEvent<'_>)>(
        &mut self,
        side: Side,
        seq: Seq,
        payload: &[u8],
        wire_len: u32,
        cfg: &ReassemblyConfig,
        out: &mut Out<'_, F>,
    ) {
        let Some(next) = self.next else { return };
        let captured = len32(payload.len());
        let missing = wire_len.saturating_sub(captured);
        let captured_end = seq.plus(captured);
        let wire_end = seq.plus(wire_len);
        let rel = seq.diff(next);
        if rel > MAX_WINDOW {
            out.stats.out_of_window += 1;
            return;
        }
        if missing > 0 {
            out.stats.truncated_payload_bytes += u64::from(missing);
        }
        if !wire_end.after(next) {
            out.stats.retransmitted_segments += 1;
            return;
        }
        let (mut seq, mut payload) = (seq, payload);
        if rel < 0 {
            // The old prefix was delivered already; the rest is new.
            out.stats.partial_overlaps += 1;
            let cut = dist(-rel).min(payload.len());
            payload = payload.get(cut..).unwrap_or(&[]);
            seq = seq.plus(len32(cut));
        }
        if !payload.is_empty() {
            if seq == next {
                out.stats.in_order_segments += 1;
                let overlapped = self.deliver_in_order(side, seq, payload, out);
                if overlapped && rel >= 0 {
                    out.stats.partial_overlaps += 1;
                }
            } else {
                self.buffer(side, seq, payload, cfg, out);
            }
        }
        // The part the snap length cut off is a gap once the captured part is delivered.
        if missing > 0 {
            if let Some(next) = self.next {
                if !captured_end.after(next) && wire_end.after(next) {
                    self.gap_to(side, wire_end, out);
                }
            }
        }
    }

    /// Delivers `payload`, which starts at `next`, straight from the caller's slice up to
    /// the first buffered segment, then the buffered data (which wins overlaps), and so on.
    /// Returns whether `payload` overlapped buffered data.
    fn deliver_in_order<F: FnMut(StreamEvent<'_>)>(
        &mut self,
        side: Side,
        mut seq: Seq,
        mut payload: &[u8],
        out: &mut Out<'_, F>,
    ) -> bool {
        let mut overlapped = false;
        while !payload.is_empty() {
            let room = self
                .ooo
                .front()
                .map_or(usize::MAX, |(s, _)| dist(s.diff(seq)));
            let take = payload.len().min(room);
            let (now, rest) = payload.split_at(take);
            out.data(side, now);
            seq = seq.plus(len32(take));
            self.next = Some(seq);
            if !rest.is_empty() {
                overlapped = true;
                if self.count_conflicts(seq, rest, out.stats) {
                    (out.emit)(StreamEvent::OverlapConflict { side });
                }
            }
            self.drain(side, out);
            // Skip what the buffered data covered.
            let Some(next) = self.next else { break };
            let skip = dist(next.diff(seq));
            payload = rest.get(skip..).unwrap_or(&[]);
            seq = next;
        }
        overlapped
    }

    /// Buffers `payload` at `seq` (after `next`), then enforces the buffer bounds by
    /// declaring holes gaps from the front.
    fn buffer<F: FnMut(StreamEvent<'_>)>(
        &mut self,
        side: Side,
        seq: Seq,
        payload: &[u8],
        cfg: &ReassemblyConfig,
        out: &mut Out<'_, F>,
    ) {
        if self.count_conflicts(seq, payload, out.stats) {
            (out.emit)(StreamEvent::OverlapConflict { side });
        }
        let added = self.insert_first_wins(seq, payload);
        if added == 0 {
            out.stats.retransmitted_segments += 1;
            return;
        }
        if added < payload.len() {
            out.stats.partial_overlaps += 1;
        }
        out.stats.ooo_segments_buffered += 1;
        while self.ooo_bytes > cfg.max_ooo_bytes_per_direction
            || self.ooo.len() > cfg.max_ooo_segments_per_direction
        {
            out.stats.ooo_overflow_flushes += 1;
            if !self.gap_first_hole(side, out) {
                break;
            }
        }
    }
}

impl TcpConn {
    /// A connection with nothing seen yet.
    pub fn new() -> TcpConn {
        TcpConn::default()
    }

    /// The client, when the handshake told: the sender of the first SYN without ACK, or
    /// the receiver of a SYN+ACK. `None` for connections picked up midstream.
    pub fn client_side(&self) -> Option<Side> {
        self.client
    }

    /// A SYN was seen from either side.
    pub fn saw_syn(&self) -> bool {
        self.syn_seen
    }

    /// Out-of-order bytes buffered now (both sides).
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
        let Some(st) = self.streams.get(seg.from.index()) else {
            return false;
        };
        match st.isn {
            Some(isn) => isn != Seq(seg.seq) || self.reset || st.fin.is_some(),
            None => st.next.is_some() || self.reset,
        }
    }

    /// RST seen, or both sides' FIN delivered.
    pub fn is_finished(&self) -> bool {
        self.reset || self.streams.iter().all(|s| s.fin_done)
    }

    fn stream_mut(&mut self, side: Side) -> &mut Stream {
        let [lo, hi] = &mut self.streams;
        match side {
            Side::Lo => lo,
            Side::Hi => hi,
        }
    }

    /// Processes one segment. `payload` is the captured payload, possibly shorter than
    /// `seg.wire_len` (snap length); a `wire_len` smaller than the payload is taken as the
    /// payload length.
    ///
    /// Events go to `emit` in stream order per side. Acknowledgement-driven gaps of the
    /// peer's stream are emitted before this segment's own data. In-order data is emitted
    /// as a subslice of `payload` (no copy).
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
        let payload = payload.get(..MAX_SEGMENT_LEN as usize).unwrap_or(payload);
        let mut wire_len = seg.wire_len.min(MAX_SEGMENT_LEN).max(len32(payload.len()));
        if self.reset {
            out.stats.data_after_close += u64::from(wire_len);
            return;
        }
        if seg.flags.rst() {
            // Nothing can fill the holes any more: deliver what is buffered first, so that
            // `Reset` is the connection's last event.
            self.flush_streams(true, &mut out);
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
            let st = self.stream_mut(side);
            if st.next.is_none() {
                st.next = Some(Seq(seg.seq).plus(1));
                st.isn = Some(Seq(seg.seq));
            }
            data_seq = Seq(seg.seq).plus(1);
        }

        // The peer's acknowledgement can prove that holes in its stream were lost.
        if seg.flags.ack() {
            let peer = side.other();
            let pst = self.stream_mut(peer);
            let ack = Seq(seg.ack);
            if pst.acked.is_none_or(|a| ack.after(a)) {
                pst.acked = Some(ack);
            }
            Self::gap_acked_holes(pst, peer, ack, &mut out);
        }

        let st = self.stream_mut(side);
        let next = match st.next {
            Some(next) => next,
            None if wire_len == 0 && !seg.flags.fin() => return,
            None => {
                // Midstream pickup: the first segment seen starts the stream.
                st.next = Some(data_seq);
                data_seq
            }
        };
        let end = data_seq.plus(wire_len);
        if st.fin_done {
            let beyond = st
                .fin
                .map_or(0, |fin| end.diff(fin).clamp(0, i64::from(wire_len)));
            if beyond > 0 {
                out.stats.data_after_close += beyond.unsigned_abs();
            } else if wire_len > 0 {
                out.stats.retransmitted_segments += 1;
            }
            return;
        }
        if seg.flags.fin() && st.fin.is_none() {
            // The FIN takes the sequence number after the payload. One before the data
            // already delivered, or implausibly far ahead, is forged or corrupt: ignored.
            if Stream::in_window(next, end) {
                st.fin = Some(end);
                st.trim_buffer_at(end, out.stats);
            } else if wire_len == 0 {
                out.stats.out_of_window += 1;
            }
        }
        let mut payload = payload;
        if let Some(fin) = st.fin {
            // Nothing is delivered beyond the FIN.
            let allowed = fin.diff(data_seq).clamp(0, i64::from(wire_len));
            let allowed = u32::try_from(allowed).unwrap_or(0);
            if allowed < wire_len {
                out.stats.data_after_close += u64::from(wire_len - allowed);
                wire_len = allowed;
                payload = payload.get(..allowed as usize).unwrap_or(payload);
            }
        }
        if wire_len > 0 {
            st.add_data(side, data_seq, payload, wire_len, cfg, &mut out);
        }
        st.check_fin(side, &mut out);
    }

    /// End of the connection (close, idle expiry, end of capture): for each side, Lo then
    /// Hi, holes in front of buffered data become gaps and the data is delivered; bytes the
    /// peer acknowledged (or that precede a seen FIN) but the capture never showed become a
    /// final gap; a pending FIN fires. A second call emits nothing.
    pub fn flush<F: FnMut(StreamEvent<'_>)>(
        &mut self,
        _cfg: &ReassemblyConfig,
        stats: &mut ReassemblyStats,
        emit: &mut F,
    ) {
        let mut out = Out { emit, stats };
        self.flush_streams(true, &mut out);
    }

    /// Memory pressure: declares the holes in front of buffered data gaps and delivers the
    /// data, without ending the connection (later segments are processed as usual).
    pub fn flush_buffered<F: FnMut(StreamEvent<'_>)>(
        &mut self,
        stats: &mut ReassemblyStats,
        emit: &mut F,
    ) {
        let mut out = Out { emit, stats };
        self.flush_streams(false, &mut out);
    }

    fn flush_streams<F: FnMut(StreamEvent<'_>)>(&mut self, at_end: bool, out: &mut Out<'_, F>) {
        if self.reset {
            return;
        }
        for side in [Side::Lo, Side::Hi] {
            let st = self.stream_mut(side);
            while st.gap_first_hole(side, out) {}
            if at_end && !st.fin_done {
                // Bytes the peer acknowledged, or that precede a seen FIN, but that the
                // capture never showed.
                if let (Some(next), Some(end)) = (st.next, st.fin.or(st.acked)) {
                    if Stream::in_window(next, end) {
                        st.gap_to(side, end, out);
                    }
                }
            }
            st.check_fin(side, out);
        }
    }

    /// Declares holes of `st` that the peer acknowledged past as gaps, delivering the
    /// buffered data behind them; an acknowledged FIN fires after a gap for any missing
    /// bytes before it.
    fn gap_acked_holes<F: FnMut(StreamEvent<'_>)>(
        st: &mut Stream,
        side: Side,
        ack: Seq,
        out: &mut Out<'_, F>,
    ) {
        match st.next {
            Some(next) if !st.fin_done && Stream::in_window(next, ack) => {}
            _ => return,
        }
        while let Some((first, _)) = st.ooo.front() {
            if first.after(ack) {
                break;
            }
            st.gap_first_hole(side, out);
        }
        // The FIN occupies one sequence number: acknowledging past it acknowledges it.
        if let (Some(fin), Some(next)) = (st.fin, st.next) {
            if ack.after(fin) && Stream::in_window(next, fin) {
                st.gap_to(side, fin, out);
            }
        }
        st.check_fin(side, out);
    }
}
