//! Key log files for TLS decryption (`tls.keylog_files`, `--keylog`): read at start-up
//! into the handle every worker shares, and, on a live sensor, followed as they grow or
//! are replaced (rotation). The files hold secrets: one that other users can read is a
//! start-up error unless `tls.allow_world_readable_keylog` is set; their content is never
//! logged.

use crate::files::open_nonblocking;
use anyhow::{bail, Context, Result};
use apitap_tls::keylog::{KeyLog, KeyLogHandle};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The most read from one key log file per poll (the start-up read included); the rest
/// waits for the next poll.
pub const MAX_KEYLOG_BYTES: u64 = 256 << 20;
/// Bytes read and handed to the key log at a time, so that a large read never holds the
/// workers' key lookups back for long.
const CHUNK_BYTES: u64 = 1 << 20;
/// The longest line kept while waiting for its end; longer ones are garbage.
const MAX_LINE_BYTES: usize = 64 << 10;

/// One followed file: the descriptor opened at start-up (before a live sensor gives up
/// root, so a key log only root can read stays readable), where reading stopped, and which
/// file that was.
struct Followed {
    path: PathBuf,
    file: std::fs::File,
    inode: u64,
    offset: u64,
    /// An unfinished last line, kept until its newline arrives.
    partial: Vec<u8>,
}

/// Checks a key log file's type and permissions; returns its inode.
fn check(path: &Path, allow_world_readable: bool, warnings: &mut Vec<String>) -> Result<u64> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read key log {}", path.display()))?;
    if !meta.is_file() {
        bail!("key log {} is not a regular file", path.display());
    }
    if meta.permissions().mode() & 0o004 != 0 {
        let msg = format!(
            "key log {} is readable by every user (it holds TLS secrets): chmod o-r it",
            path.display()
        );
        if !allow_world_readable {
            bail!("{msg}, or set tls.allow_world_readable_keylog = true");
        }
        tracing::warn!("{msg}");
        warnings.push(msg);
    }
    Ok(meta.ino())
}

impl Followed {
    /// Reads what was appended since the last read (from the start after a rotation or
    /// truncation) and gives the complete lines to `keys`.
    fn poll(&mut self, keys: &KeyLogHandle) -> std::io::Result<()> {
        // A new file at the path (rotation) is opened if this process may read it; until
        // then the old descriptor is read on.
        if let Ok(meta) = std::fs::metadata(&self.path) {
            if meta.ino() != self.inode {
                if let Ok(file) = open_nonblocking(&self.path) {
                    self.file = file;
                    self.inode = meta.ino();
                    self.offset = 0;
                    self.partial.clear();
                }
            }
        }
        let len = self.file.metadata()?.len();
        if len < self.offset {
            // Truncated in place: read it again from the start.
            self.offset = 0;
            self.partial.clear();
        }
        if len == self.offset {
            return Ok(());
        }
        self.file.seek(SeekFrom::Start(self.offset))?;
        let mut left = (len - self.offset).min(MAX_KEYLOG_BYTES);
        while left > 0 {
            let mut buf = std::mem::take(&mut self.partial);
            let read = (&self.file)
                .take(left.min(CHUNK_BYTES))
                .read_to_end(&mut buf)?;
            if read == 0 {
                break;
            }
            self.offset += read as u64;
            left = left.saturating_sub(read as u64);
            let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            self.partial = buf.split_off(complete);
            if self.partial.len() > MAX_LINE_BYTES {
                // No key log line is this long: count it and drop it.
                keys.add_text("garbage: line too long\n");
                self.partial.clear();
            }
            keys.add_text(&String::from_utf8_lossy(&buf));
            // The lines held secrets.
            zeroize::Zeroize::zeroize(&mut buf);
        }
        Ok(())
    }
}

/// Key logs read at start-up: the handle the workers share, the follower that keeps
/// reading them (live), and what the run summary should say (a world-readable file
/// accepted).
pub struct Opened {
    /// The key log.
    pub handle: KeyLogHandle,
    /// Keeps reading the files as they grow.
    pub follower: Follower,
    /// Warnings for the run summary.
    pub warnings: Vec<String>,
}

