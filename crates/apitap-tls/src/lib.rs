//! TLS for apitap: the record and handshake parser behind [`apitap_core::AppParser`].
//!
//! Without keys a TLS connection yields one [`apitap_core::TlsConnection`] when it ends:
//! versions, cipher suites, SNI, ALPN, the JA3/JA3S/JA4 fingerprints, the server's leaf
//! certificate (TLS 1.2 and earlier), whether the handshake finished or resumed, and
//! bytes per direction. Parsing is tls-parser's (records, hellos, extensions) and
//! x509-parser's (certificates).
//!
//! - [`conn`]: records per direction, handshake messages across records, the connection.
//! - [`hello`]: hello facts and fingerprints. [`cert`]: the leaf certificate.

pub mod cert;
pub mod conn;
pub mod crypto;
pub mod hello;
pub mod keylog;
mod messages;

pub use conn::{Plaintext, TlsConn};

use apitap_core::counters::ByName;
use apitap_core::{Decryption, Direction, Probe};

/// TLS parsing bounds (`[tls]` in sensor.toml).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Largest handshake message read (a certificate chain is one message); larger ones
    /// are skipped (anomaly `tls_handshake_too_large`, `tls.handshake_too_large`).
    pub max_handshake_bytes: usize,
    /// Key log files (NSS SSLKEYLOGFILE format) to decrypt with; `--keylog` adds to them.
    /// A live sensor follows them as they grow or are replaced.
    pub keylog_files: Vec<String>,
    /// Encrypted bytes one connection may hold while its keys have not arrived; past it
    /// the connection is not decrypted (`keys_too_late`, `tls.pending_bytes_dropped`).
    pub max_pending_bytes: usize,
    /// Accept key log files that other users can read (a warning, not a start-up error).
    pub allow_world_readable_keylog: bool,
    /// Connections the key log keeps secrets for; the oldest are forgotten first
    /// (`tls.keylog.evicted`).
    pub max_keylog_connections: usize,
    /// The key log the files were read into (set at start-up, not in the file).
    #[serde(skip)]
    pub keys: keylog::KeyLogHandle,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            max_handshake_bytes: 64 * 1024,
            keylog_files: Vec::new(),
            max_pending_bytes: 256 * 1024,
            allow_world_readable_keylog: false,
            max_keylog_connections: keylog::DEFAULT_MAX_CONNECTIONS,
            keys: keylog::KeyLogHandle::default(),
        }
    }
}

apitap_core::counters! {
    /// TLS parser counters.
    pub struct TlsStats {
        /// TLS connections (or layers) seen.
        pub connections: u64,
        /// Of them, handshakes seen to finish.
        pub established: u64,
        /// Of them, joined after the ClientHello.
        pub midstream: u64,
        /// Records framed.
        pub records: u64,
        /// ClientHello messages read.
        pub client_hellos: u64,
        /// ServerHello messages read.
        pub server_hellos: u64,
        /// Certificate messages read.
        pub certificates: u64,
        /// Leaf certificates that did not parse.
        pub certificates_invalid: u64,
        /// Fatal alerts sent in the clear.
        pub fatal_alerts: u64,
        /// Record headers that are not TLS: the direction lost its framing.
        pub records_invalid: u64,
        /// Handshake messages that did not parse.
        pub handshakes_invalid: u64,
        /// Handshake messages over `max_handshake_bytes` (skipped).
        pub handshake_too_large: u64,
        /// Handshake buffers given up to stay within the worker's parser memcap.
        pub handshakes_shed: u64,
        /// Gaps inside an encrypted record, absorbed by its length.
        pub gaps_absorbed: u64,
        /// Gaps or bad headers that lost a direction's framing.
        pub framing_lost: u64,
        /// Times a direction found a record boundary again.
        pub resyncs: u64,
        /// Bytes passed over while a direction had no framing.
        pub unsynced_bytes: u64,
        /// Connections by what became of decrypting them (with key logs).
        pub decryption: ByName<Decryption, { Decryption::ALL.len() }>,
        /// Records decrypted.
        pub records_decrypted: u64,
        /// Plaintext bytes handed to the protocol inside.
        pub plaintext_bytes: u64,
        /// Records that did not authenticate (corrupt on the wire, or wrong keys); each is
        /// lost to the protocol inside.
        pub records_unauthenticated: u64,
        /// Records lost to gaps while decrypting (their sequence numbers still counted).
        pub records_lost: u64,
        /// Encrypted bytes given up waiting for keys.
        pub pending_bytes_dropped: u64,
    }
}

/// A TLS record at the start of a stream: a handshake, alert, ChangeCipherSpec or
/// application-data record header of version 3.x with a length TLS allows. A ClientHello
/// goes to the server, a ServerHello to the client; other records do not tell.
pub fn probe(data: &[u8]) -> Probe {
    if data.len() < 5 {
        // The bytes so far must be a prefix of a header.
        let prefix_ok = match data {
            [] => true,
            [t, rest @ ..] => {
                (20..=24).contains(t)
                    && rest.first().is_none_or(|&m| m == 3)
                    && rest.get(1).is_none_or(|&n| n <= 4)
            }
        };
        return if prefix_ok {
            Probe::NeedMore
        } else {
            Probe::No
        };
    }
    if conn::record_header(data).is_none() {
        return Probe::No;
    }
    let direction = match (data.first(), data.get(5)) {
        (Some(22), Some(1)) => Some(Direction::ToServer),
        (Some(22), Some(2)) => Some(Direction::ToClient),
        _ => None,
    };
    Probe::Yes(direction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_reads_record_headers() {
        assert_eq!(probe(&[]), Probe::NeedMore);
        assert_eq!(probe(&[22, 3]), Probe::NeedMore);
        assert_eq!(probe(&[22, 3, 1, 0, 5]), Probe::Yes(None));
        assert_eq!(
            probe(&[22, 3, 1, 0, 5, 1]),
            Probe::Yes(Some(Direction::ToServer))
        );
        assert_eq!(
            probe(&[22, 3, 3, 0, 5, 2]),
            Probe::Yes(Some(Direction::ToClient))
        );
        assert_eq!(probe(&[23, 3, 3, 0x40, 0x11]), Probe::Yes(None));
        assert_eq!(
            probe(&[23, 3, 3, 0x48, 0x01]),
            Probe::No,
            "longer than TLS allows"
        );
        assert_eq!(probe(&[22, 4]), Probe::No);
        assert_eq!(probe(b"GET / HTTP/1.1"), Probe::No);
        assert_eq!(probe(b"\x16\x03\x09\x00\x01"), Probe::No);
    }
}
