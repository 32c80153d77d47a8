//! Message heads: finding where a head ends, and parsing it with httparse into the owned
//! [`Head`] form plus the anomalies it shows.

use apitap_core::{Anomalies, Anomaly, Head, HttpVersion, Span};
use std::mem::MaybeUninit;

/// Header fields httparse is given room for on the stack; a head with more is parsed again
/// with room on the heap for as many as it can hold.
const STACK_HEADERS: usize = 256;

/// The shortest header line (`a:` and a bare LF).
const MIN_FIELD_LINE: usize = 3;

/// Offset just past the blank line that ends a head (`\r\n\r\n`, `\n\n` or `\n\r\n`),
/// searching from `from`.
pub(crate) fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut pos = from.min(buf.len());
    while let Some(i) = memchr::memchr(b'\n', buf.get(pos..)?) {
        let nl = pos + i;
        match (buf.get(nl + 1), buf.get(nl + 2)) {
            (Some(b'\n'), _) => return Some(nl + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(nl + 3),
            _ => {}
        }
        pos = nl + 1;
    }
    None
}

/// Where an HTTP/0.9 simple request (`METHOD SP target`, no version, no headers) ends in
/// `buf`: right after its line end. None when the first line is not one, or not whole.
pub(crate) fn simple_request_end(buf: &[u8]) -> Option<usize> {
    let nl = memchr::memchr(b'\n', buf)?;
    let line = buf.get(..nl)?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let sp = memchr::memchr(b' ', line)?;
    let (method, target) = (line.get(..sp)?, line.get(sp + 1..)?);
    let method_ok = (1..=16).contains(&method.len()) && method.iter().all(u8::is_ascii_uppercase);
    let target_ok = target.first() == Some(&b'/') && target.iter().all(|&b| b > b' ' && b < 0x7f);
    (method_ok && target_ok).then_some(nl + 1)
}

/// An HTTP/0.9 simple request (`raw` as [`simple_request_end`] delimited it, or a
/// version-less request line with lines after it up to a blank line: servers answer both
/// the HTTP/0.9 way; `Name: value` lines are kept as fields, the first `max_headers`).
pub(crate) fn parse_simple_request(
    raw: &[u8],
    max_headers: usize,
) -> Result<RequestHead, HeadError> {
    let end = simple_request_end(raw).ok_or(HeadError)?;
    let line = raw.get(..end).ok_or(HeadError)?;
    let sp = memchr::memchr(b' ', line).ok_or(HeadError)?;
    let text_end =
        line.len() - 1 - usize::from(line.get(line.len().saturating_sub(2)) == Some(&b'\r'));
    let mut anomalies = Anomalies::default();
    anomalies.insert(Anomaly::Http09);
    let mut headers = Vec::new();
    let mut pos = end;
    while pos < raw.len() {
        let nl =
            memchr::memchr(b'\n', raw.get(pos..).unwrap_or(&[])).map_or(raw.len(), |i| pos + i);
        let mut stop = nl;
        if stop > pos && raw.get(stop - 1) == Some(&b'\r') {
            stop -= 1;
        }
        if stop == pos {
            break;
        }
        let field = raw.get(pos..stop).unwrap_or(&[]);
        match memchr::memchr(b':', field) {
            Some(c) if c > 0 => {
                let value = field.get(c + 1..).unwrap_or(&[]);
                let lead = value.iter().take_while(|b| b.is_ascii_whitespace()).count();
                let trimmed = value.get(lead..).unwrap_or(&[]).trim_ascii_end();
                if headers.len() < max_headers {
                    headers.push((
                        Span::new(pos, c),
                        Span::new(pos + c + 1 + lead, trimmed.len()),
                    ));
                } else {
                    anomalies.insert(Anomaly::TooManyHeaders);
                }
            }
            _ => anomalies.insert(Anomaly::InvalidHeader),
        }
        pos = nl + 1;
    }
    Ok(RequestHead {
        head: Head {
            buf: raw.to_vec(),
            headers,
        },
        method: Span::new(0, sp),
        target: Span::new(sp + 1, text_end.saturating_sub(sp + 1)),
        version: HttpVersion::Http09,
        anomalies,
        framing: (Framing::None, Anomalies::default()),
    })
}

