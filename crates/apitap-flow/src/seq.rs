//! TCP sequence numbers with wrapping comparison (RFC 1982 serial number arithmetic).

/// A TCP sequence number. Comparisons are valid for numbers less than 2^31 apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Seq(pub u32);

impl Seq {
    /// `self + n`, wrapping.
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps() {
        let a = Seq(u32::MAX - 1);
        let b = a.plus(4);
        assert_eq!(b, Seq(2));
        assert_eq!(b.diff(a), 4);
        assert_eq!(a.diff(b), -4);
        assert!(a.before(b) && b.after(a));
        assert!(!a.before(a) && !a.after(a));
    }
}
