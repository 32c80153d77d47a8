//! pcapng files, read with the pcap-parser crate instead of libpcap.
//!
//! libpcap refuses a pcapng file whose interfaces differ in link type (what
//! `dumpcap -i eth0 -i lo` writes: Ethernet and Linux cooked); pcapng allows it, and each
//! packet here carries the link type of its own interface. Every section starts a new
//! interface list; timestamps follow each interface's `if_tsresol` and `if_tsoffset`.
//! Packets of an interface whose link type apitap does not decode are skipped and counted
//! (a warning per interface at the end of the file).

use crate::decode::LinkType;
use crate::offline::Record;
use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError, PcapNGReader};
use std::io::Read;

/// Bytes read from the file at once.
const READ_BUFFER: usize = 1 << 20;
/// The largest block accepted: the buffer grows up to this for a block that does not fit.
const MAX_BLOCK: usize = 64 << 20;

/// The first four bytes of a pcapng file (a Section Header Block), either byte order.
pub fn is_pcapng(head: &[u8]) -> bool {
    head.get(..4) == Some(&[0x0a, 0x0d, 0x0d, 0x0a])
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
    interfaces: Vec<Interface>,
    /// Packets skipped per unsupported interface of any section: (link code, packets).
    skipped: Vec<(i32, u64)>,
    /// The last packet's time, for Simple Packet Blocks (which have none).
    last: (i64, i64),
    /// The current packet (copied out of the reader's buffer).
    buf: Vec<u8>,
    /// The reader's buffer size.
    capacity: usize,
}

impl<R: Read> PcapNgFile<R> {
    /// Starts reading `file` (positioned at its start) up to its first interface, whose
    /// link type is returned so that a file apitap cannot decode at all is refused before
    /// anything is read. `Ok(None)`: no interface before the first packet or the end.
    pub fn open(file: R) -> Result<(PcapNgFile<R>, Option<i32>), String> {
        PcapNgFile::with_buffer(file, READ_BUFFER)
    }

    /// [`PcapNgFile::open`] with a read buffer of `capacity` bytes (it grows for a larger
    /// block, up to 64 MiB).
    pub fn with_buffer(file: R, capacity: usize) -> Result<(PcapNgFile<R>, Option<i32>), String> {
        let reader = PcapNGReader::new(capacity, file).map_err(|e| describe(&e))?;
        let mut f = PcapNgFile {
            reader,
            interfaces: Vec::new(),
            skipped: Vec::new(),
            last: (0, 0),
            buf: Vec::new(),
            capacity,
        };
        let first = f.read_until_interface()?;
        Ok((f, first))
    }

    /// Consumes the blocks before the first interface (the section header, maybe others).
    fn read_until_interface(&mut self) -> Result<Option<i32>, String> {
        loop {
            match self.reader.next() {
                Ok((offset, PcapBlockOwned::NG(Block::InterfaceDescription(idb)))) => {
                    let code = idb.linktype.0;
                    let iface = interface(&idb)?;
                    self.interfaces.push(iface);
                    self.reader.consume(offset);
                    return Ok(Some(code));
                }
                Ok((_, PcapBlockOwned::NG(b))) if b.is_data_block() => return Ok(None),
                Ok((offset, _)) => self.reader.consume(offset),
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
        match fail {
            Fail::Incomplete => {
                self.reader.refill().map_err(|e| describe(&e))?;
                Ok(true)
            }
            Fail::TooSmall => {
                self.capacity = self.capacity.saturating_mul(2);
                if self.capacity > MAX_BLOCK || !self.reader.grow(self.capacity) {
                    return Err(format!("a block is larger than {MAX_BLOCK} bytes"));
                }
                self.reader.refill().map_err(|e| describe(&e))?;
                Ok(true)
            }
            Fail::Truncated => Ok(false),
            Fail::Other(msg) => Err(msg),
        }
    }

    /// Reads the next packet.
    pub fn next_record(&mut self) -> NgNext<'_> {
        let (sec, nsec, wire_len, link) = loop {
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
                PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                    self.interfaces.clear();
                    None
                }
                PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => match interface(&idb) {
                    Ok(iface) => {
                        self.interfaces.push(iface);
                        None
                    }
                    Err(msg) => return NgNext::Error(msg),
                },
                PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                    let Some(iface) = usize::try_from(epb.if_id)
                        .ok()
                        .and_then(|i| self.interfaces.get(i))
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
                    take(&mut self.buf, &mut self.skipped, iface, data)
                        .map(|link| (sec, nsec, epb.origlen, link))
                }
                PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                    let Some(iface) = self.interfaces.first().copied() else {
                        return NgNext::Error("a simple packet before any interface".into());
                    };
                    // The data is padded; the captured length is the shortest of the
                    // frame, the snapshot length and the data.
                    let len = usize::try_from(spb.origlen.min(iface.snaplen.max(1)))
                        .unwrap_or(usize::MAX);
                    let data = spb.data.get(..len).unwrap_or(spb.data);
                    let (sec, nsec) = self.last;
                    take(&mut self.buf, &mut self.skipped, iface, data)
                        .map(|link| (sec, nsec, spb.origlen, link))
                }
                // Statistics, name resolution, decryption secrets, custom blocks...
                _ => None,
            };
            self.reader.consume(offset);
            if let Some(found) = found {
                break found;
            }
        };
        self.last = (sec, nsec);
        NgNext::Record(
            Record {
                sec,
                nsec,
                wire_len,
                data: &self.buf,
            },
            link,
        )
    }

    /// Packets skipped per link type apitap does not decode: (pcap link code, packets).
    pub fn skipped(&self) -> &[(i32, u64)] {
        &self.skipped
    }
}

/// Copies a packet of `iface` into `buf`, or counts it in `skipped` when its link type is
/// not decoded.
fn take(
    buf: &mut Vec<u8>,
    skipped: &mut Vec<(i32, u64)>,
    iface: Interface,
    data: &[u8],
) -> Option<LinkType> {
    let Some(link) = iface.link else {
        match skipped.iter_mut().find(|(code, _)| *code == iface.code) {
            Some((_, n)) => *n += 1,
            None => skipped.push((iface.code, 1)),
        }
        return None;
    };
    buf.clear();
    buf.extend_from_slice(data);
    Some(link)
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

fn interface(idb: &pcap_parser::InterfaceDescriptionBlock<'_>) -> Result<Interface, String> {
    let units = idb
        .ts_resolution()
        .filter(|&u| u > 0)
        .ok_or_else(|| format!("unsupported timestamp resolution {}", idb.if_tsresol))?;
    Ok(Interface {
        link: LinkType::from_linktype(idb.linktype.0),
        code: idb.linktype.0,
        snaplen: idb.snaplen,
        units,
        offset_s: idb.if_tsoffset,
    })
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
    match e {
        PcapError::Eof => "end of file".into(),
        PcapError::BufferTooSmall => "a block too large for the read buffer".into(),
        PcapError::UnexpectedEof | PcapError::Incomplete(_) => {
            "truncated: the file ends inside a block".into()
        }
        PcapError::ReadError => "read error".into(),
        PcapError::HeaderNotRecognized => "not a pcapng section header".into(),
        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
            format!("malformed block ({kind:?})")
        }
    }
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
}
