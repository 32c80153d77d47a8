//! Message heads as event fields: the header map (lower-case names, repeated fields
//! joined, credentials redacted) and the media type, each part of a head a slice of one
//! UTF-8 check.

use crate::json;
use crate::redact::Redactor;
use apitap_core::utf8_lossy as text;
use apitap_core::Head;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// A message head checked for UTF-8 once, so that the text of any part of it is a slice
/// instead of a check of its own (a transaction's event takes a dozen parts of its heads).
#[derive(Clone, Copy)]
pub(crate) struct HeadText<'a> {
    buf: &'a [u8],
    /// The whole head, when it is valid UTF-8 (nearly always).
    pub(crate) text: Option<&'a str>,
}

impl<'a> HeadText<'a> {
    pub(crate) fn new(head: &'a Head) -> HeadText<'a> {
        HeadText {
            buf: &head.buf,
            text: std::str::from_utf8(&head.buf).ok(),
        }
    }

    /// `part` as text, invalid UTF-8 replaced by U+FFFD. A part of this head (compared by
    /// address, as the unstable `subslice_range` does) that starts and ends on character
    /// boundaries is sliced from the checked text; any other bytes are checked on their own.
    pub(crate) fn str(&self, part: &'a [u8]) -> Cow<'a, str> {
        let offset = (part.as_ptr() as usize).wrapping_sub(self.buf.as_ptr() as usize);
        let inside = offset
            .checked_add(part.len())
            .filter(|&end| end <= self.buf.len())
            .and_then(|end| self.text?.get(offset..end));
        match inside {
            Some(s) => Cow::Borrowed(s),
            None => text(part),
        }
    }
}

/// Header map: lower-case names in first-seen order; repeated names are joined with ", "
/// (RFC 9110 field combination); sensitive values redacted.
pub(crate) struct HeadersView<'a> {
    head: &'a Head,
    /// The whole head as text, when it is valid UTF-8 (nearly always): each value is then
    /// a slice of it instead of a UTF-8 check of its own.
    text: Option<&'a str>,
    redactor: &'a Redactor,
}

/// One entry of a [`HeadersView`].
pub(crate) enum HeaderValue<'a> {
    /// One field, valid UTF-8, written as is (the common case).
    Plain(&'a str),
    /// A sensitive header's replacement.
    Redacted(Cow<'static, str>),
    /// Repeated fields joined, or a value with invalid UTF-8.
    Joined(JoinedValues<'a>),
}

impl<'a> HeadersView<'a> {
    pub(crate) fn new(
        head: &'a Head,
        text: HeadText<'a>,
        redactor: &'a Redactor,
    ) -> HeadersView<'a> {
        HeadersView {
            head,
            text: text.text,
            redactor,
        }
    }

    /// The text of `span`, if it is valid UTF-8.
    fn str(&self, span: apitap_core::Span) -> Option<&'a str> {
        match self.text {
            Some(text) => text.get(span.range()),
            None => std::str::from_utf8(self.head.get(span)).ok(),
        }
    }

    /// Calls `f` with each entry of the map, in order.
    fn for_each<E>(
        &self,
        mut f: impl FnMut(LowerName<'a>, HeaderValue<'a>) -> Result<(), E>,
    ) -> Result<(), E> {
        let head: &'a Head = self.head;
        let headers = &head.headers;
        for (i, &(name_span, value_span)) in headers.iter().enumerate() {
            let name = head.get(name_span);
            let same_name = |&(n, _): &(apitap_core::Span, apitap_core::Span)| {
                n.len == name_span.len && head.get(n).eq_ignore_ascii_case(name)
            };
            if headers.iter().take(i).any(same_name) {
                continue;
            }
            let repeated = headers.iter().skip(i + 1).any(same_name);
            let joined = JoinedValues {
                head,
                name,
                from: i,
            };
            let value = if self.redactor.is_sensitive(name) {
                // A single valid value is its own joined text: no formatting needed.
                let redacted = match (repeated, self.str(value_span)) {
                    (false, Some(value)) => self.redactor.redacted(value.as_bytes()),
                    _ => self.redactor.redacted(joined.to_string().as_bytes()),
                };
                HeaderValue::Redacted(redacted)
            } else if let (false, Some(value)) = (repeated, self.str(value_span)) {
                HeaderValue::Plain(value)
            } else {
                HeaderValue::Joined(joined)
            };
            f(LowerName(name), value)?;
        }
        Ok(())
    }

    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        let mut map = json::Object::new(out);
        let mut buf = [0u8; 64];
        let _ = self.for_each(|name, value| -> Result<(), ()> {
            let out = if json::is_plain(name.0) {
                map.lower_plain_key(name.0)
            } else {
                map.escaped_key(&name.lowered(&mut buf))
            };
            match value {
                HeaderValue::Plain(v) => json::string(out, v),
                HeaderValue::Redacted(v) => json::string(out, &v),
                HeaderValue::Joined(v) => json::string(out, &v.to_string()),
            }
            Ok(())
        });
        map.end();
    }
}