/// The answer to an HTTP/0.9 request: no status line, a body until the connection ends.
pub(crate) fn simple_response() -> ResponseHead {
    let mut anomalies = Anomalies::default();
    anomalies.insert(Anomaly::Http09);
    ResponseHead {
        head: Head::default(),
        status: 0,
        reason: Span::default(),
        version: HttpVersion::Http09,
        anomalies,
        framing: (Framing::UntilClose, Anomalies::default()),
    }
}

/// Where the search for a head end may resume after `len` bytes were searched.
pub(crate) fn resume_from(len: usize) -> usize {
    len.saturating_sub(3)
}

/// A head made of just `line` (a start line without its line end): what is parsed of a
/// head too large to keep.
pub(crate) fn start_line_only(line: &[u8]) -> Vec<u8> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut raw = Vec::with_capacity(line.len() + 4);
    raw.extend_from_slice(line);
    raw.extend_from_slice(b"\r\n\r\n");
    raw
}

/// A parsed request head.
pub(crate) struct RequestHead {
    pub head: Head,
    pub method: Span,
    pub target: Span,
    pub version: HttpVersion,
    pub anomalies: Anomalies,
    /// How the body is delimited, decided on every field (also those past `max_headers`,
    /// which the head does not keep: a length hidden there must not desync the parser).
    pub framing: (Framing, Anomalies),
}

/// A parsed response head.
pub(crate) struct ResponseHead {
    pub head: Head,
    pub status: u16,
    pub reason: Span,
    pub version: HttpVersion,
    pub anomalies: Anomalies,
    /// See [`RequestHead::framing`].
    pub framing: (Framing, Anomalies),
}

/// Why a head could not be parsed: not a valid start line or head.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HeadError;

fn offset(base: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).saturating_sub(base.as_ptr() as usize)
}

fn span_of(base: &[u8], part: &[u8]) -> Span {
    Span::new(offset(base, part), part.len())
}

/// Anomalies visible in the raw head bytes: bare LF line ends, and header lines that
/// httparse had to skip (`lines` counted vs `parsed` fields). In a request an obs-fold
/// continuation line is invalid too (RFC 9112 5.2: a server rejects it or replaces it; httparse
/// drops it), so it is flagged `invalid_header`; responses may fold (the value is kept).
/// Walks the head line by line with memchr rather than byte by byte.
fn raw_anomalies(raw: &[u8], parsed_fields: usize, is_request: bool, anomalies: &mut Anomalies) {
    let mut lines = 0usize;
    let mut folded = 0usize;
    let mut rest = raw;
    loop {
        let nl = memchr::memchr(b'\n', rest);
        let line = rest.get(..nl.unwrap_or(rest.len())).unwrap_or(&[]);
        // Every line after the start line is a field, a continuation or the blank line.
        if lines > 0 {
            if matches!(line.first(), Some(b' ' | b'\t')) {
                folded += 1;
            } else if let Some(colon) = memchr::memchr(b':', line) {
                let before = colon.checked_sub(1).and_then(|i| line.get(i));
                if matches!(before, Some(b' ' | b'\t')) {
                    anomalies.insert(Anomaly::WhitespaceBeforeColon);
                }
            }
        }
        let Some(nl) = nl else { break };
        // A LF is bare unless the byte before it (in this line) is a CR.
        if line.last() != Some(&b'\r') {
            anomalies.insert(Anomaly::BareLf);
        }
        lines += 1;
        rest = rest.get(nl + 1..).unwrap_or(&[]);
    }
    // Lines: start line + fields + blank line. Folded continuation lines are not fields.
    let field_lines = lines.saturating_sub(2).saturating_sub(folded);
    if field_lines != parsed_fields || (is_request && folded > 0) {
        anomalies.insert(Anomaly::InvalidHeader);
    }
}

fn version(v: Option<u8>) -> HttpVersion {
    match v {
        Some(0) => HttpVersion::Http10,
        _ => HttpVersion::Http11,
    }
}

