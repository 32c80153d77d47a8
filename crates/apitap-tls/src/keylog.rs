//! The NSS key log format (SSLKEYLOGFILE, as curl, browsers, OpenSSL, Go and Java agents
//! write it): `LABEL <client random, 64 hex> <secret, hex>` per line, `#` comments.
//! Secrets are held in zeroizing buffers and never printed: `Debug` shows counts only.

use std::collections::HashMap;
use zeroize::Zeroizing;

/// A secret from the key log; zeroed when dropped.
pub type Secret = Zeroizing<Vec<u8>>;

/// The secrets of one connection, by the label that named them.
#[derive(Default)]
pub struct Secrets {
    /// `CLIENT_RANDOM`: the TLS 1.2 (and earlier) master secret, 48 bytes.
    pub master: Option<Secret>,
    /// `CLIENT_HANDSHAKE_TRAFFIC_SECRET` (TLS 1.3).
    pub client_handshake: Option<Secret>,
    /// `SERVER_HANDSHAKE_TRAFFIC_SECRET` (TLS 1.3).
    pub server_handshake: Option<Secret>,
    /// `CLIENT_TRAFFIC_SECRET_0` (TLS 1.3).
    pub client_traffic: Option<Secret>,
    /// `SERVER_TRAFFIC_SECRET_0` (TLS 1.3).
    pub server_traffic: Option<Secret>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("master", &self.master.is_some())
            .field("client_handshake", &self.client_handshake.is_some())
            .field("server_handshake", &self.server_handshake.is_some())
            .field("client_traffic", &self.client_traffic.is_some())
            .field("server_traffic", &self.server_traffic.is_some())
            .finish()
    }
}

apitap_core::counters! {
    /// What reading key logs found.
    pub struct KeyLogStats {
        /// Lines read (comments and blank lines included).
        pub lines: u64,
        /// Secrets taken.
        pub secrets: u64,
        /// Lines that are not `LABEL <64 hex> <hex>`.
        pub garbage_lines: u64,
        /// Well-formed lines with a label apitap does not use (exporter and early secrets).
        pub unused_lines: u64,
        /// Connections whose secrets were forgotten, oldest first, to stay within
        /// `tls.max_keylog_connections`.
        pub evicted: u64,
    }
}

/// Why a key log line was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineError {
    /// Not `LABEL <64 hex> <hex>`, or a secret of the wrong length.
    Garbage,
    /// A label apitap does not use.
    Unused,
}

/// Connections' secrets by client random, at most `max` connections (the oldest go first).
pub struct KeyLog {
    by_random: HashMap<[u8; 32], Secrets>,
    /// Client randoms in the order they arrived, for eviction.
    order: std::collections::VecDeque<[u8; 32]>,
    max: usize,
    stats: KeyLogStats,
}

impl Default for KeyLog {
    fn default() -> Self {
        KeyLog::with_capacity(DEFAULT_MAX_CONNECTIONS)
    }
}

/// Connections a key log keeps secrets for unless told otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;

impl std::fmt::Debug for KeyLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLog")
            .field("connections", &self.by_random.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl KeyLog {
    /// An empty key log.
    pub fn new() -> KeyLog {
        KeyLog::default()
    }

    /// An empty key log keeping secrets for at most `max` connections.
    pub fn with_capacity(max: usize) -> KeyLog {
        KeyLog {
            by_random: HashMap::new(),
            order: std::collections::VecDeque::new(),
            max: max.max(1),
            stats: KeyLogStats::default(),
        }
    }

    /// Takes every line of `text`; bad lines are counted, never fatal.
    pub fn add_text(&mut self, text: &str) {
        for line in text.lines() {
            let _ = self.add_line(line);
        }
    }

    /// Takes one line.
    pub fn add_line(&mut self, line: &str) -> Result<(), LineError> {
        self.stats.lines += 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(());
        }
        let result = self.parse(line);
        match result {
            Ok(()) => self.stats.secrets += 1,
            Err(LineError::Garbage) => self.stats.garbage_lines += 1,
            Err(LineError::Unused) => self.stats.unused_lines += 1,
        }
        result
    }

    fn parse(&mut self, line: &str) -> Result<(), LineError> {
        let mut parts = line.split_ascii_whitespace();
        let (Some(label), Some(random), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(LineError::Garbage);
        };
        /// Which secret a label names.
        enum Slot {
            Master,
            ClientHandshake,
            ServerHandshake,
            ClientTraffic,
            ServerTraffic,
        }
        let slot = match label {
            "CLIENT_RANDOM" => Slot::Master,
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET" => Slot::ClientHandshake,
            "SERVER_HANDSHAKE_TRAFFIC_SECRET" => Slot::ServerHandshake,
            "CLIENT_TRAFFIC_SECRET_0" => Slot::ClientTraffic,
            "SERVER_TRAFFIC_SECRET_0" => Slot::ServerTraffic,
            // Exporter and early secrets, `RSA` pre-master lines: well-formed, not used.
            _ if label
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit()) =>
            {
                return Err(LineError::Unused)
            }
            _ => return Err(LineError::Garbage),
        };
        let random: [u8; 32] = hex(random)
            .and_then(|r| <[u8; 32]>::try_from(r.as_slice()).ok())
            .ok_or(LineError::Garbage)?;
        let secret = Zeroizing::new(hex(secret).ok_or(LineError::Garbage)?);
        let len_ok = match slot {
            Slot::Master => secret.len() == 48,
            _ => matches!(secret.len(), 32 | 48),
        };
        if !len_ok {
            return Err(LineError::Garbage);
        }
        if !self.by_random.contains_key(&random) {
            while self.by_random.len() >= self.max {
                let Some(old) = self.order.pop_front() else {
                    break;
                };
                // Dropping the entry zeroes its secrets.
                self.by_random.remove(&old);
                self.stats.evicted += 1;
            }
            self.order.push_back(random);
        }
        let entry = self.by_random.entry(random).or_default();
        let place = match slot {
            Slot::Master => &mut entry.master,
            Slot::ClientHandshake => &mut entry.client_handshake,
            Slot::ServerHandshake => &mut entry.server_handshake,
            Slot::ClientTraffic => &mut entry.client_traffic,
            Slot::ServerTraffic => &mut entry.server_traffic,
        };
        *place = Some(secret);
        Ok(())
    }

    /// The secrets logged for the connection whose ClientHello carried `client_random`.
    pub fn get(&self, client_random: &[u8]) -> Option<&Secrets> {
        let key = <[u8; 32]>::try_from(client_random).ok()?;
        self.by_random.get(&key)
    }

    /// Connections with at least one secret.
    pub fn len(&self) -> usize {
        self.by_random.len()
    }

    /// No secret at all.
    pub fn is_empty(&self) -> bool {
        self.by_random.is_empty()
    }

    /// What reading found.
    pub fn stats(&self) -> &KeyLogStats {
        &self.stats
    }
}

