//! HPACK (RFC 7541) decoding for an observer that may have missed part of the
//! conversation.
//!
//! A decoder that joined mid-connection, or lost a header block, does not know every
//! entry of the sender's dynamic table. It knows the entries added since then, and those
//! are always the newest: dynamic index `n` is the `n`-th newest entry, so the entries it
//! learned keep their true indexes, and an index past them is one it cannot resolve. Such
//! a field is left out (counted, and the caller marks the message), never guessed. The
//! table is `complete` from the start of a connection, and again after a size update to
//! zero empties it.
//!
//! No HPACK crate models a table with unknown entries, nor goes on decoding the rest of a
//! block after a field it cannot resolve, so the representation walker and the table are
//! written here; the Huffman code is in [`super::huffman`].

use super::huffman;
use apitap_core::{Head, Span};
use std::collections::VecDeque;

/// The static table (RFC 7541 Appendix A), index 1 first.
const STATIC: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// The per-entry overhead RFC 7541 counts in table and header-list sizes.
const ENTRY_OVERHEAD: usize = 32;

/// One dynamic-table entry. The name is unknown when the field that added it named a
/// dynamic entry this decoder had not seen.
#[derive(Debug)]
struct Entry {
    name: Option<Box<[u8]>>,
    value: Box<[u8]>,
}

impl Entry {
    /// The entry's size as RFC 7541 counts it (an unknown name counts as empty).
    fn size(&self) -> usize {
        self.name.as_ref().map_or(0, |n| n.len()) + self.value.len() + ENTRY_OVERHEAD
    }
}

/// One direction's dynamic table, as far as it is known.
#[derive(Debug)]
pub(crate) struct Table {
    /// Newest first.
    entries: VecDeque<Entry>,
    /// Sum of the entries' sizes.
    size: usize,
    /// The sender's table size limit, from its last size update (4096 until one).
    max_size: usize,
    /// Most bytes of entries this decoder keeps (`http.max_hpack_table_bytes`).
    cap: usize,
    /// The entries are all the sender's table has.
    complete: bool,
}

/// Why a header block stopped decoding. The fields after the fault are lost, and so is
/// the table (a later field may have added entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HpackError {
    /// An integer or string runs past the end of the block.
    Truncated,
    /// An integer larger than 2^32 - 1.
    IntegerOverflow,
    /// A Huffman string that does not decode.
    Huffman,
    /// Index 0, or past a table known to be complete.
    BadIndex,
}

/// What decoding one header block found, besides the fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BlockReport {
    /// Fields that named dynamic entries this decoder had not seen (left out).
    pub unknown_fields: u32,
    /// Fields not kept past `max_fields`.
    pub fields_dropped: u32,
    /// Bytes of fields not kept past `max_list_bytes`.
    pub list_too_large: bool,
    /// The header list size (RFC 7541: names, values and 32 per field), kept or not.
    pub list_size: u64,
    /// Where the block stopped, if it did.
    pub error: Option<HpackError>,
}

/// Limits of one decode.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Fields kept.
    pub max_fields: usize,
    /// Bytes of names and values kept.
    pub max_list_bytes: usize,
}

impl Table {
    /// The table of a connection seen from its start (`complete`) or joined midway.
    pub(crate) fn new(cap: usize, complete: bool) -> Table {
        Table {
            entries: VecDeque::new(),
            size: 0,
            max_size: 4096,
            cap,
            complete,
        }
    }

    /// Whether every entry of the sender's table is known.
    #[cfg(test)]
    pub(crate) fn is_complete(&self) -> bool {
        self.complete
    }

    /// Bytes the entries hold.
    pub(crate) fn bytes(&self) -> usize {
        self.size
    }

    /// Forgets everything: a header block was lost, or did not decode to its end.
    pub(crate) fn lose(&mut self) {
        self.entries.clear();
        self.size = 0;
        self.complete = false;
    }

    /// Decodes one whole header block, appending kept fields to `head` (names and values
    /// in `head.buf`, spans in `head.headers`, pseudo-header fields included).
    pub(crate) fn decode(&mut self, block: &[u8], head: &mut Head, limits: Limits) -> BlockReport {
        let mut report = BlockReport::default();
        let mut at = 0;
        while at < block.len() {
            match self.field(block, at, head, limits, &mut report) {
                Ok(next) => at = next,
                Err(e) => {
                    report.error = Some(e);
                    self.lose();
                    break;
                }
            }
        }
        report
    }

