//! Redaction: credential headers, sensitive body fields and query parameters are replaced
//! by `[REDACTED]`, or by a keyed hash (`hmac:<16 hex>`) so equal secrets still correlate.
//! The key never leaves the [`Redactor`].

use apitap_core::text::percent_decode;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::borrow::Cow;
use std::fmt::Write as _;

/// Header names redacted by default (lower case): the credential headers.
pub const DEFAULT_REDACT_HEADERS: &[&str] = apitap_core::CREDENTIAL_HEADERS;

/// How sensitive header values, body fields and query parameters are replaced.
#[derive(Clone, Debug)]
pub struct Redactor {
    names: Vec<String>,
    /// Body field / query parameter names, normalised (see [`normalize`]).
    fields: Vec<String>,
    key: Option<Vec<u8>>,
}

impl Redactor {
    /// `names`: header names to redact (any case). `hmac_key`: when set, a redacted value
    /// becomes `hmac:<16 hex>` (HMAC-SHA256, truncated) so equal secrets correlate without
    /// being exposed; when not set, it becomes `[REDACTED]`.
    pub fn new(names: &[String], hmac_key: Option<Vec<u8>>) -> Redactor {
        Redactor {
            names: names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            fields: DEFAULT_REDACT_FIELDS
                .iter()
                .map(|f| normalize(f).into_owned())
                .collect(),
            key: hmac_key.filter(|k| !k.is_empty()),
        }
    }

    /// Replaces the body field / query parameter names whose values are redacted (a name
    /// matches when, lower-cased without `_` and `-`, it starts or ends with one of them).
    pub fn with_fields(mut self, fields: &[String]) -> Redactor {
        self.fields = fields
            .iter()
            .map(|f| normalize(f).into_owned())
            .filter(|f| !f.is_empty())
            .collect();
        self
    }

    pub(crate) fn is_sensitive_field(&self, name: &str) -> bool {
        is_sensitive_field(name, &self.fields)
    }

    pub(crate) fn redact_value(&self, value: &[u8]) -> Cow<'static, str> {
        self.redacted(value)
    }

    pub(crate) fn is_sensitive(&self, name: &[u8]) -> bool {
        self.names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
    }

    pub(crate) fn redacted(&self, value: &[u8]) -> Cow<'static, str> {
        match &self.key {
            None => Cow::Borrowed("[REDACTED]"),
            Some(key) => {
                let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
                    return Cow::Borrowed("[REDACTED]");
                };
                mac.update(value);
                let tag = mac.finalize().into_bytes();
                let mut s = String::with_capacity(21);
                s.push_str("hmac:");
                for b in tag.iter().take(8) {
                    let _ = write!(s, "{b:02x}");
                }
                Cow::Owned(s)
            }
        }
    }
}

impl Default for Redactor {
    fn default() -> Self {
        let names: Vec<String> = DEFAULT_REDACT_HEADERS
            .iter()
            .map(|s| s.to_string())
            .collect();
        Redactor::new(&names, None)
    }
}

/// Default body fields and query parameters whose values are redacted. A field matches when
/// its name, lower-cased without `_` and `-`, starts or ends with one of these.
pub const DEFAULT_REDACT_FIELDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "authorization",
    "credential",
    "session",
    "card",
    "cvv",
    "cvc",
    "ssn",
    "pin",
    "otp",
];

/// Normalises a field name for matching: lower case, without `_` and `-`.
/// Borrowed when there is nothing to change (the common case).
pub fn normalize(name: &str) -> Cow<'_, str> {
    if !name
        .bytes()
        .any(|b| b == b'_' || b == b'-' || b.is_ascii_uppercase())
    {
        return Cow::Borrowed(name);
    }
    Cow::Owned(
        name.chars()
            .filter(|c| *c != '_' && *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect(),
    )
}

/// Whether `name` is a sensitive field for `fields` (already normalised).
pub(crate) fn is_sensitive_field(name: &str, fields: &[String]) -> bool {
    let n = normalize(name);
    !n.is_empty()
        && fields
            .iter()
            .any(|f| n.starts_with(f.as_str()) || n.ends_with(f.as_str()))
}

/// `a=1&password=x` with sensitive values replaced (names kept as sent).
pub(crate) fn redact_pairs(text: &str, redactor: &Redactor, count: &mut u32) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, pair) in text.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, value)) if redactor.is_sensitive_field(&percent_decode(name)) => {
                out.push_str(name);
                out.push('=');
                out.push_str(&redactor.redact_value(value.as_bytes()));
                *count += 1;
            }
            _ => out.push_str(pair),
        }
    }
    out
}

/// The query string with sensitive parameter values replaced, or `None` when nothing is
/// sensitive (the common case: no allocation).
pub(crate) fn redact_query(query: &str, redactor: &Redactor) -> Option<String> {
    let any = query.split('&').any(|pair| {
        pair.split_once('=')
            .is_some_and(|(n, _)| redactor.is_sensitive_field(&percent_decode(n)))
    });
    if !any {
        return None;
    }
    let mut n = 0;
    Some(redact_pairs(query, redactor, &mut n))
}
