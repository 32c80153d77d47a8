//! Sensitive-data and secret shapes: card numbers (Luhn), emails, US SSNs, AWS access key
//! ids, JWTs, PEM private keys; secret-shaped URL values. Only kinds and counts leave this
//! module, never the matched bytes.

use std::collections::BTreeMap;

use regex::bytes::{Regex, RegexSet};

/// A kind of sensitive data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SensitiveKind {
    /// Payment card number: 13-19 digits (spaces/dashes allowed), known IIN, Luhn-valid.
    CardNumber,
    /// Email address.
    Email,
    /// US social security number, `AAA-GG-SSSS`, with the SSA validity rules.
    Ssn,
    /// AWS access key id (`AKIA...`, `ASIA...`).
    AwsAccessKeyId,
    /// JSON Web Token (`eyJ...`.`eyJ...`.`...`).
    Jwt,
    /// PEM private key block header.
    PrivateKey,
}

impl SensitiveKind {
    /// Every kind.
    pub const ALL: [SensitiveKind; 6] = [
        SensitiveKind::CardNumber,
        SensitiveKind::Email,
        SensitiveKind::Ssn,
        SensitiveKind::AwsAccessKeyId,
        SensitiveKind::Jwt,
        SensitiveKind::PrivateKey,
    ];

    /// Name used in config and in alert counts.
    pub fn name(self) -> &'static str {
        match self {
            SensitiveKind::CardNumber => "card_number",
            SensitiveKind::Email => "email",
            SensitiveKind::Ssn => "ssn",
            SensitiveKind::AwsAccessKeyId => "aws_access_key_id",
            SensitiveKind::Jwt => "jwt",
            SensitiveKind::PrivateKey => "private_key",
        }
    }

    /// The kind with this name.
    pub fn from_name(name: &str) -> Option<SensitiveKind> {
        SensitiveKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Severity (1-100) of finding this kind; an alert takes the highest of its kinds.
    pub fn severity(self) -> u8 {
        match self {
            SensitiveKind::PrivateKey => 90,
            SensitiveKind::AwsAccessKeyId => 85,
            SensitiveKind::CardNumber | SensitiveKind::Ssn => 80,
            SensitiveKind::Jwt => 40,
            SensitiveKind::Email => 30,
        }
    }

    fn pattern(self) -> &'static str {
        match self {
            SensitiveKind::CardNumber => r"(?-u)\b(?:\d[ -]?){12,18}\d\b",
            SensitiveKind::Email => {
                r"(?-u)\b[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}\b"
            }
            SensitiveKind::Ssn => r"(?-u)\b\d{3}-\d{2}-\d{4}\b",
            SensitiveKind::AwsAccessKeyId => {
                r"(?-u)\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b"
            }
            SensitiveKind::Jwt => {
                r"(?-u)\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"
            }
            SensitiveKind::PrivateKey => {
                r"(?-u)-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----"
            }
        }
    }
}

/// Precompiled scanner for a set of kinds. A `RegexSet::is_match` pass tells whether any
/// kind occurs: most data holds none, and that search stops at the first match and runs
/// the DFA's fast loop. Only then does a `RegexSet::matches` pass (which has to read the
/// whole input) tell which kinds occur, and only those kinds are counted (with Luhn / SSN
/// validation).
#[derive(Clone, Debug)]
pub struct Scanner {
    kinds: Vec<SensitiveKind>,
    set: RegexSet,
    each: Vec<Regex>,
}

impl Scanner {
    /// A scanner for `kinds` (duplicates ignored).
    pub fn new(kinds: &[SensitiveKind]) -> Scanner {
        let mut kinds = kinds.to_vec();
        kinds.sort_unstable();
        kinds.dedup();
        let pats: Vec<&str> = kinds.iter().map(|k| k.pattern()).collect();
        // The patterns are constants covered by tests; a failure here is a programming error.
        #[allow(clippy::expect_used)]
        let set = RegexSet::new(&pats).expect("sensitive patterns compile");
        #[allow(clippy::expect_used)]
        let each = pats
            .iter()
            .map(|p| Regex::new(p).expect("sensitive pattern compiles"))
            .collect();
        Scanner { kinds, set, each }
    }

    /// Adds the counts of each kind found in `data` to `counts`.
    pub fn scan(&self, data: &[u8], counts: &mut BTreeMap<SensitiveKind, u64>) {
        if self.kinds.is_empty() {
            return;
        }
        if !self.set.is_match(data) {
            return;
        }
        let hits = self.set.matches(data);
        if !hits.matched_any() {
            return;
        }
        for i in hits.iter() {
            let kind = self.kinds[i];
            let mut n = 0u64;
            for m in self.each[i].find_iter(data) {
                let ok = match kind {
                    SensitiveKind::CardNumber => {
                        let before = m.start().checked_sub(1).map(|j| data[j]);
                        let after = data.get(m.end()).copied();
                        before != Some(b'.') && after != Some(b'.') && card_ok(m.as_bytes())
                    }
                    SensitiveKind::Ssn => ssn_ok(m.as_bytes()),
                    _ => true,
                };
                n += u64::from(ok);
            }
            if n > 0 {
                *counts.entry(kind).or_insert(0) += n;
            }
        }
    }
}

