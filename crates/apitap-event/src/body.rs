//! Captured bodies and query strings in events, with sensitive fields replaced.
//!
//! JSON bodies are parsed and every value under a sensitive key (at any depth) is replaced;
//! form bodies and query strings have the values of sensitive parameters replaced. A JSON
//! body that does not parse (cut short, or not JSON) is withheld rather than risk writing a
//! secret.

use crate::redact::{redact_pairs, Redactor};
use apitap_core::{CapturedBody, Head};
use serde_json::Value;

/// A body as it goes into the event.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct RenderedBody {
    /// Text content (`http.*.body.content`), when it can be shown.
    pub content: Option<String>,
    /// Values replaced.
    pub redacted_fields: u32,
    /// Not text (not UTF-8): content left out.
    pub binary: bool,
    /// JSON that did not parse: content left out so no secret can slip through.
    pub withheld: bool,
}

/// Renders a captured body for the event.
pub(crate) fn render(body: &CapturedBody, head: &Head, redactor: &Redactor) -> RenderedBody {
    let Ok(text) = std::str::from_utf8(&body.bytes) else {
        return RenderedBody {
            binary: true,
            ..RenderedBody::default()
        };
    };
    let media = head
        .header("content-type")
        .map(|v| String::from_utf8_lossy(v).to_ascii_lowercase())
        .unwrap_or_default();
    let mut redacted = 0u32;
    if media.contains("json") {
        return match serde_json::from_str::<Value>(text) {
            Ok(mut v) => {
                redact_json(&mut v, redactor, &mut redacted);
                RenderedBody {
                    content: Some(v.to_string()),
                    redacted_fields: redacted,
                    ..RenderedBody::default()
                }
            }
            Err(_) => RenderedBody {
                withheld: true,
                ..RenderedBody::default()
            },
        };
    }
    if media.starts_with("application/x-www-form-urlencoded") {
        let content = redact_pairs(text, redactor, &mut redacted);
        return RenderedBody {
            content: Some(content),
            redacted_fields: redacted,
            ..RenderedBody::default()
        };
    }
    RenderedBody {
        content: Some(text.to_string()),
        ..RenderedBody::default()
    }
}

fn redact_json(v: &mut Value, redactor: &Redactor, count: &mut u32) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if redactor.is_sensitive_field(k) && !val.is_null() {
                    let original = match &*val {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    *val = Value::String(redactor.redact_value(original.as_bytes()).into_owned());
                    *count += 1;
                } else {
                    redact_json(val, redactor, count);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                redact_json(item, redactor, count);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::{is_sensitive_field, normalize, redact_query, DEFAULT_REDACT_FIELDS};
    use apitap_core::Span;

    fn head(ct: &str) -> Head {
        let name = b"Content-Type";
        let mut buf = name.to_vec();
        buf.extend_from_slice(ct.as_bytes());
        Head {
            headers: vec![(Span::new(0, name.len()), Span::new(name.len(), ct.len()))],
            buf,
        }
    }

    fn body(bytes: &[u8]) -> CapturedBody {
        CapturedBody {
            bytes: bytes.to_vec(),
            ..CapturedBody::default()
        }
    }

    #[test]
    fn json_secrets_are_replaced_at_any_depth_and_nothing_else_changes() {
        let r = Redactor::default();
        let out = render(
            &body(br#"{"user":"ada","password":"hunter2","card":{"number":"4111111111111111"},"items":[{"api_key":"k1","qty":2}],"cardholder":null,"tokenType":7}"#),
            &head("application/json; charset=utf-8"),
            &r,
        );
        assert_eq!(
            out.content.as_deref(),
            Some(
                r#"{"user":"ada","password":"[REDACTED]","card":"[REDACTED]","items":[{"api_key":"[REDACTED]","qty":2}],"cardholder":null,"tokenType":"[REDACTED]"}"#
            )
        );
        assert_eq!(out.redacted_fields, 4);
        assert!(!out.content.unwrap_or_default().contains("hunter2"));
    }

    #[test]
    fn keyed_redaction_correlates_equal_values() {
        let r = Redactor::new(&[], Some(b"0123456789abcdef".to_vec()));
        let a = render(&body(br#"{"token":"abc"}"#), &head("application/json"), &r);
        let b = render(
            &body(br#"{"x":{"token":"abc"}}"#),
            &head("application/json"),
            &r,
        );
        let c = render(&body(br#"{"token":"abd"}"#), &head("application/json"), &r);
        let tag = |o: &RenderedBody| {
            let v: Value = serde_json::from_str(o.content.as_deref().unwrap_or("")).unwrap();
            v.pointer("/token")
                .or(v.pointer("/x/token"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        assert!(tag(&a).starts_with("hmac:"));
        assert_eq!(tag(&a), tag(&b));
        assert_ne!(tag(&a), tag(&c));
    }

    #[test]
    fn unparsable_json_is_withheld_and_binary_is_left_out() {
        let r = Redactor::default();
        let cut = render(&body(br#"{"password":"hun"#), &head("application/json"), &r);
        assert!(cut.withheld && cut.content.is_none());
        let bin = render(&body(&[0xff, 0xfe, 0x00]), &head("text/plain"), &r);
        assert!(bin.binary && bin.content.is_none());
    }

    #[test]
    fn form_bodies_and_queries_redact_sensitive_parameters() {
        let r = Redactor::default();
        let out = render(
            &body(b"user=ada&pass%77ord=hunter2&remember=1&client_secret=s"),
            &head("application/x-www-form-urlencoded"),
            &r,
        );
        assert_eq!(
            out.content.as_deref(),
            Some("user=ada&pass%77ord=[REDACTED]&remember=1&client_secret=[REDACTED]")
        );
        assert_eq!(
            redact_query("page=2&api_key=AKIA123&x", &r).as_deref(),
            Some("page=2&api_key=[REDACTED]&x")
        );
        assert_eq!(redact_query("page=2&limit=10", &r), None);
    }

    #[test]
    fn field_matching_is_by_prefix_or_suffix_of_the_normalised_name() {
        let fields: Vec<String> = DEFAULT_REDACT_FIELDS
            .iter()
            .map(|f| normalize(f).into_owned())
            .collect();
        for yes in [
            "password",
            "newPassword",
            "access_token",
            "X-Api-Key",
            "card_number",
            "pin",
        ] {
            assert!(is_sensitive_field(yes, &fields), "{yes}");
        }
        for no in ["shipping", "username", "id", "quantity", ""] {
            assert!(!is_sensitive_field(no, &fields), "{no}");
        }
    }
}
