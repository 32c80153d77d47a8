//! Restores one deterministic output order from several workers.
//!
//! Each worker sends events tagged with a [`SortKey`] plus a watermark: a promise that it will
//! never again send a key below it. Events are released in key order once every worker's
//! watermark has passed them, so the output is the same for any worker count. A bound on
//! buffered events keeps memory finite when a long-open transaction holds a watermark back;
//! forcing events out early is counted (output order is then no longer guaranteed).

use apitap_core::{EncodedEvent, Peak, SortKey};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

apitap_core::counters! {
    /// Counters of the reorder stage.
    pub struct ReorderStats {
        /// Events released.
        pub released: u64,
        /// Events released before their watermark because the buffer was full.
        pub forced_early: u64,
        /// Largest number of events buffered at once.
        pub peak_buffered: Peak,
    }
}

/// Something with a place in the output order.
pub trait Keyed {
    /// Its output order key.
    fn sort_key(&self) -> SortKey;
}

impl Keyed for EncodedEvent {
    fn sort_key(&self) -> SortKey {
        self.key
    }
}

/// Watermark-based reorder buffer. The heap orders small (key, slot) entries; the items
/// wait in a slab, so reordering never moves them.
pub struct Reorder<T> {
    heap: BinaryHeap<Reverse<(SortKey, usize)>>,
    slots: Vec<Option<T>>,
    free: Vec<usize>,
    watermarks: Vec<SortKey>,
    max_buffered: usize,
    stats: ReorderStats,
}

impl<T: Keyed> Reorder<T> {
    /// A buffer for `workers` producers holding at most `max_buffered` events.
    pub fn new(workers: usize, max_buffered: usize) -> Reorder<T> {
        Reorder {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            watermarks: vec![SortKey::default(); workers.max(1)],
            max_buffered: max_buffered.max(1),
            stats: ReorderStats::default(),
        }
    }

    /// Adds events from `worker` and raises its watermark; calls `release` for every event
    /// that can now go out, in order.
    pub fn push(
        &mut self,
        worker: usize,
        events: impl IntoIterator<Item = T>,
        watermark: SortKey,
        release: &mut impl FnMut(T),
    ) {
        for ev in events {
            let key = ev.sort_key();
            let slot = match self.free.pop() {
                Some(i) => {
                    if let Some(s) = self.slots.get_mut(i) {
                        *s = Some(ev);
                    }
                    i
                }
                None => {
                    self.slots.push(Some(ev));
                    self.slots.len() - 1
                }
            };
            self.heap.push(Reverse((key, slot)));
        }
        if let Some(w) = self.watermarks.get_mut(worker) {
            if watermark > *w {
                *w = watermark;
            }
        }
        self.stats.peak_buffered.raise(self.heap.len() as u64);
        let low = self
            .watermarks
            .iter()
            .copied()
            .min()
            .unwrap_or(SortKey::MAX);
        while let Some(&Reverse((key, _))) = self.heap.peek() {
            if key < low {
                self.pop(release, false);
            } else if self.heap.len() > self.max_buffered {
                self.pop(release, true);
            } else {
                break;
            }
        }
    }

    /// Releases everything still buffered, in order (end of input).
    pub fn finish(&mut self, release: &mut impl FnMut(T)) {
        while !self.heap.is_empty() {
            self.pop(release, false);
        }
    }

    /// Events currently buffered.
    pub fn buffered(&self) -> usize {
        self.heap.len()
    }

    /// Counters so far.
    pub fn stats(&self) -> &ReorderStats {
        &self.stats
    }

    fn pop(&mut self, release: &mut impl FnMut(T), forced: bool) {
        let Some(Reverse((_, slot))) = self.heap.pop() else {
            return;
        };
        self.free.push(slot);
        if let Some(ev) = self.slots.get_mut(slot).and_then(Option::take) {
            self.stats.released += 1;
            if forced {
                self.stats.forced_early += 1;
            }
            release(ev);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(packet: u64, ordinal: u32) -> EncodedEvent {
        EncodedEvent {
            key: SortKey {
                packet,
                flow: 1,
                ordinal,
            },
            json: format!("{packet}.{ordinal}").into_bytes(),
            endpoint_hash: 0,
            alert: false,
            client_key: None,
            endpoint_at: None,
        }
    }

    fn key(packet: u64) -> SortKey {
        SortKey::at_packet(packet)
    }

    #[test]
    fn releases_in_key_order_only_below_all_watermarks() {
        let mut r = Reorder::new(2, 100);
        let mut out = Vec::new();
        let mut rel = |e: EncodedEvent| out.push(String::from_utf8(e.json).unwrap());
        r.push(0, vec![ev(5, 0), ev(1, 0)], key(10), &mut rel);
        r.push(1, vec![ev(3, 1), ev(3, 0)], key(4), &mut rel);
        r.push(1, vec![], key(20), &mut rel);
        r.push(0, vec![ev(12, 0)], key(30), &mut rel);
        r.finish(&mut rel);
        assert_eq!(out, ["1.0", "3.0", "3.1", "5.0", "12.0"]);
        assert_eq!(r.stats().forced_early, 0);
        assert_eq!(r.stats().released, 5);
    }

    #[test]
    fn held_back_until_slow_worker_advances() {
        let mut r = Reorder::new(2, 100);
        let mut n = 0;
        r.push(0, vec![ev(5, 0)], key(100), &mut |_| n += 1);
        assert_eq!(n, 0, "worker 1 has not promised anything yet");
        r.push(1, vec![], key(6), &mut |_| n += 1);
        assert_eq!(n, 1);
    }

    #[test]
    fn bound_forces_out_and_counts() {
        let mut r = Reorder::new(2, 2);
        let mut out = Vec::new();
        r.push(0, (1..=5).map(|p| ev(p, 0)), key(100), &mut |e| {
            out.push(e.key.packet)
        });
        assert_eq!(out, [1, 2, 3]);
        assert_eq!(r.buffered(), 2);
        assert_eq!(r.stats().forced_early, 3);
    }
}
