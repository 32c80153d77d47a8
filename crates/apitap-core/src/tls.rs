//! TLS connection records: what the TLS parser learns from a handshake and the connection
//! around it, and what the encoder writes as `tls.*`. Names are resolved by the parser
//! (cipher suites from the IANA table), so the encoder needs no TLS knowledge.

use crate::http::Anomalies;
use crate::time::{PacketRef, SortKey};
use std::borrow::Cow;
use std::sync::Arc;

/// ECS `tls.version_protocol` and `tls.version` of a wire version number: `("tls", "1.2")`
/// for 0x0303, `("ssl", "3.0")` for 0x0300; None for numbers that are no TLS version.
pub fn version_name(v: u16) -> Option<(&'static str, &'static str)> {
    Some(match v {
        0x0200 => ("ssl", "2.0"),
        0x0300 => ("ssl", "3.0"),
        0x0301 => ("tls", "1.0"),
        0x0302 => ("tls", "1.1"),
        0x0303 => ("tls", "1.2"),
        0x0304 => ("tls", "1.3"),
        _ => return None,
    })
}

crate::named_enum! {
    /// What became of decrypting a TLS connection (only when key logs are configured).
    pub enum Decryption {
        /// Every protected record that arrived was decrypted (or lost on the wire).
        Decrypted = "decrypted",
        /// The key log has no secrets for the connection's client random.
        NoKey = "no_key",
        /// The chosen suite is not one apitap decrypts (CBC, CCM, stream ciphers).
        UnsupportedCipher = "unsupported_cipher",
        /// The handshake (its randoms and suite) was not seen: joined midway.
        HandshakeNotSeen = "handshake_not_seen",
        /// Records did not authenticate with the logged secrets: wrong keys.
        AuthenticationFailed = "authentication_failed",
        /// The keys arrived after more than `tls.max_pending_bytes` of records waited.
        KeysTooLate = "keys_too_late",
    }
}

/// The server's leaf certificate, as far as events and posture rules need it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Certificate {
    /// Subject common names.
    pub subject_common_name: Vec<String>,
    /// Issuer common names.
    pub issuer_common_name: Vec<String>,
    /// DNS names and IP addresses of the subject alternative name extension.
    pub alternative_names: Vec<String>,
    /// Start of validity, seconds since the Unix epoch.
    pub not_before: i64,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
    /// Serial number, upper-case hex without separators.
    pub serial_number: String,
    /// SHA-256 of the DER certificate, upper-case hex.
    pub sha256: String,
}

/// What a TLS handshake showed; fixed once the handshake is over, shared by the
/// connection record and every transaction decrypted from it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsHandshake {
    /// The version the server chose (from `supported_versions` in TLS 1.3).
    pub version: Option<u16>,
    /// The version the client announced in its ClientHello (its highest).
    pub client_version: Option<u16>,
    /// The cipher suite the server chose, by number.
    pub cipher: Option<u16>,
    /// Its IANA name (`TLS_AES_128_GCM_SHA256`), or `0xC0FE` when unknown.
    pub cipher_name: Option<Cow<'static, str>>,
    /// Why the chosen suite is weak (`null`, `export`, `rc4`, `3des`, `des`, `anon`), if it is.
    pub weak_cipher: Option<&'static str>,
    /// Server Name Indication.
    pub server_name: Option<String>,
    /// Application protocols the client offered (ALPN), in its order.
    pub alpn_offered: Vec<String>,
    /// The application protocol the server chose (ALPN).
    pub next_protocol: Option<String>,
    /// Cipher suites the client offered, by name, GREASE left out.
    pub supported_ciphers: Vec<Cow<'static, str>>,
    /// JA3 of the ClientHello (MD5, lower-case hex).
    pub ja3: Option<String>,
    /// JA3S of the ServerHello.
    pub ja3s: Option<String>,
    /// JA4 of the ClientHello.
    pub ja4: Option<String>,
    /// The server's leaf certificate (TLS 1.2 and earlier, or decrypted TLS 1.3).
    pub certificate: Option<Box<Certificate>>,
    /// Certificates the server sent, leaf included.
    pub certificate_chain_len: u16,
    /// An abbreviated handshake (session id or ticket in 1.2, PSK in 1.3).
    pub resumed: bool,
}

/// One TLS connection (or TLS layer inside a tunnel), handed out when it ends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConnection {
    /// Output order key: the packet that ended the connection.
    pub key: SortKey,
    /// What the handshake showed.
    pub handshake: Arc<TlsHandshake>,
    /// The handshake was seen to finish: both sides switched to encrypted records.
    pub established: bool,
    /// The connection was joined after its ClientHello: the handshake facts are partial.
    pub midstream: bool,
    /// The first fatal alert either side sent in the clear, by number (a failed handshake).
    pub alert: Option<u8>,
    /// Bytes the client sent, lost ones (gaps) included.
    pub client_bytes: u64,
    /// Bytes the server sent, lost ones (gaps) included.
    pub server_bytes: u64,
    /// Problems met on the way (gaps, broken records, oversized handshake messages).
    pub anomalies: Anomalies,
    /// What became of decrypting it; None when no key log is configured.
    pub decryption: Option<Decryption>,
    /// Packet of the first byte.
    pub start: PacketRef,
    /// Packet of the last byte.
    pub end: PacketRef,
}
