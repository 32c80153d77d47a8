//! TCP sequence numbers with wrapping comparison (RFC 1982 serial number arithmetic).

use std::ops::Add;

/// A TCP sequence number with wrapping (RFC 1982 style) comparison.
///
/// Comparisons are meaningful for numbers less than 2^31 apart; reassembly never compares
/// numbers further apart than its plausibility window (64 MiB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Seq(pub u32);

impl Seq {
    /// `self + n`, wrapping at 2^32.
    pub fn plus(self, n: u32) -> Seq {
        Seq(self.0.wrapping_add(n))
    }

    /// Signed distance `self - other`, in -2^31..2^31.
    pub fn diff(self, other: Seq) -> i64 {
        i64::from(self.0.wrapping_sub(other.0) as i32)
    }

    /// `self` comes strictly before `other`.
    pub fn before(self, other: Seq) -> bool {
        self.diff(other) < 0
    }

    /// `self` comes strictly after `other`.
    pub fn after(self, other: Seq) -> bool {
        self.diff(other) > 0
    }

    /// `self < other` in sequence space (same as [`Seq::before`]).
    pub fn lt(self, other: Seq) -> bool {
        self.diff(other) < 0
    }

    /// `self <= other` in sequence space.
    pub fn le(self, other: Seq) -> bool {
        self.diff(other) <= 0
    }

    /// `self > other` in sequence space (same as [`Seq::after`]).
    pub fn gt(self, other: Seq) -> bool {
        self.diff(other) > 0
    }

    /// `self >= other` in sequence space.
    pub fn ge(self, other: Seq) -> bool {
        self.diff(other) >= 0
    }
}

impl Add<u32> for Seq {
    type Output = Seq;

    /// Wrapping addition, like [`Seq::plus`].
    fn add(self, n: u32) -> Seq {
        self.plus(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps() {
        let a = Seq(u32::MAX - 1);
        let b = a.plus(4);
        assert_eq!(b, Seq(2));
        assert_eq!(a + 4, Seq(2));
        assert_eq!(b.diff(a), 4);
        assert_eq!(a.diff(b), -4);
        assert!(a.before(b) && b.after(a));
        assert!(a.lt(b) && a.le(b) && b.gt(a) && b.ge(a));
        assert!(!a.before(a) && !a.after(a));
        assert!(a.le(a) && a.ge(a) && !a.lt(a) && !a.gt(a));
    }

    #[test]
    fn half_space_boundary() {
        let a = Seq(0);
        assert_eq!(Seq(0x7fff_ffff).diff(a), i64::from(i32::MAX));
        assert_eq!(Seq(0x8000_0000).diff(a), i64::from(i32::MIN));
        assert!(Seq(0x7fff_ffff).after(a));
        assert!(Seq(0x8000_0001).before(a));
    }
}
