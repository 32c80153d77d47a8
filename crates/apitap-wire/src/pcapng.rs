//! pcapng files, read with the pcap-parser crate instead of libpcap.
//!
//! libpcap refuses a pcapng file whose interfaces differ in link type (what
//! `dumpcap -i eth0 -i lo` writes: Ethernet and Linux cooked); pcapng allows it, and each
//! packet here carries the link type of its own interface. Every section starts a new
//! interface list; timestamps follow each interface's `if_tsresol` and `if_tsoffset`.
//! Packets of an interface whose link type apitap does not decode are skipped and counted
//! (a warning per interface at the end of the file).

use crate::decode::LinkType;
use crate::pcapfile::Record;
use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError, PcapNGReader};
use std::collections::BTreeMap;
use std::io::Read;

/// Bytes read from the file at once.
const READ_BUFFER: usize = 1 << 20;
/// The largest block accepted: the buffer grows up to this for a block that does not fit.
pub const MAX_BLOCK: usize = 64 << 20;
/// Interfaces one section may describe; a file with more is refused as corrupt (each costs
/// memory for the rest of the section).
const MAX_INTERFACES: usize = 4096;
/// The Section Header Block's type, in either byte order.
const SHB_TYPE: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// The first four bytes of a pcapng file (a Section Header Block), either byte order.
pub fn is_pcapng(head: &[u8]) -> bool {
    head.get(..4) == Some(&SHB_TYPE)
}

/// The length of the section header block at the start of `head`, in the byte order it
/// states, if `head` holds that much of it.
pub fn section_header_len(head: &[u8]) -> Option<usize> {
    is_pcapng(head).then(|| block_len(head, false)).flatten()
}

/// One interface of the current section.
#[derive(Clone, Copy, Debug)]
struct Interface {
    /// `None`: a link type apitap does not decode; its pcap code is `code`.
    link: Option<LinkType>,
    code: i32,
    snaplen: u32,
    /// Timestamp units per second.
    units: u64,
    /// Seconds added to every timestamp.
    offset_s: i64,
}

/// What the current section says about its packets.
#[derive(Debug, Default)]
struct Section {
    /// Its byte order.
    big_endian: bool,
    /// Its interfaces, by id.
    interfaces: Vec<Interface>,
}

impl Section {
    /// Takes in a section header (a new section starts) or an interface description; other
    /// blocks say nothing about the section.
    fn describe(&mut self, block: &Block<'_>) -> Result<(), String> {
        match block {
            Block::SectionHeader(shb) => {
                self.big_endian = shb.big_endian();
                self.interfaces.clear();
            }
            Block::InterfaceDescription(_) if self.interfaces.len() >= MAX_INTERFACES => {
                return Err(format!(
                    "more than {MAX_INTERFACES} interfaces in one section"
                ));
            }
            Block::InterfaceDescription(idb) => {
                self.interfaces.push(interface(idb, self.big_endian)?);
            }
            _ => {}
        }
        Ok(())
    }
}

/// What [`PcapNgFile::next_record`] found.
#[derive(Debug)]
pub enum NgNext<'a> {
    /// A packet and its interface's link type.
    Record(Record<'a>, LinkType),
    /// The end of the file.
    End,
    /// The file ends inside a block (a capture cut off while being written).
    Truncated,
    /// A block that cannot be read; its description.
    Error(String),
}

/// An open pcapng file (or any reader of pcapng bytes).
pub struct PcapNgFile<R: Read> {
    reader: PcapNGReader<R>,
    section: Section,
    /// Packets skipped per link type apitap does not decode.
    skipped: BTreeMap<i32, u64>,
    /// The last packet's time, for Simple Packet Blocks (which have none).
    last: (i64, i64),
    /// Bytes of the block last returned, consumed at the next read.
    pending: usize,
    /// The reader's buffer size.
    capacity: usize,
}

impl<R: Read> PcapNgFile<R> {
    /// Starts reading `file` up to its first interface, whose link type is returned so that
    /// a file apitap cannot decode at all is refused before anything is read. `Ok(None)`: no
    /// interface before the first packet or the end. The first read of `file` must return
    /// the whole section header block, as a file or a reader that starts with that block
    /// already read does.
    pub fn open(file: R) -> Result<(PcapNgFile<R>, Option<i32>), String> {
        PcapNgFile::with_buffer(file, READ_BUFFER)
    }

    /// [`PcapNgFile::open`] with a read buffer of `capacity` bytes (it grows for a larger
    /// block, up to 64 MiB).
    pub fn with_buffer(file: R, capacity: usize) -> Result<(PcapNgFile<R>, Option<i32>), String> {
        let reader = PcapNGReader::new(capacity, file).map_err(|e| describe(&e))?;
        let mut f = PcapNgFile {
            reader,
            section: Section::default(),
            skipped: BTreeMap::new(),
            last: (0, 0),
            pending: 0,
            capacity,
        };
        let first = f.read_until_interface()?;
        Ok((f, first))
    }

