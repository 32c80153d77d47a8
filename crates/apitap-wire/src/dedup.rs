//! SPAN duplicate filter: when both directions of a port are mirrored, the same frame can
//! arrive twice, microseconds apart. A frame identical to one of the last few frames, seen
//! within `pipeline.dedup_window_us` of it, is dropped and counted.
//!
//! "Identical" is judged on the frame length and its first 128 bytes, which hold the IP and
//! TCP headers: the IP id, the sequence and acknowledgement numbers and the TCP checksum
//! (over the whole payload) make a false match practically impossible, while hashing stays
//! cheap for full-size frames. A TCP retransmission is not a duplicate: it comes after at
//! least one retransmission timeout (200 ms on Linux), far outside the window, and usually
//! with a new IP id.

use apitap_core::Timestamp;
use std::hash::{BuildHasher, Hasher};

/// Frames remembered.
const SLOTS: usize = 32;
/// Bytes of each frame that are hashed.
const HASHED: usize = 128;

/// Remembers the last frames' fingerprints.
pub struct Dedup {
    window_ns: u64,
    /// Fingerprints of the last frames, apart from their times so that the scan of every
    /// frame is one branch-free pass the compiler vectorises.
    fingerprints: [u64; SLOTS],
    /// Capture time of each remembered frame (`i64::MIN`: an empty slot).
    times: [Timestamp; SLOTS],
    next: usize,
    hasher: foldhash::fast::FixedState,
    /// Frames dropped as duplicates.
    pub dropped: u64,
}

impl Dedup {
    /// A filter for duplicates within `window_us` microseconds (0 turns it off).
    pub fn new(window_us: u64) -> Dedup {
        Dedup {
            window_ns: window_us.saturating_mul(1000),
            fingerprints: [0; SLOTS],
            times: [Timestamp(i64::MIN); SLOTS],
            next: 0,
            hasher: foldhash::fast::FixedState::with_seed(0x5eed_0fa9_17a9),
            dropped: 0,
        }
    }

    /// True if `frame` at `ts` duplicates a recent frame (and is counted); otherwise it
    /// is remembered.
    pub fn is_duplicate(&mut self, frame: &[u8], ts: Timestamp) -> bool {
        if self.window_ns == 0 {
            return false;
        }
        let mut h = self.hasher.build_hasher();
        h.write_usize(frame.len());
        h.write(frame.get(..HASHED).unwrap_or(frame));
        let fp = h.finish();
        let window = self.window_ns;
        let seen = self
            .fingerprints
            .iter()
            .fold(false, |seen, &f| seen | (f == fp));
        if seen
            && self
                .fingerprints
                .iter()
                .zip(&self.times)
                .any(|(&f, &t)| f == fp && ts.nanos_since(t) <= window && t.0 != i64::MIN)
        {
            self.dropped += 1;
            return true;
        }
        if let (Some(f), Some(t)) = (
            self.fingerprints.get_mut(self.next),
            self.times.get_mut(self.next),
        ) {
            *f = fp;
            *t = ts;
        }
        self.next = (self.next + 1) % SLOTS;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, len: usize) -> Vec<u8> {
        let mut f = vec![tag; len];
        f[0] = tag;
        f
    }

    #[test]
    fn a_copy_within_the_window_is_dropped_once() {
        let mut d = Dedup::new(1000);
        let a = frame(1, 1500);
        assert!(!d.is_duplicate(&a, Timestamp(1_000_000)));
        assert!(d.is_duplicate(&a, Timestamp(1_000_500)));
        assert!(!d.is_duplicate(&frame(2, 1500), Timestamp(1_000_600)));
        // Same bytes 2 ms later: a retransmission, not a SPAN copy.
        assert!(!d.is_duplicate(&a, Timestamp(3_000_000)));
        assert_eq!(d.dropped, 1);
    }

    #[test]
    fn length_and_header_bytes_tell_frames_apart() {
        let mut d = Dedup::new(1000);
        let a = frame(1, 200);
        let mut b = a.clone();
        b[100] = 9; // a different header byte
        let c = frame(1, 201); // longer
        assert!(!d.is_duplicate(&a, Timestamp(0)));
        assert!(!d.is_duplicate(&b, Timestamp(1)));
        assert!(!d.is_duplicate(&c, Timestamp(2)));
        assert_eq!(d.dropped, 0);
    }

    #[test]
    fn off_when_the_window_is_zero() {
        let mut d = Dedup::new(0);
        let a = frame(1, 60);
        assert!(!d.is_duplicate(&a, Timestamp(0)));
        assert!(!d.is_duplicate(&a, Timestamp(0)));
    }
}
