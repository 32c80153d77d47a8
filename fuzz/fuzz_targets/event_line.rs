//! Fuzz target: event lines as `apitap analyze` reads them (from files, pipes or a topic
//! anyone can write to) into analytics records, and the merge of two streams. Never a
//! panic; a line is a record or a counted skip, and the merge gives out every record it
//! took that was not a duplicate.
#![no_main]

use apitap_analytics::events::{parse_event, EventInputStats, EventMerge, MergeBounds};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut merge = EventMerge::new(
        2,
        MergeBounds {
            allowed_lateness_ns: 1_000,
            max_buffered: 4,
            max_buffered_bytes: 1 << 16,
        },
    );
    let (mut stats, mut out) = (EventInputStats::default(), Vec::new());
    let mut taken = 0;
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        match parse_event(line) {
            Ok(rec) => {
                taken += 1;
                merge.push(i % 2, rec, line.len(), &mut stats, &mut out);
            }
            Err(skip) => skip.count(&mut stats),
        }
    }
    merge.close(0, &mut stats, &mut out);
    merge.close(1, &mut stats, &mut out);
    assert_eq!(out.len() as u64 + stats.duplicates, taken);
});
