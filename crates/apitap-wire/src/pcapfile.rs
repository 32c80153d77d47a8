//! pcap files (the classic format), read with the pcap-parser crate: both byte orders,
//! microsecond and nanosecond timestamps, and the "modified" record format (little-endian
//! only: pcap-parser does not know its byte-swapped magic). Each record is returned straight
//! from the read buffer, without a copy; it is consumed at the next read.
//!
//! What libpcap checks, this reader checks too: a record longer than [`MAX_CAPLEN`] is
//! corrupt, and one longer than the file's snapshot length is cut to it.

use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{LegacyPcapReader, PcapBlockOwned, PcapError};
use std::io::Read;

/// Bytes read from the input at once.
pub const READ_BUFFER: usize = 1 << 20;
/// The longest record libpcap accepts (`MAXIMUM_SNAPLEN`); a longer one is corrupt.
pub const MAX_CAPLEN: u32 = 262_144;
/// Bytes of a pcap file header.
pub const HEADER_LEN: usize = 24;

/// One record of a capture file, borrowed from the reader's buffer until its next read.
#[derive(Debug)]
pub struct Record<'a> {
    /// Seconds of the capture time.
    pub sec: i64,
    /// Nanoseconds of the capture time.
    pub nsec: i64,
    /// Frame length on the wire.
    pub wire_len: u32,
    /// Captured bytes.
    pub data: &'a [u8],
}

/// What [`PcapFile::next_record`] found.
#[derive(Debug)]
pub enum Next<'a> {
    /// A record.
    Record(Record<'a>),
    /// The end of the file.
    End,
    /// The file ends inside a record (a capture cut off while being written).
    Truncated,
    /// A record that cannot be read; its description.
    Error(String),
}

/// An open pcap file (or any reader of pcap bytes).
pub struct PcapFile<R: Read> {
    reader: LegacyPcapReader<R>,
    /// The file's link type (pcap `LINKTYPE_` code).
    link: i32,
    /// Whether timestamps are in nanoseconds (else microseconds).
    nanos: bool,
    big_endian: bool,
    /// The file's snapshot length: longer records are cut to it.
    snaplen: u32,
    /// Bytes of the record last returned, consumed at the next read.
    pending: usize,
}

impl<R: Read> PcapFile<R> {
    /// Reads the file header. The first read of `input` must return the whole header (24
    /// bytes), as a file or a reader that starts with the header already read does.
    pub fn open(input: R) -> Result<PcapFile<R>, String> {
        PcapFile::with_buffer(input, READ_BUFFER)
    }

    /// [`PcapFile::open`] with a read buffer of `capacity` bytes; it must hold the longest
    /// record, so it is at least [`MAX_CAPLEN`] plus a record header.
    pub fn with_buffer(input: R, capacity: usize) -> Result<PcapFile<R>, String> {
        let capacity = capacity.max(MAX_CAPLEN as usize + 64);
        let mut reader = LegacyPcapReader::new(capacity, input).map_err(|e| match e {
            PcapError::HeaderNotRecognized => "unknown file format".to_string(),
            PcapError::Incomplete(_) => "truncated: the file ends inside its header".to_string(),
            other => describe(&other),
        })?;
        let header = match reader.next() {
            Ok((offset, PcapBlockOwned::LegacyHeader(h))) => {
                reader.consume_noshift(offset);
                h
            }
            Ok(_) => return Err("no pcap file header".into()),
            Err(e) => return Err(describe(&e)),
        };
        if header.version_major != 2 {
            return Err(format!(
                "unsupported pcap version {}.{}",
                header.version_major, header.version_minor
            ));
        }
        // libpcap: a snapshot length of 0 or past the maximum means the maximum.
        let snaplen = match header.snaplen {
            0 => MAX_CAPLEN,
            n => n.min(MAX_CAPLEN),
        };
        Ok(PcapFile {
            // The low 16 bits are the link type; the others say whether frames end in an
            // FCS, which the decoder does not need.
            link: header.network.0 & 0xffff,
            nanos: header.is_nanosecond_precision(),
            big_endian: header.is_bigendian(),
            snaplen,
            reader,
            pending: 0,
        })
    }

    /// The file's link type (pcap `LINKTYPE_` code).
    pub fn link(&self) -> i32 {
        self.link
    }