    /// Decodes the representation at `at`; returns where the next one starts.
    fn field(
        &mut self,
        block: &[u8],
        at: usize,
        head: &mut Head,
        limits: Limits,
        report: &mut BlockReport,
    ) -> Result<usize, HpackError> {
        let first = *block.get(at).ok_or(HpackError::Truncated)?;
        if first & 0x80 != 0 {
            // Indexed field.
            let (index, next) = integer(block, at, 7)?;
            match self.lookup(index)? {
                Lookup::Known(name, value) => keep(head, name, value, limits, report),
                Lookup::NameUnknown(value) => {
                    report.list_size += (value.len() + ENTRY_OVERHEAD) as u64;
                    report.unknown_fields += 1;
                }
                Lookup::Unknown => report.unknown_fields += 1,
            }
            return Ok(next);
        }
        if first & 0xe0 == 0x20 {
            // Dynamic table size update.
            let (size, next) = integer(block, at, 5)?;
            self.resize(size as usize);
            return Ok(next);
        }
        // A literal: with incremental indexing (01), without (0000) or never indexed (0001).
        let (prefix, indexing) = if first & 0xc0 == 0x40 {
            (6, true)
        } else {
            (4, false)
        };
        let (name_index, mut next) = integer(block, at, prefix)?;
        // The name: from the tables, or a literal decoded into the head's buffer.
        let name_start = head.buf.len();
        let mut name_known = true;
        if name_index == 0 {
            next = string(block, next, &mut head.buf)?;
        } else {
            match self.lookup(name_index)? {
                Lookup::Known(name, _) => head.buf.extend_from_slice(name),
                Lookup::NameUnknown(_) | Lookup::Unknown => name_known = false,
            }
        }
        let value_start = head.buf.len();
        next = string(block, next, &mut head.buf)?;
        let name = Span::new(name_start, value_start - name_start);
        let value = Span::new(value_start, head.buf.len() - value_start);
        if indexing {
            let entry = Entry {
                name: name_known.then(|| head.get(name).into()),
                value: head.get(value).into(),
            };
            self.insert(entry);
        }
        if name_known {
            keep_span(head, name, value, limits, report);
        } else {
            report.unknown_fields += 1;
            report.list_size += (value.len as usize + ENTRY_OVERHEAD) as u64;
            head.buf.truncate(name_start);
        }
        Ok(next)
    }

    /// The entry at `index` (1-based over the static then the dynamic table).
    fn lookup(&self, index: u32) -> Result<Lookup<'_>, HpackError> {
        let i = index as usize;
        if i == 0 {
            return Err(HpackError::BadIndex);
        }
        if let Some(&(name, value)) = STATIC.get(i - 1) {
            return Ok(Lookup::Known(name, value));
        }
        match self.entries.get(i - 1 - STATIC.len()) {
            Some(Entry {
                name: Some(name),
                value,
            }) => Ok(Lookup::Known(name, value)),
            Some(Entry { name: None, value }) => Ok(Lookup::NameUnknown(value)),
            None if self.complete => Err(HpackError::BadIndex),
            None => Ok(Lookup::Unknown),
        }
    }

    fn insert(&mut self, entry: Entry) {
        let size = entry.size();
        self.entries.push_front(entry);
        self.size += size;
        self.evict();
    }

    /// A size update from the sender: entries past the new limit are gone; a limit of
    /// zero empties the sender's table, so this one is complete again.
    fn resize(&mut self, max_size: usize) {
        self.max_size = max_size;
        self.evict();
        if max_size == 0 {
            self.complete = true;
        }
    }

    /// Evicts the oldest entries while the table is over the sender's limit (as the
    /// sender does) or over this decoder's own cap (then the table is no longer complete).
    fn evict(&mut self) {
        while self.size > self.max_size.min(self.cap) {
            if self.size <= self.max_size {
                // The sender keeps this entry; this decoder cannot.
                self.complete = false;
            }
            let Some(old) = self.entries.pop_back() else {
                self.size = 0;
                break;
            };
            self.size = self.size.saturating_sub(old.size());
        }
    }
}

