//! Reading the files that the command line and the config name (config, HMAC key, spec,
//! inventory, HAR): only regular files, and only up to a size cap, so a path such as
//! /dev/zero or a FIFO is a clear start-up error and not unbounded memory or a hang.

use anyhow::{anyhow, bail, Context, Result};
use std::io::Read;
use std::path::Path;

/// `--config` files.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// `output.redact_hmac_key_file`.
pub const MAX_KEY_BYTES: u64 = 4096;
/// OpenAPI specs (`analytics.spec.path`, `check --spec`).
pub const MAX_SPEC_BYTES: u64 = 64 << 20;
/// Saved inventories (`analytics.inventory.state_file`).
pub const MAX_INVENTORY_BYTES: u64 = 1 << 30;
/// HAR files given to `check`.
pub const MAX_HAR_BYTES: u64 = 512 << 20;

/// Reads the regular file `path` if it holds at most `max` bytes; `what` names it in
/// errors (never its content: it may be a key).
pub fn read_capped(path: &Path, what: &str, max: u64) -> Result<Vec<u8>> {
    // A FIFO is refused below like any other file that is not regular.
    let file =
        open_nonblocking(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    if !meta.is_file() {
        bail!("{what} {} is not a regular file", path.display());
    }
    let too_big = |n: u64| anyhow!("{what} {} holds {n} bytes, more than {max}", path.display());
    if meta.len() > max {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    // It may have grown since the stat.
    if bytes.len() as u64 > max {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Opens `path` for reading without blocking, so that a FIFO without a writer does not hang
/// the caller (reads from a regular file are the same either way).
pub fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
}

/// [`read_capped`] for text files.
pub fn read_capped_text(path: &Path, what: &str, max: u64) -> Result<String> {
    String::from_utf8(read_capped(path, what, max)?)
        .map_err(|_| anyhow!("{what} {} is not UTF-8 text", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn special_and_oversized_files_are_refused() {
        let e = read_capped(Path::new("/dev/zero"), "spec", 10).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let e = read_capped(Path::new("/nonexistent"), "spec", 10).unwrap_err();
        assert!(e.to_string().contains("/nonexistent"), "{e}");
        let dir = std::env::temp_dir().join(format!("apitap-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = read_capped(&dir, "spec", 10).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let f = dir.join("f");
        std::fs::write(&f, b"0123456789A").unwrap();
        let e = read_capped(&f, "key file", 10).unwrap_err();
        assert!(e.to_string().contains("11 bytes, more than 10"), "{e}");
        assert!(
            !e.to_string().contains("0123"),
            "content never in errors: {e}"
        );
        assert_eq!(read_capped(&f, "key file", 11).unwrap(), b"0123456789A");
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        assert!(read_capped_text(&f, "config", 10).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
