//! What the encoder hands to the outputs: one encoded event and its place in the output
//! order.

use crate::http::Span;
use crate::time::SortKey;

/// Version of the event layout, carried in `apitap.schema_version` and in the
/// `apitap-schema` Kafka header.
pub const SCHEMA_VERSION: &str = "1";

/// One encoded output event: a transaction's event, or an alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedEvent {
    /// Output order key.
    pub key: SortKey,
    /// One JSON object, no trailing newline.
    pub json: Vec<u8>,
    /// The Kafka message key: [`crate::endpoint::endpoint_hash`] of the host and
    /// `apitap.endpoint`, so an endpoint's events and alerts share a partition (of the
    /// host alone for connection events and for transaction events in edge mode).
    pub endpoint_hash: u64,
    /// An alert (goes to the alerts topic) rather than a transaction event.
    pub alert: bool,
    /// Edge mode, an authentication failure: the Kafka sink also sends the event to the
    /// auth failures topic keyed by this (the hash of the client address), so the
    /// centre counts a client's failures across hosts in one place.
    pub client_key: Option<u64>,
    /// Where the value of `apitap.endpoint` (JSON-escaped, without its quotes) lies in
    /// `json`; set on transaction events, so the analytics stage can name the endpoint as
    /// the inventory does.
    pub endpoint_at: Option<Span>,
}

impl EncodedEvent {
    /// The JSON-escaped `apitap.endpoint` value, when the event has one.
    pub fn endpoint(&self) -> Option<&[u8]> {
        self.json.get(self.endpoint_at?.range())
    }

    /// Replaces the `apitap.endpoint` value with `escaped` (already JSON-escaped, without
    /// quotes); false when the event has none.
    pub fn replace_endpoint(&mut self, escaped: &[u8]) -> bool {
        let Some(at) = self.endpoint_at else {
            return false;
        };
        let range = at.range();
        if range.end > self.json.len() {
            return false;
        }
        self.json.splice(range.clone(), escaped.iter().copied());
        self.endpoint_at = Some(Span::new(range.start, escaped.len()));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_is_replaced_in_place() {
        let json = br#"{"a":1,"apitap":{"endpoint":"GET /x/1","n":2}}"#.to_vec();
        let start = 29;
        let mut ev = EncodedEvent {
            key: SortKey::default(),
            json,
            endpoint_hash: 0,
            alert: false,
            client_key: None,
            endpoint_at: Some(Span::new(start, 8)),
        };
        assert_eq!(ev.endpoint(), Some(&b"GET /x/1"[..]));
        assert!(ev.replace_endpoint(b"GET /x/{param}"));
        assert_eq!(
            ev.json,
            br#"{"a":1,"apitap":{"endpoint":"GET /x/{param}","n":2}}"#
        );
        assert_eq!(ev.endpoint(), Some(&b"GET /x/{param}"[..]));
        ev.endpoint_at = Some(Span::new(500, 1));
        assert!(!ev.replace_endpoint(b"x"), "out of range: left alone");
    }
}