    /// Consumes the blocks before the first interface (the section header, maybe others).
    fn read_until_interface(&mut self) -> Result<Option<i32>, String> {
        loop {
            match self.reader.next() {
                Ok((_, PcapBlockOwned::NG(b))) if b.is_data_block() => return Ok(None),
                Ok((offset, PcapBlockOwned::NG(b))) => {
                    self.section.describe(&b)?;
                    let first = match &b {
                        Block::InterfaceDescription(idb) => Some(idb.linktype.0),
                        _ => None,
                    };
                    self.reader.consume_noshift(offset);
                    if first.is_some() {
                        return Ok(first);
                    }
                }
                Ok((offset, _)) => self.reader.consume_noshift(offset),
                Err(PcapError::Eof) => return Ok(None),
                Err(e) => {
                    let fail = Fail::from(&e);
                    match self.more(fail) {
                        Ok(true) => {}
                        Ok(false) => return Ok(None),
                        Err(msg) => return Err(msg),
                    }
                }
            }
        }
    }

    /// After an error from `next`: `Ok(true)` when more data was read (try again),
    /// `Ok(false)` at a truncated end, `Err` for anything else.
    fn more(&mut self, fail: Fail) -> Result<bool, String> {
        let grow = match fail {
            Fail::Truncated => return Ok(false),
            Fail::Other(msg) => return Err(msg),
            Fail::Incomplete => false,
            Fail::TooSmall => true,
        };
        let held = self.reader.data();
        let need = block_len(held, self.section.big_endian);
        if need.is_some_and(|n| n <= held.len()) {
            // The whole block is there and still does not parse: a length inside it
            // points past its end.
            return Err("malformed block (a length inside it points past its end)".into());
        }
        if need.is_some_and(|n| n > MAX_BLOCK) {
            return Err(format!("a block is larger than {MAX_BLOCK} bytes"));
        }
        // Grown only when the buffer is full of the block: from a pipe a block arrives in
        // pieces, and growing on every piece would follow the length the block claims,
        // not the bytes that came.
        let full = self.reader.position() == 0 && held.len() >= self.capacity;
        if grow && full {
            // Doubling, so that a block that claims a large length costs no more than
            // about twice the bytes that are really there.
            let want = self.capacity.saturating_mul(2);
            if want > MAX_BLOCK || !self.reader.grow(want) {
                return Err(format!("a block is larger than {MAX_BLOCK} bytes"));
            }
            self.capacity = want;
        }
        self.reader.refill().map_err(|e| describe(&e))?;
        Ok(true)
    }

    /// Reads the next packet. Its bytes are borrowed from the read buffer, not copied.
    pub fn next_record(&mut self) -> NgNext<'_> {
        if self.pending > 0 {
            // Without the shift: the buffer moves its tail to the front only when it
            // refills, and then only the part of a block it holds.
            self.reader.consume_noshift(self.pending);
            self.pending = 0;
        }
        // Where the packet lies in the buffer, and what it is: the bytes are borrowed after
        // the loop, as a borrow returned from inside it would hold the reader.
        let (at, len, sec, nsec, wire_len, link) = loop {
            let base = self.reader.data().as_ptr() as usize;
            let (offset, block) = match self.reader.next() {
                Ok(b) => b,
                Err(PcapError::Eof) => return NgNext::End,
                Err(e) => {
                    let fail = Fail::from(&e);
                    match self.more(fail) {
                        Ok(true) => continue,
                        Ok(false) => return NgNext::Truncated,
                        Err(msg) => return NgNext::Error(msg),
                    }
                }
            };
            let found = match block {
                PcapBlockOwned::NG(
                    b @ (Block::SectionHeader(_) | Block::InterfaceDescription(_)),
                ) => {
                    if let Err(msg) = self.section.describe(&b) {
                        return NgNext::Error(msg);
                    }
                    None
                }
                PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                    let Some(iface) = usize::try_from(epb.if_id)
                        .ok()
                        .and_then(|i| self.section.interfaces.get(i))
                        .copied()
                    else {
                        return NgNext::Error(format!(
                            "a packet of interface {} that was not described",
                            epb.if_id
                        ));
                    };
                    let caplen = usize::try_from(epb.caplen).unwrap_or(usize::MAX);
                    let data = epb.data.get(..caplen).unwrap_or(epb.data);
                    let ts = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                    let (sec, nsec) = time(ts, iface);
                    decoded(&mut self.skipped, iface).map(|link| {
                        let at = (data.as_ptr() as usize).wrapping_sub(base);
                        (at, data.len(), sec, nsec, epb.origlen, link)
                    })
                }
                PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                    let Some(iface) = self.section.interfaces.first().copied() else {
                        return NgNext::Error("a simple packet before any interface".into());
                    };
                    // The data is padded; the captured length is the shortest of the
                    // frame, the snapshot length (0: none) and the data.
                    let cap = match iface.snaplen {
                        0 => spb.origlen,
                        snaplen => spb.origlen.min(snaplen),
                    };
                    let len = usize::try_from(cap).unwrap_or(usize::MAX);
                    let data = spb.data.get(..len).unwrap_or(spb.data);
                    let (sec, nsec) = self.last;
                    decoded(&mut self.skipped, iface).map(|link| {
                        let at = (data.as_ptr() as usize).wrapping_sub(base);
                        (at, data.len(), sec, nsec, spb.origlen, link)
                    })
                }
                // Statistics, name resolution, decryption secrets, custom blocks...
                _ => None,
            };
            if found.is_some() {
                self.pending = offset;
            } else {
                self.reader.consume_noshift(offset);
            }
            if let Some(found) = found {
                break found;
            }
        };
        self.last = (sec, nsec);
        match self.reader.data().get(at..at.saturating_add(len)) {
            Some(data) => NgNext::Record(
                Record {
                    sec,
                    nsec,
                    wire_len,
                    data,
                },
                link,
            ),
            None => NgNext::Error("a packet outside the read buffer".into()),
        }
    }

    /// Packets skipped per link type apitap does not decode: (pcap link code, packets).
    pub fn skipped(&self) -> &BTreeMap<i32, u64> {
        &self.skipped
    }
}