/// Bytes of an even-length hex string; None for anything else.
fn hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|p| {
            let d = |c: u8| (c as char).to_digit(16);
            Some((d(p[0])? * 16 + d(p[1])?) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn labels_and_garbage() {
        let mut k = KeyLog::new();
        let s48 = "ab".repeat(48);
        let s32 = "cd".repeat(32);
        k.add_text(&format!(
            "# comment\n\nCLIENT_RANDOM {R} {s48}\nCLIENT_TRAFFIC_SECRET_0 {R} {s32}\n\
             EXPORTER_SECRET {R} {s32}\nCLIENT_RANDOM {R} abc\nnonsense\nCLIENT_RANDOM zz {s48}\n\
             CLIENT_RANDOM {R} {s32}\nSERVER_TRAFFIC_SECRET_0 {R} {s32} extra\n"
        ));
        let s = k.stats();
        assert_eq!(
            (s.lines, s.secrets, s.unused_lines, s.garbage_lines),
            (10, 2, 1, 5)
        );
        let random = hex(R).unwrap();
        let e = k.get(&random).unwrap();
        assert_eq!(e.master.as_ref().unwrap().len(), 48);
        assert!(e.client_traffic.is_some() && e.server_traffic.is_none());
        assert!(k.get(&[0; 32]).is_none());
        assert!(k.get(&[0; 5]).is_none());
    }

    #[test]
    fn the_oldest_connections_go_first() {
        let mut k = KeyLog::with_capacity(2);
        for tail in ['1', '2', '3'] {
            let mut r = R.to_string();
            r.pop();
            r.push(tail);
            k.add_text(&format!("CLIENT_RANDOM {r} {}\n", "ab".repeat(48)));
        }
        assert_eq!((k.len(), k.stats().evicted), (2, 1));
        let first = hex(&format!("{}1", &R[..63])).unwrap();
        assert!(k.get(&first).is_none());
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let mut k = KeyLog::new();
        k.add_text(&format!("CLIENT_RANDOM {R} {}\n", "5a".repeat(48)));
        let shown = format!("{k:?} {:?}", k.get(&hex(R).unwrap()).unwrap());
        assert!(!shown.to_lowercase().contains("5a5a"), "{shown}");
        assert!(!shown.contains("90, 90"), "{shown}");
    }
}

/// A key log shared by every worker (and, live, the thread that follows the files): read
/// at each connection's first protected record, written as lines arrive. Equal only to
/// itself; `Debug` shows counts.
#[derive(Clone, Default)]
pub struct KeyLogHandle(Option<std::sync::Arc<std::sync::RwLock<KeyLog>>>);

impl KeyLogHandle {
    /// A handle on `log`.
    pub fn new(log: KeyLog) -> KeyLogHandle {
        KeyLogHandle(Some(std::sync::Arc::new(std::sync::RwLock::new(log))))
    }

    /// Whether there is a key log at all (decryption is on).
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// Runs `f` on the key log; None without one (or if a writer panicked holding it).
    pub fn with<R>(&self, f: impl FnOnce(&KeyLog) -> R) -> Option<R> {
        let lock = self.0.as_ref()?;
        let log = lock.read().ok()?;
        Some(f(&log))
    }

    /// Takes the lines of `text` (a key log file, or what was appended to one).
    pub fn add_text(&self, text: &str) {
        if let Some(mut log) = self.0.as_ref().and_then(|l| l.write().ok()) {
            log.add_text(text);
        }
    }

    /// What reading found so far.
    pub fn stats(&self) -> KeyLogStats {
        self.with(|l| l.stats().clone()).unwrap_or_default()
    }
}

impl PartialEq for KeyLogHandle {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Eq for KeyLogHandle {}

impl std::fmt::Debug for KeyLogHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.with(|l| l.len()) {
            Some(n) => write!(f, "KeyLogHandle({n} connections)"),
            None => f.write_str("KeyLogHandle(none)"),
        }
    }
}
