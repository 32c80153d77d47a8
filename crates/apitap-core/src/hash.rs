//! A stable 64-bit hash for ids and keys that must not change between runs, releases or
//! machines (Kafka message keys, alert ids, the templater's position keys).

/// FNV-1a 64 over the parts, separated so that ("ab","c") and ("a","bc") differ. Stable
/// across runs and platforms.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h = StableHasher::new();
    for part in parts {
        h.part(part);
    }
    h.finish()
}

/// [`stable_hash`] fed part by part, so a key over a growing prefix is extended rather
/// than hashed again from the start.
#[derive(Clone, Copy, Debug)]
pub struct StableHasher(u64);

impl StableHasher {
    /// The state before any part.
    pub fn new() -> StableHasher {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }

    /// Feeds bytes of the current part (a part may be fed in pieces).
    #[inline]
    pub fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// Ends the current part.
    #[inline]
    pub fn end_part(&mut self) {
        self.bytes(&[0xff]);
    }

    /// Feeds one whole part.
    #[inline]
    pub fn part(&mut self, part: &[u8]) {
        self.bytes(part);
        self.end_part();
    }

    /// The hash of the parts fed so far.
    pub fn finish(self) -> u64 {
        self.0
    }
}

impl Default for StableHasher {
    fn default() -> StableHasher {
        StableHasher::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_values_and_part_separation() {
        // The value must not change between releases or machines: it keys Kafka
        // partitions and alert ids.
        assert_eq!(stable_hash(&[]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(
            stable_hash(&[b"a", b"GET /"]),
            stable_hash(&[b"a", b"GET /"])
        );
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
        let mut h = StableHasher::new();
        h.bytes(b"a");
        h.bytes(b"b");
        h.end_part();
        assert_eq!(h.finish(), stable_hash(&[b"ab"]));
    }
}
