//! libpcap offline reading through a stdio stream with a large buffer.
//!
//! libpcap reads a capture file with two `fread`s per record. The pcap crate lets libpcap
//! open the file itself, and glibc then sizes the stream buffer at the file system block
//! (4 KiB): one `read` system call per 4 KiB, which on a capture of full-size frames was a
//! quarter of the reader thread's time. Here the file is opened with `fopen`, given a
//! [`STREAM_BUFFER`] buffer with `setvbuf` before any read (as C requires), and handed to
//! `pcap_fopen_offline_with_tstamp_precision`. libpcap still does all the format parsing
//! (pcap, pcapng, byte orders, truncation checks).
//!
//! This is the only `unsafe` code in apitap: five libpcap calls and two stdio calls, each
//! with its contract next to it.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_uint, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::NonNull;

/// Size of the stdio buffer libpcap reads through.
pub const STREAM_BUFFER: usize = 1 << 20;

/// `PCAP_ERRBUF_SIZE` in pcap/pcap.h.
const ERRBUF_SIZE: usize = 256;
/// `PCAP_TSTAMP_PRECISION_NANO`: timestamps in nanoseconds (in `tv_usec`).
const PRECISION_NANO: c_uint = 1;

/// `struct pcap_pkthdr` in pcap/pcap.h.
#[repr(C)]
struct PktHdr {
    ts: libc::timeval,
    caplen: u32,
    len: u32,
}

/// Opaque `pcap_t`.
#[repr(C)]
struct PcapT {
    _private: [u8; 0],
}

// The pcap crate links libpcap; these are its documented C entry points (pcap/pcap.h).
extern "C" {
    fn pcap_fopen_offline_with_tstamp_precision(
        fp: *mut libc::FILE,
        precision: c_uint,
        errbuf: *mut c_char,
    ) -> *mut PcapT;
    fn pcap_next_ex(p: *mut PcapT, header: *mut *mut PktHdr, data: *mut *const u8) -> c_int;
    fn pcap_datalink(p: *mut PcapT) -> c_int;
    fn pcap_geterr(p: *mut PcapT) -> *mut c_char;
    fn pcap_close(p: *mut PcapT);
}

/// One record of a capture file, borrowed from libpcap's buffer until the next read.
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

/// What [`OfflineCapture::next_record`] found.
#[derive(Debug)]
pub enum Next<'a> {
    /// A record.
    Record(Record<'a>),
    /// The end of the file.
    End,
    /// libpcap could not read the next record; its message.
    Error(String),
}

/// An open capture file read by libpcap.
pub struct OfflineCapture {
    handle: NonNull<PcapT>,
    /// The stream buffer; libpcap's `FILE` points into it until `pcap_close`.
    _buffer: Box<[u8]>,
}

// SAFETY: a pcap_t may be used from any thread as long as one thread at a time does so;
// `OfflineCapture` is not `Sync` and every call takes `&mut self` or `&self` on the owner.
unsafe impl Send for OfflineCapture {}

