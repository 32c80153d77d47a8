//! The server's leaf certificate, read with x509-parser.

use crate::hello::hex_upper;
use apitap_core::Certificate;
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The fields of the DER certificate `der` that events and posture rules use; None when
/// it does not parse.
pub fn leaf(der: &[u8]) -> Option<Certificate> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let names = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        it.filter_map(|a| a.as_str().ok().map(str::to_string))
            .collect::<Vec<_>>()
    };
    let subject_common_name = names(&mut cert.subject().iter_common_name());
    let issuer_common_name = names(&mut cert.issuer().iter_common_name());
    let mut alternative_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => alternative_names.push((*n).to_string()),
                GeneralName::IPAddress(ip) => {
                    if let Some(ip) = ip_text(ip) {
                        alternative_names.push(ip);
                    }
                }
                _ => {}
            }
        }
    }
    let validity = cert.validity();
    Some(Certificate {
        subject_common_name,
        issuer_common_name,
        alternative_names,
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        serial_number: hex_upper(cert.raw_serial()),
        sha256: hex_upper(&Sha256::digest(der)),
    })
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    let ip: std::net::IpAddr = match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok()?.into(),
        16 => <[u8; 16]>::try_from(bytes).ok()?.into(),
        _ => return None,
    };
    Some(ip.to_string())
}

/// Whether `cert` names `host`: a subject alternative name (or, without any, a common
/// name) equal to it, or a `*.` wildcard covering exactly one label of it. ASCII case
/// does not matter.
pub fn covers(cert: &Certificate, host: &str) -> bool {
    let names = if cert.alternative_names.is_empty() {
        &cert.subject_common_name
    } else {
        &cert.alternative_names
    };
    let host = host.trim_end_matches('.');
    names.iter().any(|n| name_matches(n, host))
}

fn name_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str, sans: &[&str]) -> Certificate {
        Certificate {
            subject_common_name: vec![cn.to_string()],
            alternative_names: sans.iter().map(|s| s.to_string()).collect(),
            ..Certificate::default()
        }
    }

    #[test]
    fn names_and_wildcards() {
        let c = cert("ignored.example", &["api.example.com", "*.svc.example.com"]);
        assert!(covers(&c, "api.example.com"));
        assert!(covers(&c, "API.Example.com."));
        assert!(covers(&c, "orders.svc.example.com"));
        assert!(!covers(&c, "a.b.svc.example.com"));
        assert!(!covers(&c, "svc.example.com"));
        assert!(!covers(&c, "ignored.example"));
        assert!(covers(&cert("only-cn.example", &[]), "only-cn.example"));
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(leaf(b"").is_none());
        assert!(leaf(&[0x30, 0x82, 0xff, 0xff, 1, 2, 3]).is_none());
    }
}