/// Digits only, 13-19 of them, a known card prefix, Luhn-valid.
fn card_ok(raw: &[u8]) -> bool {
    let digits: Vec<u8> = raw
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|b| b - b'0')
        .collect();
    let len = digits.len();
    if !(13..=19).contains(&len) {
        return false;
    }
    let prefix = |n: usize| {
        digits
            .iter()
            .take(n)
            .fold(0u32, |acc, d| acc * 10 + u32::from(*d))
    };
    let p2 = prefix(2);
    let p4 = prefix(4);
    let p3 = prefix(3);
    let known = digits[0] == 4 // Visa
        || (51..=55).contains(&p2) || (2221..=2720).contains(&p4) // Mastercard
        || p2 == 34 || p2 == 37 // Amex
        || p4 == 6011 || p2 == 65 || (644..=649).contains(&p3) // Discover
        || p2 == 35 // JCB
        || p2 == 36 || p2 == 38 || (300..=305).contains(&p3) // Diners
        || p2 == 62; // UnionPay
    known && luhn(&digits)
}

/// Luhn checksum over decimal digits.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

/// `AAA-GG-SSSS`: area not 000, 666 or 9xx; group not 00; serial not 0000.
fn ssn_ok(raw: &[u8]) -> bool {
    if raw.len() != 11 {
        return false;
    }
    let area = &raw[0..3];
    let group = &raw[4..6];
    let serial = &raw[7..11];
    area != b"000" && area != b"666" && area[0] != b'9' && group != b"00" && serial != b"0000"
}

/// The kind of secret a URL value looks like, if any: `aws_access_key_id`, `jwt`,
/// `github_token`, `slack_token`. `value` is percent-decoded.
pub fn secret_value_kind(value: &str) -> Option<&'static str> {
    let b = value.as_bytes();
    let alnum_upper = |s: &[u8]| {
        s.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    };
    let b64url = |s: &[u8]| {
        s.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
    };
    if b.len() == 20 && ["AKIA", "ASIA"].iter().any(|p| value.starts_with(p)) && alnum_upper(b) {
        return Some("aws_access_key_id");
    }
    if value.starts_with("eyJ") {
        let parts: Vec<&str> = value.split('.').collect();
        if parts.len() == 3
            && parts[0].len() >= 8
            && parts[1].len() >= 4
            && parts.iter().all(|p| b64url(p.as_bytes()))
        {
            return Some("jwt");
        }
    }
    for p in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"] {
        if let Some(rest) = value.strip_prefix(p) {
            if rest.len() >= 30 && rest.bytes().all(|c| c.is_ascii_alphanumeric()) {
                return Some("github_token");
            }
        }
    }
    if let Some(rest) = value.strip_prefix("github_pat_") {
        if rest.len() >= 22 && b64url(rest.as_bytes()) {
            return Some("github_token");
        }
    }
    if value.len() >= 15
        && value.starts_with("xox")
        && matches!(b[3], b'a' | b'b' | b'p' | b'o' | b's' | b'r' | b'e')
        && b[4] == b'-'
        && b[5..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    {
        return Some("slack_token");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(kinds: &[SensitiveKind], data: &str) -> BTreeMap<&'static str, u64> {
        let s = Scanner::new(kinds);
        let mut c = BTreeMap::new();
        s.scan(data.as_bytes(), &mut c);
        c.into_iter().map(|(k, v)| (k.name(), v)).collect()
    }

    #[test]
    fn luhn_check() {
        let d = |s: &str| s.bytes().map(|b| b - b'0').collect::<Vec<u8>>();
        assert!(luhn(&d("4111111111111111")));
        assert!(!luhn(&d("4111111111111112")));
        assert!(luhn(&d("378282246310005")));
    }

    #[test]
    fn cards() {
        let all = &SensitiveKind::ALL;
        let c = scan(
            all,
            r#"{"pan":"4111 1111 1111 1111","b":"5500-0000-0000-0004","amex":378282246310005}"#,
        );
        assert_eq!(c.get("card_number"), Some(&3));
        // Luhn-invalid, unknown prefix (epoch ms), decimals, too long: none.
        let c = scan(
            all,
            r#"{"x":"4111111111111112","ts":1706702400123,"f":0.4111111111111111,"n":41111111111111111111111}"#,
        );
        assert_eq!(c.get("card_number"), None, "{c:?}");
    }

    #[test]
    fn other_kinds() {
        let all = &SensitiveKind::ALL;
        let body = "user alice@example.com ssn 123-45-6789 bad 000-12-3456 666-12-3456 \
             key AKIAIOSFODNN7EXAMPLE jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl \
             -----BEGIN RSA PRIVATE KEY-----\nMIIE...";
        let c = scan(all, body);
        assert_eq!(c.get("email"), Some(&1));
        assert_eq!(c.get("ssn"), Some(&1));
        assert_eq!(c.get("aws_access_key_id"), Some(&1));
        assert_eq!(c.get("jwt"), Some(&1));
        assert_eq!(c.get("private_key"), Some(&1));
        assert!(scan(all, r#"{"id":12,"name":"widget","price":9.99}"#).is_empty());
        // Only enabled kinds are reported.
        let c = scan(&[SensitiveKind::Ssn], body);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn url_values() {
        assert_eq!(
            secret_value_kind("AKIAIOSFODNN7EXAMPLE"),
            Some("aws_access_key_id")
        );
        assert_eq!(
            secret_value_kind("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"),
            Some("jwt")
        );
        assert_eq!(
            secret_value_kind("ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
            Some("github_token")
        );
        assert_eq!(
            secret_value_kind("xoxb-123456789012-abcdefABCDEF"),
            Some("slack_token")
        );
        assert_eq!(secret_value_kind("hello"), None);
        assert_eq!(secret_value_kind("xoxo-gossip"), None);
        assert_eq!(secret_value_kind("AKIA"), None);
    }
}