enum Lookup<'a> {
    Known(&'a [u8], &'a [u8]),
    NameUnknown(&'a [u8]),
    Unknown,
}

/// Keeps a field decoded from the tables, within the limits (checked before copying, so
/// a block of one-byte references to a large entry costs no copies past the limit).
fn keep(head: &mut Head, name: &[u8], value: &[u8], limits: Limits, report: &mut BlockReport) {
    if head.headers.len() >= limits.max_fields {
        report.list_size += (name.len() + value.len() + ENTRY_OVERHEAD) as u64;
        report.fields_dropped += 1;
        return;
    }
    if head.buf.len() + name.len() + value.len() > limits.max_list_bytes {
        report.list_size += (name.len() + value.len() + ENTRY_OVERHEAD) as u64;
        report.list_too_large = true;
        return;
    }
    let name_start = head.buf.len();
    head.buf.extend_from_slice(name);
    head.buf.extend_from_slice(value);
    let n = Span::new(name_start, name.len());
    let v = Span::new(name_start + name.len(), value.len());
    keep_span(head, n, v, limits, report);
}

/// Keeps a field whose bytes end `head.buf`, within the limits (else gives them back).
fn keep_span(head: &mut Head, name: Span, value: Span, limits: Limits, report: &mut BlockReport) {
    let bytes = name.len as usize + value.len as usize;
    report.list_size += (bytes + ENTRY_OVERHEAD) as u64;
    if head.headers.len() >= limits.max_fields {
        report.fields_dropped += 1;
    } else if head.buf.len() > limits.max_list_bytes {
        report.list_too_large = true;
    } else {
        head.headers.push((name, value));
        return;
    }
    head.buf.truncate(name.start as usize);
}

/// Decodes the integer whose prefix is the low `prefix` bits of `block[at]`; returns it
/// and where the next byte is.
fn integer(block: &[u8], at: usize, prefix: u8) -> Result<(u32, usize), HpackError> {
    let max = (1u32 << prefix) - 1;
    let first = u32::from(*block.get(at).ok_or(HpackError::Truncated)?) & max;
    if first < max {
        return Ok((first, at + 1));
    }
    let mut value = u64::from(max);
    let mut shift = 0u32;
    let mut i = at + 1;
    loop {
        let b = *block.get(i).ok_or(HpackError::Truncated)?;
        i += 1;
        value += u64::from(b & 0x7f) << shift;
        if value > u64::from(u32::MAX) {
            return Err(HpackError::IntegerOverflow);
        }
        if b & 0x80 == 0 {
            return Ok((value as u32, i));
        }
        shift += 7;
        if shift > 28 {
            return Err(HpackError::IntegerOverflow);
        }
    }
}

/// Decodes the string at `at` onto `out`; returns where the next byte is.
fn string(block: &[u8], at: usize, out: &mut Vec<u8>) -> Result<usize, HpackError> {
    let huffman = block.get(at).ok_or(HpackError::Truncated)? & 0x80 != 0;
    let (len, start) = integer(block, at, 7)?;
    let end = start
        .checked_add(len as usize)
        .filter(|&e| e <= block.len())
        .ok_or(HpackError::Truncated)?;
    let raw = block.get(start..end).ok_or(HpackError::Truncated)?;
    if huffman {
        huffman::decode(raw, out).map_err(|_| HpackError::Huffman)?;
    } else {
        out.extend_from_slice(raw);
    }
    Ok(end)
}

/// Encoding for tests: literal fields without Huffman, added to the table
/// when `index` is set.
#[cfg(test)]
pub(crate) fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8], index: bool) {
    encode_integer(
        out,
        0,
        if index { 0x40 } else { 0 },
        if index { 6 } else { 4 },
    );
    encode_integer(out, name.len() as u32, 0, 7);
    out.extend_from_slice(name);
    encode_integer(out, value.len() as u32, 0, 7);
    out.extend_from_slice(value);
}