    /// Reads the next record.
    pub fn next_record(&mut self) -> Next<'_> {
        if self.pending > 0 {
            // Without the shift: the buffer moves its tail to the front only when it
            // refills, and then only the part of a record it holds.
            self.reader.consume_noshift(self.pending);
            self.pending = 0;
        }
        // Where the record's data lies in the buffer, and its header: the data is returned
        // after the loop, as a borrow returned from inside it would hold the reader.
        let (at, len, sec, frac, wire_len) = loop {
            match self.reader.next() {
                Ok((offset, PcapBlockOwned::Legacy(b))) => {
                    if b.caplen > MAX_CAPLEN {
                        return Next::Error(too_long(b.caplen));
                    }
                    // The data is the end of the record.
                    let at = offset - b.data.len();
                    let len = b.data.len().min(self.snaplen as usize);
                    self.pending = offset;
                    break (at, len, b.ts_sec, b.ts_usec, b.origlen);
                }
                Ok((offset, _)) => self.reader.consume_noshift(offset),
                Err(PcapError::Eof) => return Next::End,
                Err(PcapError::UnexpectedEof) => return Next::Truncated,
                Err(PcapError::Incomplete(_) | PcapError::BufferTooSmall) => {
                    // A record header with a length past the maximum is corrupt, whether
                    // or not its data is there; else the rest of the record is read.
                    if let Some(caplen) = self.caplen_held() {
                        if caplen > MAX_CAPLEN {
                            return Next::Error(too_long(caplen));
                        }
                    }
                    if let Err(e) = self.reader.refill() {
                        return Next::Error(describe(&e));
                    }
                }
                Err(e) => return Next::Error(describe(&e)),
            }
        };
        let nsec = if self.nanos {
            i64::from(frac)
        } else {
            i64::from(frac) * 1000
        };
        match self.reader.data().get(at..at + len) {
            Some(data) => Next::Record(Record {
                sec: i64::from(sec),
                nsec,
                wire_len,
                data,
            }),
            None => Next::Error("a record outside the read buffer".into()),
        }
    }

    /// The captured length in the record header at the start of the buffer, if all of the
    /// header is there.
    fn caplen_held(&self) -> Option<u32> {
        let b = <[u8; 4]>::try_from(self.reader.data().get(8..12)?).ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }
}

fn too_long(caplen: u32) -> String {
    format!("invalid packet capture length {caplen}, bigger than the maximum of {MAX_CAPLEN}")
}

/// A reader error in words; `unit` is what the format is made of ("record", "block").
pub(crate) fn describe_as(e: &PcapError<&[u8]>, unit: &str) -> String {
    match e {
        PcapError::Eof => "end of file".into(),
        PcapError::BufferTooSmall => format!("a {unit} too large for the read buffer"),
        PcapError::UnexpectedEof | PcapError::Incomplete(_) => {
            format!("truncated: the file ends inside a {unit}")
        }
        PcapError::ReadError => "read error".into(),
        PcapError::HeaderNotRecognized => "unknown file format".into(),
        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
            format!("malformed {unit} ({kind:?})")
        }
    }
}

