//! `apitap.endpoint`: the name of the API operation a request calls, `METHOD /path/{template}`.
//!
//! One templater serves events, alerts and the inventory. This module holds its shape
//! rules: a path segment that looks like an id (integer, UUID, hex string, token, date,
//! email) becomes a placeholder. The analytics' templater adds learned `{param}` segments
//! on top (a position that has seen many literal values); when the analytics run, an
//! event's endpoint is the one the inventory files it under, so alerts and the events they
//! cite agree.

use crate::hash::StableHasher;
use crate::text::split_ascii;
use std::borrow::Cow;

/// Kind of a templated path segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Placeholder {
    /// All digits.
    Id,
    /// 8-4-4-4-12 hex UUID.
    Uuid,
    /// Hex string: 8+ chars with a digit, or 16+ chars.
    Hex,
    /// Long mixed base64 / base64url token.
    Token,
    /// `YYYY-MM-DD` date.
    Date,
    /// Email address.
    Email,
    /// Learned variable segment (the analytics' templater).
    Param,
}

impl Placeholder {
    /// Name inside the braces.
    pub fn name(self) -> &'static str {
        match self {
            Placeholder::Id => "id",
            Placeholder::Uuid => "uuid",
            Placeholder::Hex => "hex",
            Placeholder::Token => "token",
            Placeholder::Date => "date",
            Placeholder::Email => "email",
            Placeholder::Param => "param",
        }
    }

    /// The segment written in a template: `{uuid}`; with `typed` off every shape is
    /// `{id}` (`{param}` stays).
    pub fn text(self, typed: bool) -> &'static str {
        if !typed && self != Placeholder::Param {
            return "{id}";
        }
        match self {
            Placeholder::Id => "{id}",
            Placeholder::Uuid => "{uuid}",
            Placeholder::Hex => "{hex}",
            Placeholder::Token => "{token}",
            Placeholder::Date => "{date}",
            Placeholder::Email => "{email}",
            Placeholder::Param => "{param}",
        }
    }

    /// The placeholder a template segment (`{uuid}`) stands for.
    pub fn from_template_segment(seg: &str) -> Option<Placeholder> {
        Some(match seg {
            "{id}" => Placeholder::Id,
            "{uuid}" => Placeholder::Uuid,
            "{hex}" => Placeholder::Hex,
            "{token}" => Placeholder::Token,
            "{date}" => Placeholder::Date,
            "{email}" => Placeholder::Email,
            "{param}" => Placeholder::Param,
            _ => return None,
        })
    }
}

/// The shape rule a literal path segment matches, if any: integers `{id}`, UUIDs
/// `{uuid}`, hex strings of 8+ chars with a digit (or 16+ chars) `{hex}`, long mixed
/// base64/base64url tokens `{token}`, dates `2024-01-31` `{date}`, emails `{email}`.
pub fn classify_segment(seg: &str) -> Option<Placeholder> {
    let b = seg.as_bytes();
    if b.is_empty() {
        return None;
    }
    if b.iter().all(u8::is_ascii_digit) {
        return Some(Placeholder::Id);
    }
    if b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
    {
        return Some(Placeholder::Uuid);
    }
    if b.len() == 10 && is_date(b) {
        return Some(Placeholder::Date);
    }
    if b.len() >= 5 {
        // Byte searches: `str::contains("%40")` sets up a substring searcher per segment.
        let at = match b.iter().position(|&c| c == b'@') {
            Some(i) => Some(i + 1),
            None => b.windows(3).position(|w| w == b"%40").map(|i| i + 3),
        };
        if let Some(at) = at {
            // `at` follows an ASCII byte, so both sides are whole text.
            let local = seg.get(..at.saturating_sub(1)).unwrap_or("");
            let domain = seg.get(at..).unwrap_or("");
            if !local.is_empty() && domain.contains('.') && !domain.ends_with('.') {
                return Some(Placeholder::Email);
            }
        }
    }
    let has_digit = b.iter().any(u8::is_ascii_digit);
    if b.len() >= 8 && b.iter().all(u8::is_ascii_hexdigit) && (has_digit || b.len() >= 16) {
        return Some(Placeholder::Hex);
    }
    if b.len() >= 16
        && b.iter().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~' | b'=' | b'+')
        })
    {
        let upper = b.iter().any(u8::is_ascii_uppercase);
        let lower = b.iter().any(u8::is_ascii_lowercase);
        let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
        if (upper && lower && digits > 0)
            || (b.len() >= 24 && digits * 4 >= b.len() && (upper || lower))
        {
            return Some(Placeholder::Token);
        }
    }
    None
}

