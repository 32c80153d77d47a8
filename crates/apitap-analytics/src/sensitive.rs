//! Sensitive-data and secret shapes: card numbers (Luhn), emails, US SSNs, AWS access key
//! ids, JWTs, PEM private keys; secret-shaped URL values. Only kinds and counts leave this
//! module, never the matched bytes.

use std::collections::BTreeMap;
use std::ops::Range;

use regex::bytes::Regex;

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

    /// The kinds whose bit (their place in [`SensitiveKind::ALL`]) is set in `mask`.
    pub fn subset(mask: u32) -> Vec<SensitiveKind> {
        SensitiveKind::ALL
            .into_iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, k)| k)
            .collect()
    }

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

    /// Bytes a match of this kind is made of: a match lies inside one run of them.
    fn in_match(self, b: u8) -> bool {
        match self {
            SensitiveKind::CardNumber | SensitiveKind::Ssn => {
                b.is_ascii_digit() || b == b' ' || b == b'-'
            }
            // The local part's bytes (the domain's are a subset), and the `@`.
            SensitiveKind::Email => {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-' | b'@')
            }
            SensitiveKind::AwsAccessKeyId => b.is_ascii_uppercase() || b.is_ascii_digit(),
            SensitiveKind::Jwt => b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'),
            SensitiveKind::PrivateKey => b.is_ascii_uppercase() || b == b' ' || b == b'-',
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

/// Precompiled scanner for a set of kinds.
///
/// It never runs an expression over a whole body. A cheap pass finds what every match
/// must contain: a run of at least 9 digits (single spaces or dashes between them) for card
/// numbers and SSNs, a run of at least 20 capitals and digits for AWS key ids, `@` for
/// emails, `eyJ` for JWTs, `-----BEGIN ` for private keys.
/// Each find widens to the run of bytes a match of its kind is made of (and one byte either
/// side, for `\b`), and only those regions are searched, kind by kind. Every match lies in
/// such a region, so the counts equal a search of the whole input (a property test checks
/// this); API data, full of short numbers and words, mostly yields no region at all.
#[derive(Clone, Debug)]
pub struct Scanner {
    /// Enabled kinds with their expressions.
    kinds: Vec<(SensitiveKind, Regex)>,
    /// Digits the shortest card number or SSN has; `None` when neither is enabled.
    min_digits: Option<usize>,
    /// Whether emails are enabled (the `@` search).
    email: bool,
    /// Whether AWS key ids are enabled (the capital-and-digit run search).
    aws: bool,
    /// The `eyJ` search, when JWTs are enabled.
    jwt: Option<memchr::memmem::Finder<'static>>,
    /// The `-----BEGIN ` search, when private keys are enabled.
    pem: Option<memchr::memmem::Finder<'static>>,
}

/// Capitals and digits an AWS key id is made of (20 of them).
const AWS_KEY_ID_LEN: usize = 20;

impl Scanner {
    /// A scanner for `kinds` (duplicates ignored).
    pub fn new(kinds: &[SensitiveKind]) -> Scanner {
        let mut enabled = kinds.to_vec();
        enabled.sort_unstable();
        enabled.dedup();
        // The patterns are constants covered by tests; a failure here is a programming error.
        #[allow(clippy::expect_used)]
        let kinds = enabled
            .iter()
            .map(|k| {
                (
                    *k,
                    Regex::new(k.pattern()).expect("sensitive pattern compiles"),
                )
            })
            .collect();
        let min_digits = enabled
            .iter()
            .filter_map(|k| match k {
                SensitiveKind::CardNumber => Some(13),
                SensitiveKind::Ssn => Some(9),
                _ => None,
            })
            .min();
        let finder = |kind, word: &'static str| {
            enabled
                .contains(&kind)
                .then(|| memchr::memmem::Finder::new(word))
        };
        Scanner {
            email: enabled.contains(&SensitiveKind::Email),
            aws: enabled.contains(&SensitiveKind::AwsAccessKeyId),
            jwt: finder(SensitiveKind::Jwt, "eyJ"),
            pem: finder(SensitiveKind::PrivateKey, "-----BEGIN "),
            kinds,
            min_digits,
        }
    }

    /// Adds the counts of each kind found in `data` to `counts`.
    pub fn scan(&self, data: &[u8], counts: &mut BTreeMap<SensitiveKind, u64>) {
        self.scan_part(data, false, counts);
    }

    /// [`Scanner::scan`] of `data`, the start of something longer when `cut`: then a match
    /// that ends where `data` ends is not counted, as it may go on past the cut (a 20-digit
    /// id cut to a Luhn-valid 16).
    pub fn scan_part(&self, data: &[u8], cut: bool, counts: &mut BTreeMap<SensitiveKind, u64>) {
        if self.kinds.is_empty() {
            return;
        }
        let regions = self.regions(data);
        for (kind, re) in &self.kinds {
            // Card numbers and SSNs share the digit-run regions.
            let key = match kind {
                SensitiveKind::Ssn => SensitiveKind::CardNumber,
                k => *k,
            };
            let mut n = 0u64;
            for r in regions.of(key) {
                for m in re.find_iter(&data[r.clone()]) {
                    let (start, end) = (r.start + m.start(), r.start + m.end());
                    n += u64::from(!(cut && end == data.len()) && valid(*kind, data, start, end));
                }
            }
            if n > 0 {
                *counts.entry(*kind).or_insert(0) += n;
            }
        }
    }

    /// Where in `data` a match of an enabled kind can be.
    fn regions(&self, data: &[u8]) -> Regions {
        let mut regions = Regions::default();
        if let Some(min) = self.min_digits {
            digit_runs(data, min, |run| {
                regions.add(
                    SensitiveKind::CardNumber,
                    widen(data, run, |b| b.is_ascii_digit()),
                );
            });
        }
        if self.aws {
            // A key id is a whole word, so it is a whole run.
            let key_byte = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit();
            runs(data, AWS_KEY_ID_LEN, key_byte, |run| {
                regions.add(SensitiveKind::AwsAccessKeyId, widen(data, run, |_| false));
            });
        }
        if self.email {
            for at in memchr::memchr_iter(b'@', data) {
                regions.add_find(data, SensitiveKind::Email, at..at + 1);
            }
        }
        if let Some(f) = &self.jwt {
            for at in f.find_iter(data) {
                regions.add_find(data, SensitiveKind::Jwt, at..at + 3);
            }
        }
        if let Some(f) = &self.pem {
            for at in f.find_iter(data) {
                regions.add_find(data, SensitiveKind::PrivateKey, at..at + f.needle().len());
            }
        }
        regions
    }

    /// [`Scanner::scan`] the slow way, each expression over all of `data`: the reference
    /// the tests and the `sensitive` fuzz target hold the regions to.
    pub fn scan_whole(&self, data: &[u8], counts: &mut BTreeMap<SensitiveKind, u64>) {
        for (kind, re) in &self.kinds {
            let n = re
                .find_iter(data)
                .filter(|m| valid(*kind, data, m.start(), m.end()))
                .count() as u64;
            if n > 0 {
                *counts.entry(*kind).or_insert(0) += n;
            }
        }
    }
}

/// Whether the match `data[start..end]` of `kind` is real: a card number passes its prefix
/// and Luhn checks and is no part of a decimal, an SSN passes the SSA rules.
fn valid(kind: SensitiveKind, data: &[u8], start: usize, end: usize) -> bool {
    match kind {
        SensitiveKind::CardNumber => {
            let before = start.checked_sub(1).map(|j| data[j]);
            let after = data.get(end).copied();
            before != Some(b'.') && after != Some(b'.') && card_ok(&data[start..end])
        }
        SensitiveKind::Ssn => ssn_ok(&data[start..end]),
        _ => true,
    }
}

/// The regions to search, per kind, in order and merged where they overlap. (Merging
/// regions a few hundred bytes apart, to save search calls, measured slower.)
#[derive(Default)]
struct Regions {
    /// One list per kind (indexed by `SensitiveKind as usize`), so finding a kind's last
    /// region never walks over another kind's.
    by_kind: [Vec<Range<usize>>; SensitiveKind::ALL.len()],
}

impl Regions {
    /// Adds the region of an anchor of `kind` found at `anchor`: the run of the kind's
    /// bytes around it, one byte more either side. A find inside the kind's last region
    /// adds nothing and is not widened again, so a body of a million `@` costs linear time.
    fn add_find(&mut self, data: &[u8], kind: SensitiveKind, anchor: Range<usize>) {
        if self
            .of(kind)
            .last()
            .is_some_and(|r| r.contains(&anchor.start))
        {
            return;
        }
        let anchor = anchor.start..anchor.end.min(data.len());
        self.add(kind, widen(data, anchor, |b| kind.in_match(b)));
    }

    fn add(&mut self, kind: SensitiveKind, r: Range<usize>) {
        let list = &mut self.by_kind[kind as usize];
        // Finds come in order per kind, so only the kind's last region can overlap.
        if let Some(last) = list.last_mut() {
            if r.start <= last.end {
                last.end = last.end.max(r.end);
                return;
            }
        }
        list.push(r);
    }

    fn of(&self, kind: SensitiveKind) -> &[Range<usize>] {
        &self.by_kind[kind as usize]
    }

    /// Regions of all kinds.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_kind.iter().map(Vec::len).sum()
    }
}