fn describe(e: &PcapError<&[u8]>) -> String {
    describe_as(e, "record")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A pcap file in either byte order and resolution, with these (caplen, data) records.
    fn file(big_endian: bool, nanos: bool, snaplen: u32, records: &[(u32, &[u8])]) -> Vec<u8> {
        let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        let w32 = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let w16 = |v: u16| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut out = w32(magic).to_vec();
        out.extend_from_slice(&w16(2));
        out.extend_from_slice(&w16(4));
        out.extend_from_slice(&w32(0));
        out.extend_from_slice(&w32(0));
        out.extend_from_slice(&w32(snaplen));
        out.extend_from_slice(&w32(0x0400_0001)); // Ethernet, with FCS bits set
        for (i, (caplen, data)) in records.iter().enumerate() {
            out.extend_from_slice(&w32(100 + i as u32));
            out.extend_from_slice(&w32(7));
            out.extend_from_slice(&w32(*caplen));
            out.extend_from_slice(&w32(1500));
            out.extend_from_slice(data);
        }
        out
    }

    fn read_all(bytes: &[u8]) -> (Vec<(i64, i64, Vec<u8>)>, Next<'static>) {
        let mut f = PcapFile::open(bytes).unwrap();
        assert_eq!(f.link(), 1);
        let mut out = Vec::new();
        loop {
            match f.next_record() {
                Next::Record(r) => out.push((r.sec, r.nsec, r.data.to_vec())),
                Next::End => return (out, Next::End),
                Next::Truncated => return (out, Next::Truncated),
                Next::Error(e) => return (out, Next::Error(e)),
            }
        }
    }

    #[test]
    fn both_byte_orders_and_resolutions() {
        for big in [false, true] {
            for nanos in [false, true] {
                let bytes = file(big, nanos, 65535, &[(3, b"abc"), (0, b""), (2, b"de")]);
                let (recs, end) = read_all(&bytes);
                assert!(matches!(end, Next::End), "{end:?}");
                let nsec = if nanos { 7 } else { 7000 };
                assert_eq!(
                    recs,
                    vec![
                        (100, nsec, b"abc".to_vec()),
                        (101, nsec, vec![]),
                        (102, nsec, b"de".to_vec())
                    ],
                    "big {big} nanos {nanos}"
                );
            }
        }
    }

    #[test]
    fn a_record_past_the_snapshot_length_is_cut_to_it() {
        let bytes = file(false, false, 2, &[(3, b"abc")]);
        assert_eq!(read_all(&bytes).0[0].2, b"ab");
    }

    #[test]
    fn records_across_buffer_refills_are_whole() {
        // Records of every size up to 3000 bytes through the smallest buffer: every one
        // crosses refills somewhere.
        let data: Vec<Vec<u8>> = (0..400u32)
            .map(|i| vec![i as u8; (i * 7 % 3000) as usize])
            .collect();
        let records: Vec<(u32, &[u8])> = data.iter().map(|d| (d.len() as u32, &d[..])).collect();
        let bytes = file(false, false, 0, &records);
        let mut f = PcapFile::with_buffer(bytes.as_slice(), 0).unwrap();
        for d in &data {
            let Next::Record(r) = f.next_record() else {
                panic!("a record");
            };
            assert_eq!(r.data, &d[..]);
        }
        assert!(matches!(f.next_record(), Next::End));
    }

    /// Gives at most `first` bytes in the first read (a file header, whole, as the source
    /// gives it), then at most `step` bytes per read, as a pipe may.
    pub(crate) struct Trickle<'a> {
        pub bytes: &'a [u8],
        pub at: usize,
        pub first: usize,
        pub step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let step = if self.at == 0 { self.first } else { self.step };
            let rest = self.bytes.get(self.at..).unwrap_or(&[]);
            let n = step.min(buf.len()).min(rest.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.at += n;
            Ok(n)
        }
    }

    #[test]
    fn records_split_at_every_byte_by_short_reads_are_whole() {
        let records: [(u32, &[u8]); 3] = [(3, b"abc"), (0, b""), (5, b"defgh")];
        let bytes = file(true, true, 0, &records);
        for step in 1..=bytes.len() {
            let input = Trickle {
                bytes: &bytes,
                at: 0,
                first: HEADER_LEN,
                step,
            };
            let mut f = PcapFile::open(input).unwrap();
            for (_, data) in records {
                let Next::Record(r) = f.next_record() else {
                    panic!("a record at step {step}");
                };
                assert_eq!(r.data, data, "step {step}");
            }
            assert!(matches!(f.next_record(), Next::End), "step {step}");
        }
    }

    #[test]
    fn too_long_and_truncated_records() {
        let bytes = file(false, false, 0, &[(1, b"a"), (MAX_CAPLEN + 1, b"")]);
        let (recs, end) = read_all(&bytes);
        assert_eq!(recs.len(), 1);
        assert!(
            matches!(end, Next::Error(ref e) if e.contains("262144")),
            "{end:?}"
        );
        let bytes = file(false, false, 0, &[(1, b"a"), (5, b"ab")]);
        let (recs, end) = read_all(&bytes);
        assert_eq!(recs.len(), 1);
        assert!(matches!(end, Next::Truncated), "{end:?}");
    }

    #[test]
    fn bad_headers_are_errors() {
        for (bytes, words) in [
            (
                &b"hello, this is not a capture file"[..],
                "unknown file format",
            ),
            (&file(false, false, 0, &[])[..10], "truncated"),
        ] {
            let Err(e) = PcapFile::open(bytes) else {
                panic!("opened {bytes:?}");
            };
            assert!(e.contains(words), "{e}");
        }
        let mut old = file(false, false, 0, &[]);
        old[4] = 1;
        assert!(PcapFile::open(old.as_slice())
            .err()
            .is_some_and(|e| e.contains("version 1.4")));
    }
}