impl OfflineCapture {
    /// Opens `path` as a pcap or pcapng file. The error is libpcap's or the system's message.
    pub fn open(path: &Path) -> Result<OfflineCapture, String> {
        let cpath = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| "path contains a NUL byte".to_string())?;
        let mut buffer = vec![0u8; STREAM_BUFFER].into_boxed_slice();
        // SAFETY: both arguments are NUL-terminated strings that outlive the call.
        let fp = unsafe { libc::fopen(cpath.as_ptr(), c"rb".as_ptr()) };
        if fp.is_null() {
            return Err(std::io::Error::last_os_error().to_string());
        }
        // SAFETY: `fp` is a stream no operation has touched yet, which is when C allows
        // setvbuf; the buffer outlives the stream: it is owned by the returned value and
        // dropped only after `pcap_close` has closed the stream (see `Drop`), or after
        // `fclose` below.
        // It fails only on bad arguments, and then the stream keeps its default buffer.
        unsafe {
            libc::setvbuf(
                fp,
                buffer.as_mut_ptr().cast::<c_char>(),
                libc::_IOFBF,
                buffer.len(),
            )
        };
        let mut errbuf = [0 as c_char; ERRBUF_SIZE];
        // SAFETY: `fp` is an open stream and `errbuf` has PCAP_ERRBUF_SIZE bytes. On
        // success libpcap owns `fp` (closed by pcap_close); on failure it is still ours.
        let handle = unsafe {
            pcap_fopen_offline_with_tstamp_precision(fp, PRECISION_NANO, errbuf.as_mut_ptr())
        };
        match NonNull::new(handle) {
            Some(handle) => Ok(OfflineCapture {
                handle,
                _buffer: buffer,
            }),
            None => {
                // SAFETY: libpcap failed and did not take `fp`; close it exactly once.
                unsafe { libc::fclose(fp) };
                // SAFETY: libpcap wrote a NUL-terminated message into errbuf (it is zeroed,
                // so it is NUL-terminated even if libpcap wrote nothing).
                let msg = unsafe { CStr::from_ptr(errbuf.as_ptr()) };
                Err(msg.to_string_lossy().into_owned())
            }
        }
    }

    /// The file's link type (DLT value).
    pub fn datalink(&self) -> i32 {
        // SAFETY: `handle` is an open pcap_t.
        unsafe { pcap_datalink(self.handle.as_ptr()) }
    }

    /// Reads the next record.
    pub fn next_record(&mut self) -> Next<'_> {
        let mut header: *mut PktHdr = std::ptr::null_mut();
        let mut data: *const u8 = std::ptr::null();
        // SAFETY: `handle` is an open pcap_t and both out-pointers point to locals.
        let rc = unsafe { pcap_next_ex(self.handle.as_ptr(), &mut header, &mut data) };
        match rc {
            1 if !header.is_null() && !data.is_null() => {
                // SAFETY: on success libpcap points `header` at a valid pcap_pkthdr and
                // `data` at `caplen` bytes, both valid until the next call on this handle,
                // which needs `&mut self` and so cannot happen while the record is borrowed.
                let (h, bytes) = unsafe {
                    let h = &*header;
                    let caplen = usize::try_from(h.caplen).unwrap_or(0);
                    (h, std::slice::from_raw_parts(data, caplen))
                };
                // time_t/suseconds_t are i64 on 64-bit Linux but not everywhere.
                #[allow(clippy::useless_conversion)]
                let (sec, nsec) = (i64::from(h.ts.tv_sec), i64::from(h.ts.tv_usec));
                Next::Record(Record {
                    sec,
                    nsec,
                    wire_len: h.len,
                    data: bytes,
                })
            }
            // PCAP_ERROR_BREAK: no more records.
            -2 => Next::End,
            _ => Next::Error(self.last_error()),
        }
    }

    fn last_error(&self) -> String {
        // SAFETY: pcap_geterr returns a NUL-terminated string owned by the handle.
        let msg = unsafe { CStr::from_ptr(pcap_geterr(self.handle.as_ptr())) };
        let msg = msg.to_string_lossy();
        if msg.is_empty() {
            "unknown libpcap read error".into()
        } else {
            msg.into_owned()
        }
    }
}

impl Drop for OfflineCapture {
    fn drop(&mut self) {
        // SAFETY: `handle` is open and closed only here; pcap_close also closes the stream,
        // after which `_buffer` (dropped after this) is no longer referenced.
        unsafe { pcap_close(self.handle.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_an_os_error() {
        let Err(msg) = OfflineCapture::open(Path::new("/nonexistent/apitap.pcap")) else {
            panic!("opened a missing file");
        };
        assert!(msg.contains("No such file"), "{msg}");
    }

    #[test]
    fn not_a_capture_is_libpcap_message() {
        let dir = std::env::temp_dir().join(format!("apitap-offline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let path = dir.join("text.pcap");
        std::fs::write(&path, b"this is not a capture file at all").ok();
        let Err(msg) = OfflineCapture::open(&path) else {
            panic!("opened a text file as a capture");
        };
        assert!(msg.contains("unknown file format"), "{msg}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
