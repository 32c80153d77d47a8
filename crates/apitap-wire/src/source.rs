//! Capture file sources: pcap and pcapng files or pipes, read with pcap-parser (each packet
//! borrowed from the read buffer), several merged by time.

use crate::decode::LinkType;
use crate::pcapfile::{self, Next, PcapFile, Record};
use crate::pcapng::{NgNext, PcapNgFile};
use apitap_core::Timestamp;
use std::fs::File;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

/// One captured frame from any source.
#[derive(Clone, Copy, Debug)]
pub struct RawPacket<'a> {
    /// Capture time.
    pub ts: Timestamp,
    /// Captured bytes (may be shorter than the frame on the wire).
    pub data: &'a [u8],
    /// Frame length on the wire.
    pub wire_len: u32,
    /// Link type of `data`.
    pub link: LinkType,
}

/// Errors reading capture files. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The file cannot be opened.
    #[error("{path}: cannot open: {msg}")]
    Open {
        /// File path.
        path: String,
        /// Reason.
        msg: String,
    },
    /// The file is empty, not a pcap/pcapng file, or its header is cut short.
    #[error("{path}: not a readable pcap/pcapng capture: {msg}")]
    NotACapture {
        /// File path.
        path: String,
        /// The reason.
        msg: String,
    },
    /// The capture's link type is not one apitap decodes.
    #[error("{path}: unsupported link type {code} ({name}); supported: Ethernet, Linux cooked v1/v2, raw IPv4/IPv6, BSD null/loop, 802.11 (bare or radiotap), NFLOG, Cisco HDLC")]
    UnsupportedLinkType {
        /// File path.
        path: String,
        /// pcap link-type code.
        code: i32,
        /// libpcap's name for it.
        name: String,
    },
    /// A record in the middle of the file is corrupt; packets before it were delivered.
    #[error("{path}: corrupt capture after packet {packet}: {msg}")]
    Corrupt {
        /// File path.
        path: String,
        /// Number of packets read from this file before the error.
        packet: u64,
        /// The reason.
        msg: String,
    },
}

/// A file, after its header bytes were read to tell its format (a pipe cannot seek back).
type Input = std::io::Chain<Cursor<Vec<u8>>, Retrying>;

/// A file whose reads are tried again when a signal interrupts them: the readers take any
/// read error for a corrupt input.
struct Retrying(File);

impl Read for Retrying {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}

/// The reader of one file.
enum Reader {
    /// A pcap file: one link type.
    Pcap(Box<PcapFile<Input>>, LinkType),
    /// A pcapng file: a link type per interface.
    PcapNg(Box<PcapNgFile<Input>>),
}

/// What [`Reader::next_frame`] found.
enum Frame<'a> {
    Packet(Record<'a>, LinkType),
    End,
    /// The file ends inside a record; the reader's message.
    Truncated(String),
    Error(String),
}

impl Reader {
    fn next_frame(&mut self) -> Frame<'_> {
        match self {
            Reader::Pcap(f, link) => match f.next_record() {
                Next::Record(r) => Frame::Packet(r, *link),
                Next::End => Frame::End,
                Next::Truncated => {
                    Frame::Truncated("truncated: the file ends inside a record".into())
                }
                Next::Error(msg) => Frame::Error(msg),
            },
            Reader::PcapNg(f) => match f.next_record() {
                NgNext::Record(r, link) => Frame::Packet(r, link),
                NgNext::End => Frame::End,
                NgNext::Truncated => {
                    Frame::Truncated("truncated: the file ends inside a block".into())
                }
                NgNext::Error(msg) => Frame::Error(msg),
            },
        }
    }

    /// Packets skipped for a link type apitap does not decode: (pcap link code, packets).
    fn skipped(&self) -> Vec<(i32, u64)> {
        match self {
            Reader::Pcap(..) => Vec::new(),
            Reader::PcapNg(f) => f.skipped().iter().map(|(&c, &n)| (c, n)).collect(),
        }
    }
}

struct OpenFile {
    path: String,
    reader: Reader,
    /// Lookahead frame (merging several files): timestamp, wire length, link type; its
    /// bytes are in `buf`.
    next: Option<(Timestamp, u32, LinkType)>,
    buf: Vec<u8>,
    read: u64,
    done: bool,
}