/// The link type of a packet of `iface`, or `None` (counted in `skipped`) when apitap does
/// not decode it.
fn decoded(skipped: &mut BTreeMap<i32, u64>, iface: Interface) -> Option<LinkType> {
    if iface.link.is_none() {
        *skipped.entry(iface.code).or_insert(0) += 1;
    }
    iface.link
}

/// A read error, without the borrow of the reader's buffer.
enum Fail {
    Incomplete,
    TooSmall,
    Truncated,
    Other(String),
}

impl From<&PcapError<&[u8]>> for Fail {
    fn from(e: &PcapError<&[u8]>) -> Fail {
        match e {
            PcapError::Incomplete(_) => Fail::Incomplete,
            PcapError::BufferTooSmall => Fail::TooSmall,
            PcapError::UnexpectedEof => Fail::Truncated,
            other => Fail::Other(describe(other)),
        }
    }
}

/// An interface's link type, snapshot length and clock. The resolution and offset are
/// decoded here: pcap-parser 0.17 refuses every power-of-two resolution (`0x80 | n`) and
/// reads the offset little-endian in every section.
fn interface(
    idb: &pcap_parser::InterfaceDescriptionBlock<'_>,
    big_endian: bool,
) -> Result<Interface, String> {
    let mut units = Some(1_000_000);
    let mut offset_s = 0;
    for opt in &idb.options {
        let value = opt.as_bytes().unwrap_or(&[]);
        match opt.code.0 {
            9 => units = value.first().map_or(units, |&r| resolution(r)),
            14 => {
                if let Some(b) = value.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                    offset_s = if big_endian {
                        i64::from_be_bytes(b)
                    } else {
                        i64::from_le_bytes(b)
                    };
                }
            }
            _ => {}
        }
    }
    let units = units
        .filter(|&u| u > 0)
        .ok_or_else(|| format!("unsupported timestamp resolution {}", idb.if_tsresol))?;
    Ok(Interface {
        link: LinkType::from_linktype(idb.linktype.0),
        code: idb.linktype.0,
        snaplen: idb.snaplen,
        units,
        offset_s,
    })
}

/// Timestamp units per second of an `if_tsresol` value: 10^n, or 2^n with the top bit set.
fn resolution(tsresol: u8) -> Option<u64> {
    let n = u32::from(tsresol & 0x7f);
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(n)
    } else {
        1u64.checked_shl(n).filter(|_| n < 64)
    }
}

/// The total length of the block at the start of `data`, from its header (the section
/// header says its own byte order), if the header is there.
fn block_len(data: &[u8], big_endian: bool) -> Option<usize> {
    let word = |at: usize| {
        data.get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
    };
    let big = if data.get(..4) == Some(&SHB_TYPE) {
        word(8)? == [0x1a, 0x2b, 0x3c, 0x4d]
    } else {
        big_endian
    };
    let len = word(4)?;
    let len = if big {
        u32::from_be_bytes(len)
    } else {
        u32::from_le_bytes(len)
    };
    usize::try_from(len).ok()
}

/// Seconds and nanoseconds of a timestamp of `ts` units of `iface`.
fn time(ts: u64, iface: Interface) -> (i64, i64) {
    let sec = ts / iface.units;
    let frac = ts % iface.units;
    let nsec = u128::from(frac) * 1_000_000_000 / u128::from(iface.units);
    let sec = i64::try_from(sec)
        .unwrap_or(i64::MAX)
        .saturating_add(iface.offset_s);
    (sec, i64::try_from(nsec).unwrap_or(0))
}

