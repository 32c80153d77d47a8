//! Capture file reading: formats, link types, merging, and every kind of broken file.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use apitap_core::PacketRef;
use apitap_wire::{decode, DecodeStats, FileSource, LinkType, UdpTunnels, WireError};
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Packets, and (timestamp, captured length) of each, reading `paths` merged.
fn read_all(paths: &[PathBuf]) -> Vec<(i64, usize)> {
    let mut src = FileSource::open(paths).unwrap();
    let mut out = Vec::new();
    while let Some(p) = src.next_packet().unwrap() {
        out.push((p.ts.0, p.data.len()));
    }
    assert!(src.warnings().is_empty(), "{:?}", src.warnings());
    out
}

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("apitap-wire-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Offsets of every record header in a little-endian microsecond pcap file.
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    assert_eq!(&bytes[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian pcap");
    let mut at = 24;
    let mut out = Vec::new();
    while at + 16 <= bytes.len() {
        out.push(at);
        let caplen = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + caplen;
    }
    out
}

#[test]
fn packet_counts_match_the_manifest() {
    // `packets` column of the fixtures' MANIFEST.tsv; origins in tests/data/README.md.
    for (file, packets) in [
        ("ether.pcap", 14),
        ("null.pcap", 8),
        ("rawip4.pcap", 8),
        ("pcapng.pcapng", 13),
        ("sll2.pcap", 5),
        ("snap.pcap", 8),
        ("padding.pcap", 25),
        ("vlan0.pcap", 14),
        ("vlan-mpls.pcap", 47),
        ("pppoe.pcap", 30),
        ("null-ipv6.pcap", 14),
    ] {
        assert_eq!(read_all(&[data(file)]).len(), packets, "{file}");
    }
}

/// Decodes every frame of `file` and sums what tshark sums (see tests/data/README.md).
fn decode_file(file: &str, link: LinkType) -> ([u64; 6], DecodeStats) {
    let mut src = FileSource::open(&[data(file)]).unwrap();
    let mut stats = DecodeStats::default();
    let mut sums = [0u64; 6];
    let mut index = 0;
    while let Some(p) = src.next_packet().unwrap() {
        assert_eq!(p.link, link, "{file}");
        assert!(p.wire_len as usize >= p.data.len(), "{file}");
        index += 1;
        let at = PacketRef { index, ts: p.ts };
        if let Some(m) = decode(p.link, p.data, at, &UdpTunnels::default(), &mut stats) {
            assert_eq!(m.at, at);
            assert_eq!(m.payload_len, m.payload_wire_len, "{file}: nothing is cut");
            let end = (m.payload_offset + m.payload_len) as usize;
            assert!(end <= p.data.len());
            sums[0] += 1;
            sums[1] += u64::from(m.payload_wire_len);
            sums[2] += u64::from(m.seq);
            sums[3] += u64::from(m.flags.0);
            sums[4] += u64::from(m.key.endpoint(m.from).port);
            sums[5] += u64::from(m.window);
        }
    }
    (sums, stats)
}

#[test]
fn real_captures_decode_like_tshark() {
    // [TCP segments, sum tcp.len, sum tcp.seq_raw, sum flags, sum srcport, sum window]
    // from tshark 4.0.17 (command in tests/data/README.md).
    for (file, link, want) in [
        (
            "ether.pcap",
            LinkType::Ethernet,
            [14, 5143, 49303468788, 230, 419552, 129577],
        ),
        (
            "null.pcap",
            LinkType::Null,
            [8, 80, 28816459959, 131, 401720, 154814],
        ),
        (
            "rawip4.pcap",
            LinkType::Ipv4, // LINKTYPE_IPV4 (228)
            [8, 132, 11271, 126, 200260, 65536],
        ),
        (
            "pcapng.pcapng",
            LinkType::Ethernet,
            [13, 5143, 45039880378, 228, 40574, 64042],
        ),
        (
            "sll2.pcap",
            LinkType::LinuxSll2,
            [5, 82, 8689271876, 76, 169594, 130913],
        ),
        (
            "snap.pcap",
            LinkType::Ethernet,
            [8, 114, 1258, 134, 61965, 65536],
        ),
        (
            "padding.pcap",
            LinkType::Ethernet,
            [25, 207, 50617741496, 470, 1099542, 161136],
        ),
        (
            "vlan0.pcap",
            LinkType::Ethernet,
            [14, 5143, 49303468788, 230, 419552, 129577],
        ),
        (
            "vlan-mpls.pcap",
            LinkType::Ethernet,
            [47, 12979, 104623200835, 799, 1155532, 690304],
        ),
        (
            "pppoe.pcap",
            LinkType::Ethernet,
            [30, 15508, 75937731131, 486, 913328, 141505],
        ),
        (
            "null-ipv6.pcap",
            LinkType::Null,
            [14, 791, 20541153738, 238, 446019, 283905],
        ),
    ] {
        let (got, stats) = decode_file(file, link);
        assert_eq!(got, want, "{file}: {stats:?}");
        assert_eq!(stats.tcp, stats.packets, "{file}: {stats:?}");
    }
}

#[test]
fn several_files_merge_by_time() {
    // Given in reverse time order, read in time order.
    let merged = read_all(&[data("null.pcap"), data("ether.pcap")]);
    assert_eq!(merged.len(), 14 + 8);
    let ts: Vec<i64> = merged.iter().map(|p| p.0).collect();
    let mut sorted = ts.clone();
    sorted.sort();
    assert_eq!(ts, sorted);
    // And actually interleaved when the times overlap: vlan0.pcap is ether.pcap with a
    // VLAN tag (4 bytes longer, same times); ties go to the file named first.
    let a = read_all(&[data("ether.pcap"), data("vlan0.pcap")]);
    let b = read_all(&[data("vlan0.pcap"), data("ether.pcap")]);
    assert_eq!(a.len(), 28);
    for (pa, pb) in a.chunks(2).zip(b.chunks(2)) {
        assert_eq!(pa[0].0, pa[1].0);
        assert_eq!(pa[0].1 + 4, pa[1].1, "ether frame first");
        assert_eq!(pb[0].1, pb[1].1 + 4, "vlan frame first");
    }
}

#[test]
fn a_file_whose_time_goes_backwards_keeps_its_order() {
    // rawip4.pcap has timestamps that go back and forth; merged or not, its own order stays.
    let alone: Vec<i64> = read_all(&[data("rawip4.pcap")])
        .iter()
        .map(|p| p.0)
        .collect();
    assert!(alone.windows(2).any(|w| w[1] < w[0]), "fixture goes back");
    let merged = read_all(&[data("ether.pcap"), data("rawip4.pcap")]);
    assert_eq!(merged.len(), 14 + 8);
    let ether: Vec<i64> = read_all(&[data("ether.pcap")])
        .iter()
        .map(|p| p.0)
        .collect();
    let rest: Vec<i64> = merged
        .iter()
        .map(|p| p.0)
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
    let ng = std::fs::read(data("pcapng.pcapng")).unwrap();
    let short_ng = tmp("short.pcapng", &ng[..20]);
    for (p, words) in [
        (&empty, "empty"),
        (&text, "unknown file format"),
        (&short, "truncated"),
        (&short_ng, "truncated"),
    ] {
        let err = FileSource::open(std::slice::from_ref(p)).err().unwrap();
        assert!(matches!(err, WireError::NotACapture { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(p.to_str().unwrap()), "{msg}");
        assert!(msg.contains(words), "{msg}");
    }
    let missing = FileSource::open(&[PathBuf::from("/nonexistent/x.pcap")])
        .err()
        .unwrap();
    assert!(matches!(missing, WireError::Open { .. }), "{missing}");
    assert!(missing.to_string().contains("/nonexistent/x.pcap"));
    let dir = FileSource::open(&[std::env::temp_dir()]).err().unwrap();
    assert!(matches!(dir, WireError::Open { .. }), "{dir}");
    // One bad file among good ones fails the open, before anything is read.
    let err = FileSource::open(&[data("ether.pcap"), text.clone()])
        .err()
        .unwrap();
    assert!(matches!(err, WireError::NotACapture { .. }), "{err}");
}

#[test]
fn unsupported_link_type_is_named() {
    let mut bytes = std::fs::read(data("ether.pcap")).unwrap();
    bytes[20..24].copy_from_slice(&147u32.to_le_bytes()); // DLT_USER0
    let p = tmp("user0.pcap", &bytes);
    let err = FileSource::open(std::slice::from_ref(&p)).err().unwrap();
    assert!(
        matches!(err, WireError::UnsupportedLinkType { code: 147, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("user0.pcap"), "{err}");
}

#[test]
fn truncated_last_packet_is_a_warning() {
    let full = std::fs::read(data("ether.pcap")).unwrap();
    // Cut inside the last record's data, and inside the last record's header.
    let last = *record_offsets(&full).last().unwrap();
    for (name, cut) in [
        ("trunc-data.pcap", full.len() - 5),
        ("trunc-hdr.pcap", last + 7),
    ] {
        let p = tmp(name, &full[..cut]);
        let mut src = FileSource::open(std::slice::from_ref(&p)).unwrap();
        let mut n = 0;
        while src.next_packet().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 13, "{name}");
        assert!(src.next_packet().unwrap().is_none(), "stays at the end");
        assert_eq!(src.warnings().len(), 1, "{:?}", src.warnings());
        let w = &src.warnings()[0];
        assert!(w.contains("truncated") && w.contains(name), "{w}");
    }
}

#[test]
fn truncated_pcapng_is_a_warning_and_merging_goes_on() {
    let full = std::fs::read(data("pcapng.pcapng")).unwrap();
    let p = tmp("trunc.pcapng", &full[..full.len() - 10]);
    let mut src = FileSource::open(&[p.clone(), data("null.pcap")]).unwrap();
    let mut n = 0;
    while src.next_packet().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 12 + 8, "the other file is read to its end");
    assert_eq!(src.warnings().len(), 1, "{:?}", src.warnings());
    assert!(src.warnings()[0].contains("trunc.pcapng"));
}

#[test]
fn corrupt_record_is_an_error_after_earlier_packets() {
    let clean = std::fs::read(data("ether.pcap")).unwrap();
    let offsets = record_offsets(&clean);
    for caplen in [0xFFFF_FFFFu32, 0xFFFF_FFF0, 0x1000_0000] {
        let mut bytes = clean.clone();
        let third = offsets[2];
        bytes[third + 8..third + 12].copy_from_slice(&caplen.to_le_bytes());
        let p = tmp(&format!("corrupt-{caplen:x}.pcap"), &bytes);
        // Alone (borrowed from the read buffer) and merged (read through the lookahead).
        for paths in [vec![p.clone()], vec![p.clone(), data("null.pcap")]] {
            let mut src = FileSource::open(&paths).unwrap();
            let mut before = 0;
            let err = loop {
                match src.next_packet() {
                    Ok(Some(_)) => before += 1,
                    Ok(None) => panic!("no error for caplen {caplen:#x}"),
                    Err(e) => break e,
                }
            };
            assert_eq!(before, 2, "earlier packets first (caplen {caplen:#x})");
            assert!(matches!(err, WireError::Corrupt { packet: 2, .. }), "{err}");
            assert!(err.to_string().contains("corrupt-"), "{err}");
        }
    }
}

#[test]
fn total_file_bytes_sums_inputs() {
    let src = FileSource::open(&[data("ether.pcap"), data("null.pcap")]).unwrap();
    assert_eq!(src.total_file_bytes(), 6335 + 692);
    assert_eq!(src.read_bytes(), 0);
}

#[test]
fn no_files_is_an_empty_source() {
    let mut src = FileSource::open(&[]).unwrap();
    assert!(src.next_packet().unwrap().is_none());
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

#[test]
fn pcapng_interfaces_of_different_link_types_are_each_decoded() {
    // scripts/make-pcapng-fixtures.py: nginx-mixed.pcap over Ethernet, Linux cooked, raw IP
    // and USER0 interfaces in two sections; libpcap refuses it.
    let p = repo("fixtures/pcapng/mixed-links.pcapng");
    let mut src = FileSource::open(std::slice::from_ref(&p)).unwrap();
    let mut links = std::collections::BTreeSet::new();
    let mut ng = Vec::new();
    while let Some(pkt) = src.next_packet().unwrap() {
        links.insert(pkt.link.name());
        ng.push(pkt.ts.0);
    }
    assert_eq!(
        links.into_iter().collect::<Vec<_>>(),
        ["ethernet", "linux_sll", "raw"]
    );
    let warnings = src.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("4 packets") && warnings[0].contains("link type 147"),
        "{warnings:?}"
    );
    // Same packets at the same times as the source, whatever each interface's resolution
    // and offset.
    let source: Vec<i64> = read_all(&[repo("fixtures/nginx/nginx-mixed.pcap")])
        .into_iter()
        .map(|(ts, _)| ts)
        .collect();
    assert_eq!(ng, source);
}

#[test]
fn a_pcapng_whose_first_interface_is_not_decoded_is_refused() {
    let mut bytes = std::fs::read(data("pcapng.pcapng")).unwrap();
    let shb_len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    assert_eq!(&bytes[shb_len..shb_len + 4], &1u32.to_le_bytes(), "an IDB");
    bytes[shb_len + 8..shb_len + 10].copy_from_slice(&147u16.to_le_bytes());
    let p = tmp("user0.pcapng", &bytes);
    let err = FileSource::open(std::slice::from_ref(&p)).err().unwrap();
    assert!(
        matches!(err, WireError::UnsupportedLinkType { code: 147, .. }),
        "{err}"
    );
}

#[test]
fn pcapng_cut_at_every_byte_never_panics() {
    let full = std::fs::read(repo("fixtures/pcapng/mixed-links.pcapng")).unwrap();
    let whole = {
        let mut src = FileSource::open(&[repo("fixtures/pcapng/mixed-links.pcapng")]).unwrap();
        let mut n = 0;
        while src.next_packet().unwrap().is_some() {
            n += 1;
        }
        n
    };
    // Every 997th cut point keeps the test quick; each cut is read to its end.
    for cut in (0..full.len()).step_by(997) {
        let p = tmp("cut.pcapng", &full[..cut]);
        let Ok(mut src) = FileSource::open(std::slice::from_ref(&p)) else {
            continue;
        };
        let mut n = 0;
        while let Ok(Some(_)) = src.next_packet() {
            n += 1;
        }
        assert!(n <= whole, "{cut}: {n} > {whole}");
    }
}