/// Room for the headers of `raw` when the stack's is not enough: as many as lines fit.
fn heap_room<'h>(raw: &[u8]) -> Vec<MaybeUninit<httparse::Header<'h>>> {
    let mut room = Vec::new();
    room.resize_with(raw.len() / MIN_FIELD_LINE + 1, MaybeUninit::uninit);
    room
}

/// The body framing a head's fields give (see [`body_framing`]).
fn framing_of(headers: &[httparse::Header<'_>], is_request: bool) -> (Framing, Anomalies) {
    let mut anomalies = Anomalies::default();
    let fields = headers.iter().map(|h| (h.name.as_bytes(), h.value));
    (body_framing(fields, is_request, &mut anomalies), anomalies)
}

/// The first `max` fields of a head (more: `too_many_headers`), as spans into `raw`.
fn collect_headers(
    raw: &[u8],
    headers: &[httparse::Header<'_>],
    max: usize,
    anomalies: &mut Anomalies,
) -> Vec<(Span, Span)> {
    let fields: Vec<(Span, Span)> = headers
        .iter()
        .filter(|h| !h.name.is_empty())
        .map(|h| (span_of(raw, h.name.as_bytes()), span_of(raw, h.value)))
        .collect();
    if fields.len() > max {
        anomalies.insert(Anomaly::TooManyHeaders);
        fields.into_iter().take(max).collect()
    } else {
        fields
    }
}

/// Parses a complete request head (`raw` ends with the blank line). Any number of fields
/// parses; the head keeps the first `max_headers`.
pub(crate) fn parse_request(raw: &[u8], max_headers: usize) -> Result<RequestHead, HeadError> {
    // Uninitialised storage: initialising 256 headers (8 KiB) cost more than the parse.
    let mut stack = [const { MaybeUninit::uninit() }; STACK_HEADERS];
    let mut heap = Vec::new();
    let mut room: &mut [MaybeUninit<httparse::Header<'_>>] = &mut stack;
    let mut cfg = httparse::ParserConfig::default();
    cfg.ignore_invalid_headers_in_requests(true);
    cfg.allow_multiple_spaces_in_request_line_delimiters(true);
    let req = loop {
        let mut req = httparse::Request::new(&mut []);
        match cfg.parse_request_with_uninit_headers(&mut req, raw, room) {
            Ok(httparse::Status::Complete(_)) => break req,
            Err(httparse::Error::TooManyHeaders) if heap.is_empty() => {
                heap = heap_room(raw);
                room = &mut heap;
            }
            Ok(httparse::Status::Partial) | Err(_) => return Err(HeadError),
        }
    };
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return Err(HeadError);
    };
    let mut anomalies = Anomalies::default();
    let headers = collect_headers(raw, req.headers, max_headers, &mut anomalies);
    raw_anomalies(raw, req.headers.len(), true, &mut anomalies);
    Ok(RequestHead {
        method: span_of(raw, method.as_bytes()),
        target: span_of(raw, path.as_bytes()),
        version: version(req.version),
        framing: framing_of(req.headers, true),
        head: Head {
            buf: raw.to_vec(),
            headers,
        },
        anomalies,
    })
}

/// Parses a complete response head (`raw` ends with the blank line). Any number of fields
/// parses; the head keeps the first `max_headers`.
pub(crate) fn parse_response(raw: &[u8], max_headers: usize) -> Result<ResponseHead, HeadError> {
    let mut stack = [const { MaybeUninit::uninit() }; STACK_HEADERS];
    let mut heap = Vec::new();
    let mut room: &mut [MaybeUninit<httparse::Header<'_>>] = &mut stack;
    let mut cfg = httparse::ParserConfig::default();
    cfg.ignore_invalid_headers_in_responses(true);
    cfg.allow_obsolete_multiline_headers_in_responses(true);
    cfg.allow_spaces_after_header_name_in_responses(true);
    cfg.allow_multiple_spaces_in_response_status_delimiters(true);
    let resp = loop {
        let mut resp = httparse::Response::new(&mut []);
        match cfg.parse_response_with_uninit_headers(&mut resp, raw, room) {
            Ok(httparse::Status::Complete(_)) => break resp,
            Err(httparse::Error::TooManyHeaders) if heap.is_empty() => {
                heap = heap_room(raw);
                room = &mut heap;
            }
            Ok(httparse::Status::Partial) | Err(_) => return Err(HeadError),
        }
    };
    let Some(status) = resp.code else {
        return Err(HeadError);
    };
    let mut anomalies = Anomalies::default();
    let headers = collect_headers(raw, resp.headers, max_headers, &mut anomalies);
    raw_anomalies(raw, resp.headers.len(), false, &mut anomalies);
    let reason = resp
        .reason
        .map(|r| span_of(raw, r.as_bytes()))
        .unwrap_or_default();
    Ok(ResponseHead {
        status,
        reason,
        version: version(resp.version),
        framing: framing_of(resp.headers, false),
        head: Head {
            buf: raw.to_vec(),
            headers,
        },
        anomalies,
    })
}

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the sender closes the connection (responses only).
    UntilClose,
}

/// Body framing from Transfer-Encoding / Content-Length (RFC 9112 section 6.3) among the
/// (name, value) `fields`, with the smuggling-relevant anomalies.
fn body_framing<'f>(
    fields: impl Iterator<Item = (&'f [u8], &'f [u8])>,
    is_request: bool,
    anomalies: &mut Anomalies,
) -> Framing {
    let mut te_seen = false;
    let mut te_last_chunked = false;
    let mut lengths: Vec<Option<u64>> = Vec::new();
    for (name, value) in fields {
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te_seen = true;
            // The last coding listed (across all TE fields) decides.
            for coding in value.split(|&b| b == b',') {
                let c = coding.trim_ascii();
                if !c.is_empty() {
                    te_last_chunked = c.eq_ignore_ascii_case(b"chunked");
                }
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            for part in value.split(|&b| b == b',') {
                let p = part.trim_ascii();
                let parsed = if !p.is_empty() && p.len() <= 19 && p.iter().all(u8::is_ascii_digit) {
                    std::str::from_utf8(p)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                } else {
                    None
                };
                lengths.push(parsed);
            }
        }
    }
    if te_seen {
        if !lengths.is_empty() {
            anomalies.insert(Anomaly::ContentLengthWithTransferEncoding);
        }
        if te_last_chunked {
            return Framing::Chunked;
        }
        anomalies.insert(Anomaly::InvalidTransferEncoding);
        return if is_request {
            Framing::None
        } else {
            Framing::UntilClose
        };
    }
    if lengths.is_empty() {
        return if is_request {
            Framing::None
        } else {
            Framing::UntilClose
        };
    }
    let first = lengths.first().copied().flatten();
    let consistent = first.is_some() && lengths.iter().all(|l| *l == first);
    if lengths.len() > 1 || !consistent {
        anomalies.insert(Anomaly::InvalidContentLength);
    }
    match (consistent, first) {
        (true, Some(n)) => Framing::Length(n),
        _ if is_request => Framing::None,
        _ => Framing::UntilClose,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http09_simple_requests() {
        assert_eq!(simple_request_end(b"GET /zeek.html\n"), Some(15));
        assert_eq!(simple_request_end(b"GET /a\r\nmore"), Some(8));
        for not in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"GET \n",
            b"get /a\n",
            b"GET a\n",
            b"GET /a",
        ] {
            assert_eq!(
                simple_request_end(not),
                None,
                "{:?}",
                String::from_utf8_lossy(not)
            );
        }
        let raw = b"GET /\nFakeHeader\nHost: localhost\nUser-Agent:  myscript \n\n";
        let r = parse_simple_request(raw, 8).unwrap();
        assert_eq!(r.version, HttpVersion::Http09);
        assert_eq!(
            (r.head.get(r.method), r.head.get(r.target)),
            (&b"GET"[..], &b"/"[..])
        );
        assert_eq!(r.head.header("user-agent"), Some(&b"myscript"[..]));
        assert!(r.anomalies.contains(Anomaly::Http09));
        assert!(r.anomalies.contains(Anomaly::InvalidHeader));
        assert_eq!(r.framing.0, Framing::None);
        assert_eq!(simple_response().framing.0, Framing::UntilClose);
    }

    #[test]
    fn head_end_variants() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody", 0), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\nbody", 0), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\nA: b\n\r\n", 0), Some(22));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n", 0), None);
        assert_eq!(find_head_end(b"", 0), None);
        assert_eq!(find_head_end(b"ab", 10), None);
    }

    #[test]
    fn request_spans_and_version() {
        let r = parse_request(
            b"POST /a?b HTTP/1.0\r\nHost: x\r\nContent-Length: 3\r\n\r\n",
            128,
        )
        .unwrap();
        assert_eq!(r.head.get(r.method), b"POST");
        assert_eq!(r.head.get(r.target), b"/a?b");
        assert_eq!(r.version, HttpVersion::Http10);
        assert_eq!(r.head.header("host"), Some(&b"x"[..]));
        assert!(r.anomalies.is_empty());
    }

    #[test]
    fn bare_lf_and_invalid_header_are_flagged() {
        let r = parse_request(b"GET / HTTP/1.1\nHost: x\n\n", 128).unwrap();
        assert!(r.anomalies.contains(Anomaly::BareLf));
        let r = parse_request(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", 128).unwrap();
        assert!(
            r.anomalies.contains(Anomaly::InvalidHeader),
            "{:?}",
            r.anomalies
        );
        assert_eq!(r.head.headers.len(), 1);
    }

    #[test]
    fn obs_fold_is_invalid_in_requests_and_kept_in_responses() {
        let r = parse_request(
            b"GET / HTTP/1.1\r\nHost: x\r\nX-F: a\r\n  b\r\nAccept: */*\r\n\r\n",
            64,
        )
        .unwrap();
        assert!(
            r.anomalies.contains(Anomaly::InvalidHeader),
            "{:?}",
            r.anomalies
        );
        assert_eq!(r.head.header("accept"), Some(&b"*/*"[..]));
        let r =
            parse_response(b"HTTP/1.1 200 OK\r\nX-F: a\r\n  b\r\nServer: s\r\n\r\n", 64).unwrap();
        assert!(r.anomalies.is_empty(), "{:?}", r.anomalies);
        assert_eq!(r.head.header("server"), Some(&b"s"[..]));
    }

    #[test]
    fn whitespace_before_colon_is_flagged_only_in_field_names() {
        let r = parse_request(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n",
            64,
        )
        .unwrap();
        assert!(r.anomalies.contains(Anomaly::WhitespaceBeforeColon));
        let r = parse_response(b"HTTP/1.1 200 OK\r\nServer\t: x\r\n\r\n", 64).unwrap();
        assert!(r.anomalies.contains(Anomaly::WhitespaceBeforeColon));
        // A space before a colon in a value, or in a folded continuation, is fine.
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nX-A: b : c\r\nX-B: d\r\n  e : f\r\n\r\n",
            64,
        )
        .unwrap();
        assert!(!r.anomalies.contains(Anomaly::WhitespaceBeforeColon));
    }

    #[test]
    fn header_limit_keeps_first_fields() {
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..10 {
            raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        let r = parse_request(&raw, 4).unwrap();
        assert_eq!(r.head.headers.len(), 4);
        assert!(r.anomalies.contains(Anomaly::TooManyHeaders));
        let mut huge = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..300 {
            huge.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        // Past the stack's room the head is parsed again with room on the heap; a length
        // after the kept fields still frames the body.
        huge.extend_from_slice(b"Content-Length: 5\r\n\r\n");
        let r = parse_request(&huge, 128).unwrap();
        assert_eq!(r.head.headers.len(), 128);
        assert!(r.anomalies.contains(Anomaly::TooManyHeaders));
        assert!(!r.anomalies.contains(Anomaly::InvalidHeader));
        assert_eq!(r.framing.0, Framing::Length(5));
        let mut resp = b"HTTP/1.1 200 OK\r\n".to_vec();
        resp.extend(std::iter::repeat_n(&b"a:\n"[..], 20_000).flatten());
        resp.extend_from_slice(b"\n");
        let r = parse_response(&resp, 128).unwrap();
        assert_eq!((r.status, r.head.headers.len()), (200, 128));
    }

    #[test]
    fn invalid_start_lines() {
        assert!(parse_request(b"GET /\r\n\r\n", 128).is_err());
        assert!(parse_request(b"\x16\x03\x01\x00\r\n\r\n", 128).is_err());
        assert!(parse_response(b"HTTP/1.1 abc OK\r\n\r\n", 128).is_err());
    }

    fn framing(raw: &[u8], req: bool) -> (Framing, Anomalies) {
        if req {
            parse_request(raw, 128).unwrap().framing
        } else {
            parse_response(raw, 128).unwrap().framing
        }
    }

    #[test]
    fn framing_rules() {
        assert_eq!(framing(b"GET / HTTP/1.1\r\n\r\n", true).0, Framing::None);
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\n\r\n", false).0,
            Framing::UntilClose
        );
        assert_eq!(
            framing(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", true).0,
            Framing::Length(5)
        );
        let (f, a) = framing(
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
        );
        assert_eq!(f, Framing::Chunked);
        assert!(a.contains(Anomaly::ContentLengthWithTransferEncoding));
        let (f, a) = framing(
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            true,
        );
        assert_eq!(f, Framing::None);
        assert!(a.contains(Anomaly::InvalidContentLength));
        let (f, a) = framing(
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            true,
        );
        assert_eq!(f, Framing::Length(5));
        assert!(a.contains(Anomaly::InvalidContentLength));
        let (f, a) = framing(
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            false,
        );
        assert_eq!(f, Framing::UntilClose);
        assert!(a.contains(Anomaly::InvalidContentLength));
        let (f, a) = framing(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            true,
        );
        assert_eq!(f, Framing::None);
        assert!(a.contains(Anomaly::InvalidTransferEncoding));
        let (f, _) = framing(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false,
        );
        assert_eq!(f, Framing::Chunked);
    }

    /// The byte-by-byte scan `raw_anomalies` replaced, kept as the reference.
    fn raw_anomalies_bytewise(raw: &[u8], parsed: usize, is_request: bool) -> Anomalies {
        let mut anomalies = Anomalies::default();
        let (mut lines, mut prev, mut line_start, mut folded, mut in_name) = (0, 0u8, 0, 0, false);
        for (i, &b) in raw.iter().enumerate() {
            if b == b'\n' {
                if prev != b'\r' {
                    anomalies.insert(Anomaly::BareLf);
                }
                lines += 1;
                line_start = i + 1;
                in_name = true;
            } else if i == line_start && (b == b' ' || b == b'\t') && lines > 0 {
                folded += 1;
                in_name = false;
            } else if in_name && b == b':' {
                if prev == b' ' || prev == b'\t' {
                    anomalies.insert(Anomaly::WhitespaceBeforeColon);
                }
                in_name = false;
            }
            prev = b;
        }
        let field_lines = (lines as usize).saturating_sub(2).saturating_sub(folded);
        if field_lines != parsed || (is_request && folded > 0) {
            anomalies.insert(Anomaly::InvalidHeader);
        }
        anomalies
    }

    proptest::proptest! {
        /// The line-wise scan flags exactly what the byte-wise one did, on heads made of
        /// the bytes that matter (CR, LF, SP, HT, colon) and letters.
        #[test]
        fn raw_anomalies_match_the_bytewise_scan(
            raw in proptest::collection::vec(
                proptest::sample::select(&b"\r\n \t:aB"[..]), 0..64),
            parsed in 0usize..6,
            is_request: bool,
        ) {
            let mut fast = Anomalies::default();
            raw_anomalies(&raw, parsed, is_request, &mut fast);
            proptest::prop_assert_eq!(fast, raw_anomalies_bytewise(&raw, parsed, is_request));
        }
    }
}
