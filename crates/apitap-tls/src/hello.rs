//! ClientHello and ServerHello: the facts an event carries and the JA3, JA3S and JA4
//! fingerprints, computed from tls-parser's parse of the messages.

use apitap_core::TlsHandshake;
use md5::{Digest, Md5};
use sha2::Sha256;
use std::borrow::Cow;
use std::fmt::Write;
use tls_parser::{
    TlsCipherAu, TlsCipherEnc, TlsCipherKx, TlsCipherSuite, TlsClientHelloContents, TlsExtension,
    TlsServerHelloContents,
};

/// GREASE values (RFC 8701): `0x?a?a` with both bytes equal. Fingerprints leave them out.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// The extension number of a parsed extension.
fn ext_type(e: &TlsExtension<'_>) -> u16 {
    match e {
        TlsExtension::Grease(t, _) => *t,
        other => tls_parser::TlsExtensionType::from(other).0,
    }
}

/// The IANA name of a cipher suite, or `0xC0FE` for one the table does not know.
pub fn cipher_name(id: u16) -> Cow<'static, str> {
    match TlsCipherSuite::from_id(id) {
        Some(c) => Cow::Borrowed(c.name),
        None => Cow::Owned(format!("0x{id:04X}")),
    }
}

/// Why a cipher suite is weak, if it is: no encryption, export grade, no authentication,
/// RC4, single or triple DES.
pub fn weak_cipher(id: u16) -> Option<&'static str> {
    let c = TlsCipherSuite::from_id(id)?;
    if c.enc == TlsCipherEnc::Null {
        Some("null")
    } else if c.name.contains("EXPORT") {
        Some("export")
    } else if c.au == TlsCipherAu::Null && !matches!(c.kx, TlsCipherKx::Tls13 | TlsCipherKx::Psk) {
        Some("anon")
    } else if c.enc == TlsCipherEnc::Rc4 {
        Some("rc4")
    } else if c.enc == TlsCipherEnc::Des {
        Some("des")
    } else if c.enc == TlsCipherEnc::TripleDes {
        Some("3des")
    } else {
        None
    }
}

/// Takes what a ClientHello shows into `hs`. `exts` are its parsed extensions.
pub fn client_hello(
    hs: &mut TlsHandshake,
    ch: &TlsClientHelloContents<'_>,
    exts: &[TlsExtension<'_>],
) {
    let ciphers: Vec<u16> = ch
        .ciphers
        .iter()
        .map(|c| c.0)
        .filter(|&c| !is_grease(c))
        .collect();
    let mut ext_types = Vec::with_capacity(exts.len());
    let mut groups = Vec::new();
    let mut point_formats: &[u8] = &[];
    let mut sig_algs: &[u16] = &[];
    let mut versions = Vec::new();
    let mut first_alpn: Option<&[u8]> = None;
    for e in exts {
        let t = ext_type(e);
        if !is_grease(t) {
            ext_types.push(t);
        }
        match e {
            TlsExtension::SNI(names) => {
                // Host name entries only (type 0).
                if let Some((_, name)) = names.iter().find(|(t, _)| t.0 == 0) {
                    hs.server_name = Some(String::from_utf8_lossy(name).into_owned());
                }
            }
            TlsExtension::ALPN(protocols) => {
                first_alpn = protocols.first().copied();
                hs.alpn_offered = protocols
                    .iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect();
            }
            TlsExtension::EllipticCurves(g) => {
                groups = g.iter().map(|g| g.0).filter(|&g| !is_grease(g)).collect();
            }
            TlsExtension::EcPointFormats(p) => point_formats = p,
            TlsExtension::SignatureAlgorithms(s) => sig_algs = s,
            TlsExtension::SupportedVersions(v) => {
                versions = v.iter().map(|v| v.0).filter(|&v| !is_grease(v)).collect();
            }
            _ => {}
        }
    }
    let highest = versions.iter().copied().max().unwrap_or(ch.version.0);
    hs.client_version = Some(highest);
    hs.supported_ciphers = ciphers.iter().map(|&c| cipher_name(c)).collect();

    let mut ja3 = String::with_capacity(256);
    let _ = write!(ja3, "{},", ch.version.0);
    dashed(&mut ja3, ciphers.iter().copied());
    ja3.push(',');
    dashed(&mut ja3, ext_types.iter().copied());
    ja3.push(',');
    dashed(&mut ja3, groups.iter().copied());
    ja3.push(',');
    dashed(&mut ja3, point_formats.iter().map(|&p| u16::from(p)));
    hs.ja3 = Some(md5_hex(&ja3));

    // JA4 reads the extension's presence (not a parsed name) and the ALPN's raw bytes.
    hs.ja4 = Some(ja4(
        highest,
        ext_types.contains(&0),
        &ciphers,
        &ext_types,
        first_alpn,
        sig_algs,
    ));
}

/// Takes what a ServerHello shows into `hs`.
pub fn server_hello(
    hs: &mut TlsHandshake,
    sh: &TlsServerHelloContents<'_>,
    exts: &[TlsExtension<'_>],
) {
    let mut version = sh.version.0;
    let mut ext_types = Vec::with_capacity(exts.len());
    for e in exts {
        ext_types.push(ext_type(e));
        match e {
            TlsExtension::SupportedVersions(v) => {
                if let Some(v) = v.first() {
                    version = v.0;
                }
            }
            TlsExtension::ALPN(p) => {
                hs.next_protocol = p.first().map(|p| String::from_utf8_lossy(p).into_owned());
            }
            TlsExtension::PreSharedKey(_) => hs.resumed = true,
            _ => {}
        }
    }
    hs.version = Some(version);
    hs.cipher = Some(sh.cipher.0);
    hs.cipher_name = Some(cipher_name(sh.cipher.0));
    hs.weak_cipher = weak_cipher(sh.cipher.0);
    let mut ja3s = String::with_capacity(64);
    let _ = write!(ja3s, "{},{},", sh.version.0, sh.cipher.0);
    dashed(&mut ja3s, ext_types.iter().copied());
    hs.ja3s = Some(md5_hex(&ja3s));
}

/// The JA4 client fingerprint (FoxIO's public definition, TCP): `t13d1516h2_<ciphers>_<exts>`.
pub fn ja4(
    version: u16,
    has_sni: bool,
    ciphers: &[u16],
    ext_types: &[u16],
    first_alpn: Option<&[u8]>,
    sig_algs: &[u16],
) -> String {
    let version = match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0200 => "s2",
        _ => "00",
    };
    let alpn = match first_alpn {
        Some([first, .., last])
            if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() =>
        {
            format!("{}{}", char::from(*first), char::from(*last))
        }
        Some([only]) if only.is_ascii_alphanumeric() => format!("{0}{0}", char::from(*only)),
        Some(p @ [first, ..]) => {
            let last = p.last().copied().unwrap_or(*first);
            let first_hex = format!("{first:02x}");
            let last_hex = format!("{last:02x}");
            format!("{}{}", &first_hex[..1], &last_hex[1..])
        }
        _ => "00".to_string(),
    };
    let mut out = format!(
        "t{version}{}{:02}{:02}{alpn}_",
        if has_sni { 'd' } else { 'i' },
        ciphers.len().min(99),
        ext_types.len().min(99),
    );
    let mut sorted: Vec<u16> = ciphers.to_vec();
    sorted.sort_unstable();
    let mut text = String::new();
    hex_list(&mut text, &sorted);
    out.push_str(&sha256_12(&text));
    out.push('_');
    let mut exts: Vec<u16> = ext_types
        .iter()
        .copied()
        .filter(|&t| t != 0x0000 && t != 0x0010)
        .collect();
    exts.sort_unstable();
    text.clear();
    hex_list(&mut text, &exts);
    if !sig_algs.is_empty() {
        text.push('_');
        hex_list(&mut text, sig_algs);
    }
    out.push_str(&sha256_12(&text));
    out
}

fn dashed(out: &mut String, values: impl Iterator<Item = u16>) {
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push('-');
        }
        let _ = write!(out, "{v}");
    }
}

