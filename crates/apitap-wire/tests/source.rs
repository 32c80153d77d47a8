//! Capture file reading: formats, merging, and every kind of broken file.
#![allow(clippy::unwrap_used, missing_docs)]

use apitap_wire::{FileSource, WireError};
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn count(paths: &[PathBuf]) -> (usize, Vec<i64>) {
    let mut src = FileSource::open(paths).unwrap();
    let mut n = 0;
    let mut ts = Vec::new();
    while let Some(p) = src.next_packet().unwrap() {
        n += 1;
        ts.push(p.ts.0);
    }
    (n, ts)
}

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("apitap-wire-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn packet_counts_match_the_manifest() {
    // Counts from fixtures' MANIFEST.tsv (column `packets`); origins in tests/data/ORIGIN.tsv.
    assert_eq!(count(&[data("ether.pcap")]).0, 14);
    assert_eq!(count(&[data("null.pcap")]).0, 8);
    assert_eq!(count(&[data("rawip4.pcap")]).0, 8);
    assert_eq!(count(&[data("pcapng.pcapng")]).0, 115);
}

#[test]
fn several_files_merge_by_time() {
    // Given in reverse time order, read in time order.
    let (n, ts) = count(&[data("null.pcap"), data("ether.pcap")]);
    assert_eq!(n, 14 + 8);
    let mut sorted = ts.clone();
    sorted.sort();
    assert_eq!(ts, sorted);
}

#[test]
fn a_file_whose_time_goes_backwards_keeps_its_order() {
    // rawip4.pcap has timestamps that go back and forth; merged or not, its own order stays.
    let (_, alone) = count(&[data("rawip4.pcap")]);
    let (n, merged) = count(&[data("ether.pcap"), data("rawip4.pcap")]);
    assert_eq!(n, 14 + 8);
    let (_, ether) = count(&[data("ether.pcap")]);
    let rest: Vec<i64> = merged
        .iter()
        .copied()
        .filter(|t| !ether.contains(t))
        .collect();
    assert_eq!(rest, alone);
}

#[test]
fn empty_not_pcap_and_truncated_header_are_clear_errors() {
    let empty = tmp("empty.pcap", b"");
    let text = tmp("text.pcap", b"hello, this is not a capture\n");
    let head = std::fs::read(data("ether.pcap")).unwrap();
    let short = tmp("short.pcap", &head[..10]);
    for p in [&empty, &text, &short] {
        let err = FileSource::open(std::slice::from_ref(p)).err().unwrap();
        assert!(matches!(err, WireError::NotACapture { .. }), "{err}");
        assert!(err.to_string().contains(p.to_str().unwrap()), "{err}");
    }
    let missing = FileSource::open(&[PathBuf::from("/nonexistent.pcap")])
        .err()
        .unwrap();
    assert!(matches!(missing, WireError::Open { .. }));
}

#[test]
fn truncated_last_packet_is_a_warning() {
    let full = std::fs::read(data("ether.pcap")).unwrap();
    let p = tmp("trunc.pcap", &full[..full.len() - 5]);
    let mut src = FileSource::open(std::slice::from_ref(&p)).unwrap();
    let mut n = 0;
    while src.next_packet().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 13);
    assert_eq!(src.warnings().len(), 1);
    assert!(
        src.warnings()[0].contains("truncated"),
        "{:?}",
        src.warnings()
    );
}

#[test]
fn corrupt_record_is_an_error_after_earlier_packets() {
    let mut bytes = std::fs::read(data("ether.pcap")).unwrap();
    let first_caplen = u32::from_le_bytes(bytes[32..36].try_into().unwrap()) as usize;
    let second = 24 + 16 + first_caplen;
    bytes[second + 8..second + 12].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let p = tmp("corrupt.pcap", &bytes);
    let mut src = FileSource::open(std::slice::from_ref(&p)).unwrap();
    assert!(src.next_packet().unwrap().is_some());
    let err = src.next_packet().err().unwrap();
    assert!(matches!(err, WireError::Corrupt { packet: 1, .. }), "{err}");
}

#[test]
fn total_file_bytes_sums_inputs() {
    let src = FileSource::open(&[data("ether.pcap"), data("null.pcap")]).unwrap();
    assert_eq!(src.total_file_bytes(), 6335 + 692);
}