/// The key logs of `tls`, opened and read; None when no file is configured. A live sensor
/// calls this before it gives up root: the descriptors stay readable after.
pub fn open(tls: &apitap_tls::TlsConfig) -> Result<Option<Opened>> {
    let mut warnings = Vec::new();
    let opened = open_with(tls, &mut warnings)?;
    Ok(opened.map(|(handle, follower)| Opened {
        handle,
        follower,
        warnings,
    }))
}

fn open_with(
    tls: &apitap_tls::TlsConfig,
    warnings: &mut Vec<String>,
) -> Result<Option<(KeyLogHandle, Follower)>> {
    if tls.keylog_files.is_empty() {
        return Ok(None);
    }
    let handle = KeyLogHandle::new(KeyLog::with_capacity(tls.max_keylog_connections));
    let mut files = Vec::new();
    for path in &tls.keylog_files {
        let path = PathBuf::from(path);
        let inode = check(&path, tls.allow_world_readable_keylog, warnings)?;
        let file = open_nonblocking(&path)
            .with_context(|| format!("cannot read key log {}", path.display()))?;
        let mut f = Followed {
            path,
            file,
            inode,
            offset: 0,
            partial: Vec::new(),
        };
        f.poll(&handle)
            .with_context(|| format!("cannot read key log {}", f.path.display()))?;
        files.push(f);
    }
    Ok(Some((handle.clone(), Follower { files, handle })))
}

/// Follows key log files as they grow (a live sensor).
pub struct Follower {
    files: Vec<Followed>,
    handle: KeyLogHandle,
}

impl Follower {
    /// Polls every file twice a second until `stop` is set, on a thread of its own. A
    /// file that is briefly missing (being rotated) is looked for again.
    pub fn spawn(mut self, stop: Arc<AtomicBool>) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("apitap-keylog".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(500));
                    for f in &mut self.files {
                        // Missing or unreadable for now: tried again next time.
                        let _ = f.poll(&self.handle);
                    }
                }
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write;

    const R: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn line(random_tail: char) -> String {
        let mut r = R.to_string();
        r.pop();
        r.push(random_tail);
        format!("CLIENT_RANDOM {r} {}\n", "ab".repeat(48))
    }

    #[test]
    fn world_readable_files_are_refused_unless_allowed_and_growth_is_followed() {
        let dir = std::env::temp_dir().join(format!("apitap-keylog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.log");
        std::fs::write(&path, line('1')).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut cfg = apitap_tls::TlsConfig {
            keylog_files: vec![path.display().to_string()],
            ..Default::default()
        };
        let mut warnings = Vec::new();
        let err = open_with(&cfg, &mut warnings).err().unwrap().to_string();
        assert!(err.contains("readable by every user"), "{err}");
        cfg.allow_world_readable_keylog = true;
        assert!(open_with(&cfg, &mut warnings).unwrap().is_some());
        assert_eq!(warnings.len(), 1);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        cfg.allow_world_readable_keylog = false;
        let (handle, mut follower) = open_with(&cfg, &mut Vec::new()).unwrap().unwrap();
        assert_eq!(handle.with(|l| l.len()), Some(1));
        // Growth, a line in two writes, then a rotation to a new file.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let two = line('2');
        f.write_all(&two.as_bytes()[..20]).unwrap();
        follower.files[0].poll(&handle).unwrap();
        assert_eq!(handle.with(|l| l.len()), Some(1));
        f.write_all(&two.as_bytes()[20..]).unwrap();
        follower.files[0].poll(&handle).unwrap();
        assert_eq!(handle.with(|l| l.len()), Some(2));
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, line('3')).unwrap();
        follower.files[0].poll(&handle).unwrap();
        assert_eq!(handle.with(|l| l.len()), Some(3));
        assert_eq!(handle.stats().garbage_lines, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
