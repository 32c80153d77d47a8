//! JSON-lines output to stdout or a file.

use apitap_core::EncodedEvent;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Writes one event per line through a large buffer.
pub struct LineSink {
    out: BufWriter<Box<dyn Write + Send>>,
    written: u64,
    bytes: u64,
}

impl LineSink {
    /// Writes to standard output.
    pub fn stdout() -> LineSink {
        LineSink::new(Box::new(io::stdout()))
    }

    /// Creates (truncates) `path` and writes there.
    pub fn create(path: &Path) -> io::Result<LineSink> {
        Ok(LineSink::new(Box::new(File::create(path)?)))
    }

    /// Writes to any writer.
    pub fn new(w: Box<dyn Write + Send>) -> LineSink {
        LineSink {
            out: BufWriter::with_capacity(1 << 20, w),
            written: 0,
            bytes: 0,
        }
    }

    /// Writes one event and a newline.
    pub fn write(&mut self, ev: &EncodedEvent) -> io::Result<()> {
        self.out.write_all(&ev.json)?;
        self.out.write_all(b"\n")?;
        self.written += 1;
        self.bytes += ev.json.len() as u64 + 1;
        Ok(())
    }

    /// Flushes buffered output.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Events written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}