/// Reads one or more capture files and yields frames merged in timestamp order (ties go
/// to the file named first; within a file, file order is kept even if time goes backwards).
pub struct FileSource {
    files: Vec<OpenFile>,
    warnings: Vec<String>,
    total_bytes: u64,
    read_bytes: u64,
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

impl FileSource {
    /// Opens every file and checks its link type before anything is read.
    pub fn open(paths: &[PathBuf]) -> Result<FileSource, WireError> {
        let mut files = Vec::with_capacity(paths.len());
        let mut total_bytes = 0;
        for path in paths {
            let name = display(path);
            let open_error = |e: std::io::Error| WireError::Open {
                path: name.clone(),
                msg: e.to_string(),
            };
            let file = File::open(path).map_err(open_error)?;
            let meta = file.metadata().map_err(open_error)?;
            if meta.is_dir() {
                return Err(WireError::Open {
                    path: name,
                    msg: "is a directory".into(),
                });
            }
            // Pipes and devices report length 0; only a regular file is known to be empty.
            if meta.is_file() && meta.len() == 0 {
                return Err(WireError::NotACapture {
                    path: name,
                    msg: "file is empty".into(),
                });
            }
            total_bytes += meta.len();
            let reader = open_reader(file, &name).map_err(|e| match e {
                Opened::Io(e) => open_error(e),
                Opened::Wire(e) => e,
            })?;
            files.push(OpenFile {
                path: name,
                reader,
                next: None,
                buf: Vec::new(),
                read: 0,
                done: false,
            });
        }
        Ok(FileSource {
            files,
            warnings: Vec::new(),
            total_bytes,
            read_bytes: 0,
        })
    }

    /// Next frame in time order, or `Ok(None)` at the end of all files.
    ///
    /// A file ending in a truncated record (a capture cut off while being written) ends
    /// there with a warning in [`FileSource::warnings`]; any other read error is
    /// [`WireError::Corrupt`] naming the file, after every frame before it was returned.
    /// That file is then finished; calling again continues with the other files.
    ///
    /// With one file the frame borrows the read buffer (no copy); with several, each file's
    /// next frame is copied once into a per-file buffer that is reused (no allocation per
    /// frame once the buffers have grown to the largest frame).
    pub fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>, WireError> {
        if self.files.len() == 1 {
            return self.next_from_single_file();
        }
        // Fill each file's lookahead (after the first call, only the file that gave the
        // last frame needs one).
        for f in &mut self.files {
            if f.next.is_none() && !f.done {
                fill(f, &mut self.warnings)?;
            }
        }
        let mut best: Option<(usize, Timestamp)> = None;
        for (i, f) in self.files.iter().enumerate() {
            if let Some((ts, _, _)) = f.next {
                if best.is_none_or(|(_, b)| ts < b) {
                    best = Some((i, ts));
                }
            }
        }
        let Some((i, _)) = best else {
            return Ok(None);
        };
        let Some(f) = self.files.get_mut(i) else {
            return Ok(None);
        };
        let Some((ts, wire_len, link)) = f.next.take() else {
            return Ok(None);
        };
        self.read_bytes += f.buf.len() as u64 + 16;
        Ok(Some(RawPacket {
            ts,
            data: &f.buf,
            wire_len,
            link,
        }))
    }

    /// One file: frames straight from the read buffer, no lookahead copy.
    fn next_from_single_file(&mut self) -> Result<Option<RawPacket<'_>>, WireError> {
        let warnings = &mut self.warnings;
        let Some(f) = self.files.first_mut() else {
            return Ok(None);
        };
        if f.done {
            return Ok(None);
        }
        match f.reader.next_frame() {
            Frame::Packet(r, link) => {
                f.read += 1;
                self.read_bytes += r.data.len() as u64 + 16;
                Ok(Some(RawPacket {
                    ts: packet_time(&r),
                    data: r.data,
                    wire_len: r.wire_len,
                    link,
                }))
            }
            other => {
                f.done = true;
                end_of_file(&f.path, f.read, other, warnings).map(|()| None)
            }
        }
    }

    /// Non-fatal problems met so far: a truncated last packet, packets skipped because
    /// their pcapng interface has a link type apitap does not decode (one line per file
    /// and link type, with the count).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = self.warnings.clone();
        for f in &self.files {
            for (code, packets) in f.reader.skipped() {
                out.push(format!(
                    "{}: {packets} packets of interfaces with link type {code} ({}) skipped: not decoded",
                    f.path,
                    link_name(code)
                ));
            }
        }
        out
    }

    /// Approximate bytes of the inputs consumed so far (records and their headers).
    pub fn read_bytes(&self) -> u64 {
        self.read_bytes
    }

    /// Sum of the input file sizes (for progress display).
    pub fn total_file_bytes(&self) -> u64 {
        self.total_bytes
    }
}

