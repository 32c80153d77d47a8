//! Fuzz target: the sensitive-data scanner over arbitrary bytes (a body or header values
//! from the wire). The first byte picks the kinds; the scan, which searches only the regions
//! around what every match must contain, must count exactly what searching all of the data
//! with each expression counts.
#![no_main]

use apitap_analytics::sensitive::{Scanner, SensitiveKind};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// One scanner per subset of the kinds: compiling the expressions costs far more than a run.
fn scanners() -> &'static [Scanner] {
    static ALL: OnceLock<Vec<Scanner>> = OnceLock::new();
    ALL.get_or_init(|| {
        (0u32..1 << SensitiveKind::ALL.len())
            .map(|mask| Scanner::new(&SensitiveKind::subset(mask)))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mask, body)) = data.split_first() else {
        return;
    };
    let all = scanners();
    let scanner = &all[usize::from(mask) % all.len()];
    let (mut regions, mut whole) = (BTreeMap::new(), BTreeMap::new());
    scanner.scan(body, &mut regions);
    scanner.scan_whole(body, &mut whole);
    assert_eq!(regions, whole);
});
