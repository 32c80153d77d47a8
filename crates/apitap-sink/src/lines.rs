//! JSON-lines output to stdout or a file.
//!
//! Events are buffered (1 MiB) and counted as written only once their bytes reached the
//! file or pipe. When a write fails part way (a full disk, a closed pipe), the count is of
//! the whole lines that made it, and a file is cut back to its last whole line, so no
//! reader ever sees half an event.

use apitap_core::EncodedEvent;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Bytes buffered before a write.
const BUFFER: usize = 1 << 20;

/// Where the lines go.
enum Target {
    Stdout(io::Stdout),
    File(File),
    Other(Box<dyn Write + Send>),
}

impl Target {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Target::Stdout(w) => w.write(buf),
            Target::File(w) => w.write(buf),
            Target::Other(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Target::Stdout(w) => w.flush(),
            Target::File(w) => w.flush(),
            Target::Other(w) => w.flush(),
        }
    }
}

/// Writes one event per line through a large buffer.
pub struct LineSink {
    out: Target,
    /// Where the lines go, for messages: a path or "standard output".
    name: String,
    buf: Vec<u8>,
    /// Events whose line reached the target.
    written: u64,
    /// Lines in `buf`.
    buffered_lines: u64,
    /// Bytes that reached the target.
    bytes: u64,
    /// A write failed: nothing more is written.
    failed: bool,
}

impl LineSink {
    /// Writes to standard output.
    pub fn stdout() -> LineSink {
        LineSink::with(Target::Stdout(io::stdout()), "standard output".into())
    }

    /// Creates (truncates) `path` and writes there.
    pub fn create(path: &Path) -> io::Result<LineSink> {
        Ok(LineSink::with(
            Target::File(File::create(path)?),
            path.display().to_string(),
        ))
    }

    /// Writes to any writer.
    pub fn new(w: Box<dyn Write + Send>) -> LineSink {
        LineSink::with(Target::Other(w), "output".into())
    }

    fn with(out: Target, name: String) -> LineSink {
        LineSink {
            out,
            name,
            buf: Vec::with_capacity(BUFFER),
            written: 0,
            buffered_lines: 0,
            bytes: 0,
            failed: false,
        }
    }

    /// Writes one event and a newline (buffered).
    pub fn write(&mut self, ev: &EncodedEvent) -> io::Result<()> {
        if self.buf.len() + ev.json.len() + 1 > BUFFER {
            self.drain()?;
        }
        self.buf.extend_from_slice(&ev.json);
        self.buf.push(b'\n');
        self.buffered_lines += 1;
        Ok(())
    }

    /// Writes out everything buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        self.drain()?;
        self.out.flush()
    }

    /// Where the lines go: a path or "standard output".
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Events whose whole line reached the output so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Bytes that reached the output so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Hands the buffer to the target; on an error counts the whole lines that made it and
    /// cuts a file back to its last whole line.
    fn drain(&mut self) -> io::Result<()> {
        if self.failed {
            self.buf.clear();
            self.buffered_lines = 0;
            return Err(io::Error::other("an earlier write failed"));
        }
        let mut done = 0;
        let result = loop {
            let Some(rest) = self.buf.get(done..).filter(|r| !r.is_empty()) else {
                break Ok(());
            };
            match self.out.write(rest) {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        if result.is_ok() {
            self.written += std::mem::take(&mut self.buffered_lines);
            self.bytes += done as u64;
            self.buf.clear();
            return result;
        }
        let sent = self.buf.get(..done).unwrap_or(&[]);
        // Lines end with the only newlines there are (JSON escapes them in strings).
        let whole = memchr::memrchr(b'\n', sent).map_or(0, |i| i + 1);
        self.written += memchr::memchr_iter(b'\n', sent).count() as u64;
        self.bytes += whole as u64;
        self.buffered_lines = 0;
        self.failed = true;
        if let (Target::File(f), true) = (&mut self.out, whole < done) {
            // Best effort: a disk that is full can still shrink a file.
            let _ = f.set_len(self.bytes);
        }
        self.buf.clear();
        result
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use apitap_core::SortKey;
    use std::sync::{Arc, Mutex};

    /// Accepts `room` bytes, then fails.
    struct Full {
        got: Arc<Mutex<Vec<u8>>>,
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut got = self.got.lock().unwrap();
            let n = buf.len().min(self.room - got.len());
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::StorageFull));
            }
            got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn ev(n: usize) -> EncodedEvent {
        EncodedEvent {
            key: SortKey::default(),
            json: format!("{{\"n\":{n:06}}}").into_bytes(),
            endpoint_hash: 0,
            alert: false,
            client_key: None,
            endpoint_at: None,
        }
    }

    #[test]
    fn a_failed_write_counts_only_whole_lines_that_made_it() {
        let got = Arc::new(Mutex::new(Vec::new()));
        // Room for 3 whole lines of 13 bytes and part of a fourth.
        let mut sink = LineSink::new(Box::new(Full {
            got: Arc::clone(&got),
            room: 45,
        }));
        for n in 0..10 {
            sink.write(&ev(n)).unwrap();
        }
        assert!(sink.flush().is_err());
        assert_eq!((sink.written(), sink.bytes()), (3, 39));
        assert!(sink.write(&ev(10)).is_ok(), "buffered");
        assert!(sink.flush().is_err(), "nothing more after a failure");
        assert_eq!(sink.written(), 3);
    }

    #[test]
    fn a_file_is_cut_back_to_its_last_whole_line() {
        // /dev/full fails every write; a real file that fails part way is cut back.
        let dir = std::env::temp_dir().join(format!("apitap-lines-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.jsonl");
        let mut sink = LineSink::create(&path).unwrap();
        for n in 0..3 {
            sink.write(&ev(n)).unwrap();
        }
        sink.flush().unwrap();
        assert_eq!(sink.written(), 3);
        assert_eq!(std::fs::read(&path).unwrap().len(), 39);
        if let Ok(mut full) = LineSink::create(Path::new("/dev/full")) {
            full.write(&ev(0)).unwrap();
            assert!(full.flush().is_err());
            assert_eq!(full.written(), 0);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
