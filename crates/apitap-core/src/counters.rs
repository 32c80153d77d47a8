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

/// An enum whose values have stable snake_case names, in a fixed order (anomalies,
/// incomplete reasons, skip reasons): declared with [`crate::named_enum!`].
pub trait Named: Copy + PartialEq + 'static {
    /// Every value, in declaration order.
    const ALL: &'static [Self];
    /// The value's stable name, as in events, the summary and metric labels.
    fn name(self) -> &'static str;
    /// The value's place in [`Named::ALL`].
    fn index(self) -> usize;
}

/// Declares an enum of named values: the enum (`#[repr(u8)]`, values in order), `ALL`,
/// `name()` and [`Named`].
#[macro_export]
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$doc:meta])* $variant:ident = $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        $vis enum $name {
            $( $(#[$doc])* $variant, )*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// Stable snake_case name, as in events, the summary and metric labels.
            pub fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )*
                }
            }
        }

        impl $crate::counters::Named for $name {
            const ALL: &'static [Self] = $name::ALL;
            fn name(self) -> &'static str {
                $name::name(self)
            }
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

/// A count per value of a [`Named`] enum, `N` of them (`N` at least as large as
/// `T::ALL`); serialised as a map by name, zeros included, in `T::ALL` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByName<T, const N: usize> {
    counts: [u64; N],
    _kind: std::marker::PhantomData<T>,
}

impl<T, const N: usize> Default for ByName<T, N> {
    fn default() -> Self {
        ByName {
            counts: [0; N],
            _kind: std::marker::PhantomData,
        }
    }
}

impl<T: Named, const N: usize> ByName<T, N> {
    /// Counts one `value`.
    pub fn count(&mut self, value: T) {
        if let Some(c) = self.counts.get_mut(value.index()) {
            *c = c.saturating_add(1);
        }
    }

    /// The count of `value`.
    pub fn get(&self, value: T) -> u64 {
        self.counts.get(value.index()).copied().unwrap_or(0)
    }

    /// Every value's name and count, zeros included, in `T::ALL` order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        T::ALL.iter().map(|&v| (v.name(), self.get(v)))
    }

    /// The counts of every value together.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0, |a, &n| a.saturating_add(n))
    }
}

impl<T, const N: usize> Merge for ByName<T, N> {
    fn merge(&mut self, other: &Self) {
        self.counts.merge(&other.counts);
    }
}

impl<T: Named, const N: usize> serde::Serialize for ByName<T, N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
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

    crate::named_enum! {
        /// Test values.
        pub enum Colour {
            /// Red.
            Red = "red",
            /// Green.
            Green = "green",
        }
    }

    #[test]
    fn counts_by_name_serialise_as_a_map_in_declaration_order() {
        let mut c: ByName<Colour, 2> = ByName::default();
        c.count(Colour::Green);
        c.count(Colour::Green);
        let mut d = c;
        d.count(Colour::Red);
        c.merge(&d);
        assert_eq!(
            (c.get(Colour::Red), c.get(Colour::Green), c.total()),
            (1, 4, 5)
        );
        assert_eq!(
            serde_json::to_string(&c).unwrap_or_default(),
            r#"{"red":1,"green":4}"#
        );
        assert_eq!(Colour::ALL.len(), 2);
        assert_eq!(Named::index(Colour::Green), 1);
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