/// Reads the next record of `f` into its lookahead buffer.
fn fill(f: &mut OpenFile, warnings: &mut Vec<String>) -> Result<(), WireError> {
    match f.reader.next_frame() {
        Frame::Packet(r, link) => {
            let ts = packet_time(&r);
            f.buf.clear();
            f.buf.extend_from_slice(r.data);
            f.next = Some((ts, r.wire_len, link));
            f.read += 1;
            Ok(())
        }
        other => {
            f.done = true;
            end_of_file(&f.path, f.read, other, warnings)
        }
    }
}

fn link_name(code: i32) -> String {
    pcap::Linktype(code)
        .get_name()
        .unwrap_or_else(|_| "unknown".into())
}

/// Why a file could not be opened as a capture.
enum Opened {
    Io(std::io::Error),
    Wire(WireError),
}

/// Reads `file`'s header (all of a pcap file header, or all of a pcapng section header
/// block), tells its format from it, and opens the reader of that format over the header
/// bytes and the rest of the file.
fn open_reader(mut file: File, name: &str) -> Result<Reader, Opened> {
    let not_a_capture = |msg: &str| {
        Opened::Wire(WireError::NotACapture {
            path: name.to_string(),
            msg: msg.to_string(),
        })
    };
    let mut head = Vec::new();
    read_up_to(&mut file, &mut head, pcapfile::HEADER_LEN).map_err(Opened::Io)?;
    if head.is_empty() {
        return Err(not_a_capture("empty input"));
    }
    if crate::pcapng::is_pcapng(&head) {
        // The section header block's length, in the byte order it states.
        let len = crate::pcapng::section_header_len(&head)
            .ok_or_else(|| not_a_capture("truncated: the file ends inside its section header"))?;
        if len > crate::pcapng::MAX_BLOCK {
            return Err(not_a_capture("a section header longer than 64 MiB"));
        }
        read_up_to(&mut file, &mut head, len).map_err(Opened::Io)?;
        let input = Cursor::new(head).chain(Retrying(file));
        // The reader's first read must hold the whole section header.
        let (reader, first) = PcapNgFile::with_buffer(input, len.max(pcapfile::READ_BUFFER))
            .map_err(|msg| not_a_capture(&msg))?;
        if let Some(code) = first.filter(|&c| LinkType::from_linktype(c).is_none()) {
            return Err(Opened::Wire(unsupported_link(name, code)));
        }
        return Ok(Reader::PcapNg(Box::new(reader)));
    }
    let input = Cursor::new(head).chain(Retrying(file));
    let reader = PcapFile::open(input).map_err(|msg| not_a_capture(&msg))?;
    let code = reader.link();
    let link =
        LinkType::from_linktype(code).ok_or_else(|| Opened::Wire(unsupported_link(name, code)))?;
    Ok(Reader::Pcap(Box::new(reader), link))
}

/// Reads from `file` until `buf` holds `len` bytes or the file ends.
fn read_up_to(file: &mut File, buf: &mut Vec<u8>, len: usize) -> std::io::Result<()> {
    let want = len.saturating_sub(buf.len());
    file.by_ref().take(want as u64).read_to_end(buf)?;
    Ok(())
}

fn unsupported_link(name: &str, code: i32) -> WireError {
    WireError::UnsupportedLinkType {
        path: name.to_string(),
        code,
        name: link_name(code),
    }
}

/// Capture time of a record.
fn packet_time(r: &Record<'_>) -> Timestamp {
    Timestamp::from_parts(r.sec, r.nsec)
}

/// What a read error means: the end of the file, a truncated last record (a warning), or a
/// corrupt record (an error).
fn end_of_file(
    path: &str,
    read: u64,
    frame: Frame<'_>,
    warnings: &mut Vec<String>,
) -> Result<(), WireError> {
    match frame {
        Frame::End | Frame::Packet(..) => Ok(()),
        // The writer stopped mid-record.
        Frame::Truncated(msg) => {
            warnings.push(format!(
                "{path}: truncated last packet after {read} packets ({msg}); the rest of the file is ignored"
            ));
            Ok(())
        }
        Frame::Error(msg) => Err(WireError::Corrupt {
            path: path.to_string(),
            packet: read,
            msg,
        }),
    }
}