fn is_date(b: &[u8]) -> bool {
    let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = *b else {
        return false;
    };
    if ![y0, y1, y2, y3, m0, m1, d0, d1]
        .iter()
        .all(u8::is_ascii_digit)
    {
        return false;
    }
    let month = (m0 - b'0') * 10 + (m1 - b'0');
    let day = (d0 - b'0') * 10 + (d1 - b'0');
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

/// `path` with every segment that matches a shape rule replaced by its placeholder
/// (`/users/123/orders` -> `/users/{id}/orders`). A path that does not start with `/`
/// (`*`, an authority) is its own template. Borrowed when nothing changes.
pub fn shape_template(path: &str, typed: bool) -> Cow<'_, str> {
    let Some(rest) = path.strip_prefix('/') else {
        return Cow::Borrowed(path);
    };
    if !split_ascii(rest, b'/').any(|seg| classify_segment(seg).is_some()) {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len() + 8);
    for seg in split_ascii(rest, b'/') {
        out.push('/');
        match classify_segment(seg) {
            Some(ph) => out.push_str(ph.text(typed)),
            None => out.push_str(seg),
        }
    }
    Cow::Owned(out)
}

/// `METHOD template` (the method upper-cased), the value of `apitap.endpoint`.
pub fn endpoint_name(method: &str, template: &str) -> String {
    let mut name = String::with_capacity(method.len() + 1 + template.len());
    name.push_str(method);
    name.make_ascii_uppercase();
    name.push(' ');
    name.push_str(template);
    name
}

/// The Kafka message key of an event or alert about an endpoint: a stable hash of the
/// host (ASCII lower case, empty when unknown) and `apitap.endpoint` (empty when none).
/// An alert and the events it cites hash the same values, so they share a partition.
pub fn endpoint_hash(host: &str, endpoint: &str) -> u64 {
    let mut h = StableHasher::new();
    for chunk in host.as_bytes().chunks(64) {
        let mut lower = [0u8; 64];
        let lower = lower.get_mut(..chunk.len()).unwrap_or(&mut []);
        lower.copy_from_slice(chunk);
        lower.make_ascii_lowercase();
        h.bytes(lower);
    }
    h.end_part();
    h.part(endpoint.as_bytes());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::stable_hash;

    fn t(path: &str) -> Cow<'_, str> {
        shape_template(path, true)
    }

    #[test]
    fn shapes() {
        assert_eq!(t("/users/123/orders"), "/users/{id}/orders");
        assert_eq!(t("/o/123e4567-e89b-12d3-a456-426614174000"), "/o/{uuid}");
        assert_eq!(t("/blob/9f86d081"), "/blob/{hex}");
        assert_eq!(t("/blob/abcdefabcdefabcd"), "/blob/{hex}");
        assert_eq!(t("/words/deadbeef"), "/words/deadbeef");
        assert_eq!(t("/r/2024-01-31"), "/r/{date}");
        assert_eq!(t("/r/2024-13-31"), "/r/2024-13-31");
        assert_eq!(t("/u/alice@example.com/x"), "/u/{email}/x");
        assert_eq!(t("/u/alice%40example.com"), "/u/{email}");
        assert_eq!(t("/t/aGVsbG8gd29ybGQhIQ1Xy"), "/t/{token}");
        assert_eq!(
            t("/posts/my-first-blog-post-2024"),
            "/posts/my-first-blog-post-2024"
        );
        assert_eq!(t("/v1/users"), "/v1/users");
        assert_eq!(t("/"), "/");
        assert_eq!(t("/a//b/"), "/a//b/");
        assert_eq!(t("/a//123/"), "/a//{id}/");
        assert_eq!(t("*"), "*");
        assert_eq!(t("123"), "123", "not a path: its own template");
        assert!(matches!(t("/v1/users"), Cow::Borrowed(_)));
        assert_eq!(
            shape_template("/a/2024-01-31/b/9f86d081", false),
            "/a/{id}/b/{id}"
        );
    }

    #[test]
    fn placeholder_text_round_trips() {
        for ph in [
            Placeholder::Id,
            Placeholder::Uuid,
            Placeholder::Hex,
            Placeholder::Token,
            Placeholder::Date,
            Placeholder::Email,
            Placeholder::Param,
        ] {
            assert_eq!(Placeholder::from_template_segment(ph.text(true)), Some(ph));
            assert_eq!(ph.text(true), format!("{{{}}}", ph.name()));
        }
    }

    #[test]
    fn endpoint_names_and_keys() {
        assert_eq!(endpoint_name("get", "/a/{id}"), "GET /a/{id}");
        assert_eq!(
            endpoint_hash("API.example", "GET /a"),
            endpoint_hash("api.example", "GET /a")
        );
        assert_eq!(
            endpoint_hash("api.example", "GET /a"),
            stable_hash(&[b"api.example", b"GET /a"])
        );
        let long = "H".repeat(200);
        assert_eq!(
            endpoint_hash(&long, ""),
            stable_hash(&[long.to_ascii_lowercase().as_bytes(), b""])
        );
    }
}