impl Serialize for HeadersView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        self.for_each(|name, value| match value {
            HeaderValue::Plain(v) => map.serialize_entry(&name, v),
            HeaderValue::Redacted(v) => map.serialize_entry(&name, &v),
            HeaderValue::Joined(v) => map.serialize_entry(&name, &v),
        })?;
        map.end()
    }
}

/// A header name written in lower case without allocating.
pub(crate) struct LowerName<'a>(&'a [u8]);

impl fmt::Display for LowerName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                f.write_char(c.to_ascii_lowercase())?;
            }
            if !chunk.invalid().is_empty() {
                f.write_char(char::REPLACEMENT_CHARACTER)?;
            }
        }
        Ok(())
    }
}

impl LowerName<'_> {
    /// The lower-cased name; header names are short ASCII tokens, lower-cased on the stack.
    fn lowered<'b>(&self, buf: &'b mut [u8; 64]) -> Cow<'b, str> {
        if let Some(dst) = buf.get_mut(..self.0.len()) {
            if self.0.is_ascii() {
                for (d, b) in dst.iter_mut().zip(self.0) {
                    *d = b.to_ascii_lowercase();
                }
                if let Ok(name) = std::str::from_utf8(dst) {
                    return Cow::Borrowed(name);
                }
            }
        }
        Cow::Owned(self.to_string())
    }
}

impl Serialize for LowerName<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.lowered(&mut [0u8; 64]))
    }
}

/// All values of one header name, from index `from` on, joined with ", ".
pub(crate) struct JoinedValues<'a> {
    head: &'a Head,
    name: &'a [u8],
    from: usize,
}

impl fmt::Display for JoinedValues<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for &(n, v) in self.head.headers.iter().skip(self.from) {
            if !self.head.get(n).eq_ignore_ascii_case(self.name) {
                continue;
            }
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            for chunk in self.head.get(v).utf8_chunks() {
                f.write_str(chunk.valid())?;
                if !chunk.invalid().is_empty() {
                    f.write_char(char::REPLACEMENT_CHARACTER)?;
                }
            }
        }
        Ok(())
    }
}

impl Serialize for JoinedValues<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Media type of a Content-Type value: the part before `;`, trimmed, lower case.
pub(crate) fn mime_type<'a>(head: &'a Head, text: HeadText<'a>) -> Option<Cow<'a, str>> {
    let value = head.header("content-type")?;
    let media = value
        .split(|&b| b == b';')
        .next()
        .unwrap_or(value)
        .trim_ascii();
    if media.is_empty() {
        return None;
    }
    Some(match text.str(media) {
        Cow::Borrowed(s) if !s.bytes().any(|b| b.is_ascii_uppercase()) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_ascii_lowercase()),
    })
}
