//! Range checks for numeric config keys: every bound has a documented range, checked at
//! start-up, so no value can panic, abort or exhaust memory later.

use std::fmt::Display;
use std::ops::RangeInclusive;

/// `Err` naming the key, its value and its range when `value` is outside `range` (a NaN
/// is outside every range).
pub fn check_range<T: PartialOrd + Display>(
    key: &str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<(), String> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{key} = {value} is outside its range {}..={}",
            range.start(),
            range.end()
        ))
    }
}

/// [`check_range`] for every `(key, value, range)` of a section, stopping at the first
/// value outside.
pub fn check_ranges<T: PartialOrd + Display + Copy>(
    checks: &[(&str, T, RangeInclusive<T>)],
) -> Result<(), String> {
    checks
        .iter()
        .try_for_each(|(key, value, range)| check_range(key, *value, range.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_outside_are_named_with_their_range() {
        assert_eq!(check_range("a.b", 5u64, 1..=5), Ok(()));
        assert_eq!(
            check_range("a.b", 0u64, 1..=5),
            Err("a.b = 0 is outside its range 1..=5".into())
        );
        assert!(check_range("f", f64::NAN, 0.0..=1.0).is_err());
        assert!(check_range("f", f64::INFINITY, 0.0..=1e6).is_err());
        assert!(check_ranges(&[("x", 1u64, 0..=1), ("y", 2, 0..=1)])
            .is_err_and(|e| e.starts_with("y = 2")));
    }
}