/// `r` grown over the bytes `keep` holds, then by one byte either side (for `\b` and the
/// card number's decimal check).
fn widen(data: &[u8], r: Range<usize>, keep: impl Fn(u8) -> bool) -> Range<usize> {
    let mut start = r.start;
    while start > 0 && keep(data[start - 1]) {
        start -= 1;
    }
    let mut end = r.end;
    while end < data.len() && keep(data[end]) {
        end += 1;
    }
    start.saturating_sub(1)..(end + 1).min(data.len())
}

/// Calls `found` with each run of at least `min` digits, a single space or dash allowed
/// between two of them: where a card number (13 or more digits) or an SSN (9) can be.
fn digit_runs(data: &[u8], min: usize, mut found: impl FnMut(Range<usize>)) {
    // Runs lie inside the spans of digits, spaces and dashes.
    let digitish = |b: u8| SensitiveKind::CardNumber.in_match(b);
    runs(data, min, digitish, |span| {
        exact_runs(&data[span.clone()], span.start, min, &mut found);
    });
}

/// Calls `found` with each maximal run of at least `min` bytes that `class` holds. It
/// probes every `min`-th byte (every such run holds a probe), and reads on around a probe
/// only where that byte is in the class, so short runs cost little.
fn runs(data: &[u8], min: usize, class: impl Fn(u8) -> bool, mut found: impl FnMut(Range<usize>)) {
    let step = min.max(1);
    let mut probe = step - 1;
    while probe < data.len() {
        if !class(data[probe]) {
            probe += step;
            continue;
        }
        let mut start = probe;
        while start > 0 && class(data[start - 1]) {
            start -= 1;
        }
        let mut end = probe + 1;
        while end < data.len() && class(data[end]) {
            end += 1;
        }
        if end - start >= min {
            found(start..end);
        }
        probe = end + step;
    }
}