fn describe(e: &PcapError<&[u8]>) -> String {
    crate::pcapfile::describe_as(e, "block")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(units: u64, offset_s: i64) -> Interface {
        Interface {
            link: Some(LinkType::Ethernet),
            code: 1,
            snaplen: 65535,
            units,
            offset_s,
        }
    }

    #[test]
    fn timestamps_follow_the_interface_resolution_and_offset() {
        assert_eq!(time(1_500_000, iface(1_000_000, 0)), (1, 500_000_000));
        assert_eq!(
            time(1_500_000_001, iface(1_000_000_000, 10)),
            (11, 500_000_001)
        );
        // 2^-10 s units.
        assert_eq!(time(1024 + 512, iface(1024, 0)), (1, 500_000_000));
        assert_eq!(time(u64::MAX, iface(1, i64::MAX)), (i64::MAX, 0));
    }

    #[test]
    fn decimal_and_binary_resolutions() {
        assert_eq!(resolution(6), Some(1_000_000));
        assert_eq!(resolution(9), Some(1_000_000_000));
        assert_eq!(resolution(0x80 | 10), Some(1024));
        assert_eq!(resolution(0x80 | 63), Some(1 << 63));
        assert_eq!(resolution(0x80 | 64), None);
        assert_eq!(resolution(20), None);
    }

    fn block(kind: u32, body: &[u8]) -> Vec<u8> {
        let mut body = body.to_vec();
        body.resize(body.len().div_ceil(4) * 4, 0);
        let len = (12 + body.len()) as u32;
        let mut b = kind.to_le_bytes().to_vec();
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&body);
        b.extend_from_slice(&len.to_le_bytes());
        b
    }

    fn epb(caplen: u32, data: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        for v in [0u32, 0, 1_000_000, caplen, data.len() as u32] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body.extend_from_slice(data);
        block(6, &body)
    }

    fn file(blocks: &[Vec<u8>]) -> Vec<u8> {
        let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
        shb.extend_from_slice(&[1, 0, 0, 0]);
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        let mut out = block(0x0a0d_0d0a, &shb);
        // An Ethernet interface with a binary resolution (2^-10 s).
        let mut idb = vec![1, 0, 0, 0, 0xff, 0xff, 0, 0];
        idb.extend_from_slice(&[9, 0, 1, 0, 0x80 | 10, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&block(1, &idb));
        for b in blocks {
            out.extend_from_slice(b);
        }
        out
    }

    #[test]
    fn a_binary_resolution_is_read() {
        let bytes = file(&[epb(4, b"abcd")]);
        let (mut f, first) = PcapNgFile::with_buffer(bytes.as_slice(), 64).unwrap();
        assert_eq!(first, Some(1));
        let NgNext::Record(r, _) = f.next_record() else {
            panic!("a packet");
        };
        // 1,000,000 units of 2^-10 s.
        assert_eq!((r.sec, r.nsec), (976, 562_500_000));
    }

    #[test]
    fn a_block_claiming_more_than_a_pipe_brings_grows_the_buffer_by_what_came() {
        // A packet block that says 60 MiB, then 3,000 bytes and the end of the input.
        let mut lying = 6u32.to_le_bytes().to_vec();
        lying.extend_from_slice(&(60u32 << 20).to_le_bytes());
        lying.extend_from_slice(&[0; 3000]);
        let bytes = [file(&[epb(4, b"abcd")]), lying].concat();
        // 100 bytes a read after the section header.
        let input = crate::pcapfile::tests::Trickle {
            bytes: &bytes,
            at: 0,
            first: 28,
            step: 100,
        };
        let (mut f, _) = PcapNgFile::with_buffer(input, 256).unwrap();
        assert!(matches!(f.next_record(), NgNext::Record(..)));
        assert!(matches!(f.next_record(), NgNext::Truncated));
        assert!(f.capacity <= 2 * bytes.len(), "grew to {}", f.capacity);
    }

    #[test]
    fn a_length_past_its_block_is_corrupt_not_a_truncated_end() {
        // The packet says 64 captured bytes in a block that holds 4; good packets follow.
        let good = epb(4, b"abcd");
        let bytes = file(&[good.clone(), epb(64, b"abcd"), good.clone(), good]);
        for buffer in [64, 4096] {
            let (mut f, _) = PcapNgFile::with_buffer(bytes.as_slice(), buffer).unwrap();
            assert!(matches!(f.next_record(), NgNext::Record(..)));
            assert!(
                matches!(f.next_record(), NgNext::Error(_)),
                "buffer {buffer}"
            );
        }
    }
}