fn hex_list(out: &mut String, values: &[u16]) {
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{v:04x}");
    }
}

/// The first 12 hex digits of the SHA-256 of `text`; twelve zeros for empty text.
fn sha256_12(text: &str) -> String {
    if text.is_empty() {
        return "000000000000".to_string();
    }
    let mut s = hex_lower(&Sha256::digest(text.as_bytes()));
    s.truncate(12);
    s
}

fn md5_hex(text: &str) -> String {
    hex_lower(&Md5::digest(text.as_bytes()))
}

/// Lower-case hex of `bytes`.
pub fn hex_lower(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Upper-case hex of `bytes` (ECS certificate hashes and serial numbers).
pub fn hex_upper(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of the JA4 specification (a Chrome ClientHello).
    #[test]
    fn ja4_matches_the_published_example() {
        let ciphers = [
            0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
            0x009c, 0x009d, 0x002f, 0x0035,
        ];
        let exts = [
            0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012,
            0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
        ];
        let sig = [
            0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ];
        assert_eq!(
            ja4(0x0304, true, &ciphers, &exts, Some(b"h2"), &sig),
            "t13d1516h2_8daaf6152771_e5627efa2ab1"
        );
    }

    #[test]
    fn ja4_alpn_edge_cases() {
        let f = |alpn: Option<&[u8]>| ja4(0x0303, false, &[], &[], alpn, &[]);
        assert_eq!(f(None), "t12i000000_000000000000_000000000000");
        assert!(f(Some(b"http/1.1")).starts_with("t12i0000h1_"));
        assert!(f(Some(b"h")).starts_with("t12i0000hh_"));
        assert!(f(Some(&[0xab, 0x01])).starts_with("t12i0000a1_"));
    }

    #[test]
    fn grease_values() {
        assert!(is_grease(0x0a0a));
        assert!(is_grease(0xfafa));
        assert!(!is_grease(0x0a1a));
        assert!(!is_grease(0x1301));
    }

    #[test]
    fn weak_ciphers_by_property() {
        assert_eq!(weak_cipher(0x0005), Some("rc4")); // TLS_RSA_WITH_RC4_128_SHA
        assert_eq!(weak_cipher(0x000a), Some("3des")); // TLS_RSA_WITH_3DES_EDE_CBC_SHA
        assert_eq!(weak_cipher(0x0002), Some("null")); // TLS_RSA_WITH_NULL_SHA
        assert_eq!(weak_cipher(0x0003), Some("export")); // TLS_RSA_EXPORT_WITH_RC4_40_MD5
        assert_eq!(weak_cipher(0x0034), Some("anon")); // TLS_DH_anon_WITH_AES_128_CBC_SHA
        assert_eq!(weak_cipher(0x1301), None);
        assert_eq!(weak_cipher(0xc02f), None);
        assert_eq!(cipher_name(0x1301), "TLS_AES_128_GCM_SHA256");
        assert_eq!(cipher_name(0xfefe), "0xFEFE");
    }
}