/// Appends `value` as an HPACK integer with `prefix` bits, the other bits of the first
/// byte from `flags`.
#[cfg(test)]
pub(crate) fn encode_integer(out: &mut Vec<u8>, value: u32, flags: u8, prefix: u8) {
    let max = (1u32 << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: Limits = Limits {
        max_fields: 128,
        max_list_bytes: 65536,
    };

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn fields(head: &Head) -> Vec<(String, String)> {
        head.iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    fn decode(t: &mut Table, block: &[u8]) -> (Vec<(String, String)>, BlockReport) {
        let mut head = Head::default();
        let r = t.decode(block, &mut head, LIMITS);
        (fields(&head), r)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn rfc7541_request_examples_with_huffman() {
        // RFC 7541 C.4: three requests on one connection.
        let mut t = Table::new(65536, true);
        let (f, r) = decode(&mut t, &hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"));
        assert_eq!(
            r,
            BlockReport {
                list_size: f.iter().map(|(n, v)| (n.len() + v.len() + 32) as u64).sum(),
                ..Default::default()
            }
        );
        assert_eq!(
            f,
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com")
            ])
        );
        let (f, _) = decode(&mut t, &hex("8286 84be 5886 a8eb 1064 9cbf"));
        assert_eq!(
            f,
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache")
            ])
        );
        let (f, _) = decode(
            &mut t,
            &hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"),
        );
        assert_eq!(
            f,
            pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value")
            ])
        );
        assert_eq!(t.bytes(), 164);
    }

    #[test]
    fn rfc7541_response_examples_evict() {
        // RFC 7541 C.5 (no Huffman) with a 256-byte table: entries are evicted.
        let mut t = Table::new(65536, true);
        t.resize(256);
        let b1 = hex("4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d");
        let (f, _) = decode(&mut t, &b1);
        assert_eq!(f[0], (":status".into(), "302".into()));
        assert_eq!(t.bytes(), 222);
        let (f, _) = decode(&mut t, &hex("4803 3330 37c1 c0bf"));
        assert_eq!(
            f,
            pairs(&[
                (":status", "307"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("location", "https://www.example.com")
            ])
        );
        assert_eq!(t.bytes(), 222);
        assert!(t.is_complete());
    }

    #[test]
    fn a_table_joined_midway_resolves_only_what_it_saw() {
        let mut t = Table::new(65536, false);
        // Index 62 (0xbe) names an entry added before the join: left out, counted.
        let (f, r) = decode(&mut t, &hex("82 be 84"));
        assert_eq!(f, pairs(&[(":method", "GET"), (":path", "/")]));
        assert_eq!(r.unknown_fields, 1);
        assert_eq!(r.error, None);
        // A new entry is learned at index 62; 63 is still unknown.
        let mut block = Vec::new();
        encode_literal(&mut block, b"x-id", b"7", true);
        block.extend_from_slice(&[0xbe, 0xbf]);
        let (f, r) = decode(&mut t, &block);
        assert_eq!(f, pairs(&[("x-id", "7"), ("x-id", "7")]));
        assert_eq!(r.unknown_fields, 1);
        // A literal whose name is an unknown entry: the value is learned, the name is not.
        let mut block = vec![0x40 | 0x3f, 0x02]; // name index 63+2 = 65
        block.extend_from_slice(&[0x01, b'v']);
        block.extend_from_slice(&[0xbe]);
        let (f, r) = decode(&mut t, &block);
        assert!(f.is_empty());
        assert_eq!(r.unknown_fields, 2);
        // A size update to zero empties the sender's table: complete again.
        let (f, r) = decode(&mut t, &[0x20, 0x82]);
        assert_eq!((f.len(), r.unknown_fields), (1, 0));
        assert!(t.is_complete());
        assert_eq!(decode(&mut t, &[0xbe]).1.error, Some(HpackError::BadIndex));
    }

    #[test]
    fn bad_blocks_stop_and_lose_the_table() {
        let cases: [(&[u8], HpackError); 6] = [
            (&[0x80], HpackError::BadIndex),
            (&[0xff], HpackError::Truncated),
            (
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
                HpackError::IntegerOverflow,
            ),
            (&[0x40, 0x05, b'a'], HpackError::Truncated),
            (
                &[0x40, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
                HpackError::IntegerOverflow,
            ),
            (&[0x40, 0x81, 0x00, 0x00], HpackError::Huffman),
        ];
        for (block, want) in cases {
            let mut t = Table::new(65536, true);
            let mut good = Vec::new();
            encode_literal(&mut good, b"a", b"b", true);
            decode(&mut t, &good);
            let (_, r) = decode(&mut t, block);
            assert_eq!(r.error, Some(want), "{block:?}");
            assert!(!t.is_complete());
            assert_eq!(t.bytes(), 0);
        }
    }

    #[test]
    fn limits_drop_fields_but_keep_the_table_in_step() {
        let mut t = Table::new(65536, true);
        let mut block = Vec::new();
        for i in 0..5 {
            encode_literal(&mut block, format!("h{i}").as_bytes(), b"v", true);
        }
        let mut head = Head::default();
        let r = t.decode(
            &block,
            &mut head,
            Limits {
                max_fields: 2,
                max_list_bytes: 1000,
            },
        );
        assert_eq!((head.headers.len(), r.fields_dropped), (2, 3));
        let mut head = Head::default();
        let r = t.decode(&[0xbe], &mut head, LIMITS);
        assert_eq!(fields(&head), pairs(&[("h4", "v")]));
        assert_eq!(r.error, None);
        let mut head = Head::default();
        let big = vec![b'x'; 300];
        let mut block = Vec::new();
        encode_literal(&mut block, b"big", &big, false);
        let r = t.decode(
            &block,
            &mut head,
            Limits {
                max_fields: 10,
                max_list_bytes: 100,
            },
        );
        assert!(r.list_too_large);
        assert!(head.headers.is_empty() && head.buf.is_empty());
    }

    #[test]
    fn the_cap_evicts_and_makes_the_table_incomplete() {
        let mut t = Table::new(100, true);
        let mut block = Vec::new();
        encode_literal(&mut block, b"n1", &[b'a'; 40], true);
        encode_literal(&mut block, b"n2", &[b'b'; 40], true);
        decode(&mut t, &block);
        assert!(!t.is_complete());
        assert_eq!(decode(&mut t, &[0xbf]).1.unknown_fields, 1);
        assert_eq!(decode(&mut t, &[0xbe]).0.len(), 1);
    }

    /// Header lists of a few names and random values, as clients reuse them.
    fn header_lists() -> impl Strategy<Value = Vec<Vec<(String, String)>>> {
        let name = prop::sample::select(vec![
            ":method",
            ":path",
            ":authority",
            "user-agent",
            "accept",
            "cookie",
            "x-request-id",
            "content-type",
            "authorization",
            "x-trace",
        ]);
        let field = (name, "[ -~]{0,40}").prop_map(|(n, v)| (n.to_string(), v));
        prop::collection::vec(prop::collection::vec(field, 0..12), 1..8)
    }

    proptest! {
        /// Another implementation's encoder (httlib-hpack: Huffman, incremental indexing,
        /// indexed fields, evictions in a small table) against this decoder, block after
        /// block on one connection.
        #[test]
        fn blocks_from_another_encoder_decode_exactly(lists in header_lists(), size in 64u32..1024) {
            use httlib_hpack::Encoder;
            let mut enc = Encoder::with_dynamic_size(size);
            let mut t = Table::new(65536, true);
            let flags = Encoder::HUFFMAN_NAME | Encoder::HUFFMAN_VALUE | Encoder::WITH_INDEXING | Encoder::BEST_FORMAT;
            let mut first = true;
            for list in lists {
                let mut block = Vec::new();
                if first {
                    // The encoder's table limit, announced as a size update.
                    encode_integer(&mut block, size, 0x20, 5);
                    first = false;
                }
                for (n, v) in &list {
                    enc.encode((n.as_bytes().to_vec(), v.as_bytes().to_vec(), flags), &mut block).unwrap();
                }
                let (got, r) = decode(&mut t, &block);
                prop_assert_eq!(r.error, None);
                prop_assert_eq!(r.unknown_fields, 0);
                prop_assert_eq!(got, list);
            }
        }

        #[test]
        fn garbage_never_panics_and_stays_bounded(block in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut t = Table::new(4096, false);
            let mut head = Head::default();
            let r = t.decode(&block, &mut head, LIMITS);
            prop_assert!(t.bytes() <= 4096);
            prop_assert!(head.buf.len() <= LIMITS.max_list_bytes + block.len() * 2);
            let _ = r;
        }
    }
}
