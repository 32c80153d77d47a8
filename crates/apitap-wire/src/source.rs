//! Capture file sources: pcap and pcapng through libpcap, several files merged by time.

use crate::decode::LinkType;
use crate::offline::{Next, OfflineCapture, Record};
use apitap_core::Timestamp;
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
        /// libpcap's reason.
        msg: String,
    },
    /// The capture's link type is not one apitap decodes.
    #[error("{path}: unsupported link type {code} ({name}); supported: Ethernet, Linux cooked v1/v2, raw IPv4/IPv6, BSD null/loop")]
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
        /// libpcap's reason.
        msg: String,
    },
}

struct OpenFile {
    path: String,
    cap: OfflineCapture,
    link: LinkType,
    /// Lookahead frame (merging several files): timestamp, wire length, bytes.
    next: Option<(Timestamp, u32)>,
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
            // Open it ourselves first so that a missing or unreadable file is reported as
            // such, not as libpcap's guess about its format.
            let meta = std::fs::File::open(path)
                .and_then(|f| f.metadata())
                .map_err(|e| WireError::Open {
                    path: name.clone(),
                    msg: e.to_string(),
                })?;
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
            let cap = OfflineCapture::open(path).map_err(|msg| WireError::NotACapture {
                path: name.clone(),
                msg,
            })?;
            let dlt = pcap::Linktype(cap.datalink());
            let Some(link) = LinkType::from_linktype(dlt.0) else {
                return Err(WireError::UnsupportedLinkType {
                    path: name,
                    code: dlt.0,
                    name: dlt.get_name().unwrap_or_else(|_| "unknown".into()),
                });
            };
            files.push(OpenFile {
                path: name,
                cap,
                link,
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
    /// With one file the frame borrows libpcap's buffer (no copy); with several, each file's
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
            if let Some((ts, _)) = f.next {
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
        let Some((ts, wire_len)) = f.next.take() else {
            return Ok(None);
        };
        self.read_bytes += f.buf.len() as u64 + 16;
        Ok(Some(RawPacket {
            ts,
            data: &f.buf,
            wire_len,
            link: f.link,
        }))
    }

    /// One file: frames straight from libpcap's buffer, no lookahead copy.
    fn next_from_single_file(&mut self) -> Result<Option<RawPacket<'_>>, WireError> {
        let warnings = &mut self.warnings;
        let Some(f) = self.files.first_mut() else {
            return Ok(None);
        };
        if f.done {
            return Ok(None);
        }
        let link = f.link;
        match f.cap.next_record() {
            Next::Record(r) => {
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
                end_of_file(&f.path, f.read, &other, warnings).map(|()| None)
            }
        }
    }

    /// Non-fatal problems met so far (e.g. a truncated last packet).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
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
    match f.cap.next_record() {
        Next::Record(r) => {
            let ts = packet_time(&r);
            f.buf.clear();
            f.buf.extend_from_slice(r.data);
            f.next = Some((ts, r.wire_len));
            f.read += 1;
            Ok(())
        }
        other => {
            f.done = true;
            end_of_file(&f.path, f.read, &other, warnings)
        }
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
    next: &Next<'_>,
    warnings: &mut Vec<String>,
) -> Result<(), WireError> {
    let msg = match next {
        Next::Error(msg) => msg.clone(),
        Next::End | Next::Record(_) => return Ok(()),
    };
    // libpcap: "truncated dump file; tried to read N captured bytes, only got M" (pcap) or
    // "truncated pcapng dump file; ..." (pcapng): the writer stopped mid-record.
    if msg.contains("truncated") && msg.contains("dump file") {
        warnings.push(format!(
            "{path}: truncated last packet after {read} packets ({msg}); the rest of the file is ignored"
        ));
        Ok(())
    } else {
        Err(WireError::Corrupt {
            path: path.to_string(),
            packet: read,
            msg,
        })
    }
}
