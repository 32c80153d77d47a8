//! Counters: every stats struct of every stage is declared with [`crate::counters!`], which
//! derives `Serialize` (the run summary, `--stats-json` and `/metrics` all read that one
//! form) and [`Merge`] (how the counters of two workers, or of an engine before and after
//! a reload, combine). A new counter is one field; nothing else is written by hand.

use std::collections::BTreeMap;

/// How a counter of one part combines with the same counter of another part.
pub trait Merge {
    /// Combines `other` into `self`.
    fn merge(&mut self, other: &Self);
}

impl Merge for u64 {
    /// Counts add up (saturating).
    fn merge(&mut self, other: &u64) {
        *self = self.saturating_add(*other);
    }
}

impl<const N: usize> Merge for [u64; N] {
    fn merge(&mut self, other: &[u64; N]) {
        for (a, b) in self.iter_mut().zip(other) {
            a.merge(b);
        }
    }
}

impl Merge for BTreeMap<String, u64> {
    fn merge(&mut self, other: &BTreeMap<String, u64>) {
        for (k, v) in other {
            self.entry(k.clone()).or_insert(0).merge(v);
        }
    }
}

impl<T: Merge + Clone> Merge for Option<T> {
    fn merge(&mut self, other: &Option<T>) {
        match (self.as_mut(), other) {
            (Some(a), Some(b)) => a.merge(b),
            (None, Some(b)) => *self = Some(b.clone()),
            (_, None) => {}
        }
    }
}

/// The largest value seen (a peak): merging keeps the larger.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Peak(pub u64);

impl Peak {
    /// Raises the peak to `v` if `v` is larger.
    pub fn raise(&mut self, v: u64) {
        self.0 = self.0.max(v);
    }
}

impl Merge for Peak {
    fn merge(&mut self, other: &Peak) {
        self.raise(other.0);
    }
}

impl serde::Serialize for Peak {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

/// A level of the moment (a size, not a count): merging keeps the later part's value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Level(pub u64);

impl Merge for Level {
    fn merge(&mut self, other: &Level) {
        *self = *other;
    }
}

impl serde::Serialize for Level {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

/// Declares a stats struct: the struct as written (documented fields of counter types),
/// with `Clone, Debug, Default, PartialEq, Eq, serde::Serialize` derived and [`Merge`]
/// implemented field by field. The crate using it depends on serde.
#[macro_export]
macro_rules! counters {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $fvis:vis $field:ident : $ty:ty
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
        $vis struct $name {
            $(
                $(#[$fmeta])*
                $fvis $field: $ty,
            )*
        }

        impl $crate::counters::Merge for $name {
            fn merge(&mut self, other: &Self) {
                $( $crate::counters::Merge::merge(&mut self.$field, &other.$field); )*
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::counters! {
        /// Test counters.
        pub struct Inner {
            /// A count.
            pub n: u64,
            /// A peak.
            pub top: Peak,
        }
    }

    crate::counters! {
        /// Test counters with a nested set.
        pub struct Outer {
            /// A count.
            pub a: u64,
            /// Per slot.
            pub slots: [u64; 2],
            /// By name.
            pub by: BTreeMap<String, u64>,
            /// A size.
            pub size: Level,
            /// Nested.
            pub inner: Inner,
        }
    }

    #[test]
    fn merge_adds_counts_keeps_peaks_and_takes_later_levels() {
        let mut a = Outer {
            a: 1,
            slots: [1, 2],
            by: BTreeMap::from([("x".to_string(), 1)]),
            size: Level(10),
            inner: Inner { n: 5, top: Peak(7) },
        };
        let b = Outer {
            a: 2,
            slots: [10, 20],
            by: BTreeMap::from([("x".to_string(), 2), ("y".to_string(), 3)]),
            size: Level(4),
            inner: Inner { n: 1, top: Peak(3) },
        };
        a.merge(&b);
        assert_eq!(a.a, 3);
        assert_eq!(a.slots, [11, 22]);
        assert_eq!(a.by, BTreeMap::from([("x".into(), 3), ("y".into(), 3)]));
        assert_eq!(a.size, Level(4));
        assert_eq!(a.inner, Inner { n: 6, top: Peak(7) });
        let mut max = u64::MAX;
        max.merge(&1);
        assert_eq!(max, u64::MAX, "saturating");
    }

    #[test]
    fn serialises_as_plain_numbers_in_field_order() {
        let o = Outer {
            size: Level(4),
            inner: Inner { n: 1, top: Peak(9) },
            ..Outer::default()
        };
        assert_eq!(
            serde_json::to_string(&o).unwrap_or_default(),
            r#"{"a":0,"slots":[0,0],"by":{},"size":4,"inner":{"n":1,"top":9}}"#
        );
    }
}