/// The runs of [`digit_runs`] inside one span of digits, spaces and dashes.
fn exact_runs(span: &[u8], offset: usize, min: usize, found: &mut impl FnMut(Range<usize>)) {
    let mut digits = 0usize;
    let mut run_start = 0usize;
    let mut last_digit = 0usize;
    for (i, &b) in span.iter().enumerate() {
        if b.is_ascii_digit() {
            if digits == 0 {
                run_start = i;
            } else if i - last_digit > 2 {
                // Two separators in a row end a run.
                if digits >= min {
                    found(offset + run_start..offset + last_digit + 1);
                }
                digits = 0;
                run_start = i;
            }
            digits += 1;
            last_digit = i;
        }
    }
    if digits >= min {
        found(offset + run_start..offset + last_digit + 1);
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

/// Every kind [`secret_value_kind`] names.
pub const SECRET_VALUE_KINDS: [&str; 4] =
    ["aws_access_key_id", "jwt", "github_token", "slack_token"];

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
    use proptest::strategy::Strategy as _;

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

    proptest::proptest! {
        /// Searching regions finds what searching everything finds: for any enabled kinds
        /// and any data made of digits, separators, anchors, sensitive samples and noise.
        #[test]
        fn regions_hold_every_match(
            mask in 1u8..64,
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::string::string_regex("[0-9]{1,20}").unwrap(),
                    proptest::string::string_regex("[ -]{1,2}").unwrap(),
                    proptest::string::string_regex("[a-zA-Z.@_%+-]{1,12}").unwrap(),
                    proptest::string::string_regex("[A-Z0-9]{1,20}").unwrap(),
                    proptest::sample::select(vec![
                        "4111 1111 1111 1111".to_string(),
                        "4111-1111-1111-1111".to_string(),
                        "378282246310005".to_string(),
                        "123-45-6789".to_string(),
                        "a@example.com".to_string(),
                        "x@y.com@z.org".to_string(),
                        "@".to_string(),
                        ".".to_string(),
                        "ASIA".to_string(),
                        "eyJ".to_string(),
                        "-----BEGIN ".to_string(),
                        "PRIVATE KEY-----".to_string(),
                        "AKIAIOSFODNN7EXAMPLE".to_string(),
                        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln".to_string(),
                        "-----BEGIN EC PRIVATE KEY-----".to_string(),
                        "\"".to_string(),
                        ",".to_string(),
                    ]),
                    proptest::collection::vec(proptest::prelude::any::<u8>(), 1..8)
                        .prop_map(|b: Vec<u8>| String::from_utf8_lossy(&b).into_owned()),
                ],
                0..24,
            ),
        ) {
            let s = Scanner::new(&SensitiveKind::subset(u32::from(mask)));
            let data = parts.concat();
            let (mut with, mut without) = (BTreeMap::new(), BTreeMap::new());
            s.scan(data.as_bytes(), &mut with);
            s.scan_whole(data.as_bytes(), &mut without);
            proptest::prop_assert_eq!(with, without, "{:?}", data);
        }
    }

    #[test]
    fn api_data_has_no_region_and_every_anchor_makes_one() {
        let s = Scanner::new(&SensitiveKind::ALL);
        let api = br#"{"items":[{"id":123456,"name":"item-123456","price":12.34,"tags":["t1","t5"]}],"ts":"2026-12-07T08:00:00Z"}"#;
        assert_eq!(s.regions(api).len(), 0);
        for hit in [
            &b"x@y"[..],
            b"eyJ",
            b"-----BEGIN ",
            b"ASIAIOSFODNN7EXAMPLE",
            b"123 456-789",
            b"1234567890123",
        ] {
            assert!(s.regions(hit).len() > 0, "{}", String::from_utf8_lossy(hit));
        }
        // Two separators in a row end a run.
        let ssn = Scanner::new(&[SensitiveKind::Ssn]);
        assert_eq!(ssn.regions(b"1234 -56789").len(), 0);
        assert_eq!(ssn.regions(b"x 123-45-6789 -").len(), 1);
    }

    /// Every capture in the repository's fixtures (analytics, bodies, HTTP/2, public
    /// corpus...), read as raw bytes: headers, bodies and binary noise, scanned both ways.
    #[test]
    fn regions_agree_with_the_whole_scan_on_every_fixture() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
        let mut dirs = vec![root];
        let (mut files, mut found) = (0, BTreeMap::new());
        let s = Scanner::new(&SensitiveKind::ALL);
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let data = std::fs::read(&path).unwrap();
                let (mut regions, mut whole) = (BTreeMap::new(), BTreeMap::new());
                s.scan(&data, &mut regions);
                s.scan_whole(&data, &mut whole);
                assert_eq!(regions, whole, "{}", path.display());
                files += 1;
                for (k, n) in whole {
                    *found.entry(k).or_insert(0u64) += n;
                }
            }
        }
        // The fixtures' raw bytes hold four kinds (SSNs and keys only compressed or in the
        // property test above); a scan that found nothing would prove nothing.
        assert!(files > 100 && found.len() >= 4, "{files} files, {found:?}");
    }

    #[test]
    fn hostile_bodies_cost_linear_time() {
        // Each find inside its kind's last region is not widened again, and each kind keeps
        // its own list; without either, these take seconds to minutes.
        let s = Scanner::new(&SensitiveKind::ALL);
        for body in [
            vec![b'@'; 1 << 20],
            b"a@".repeat(1 << 19),
            b"AKIA".repeat(1 << 18),
            b"-----BEGIN ".repeat(1 << 17),
            b"eyJ.".repeat(1 << 18),
            b"1 ".repeat(1 << 19),
        ] {
            let mut counts = BTreeMap::new();
            s.scan(&body, &mut counts);
            assert!(s.regions(&body).len() <= 2, "{:?}", &body[..8]);
        }
        // One private-key run holding many AWS runs: many regions, each found once.
        let mixed = b"-----BEGIN AKIAIOSFODNN7EXAMPLE ".repeat(1 << 16);
        s.scan(&mixed, &mut BTreeMap::new());
        assert_eq!(s.regions(&mixed).len(), 1 + (1 << 16));
    }

    /// A token cut by the scan limit is no match if the data goes on past the cut.
    #[test]
    fn a_match_ending_at_the_cut_is_not_counted() {
        let s = Scanner::new(&SensitiveKind::ALL);
        let scan = |data: &[u8], len: usize| {
            let mut c = BTreeMap::new();
            s.scan_part(&data[..len], len < data.len(), &mut c);
            c
        };
        let id = b"id 41111111111111111111 x"; // 20 digits: no card
        assert!(scan(id, id.len()).is_empty());
        assert!(scan(id, 19).is_empty(), "cut to a Luhn-valid 16");
        let card = b"card 4111111111111111 x";
        assert_eq!(scan(card, 22).get(&SensitiveKind::CardNumber), Some(&1));
        // Ending right at the cut: the next byte could have carried it on.
        assert!(scan(card, 21).is_empty());
        assert!(scan(card, 20).is_empty());
        // Cut where nothing follows: the whole data.
        assert_eq!(
            scan(&card[..21], 21).get(&SensitiveKind::CardNumber),
            Some(&1)
        );
        assert!(scan(b"123-45-67890", 11).is_empty());
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
