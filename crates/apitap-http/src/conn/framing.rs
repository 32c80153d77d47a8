//! Framing, per direction: where each message starts and ends. A start line and head,
//! then a body by Content-Length, by chunks (with trailers) or until close; after bytes
//! that cannot be HTTP, a resync at the next line that starts a message. What a parsed
//! head means for the transaction is the pairing's business (the parent module).

use super::{truncated_reason, Ctx, HttpConn};
use crate::head::{self, find_head_end, resume_from};
use crate::sniff::{looks_like_request, looks_like_response, Looks};
use apitap_core::{Anomalies, Anomaly, Direction, PacketRef, SortKey};

/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Expecting the first byte of a message.
    Start,
    /// Inside a head that has not ended yet.
    Head,
    /// Inside a body.
    Body(Body),
    /// Skipping to the next line that starts a message.
    Resync,
    /// The head in progress passed `max_head_bytes`: its start line was used, the rest of
    /// the head is skipped up to its blank line (the last bytes seen wait in `line`).
    SkipHead,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Body {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailer { bytes: usize },
    UntilClose,
}

/// Parser state of one direction.
#[derive(Debug)]
pub(super) struct Dir {
    pub(super) phase: Phase,
    pub(super) head_buf: Vec<u8>,
    pub(super) scan_from: usize,
    pub(super) line: Vec<u8>,
    /// Start of the message in progress.
    pub(super) start: PacketRef,
    /// Key of the request in progress (requests only).
    pub(super) key: Option<SortKey>,
    /// In resync: the next byte begins a line.
    pub(super) at_line_start: bool,
    /// The message start was guessed during resync from too few bytes.
    pub(super) tentative: bool,
    /// Anomalies for the next message of this direction.
    pub(super) carry: Anomalies,
    /// Anomalies of the message in progress (head not parsed yet).
    pub(super) current: Anomalies,
    pub(super) body_bytes: u64,
    /// Wire bytes of the message in progress (for responses, since the first interim).
    pub(super) msg_bytes: u64,
}

impl Default for Dir {
    fn default() -> Self {
        Dir {
            phase: Phase::Start,
            head_buf: Vec::new(),
            scan_from: 0,
            line: Vec::new(),
            start: PacketRef::default(),
            key: None,
            at_line_start: true,
            tentative: false,
            carry: Anomalies::default(),
            current: Anomalies::default(),
            body_bytes: 0,
            msg_bytes: 0,
        }
    }
}

/// A head buffer larger than this is given back once its head is parsed, so a connection
/// that once saw a large head does not hold its memory while idle.
const KEEP_HEAD_BUF: usize = 4096;

impl Dir {
    /// Empties the head buffer; gives its memory back when it grew large.
    pub(super) fn release_head_buf(&mut self) {
        if self.head_buf.capacity() > KEEP_HEAD_BUF {
            self.head_buf = Vec::new();
        } else {
            self.head_buf.clear();
        }
    }

    /// Memory the direction holds for a head or a line in progress.
    pub(super) fn held_bytes(&self) -> usize {
        self.head_buf.capacity() + self.line.capacity()
    }

    pub(super) fn in_message(&self) -> bool {
        matches!(self.phase, Phase::Head | Phase::Body(_))
    }
}

impl HttpConn {
    pub(super) fn looks(dir: Direction, data: &[u8]) -> Looks {
        match dir {
            Direction::ToServer => looks_like_request(data),
            Direction::ToClient => looks_like_response(data),
        }
    }

    /// Marks the direction out of sync: skip to the next message start, which is flagged
    /// with `why`.
    pub(super) fn lose_sync(&mut self, dir: Direction, why: Anomaly, cx: &mut Ctx<'_>) {
        self.dir_mut(dir).carry.insert(why);
        self.skip_to_next_message(dir, cx);
    }

    /// Skip to the next message start (bytes skipped on the way flag it `skipped_bytes`).
    pub(super) fn skip_to_next_message(&mut self, dir: Direction, cx: &mut Ctx<'_>) {
        cx.stats.resyncs += 1;
        let d = self.dir_mut(dir);
        d.phase = Phase::Resync;
        d.at_line_start = false;
        d.head_buf.clear();
        d.line.clear();
    }

    pub(super) fn invalid_start(&mut self, dir: Direction, cx: &mut Ctx<'_>) {
        let d = self.dir_mut(dir);
        let tentative = d.tentative;
        d.tentative = false;
        d.key = None;
        if dir == Direction::ToClient {
            self.lone_key = None;
        }
        if tentative {
            cx.stats.resyncs += 1;
            let d = self.dir_mut(dir);
            d.phase = Phase::Resync;
            d.at_line_start = false;
            d.head_buf.clear();
        } else {
            cx.stats.invalid_start_lines += 1;
            self.lose_sync(dir, Anomaly::InvalidStartLine, cx);
        }
    }

    pub(super) fn start(&mut self, dir: Direction, input: &[u8], cx: &mut Ctx<'_>) -> usize {
        // A TLS record (handshake or alert) before any HTTP: this connection is encrypted.
        if self.heads_parsed == 0 && matches!(input, [0x15 | 0x16, 0x03, ..]) {
            self.give_up_not_http(cx);
            return 0;
        }
        if dir == Direction::ToClient
            && self.req.phase == Phase::Head
            && head::simple_request_end(&self.req.head_buf).is_some()
        {
            // The server answers a request line that has no version and no blank line
            // after it: an HTTP/0.9 request, whole (a client of those sends no more).
            let buf = std::mem::take(&mut self.req.head_buf);
            self.parse_simple(&buf, cx);
            self.req.head_buf = buf;
            self.req.head_buf.clear();
            self.req.release_head_buf();
        }
        // A server that answers with a status line after all is read as usual.
        let status_line = input.get(..5.min(input.len())) == b"HTTP/".get(..5.min(input.len()));
        if dir == Direction::ToClient
            && !status_line
            && self
                .pending
                .front()
                .is_some_and(|p| p.req.version == apitap_core::HttpVersion::Http09)
        {
            // The answer to an HTTP/0.9 request: no status line, a body until close.
            let at = cx.at;
            let d = self.dir_mut(dir);
            d.msg_bytes = 0;
            d.start = at;
            d.body_bytes = 0;
            self.on_response_head(head::simple_response(), false, None, cx);
            return 0;
        }
        if Self::looks(dir, input) == Looks::No {
            self.invalid_start(dir, cx);
            return 0;
        }
        let at = cx.at;
        let key = match dir {
            Direction::ToServer => Some(cx.next_key()),
            Direction::ToClient => {
                if self.pending.is_empty() && self.lone_key.is_none() {
                    self.lone_key = Some(cx.next_key());
                }
                None
            }
        };
        let after_interim = dir == Direction::ToClient && self.interim_start.is_some();
        let d = self.dir_mut(dir);
        if !after_interim {
            d.msg_bytes = 0;
        }
        d.start = at;
        d.key = key;
        d.current = std::mem::take(&mut d.carry);
        d.head_buf.clear();
        d.scan_from = 0;
        d.body_bytes = 0;
        d.phase = Phase::Head;
        0
    }

    pub(super) fn head(&mut self, dir: Direction, input: &[u8], cx: &mut Ctx<'_>) -> usize {
        let max = cx.cfg.max_head_bytes;
        if self.dir(dir).head_buf.is_empty() {
            // Fast path: the whole head is in this delivery; parse it in place.
            if let Some(end) = find_head_end(input, 0).filter(|&e| e <= max) {
                let raw = input.get(..end).unwrap_or(&[]);
                self.dir_mut(dir).msg_bytes += end as u64;
                self.parse_head(dir, raw, cx);
                return end;
            }
        }
        let d = self.dir_mut(dir);
        let room = (max + 1).saturating_sub(d.head_buf.len());
        let take = input.len().min(room);
        d.head_buf
            .extend_from_slice(input.get(..take).unwrap_or(&[]));
        if Self::looks(dir, &d.head_buf) == Looks::No {
            self.invalid_start(dir, cx);
            return take;
        }
        let d = self.dir_mut(dir);
        if let Some(end) = find_head_end(&d.head_buf, d.scan_from).filter(|&e| e <= max) {
            let extra = d.head_buf.len() - end;
            d.msg_bytes += (take - extra) as u64;
            let buf = std::mem::take(&mut d.head_buf);
            self.parse_head(dir, buf.get(..end).unwrap_or(&[]), cx);
            let d = self.dir_mut(dir);
            d.head_buf = buf;
            d.release_head_buf();
            return take - extra;
        }
        if d.head_buf.len() > max {
            cx.stats.heads_too_large += 1;
            return self.head_too_large(dir, take, cx);
        }
        d.scan_from = resume_from(d.head_buf.len());
        d.msg_bytes += take as u64;
        take
    }

    /// The head in progress is longer than `max_head_bytes` (`head_buf` holds its first
    /// `max + 1` bytes, the last `take` of them from this delivery). When its start line
    /// parses, the message is recorded from the start line alone with `head_too_large`, so
    /// requests and responses stay paired; the rest of the head is skipped. Its body, if any,
    /// cannot be delimited: a request is taken to have none, a response's is skipped by a
    /// resync. Otherwise the bytes are skipped and the anomaly goes to the next message.
    pub(super) fn head_too_large(
        &mut self,
        dir: Direction,
        take: usize,
        cx: &mut Ctx<'_>,
    ) -> usize {
        let d = self.dir_mut(dir);
        let buf = std::mem::take(&mut d.head_buf);
        let line = memchr::memchr(b'\n', &buf).and_then(|i| buf.get(..i));
        let parsed = line.map(head::start_line_only).and_then(|raw| match dir {
            Direction::ToServer => {
                head::parse_request(&raw, cx.cfg.max_headers)
                    .ok()
                    .map(|mut h| {
                        h.anomalies.insert(Anomaly::HeadTooLarge);
                        Ok(h)
                    })
            }
            Direction::ToClient => {
                head::parse_response(&raw, cx.cfg.max_headers)
                    .ok()
                    .map(|mut h| {
                        h.anomalies.insert(Anomaly::HeadTooLarge);
                        Err(h)
                    })
            }
        });
        let Some(parsed) = parsed else {
            cx.stats.bytes_skipped += buf.len() as u64;
            let d = self.dir_mut(dir);
            d.head_buf = buf;
            d.key = None;
            if dir == Direction::ToClient {
                self.lone_key = None;
            }
            self.lose_sync(dir, Anomaly::HeadTooLarge, cx);
            return take;
        };
        // The blank line may already be in the buffered bytes (just past the limit).
        let ended = find_head_end(&buf, self.dir(dir).scan_from);
        let used = match ended {
            Some(end) => take.saturating_sub(buf.len().saturating_sub(end)),
            None => take,
        };
        let tail = buf
            .get(buf.len().saturating_sub(3)..)
            .unwrap_or(&[])
            .to_vec();
        let d = self.dir_mut(dir);
        d.msg_bytes += used as u64;
        d.head_buf = buf;
        d.release_head_buf();
        match parsed {
            Ok(h) => self.on_request_head(h, cx),
            Err(h) => self.on_response_head(h, true, None, cx),
        }
        if self.passthrough {
            return used;
        }
        if ended.is_some() {
            self.skipped_head_ended(dir, cx);
        } else {
            let d = self.dir_mut(dir);
            d.phase = Phase::SkipHead;
            d.line = tail;
        }
        used
    }

    /// Skips the rest of an oversize head, up to and including its blank line.
    pub(super) fn skip_head(&mut self, dir: Direction, input: &[u8], cx: &mut Ctx<'_>) -> usize {
        let d = self.dir_mut(dir);
        let tail = std::mem::take(&mut d.line);
        // A blank line that straddles the previous delivery and this one.
        let mut probe = tail.clone();
        probe.extend_from_slice(input.get(..input.len().min(3)).unwrap_or(&[]));
        let end = find_head_end(&probe, 0)
            .map(|e| e.saturating_sub(tail.len()))
            .or_else(|| find_head_end(input, 0));
        let used = end.unwrap_or(input.len());
        self.add_wire(dir, used as u64);
        if end.is_some() {
            self.skipped_head_ended(dir, cx);
        } else {
            let mut keep = tail;
            keep.extend_from_slice(input.get(input.len().saturating_sub(3)..).unwrap_or(&[]));
            let cut = keep.len().saturating_sub(3);
            keep.drain(..cut);
            self.dir_mut(dir).line = keep;
        }
        used
    }

    /// The oversize head ended: a request is complete (no body assumed); after a response
    /// head the body, of unknown length, is skipped up to the next status line.
    pub(super) fn skipped_head_ended(&mut self, dir: Direction, cx: &mut Ctx<'_>) {
        self.dir_mut(dir).line.clear();
        match dir {
            Direction::ToServer => self.end_message(dir, None, cx),
            Direction::ToClient => {
                let d = self.dir_mut(dir);
                d.phase = Phase::Resync;
                d.at_line_start = true;
            }
        }
    }

    /// The head in progress in `dir` will not complete: the flow ended, a gap fell in it,
    /// its time ran out, or the head memcap took it (`why` flags the gap or the memcap).
    /// The message is recorded from its start line, incomplete; without a whole start line
    /// it is counted as lost (`http.partial_heads_lost`).
    pub(super) fn cut_head(&mut self, dir: Direction, why: Option<Anomaly>, cx: &mut Ctx<'_>) {
        cx.stats.partial_heads += 1;
        let d = self.dir_mut(dir);
        let buf = std::mem::take(&mut d.head_buf);
        d.release_head_buf();
        let line = memchr::memchr(b'\n', &buf).and_then(|i| buf.get(..i));
        let parsed = line.map(head::start_line_only).and_then(|raw| match dir {
            Direction::ToServer => head::parse_request(&raw, cx.cfg.max_headers).ok().map(Ok),
            Direction::ToClient => head::parse_response(&raw, cx.cfg.max_headers).ok().map(Err),
        });
        match parsed {
            None => {
                cx.stats.partial_heads_lost += 1;
                cx.stats.bytes_skipped += buf.len() as u64;
                self.dir_mut(dir).key = None;
                if dir == Direction::ToClient {
                    self.lone_key = None;
                }
            }
            Some(Ok(mut h)) => {
                if let Some(a) = why {
                    h.anomalies.insert(a);
                }
                self.on_request_head(h, cx);
                self.end_message(dir, Some(truncated_reason(dir)), cx);
            }
            Some(Err(mut h)) => {
                if let Some(a) = why {
                    h.anomalies.insert(a);
                }
                self.on_response_head(h, true, Some(truncated_reason(dir)), cx);
            }
        }
    }

    pub(super) fn body(
        &mut self,
        dir: Direction,
        body: Body,
        input: &[u8],
        cx: &mut Ctx<'_>,
    ) -> usize {
        match body {
            Body::Length(rem) => {
                let take = (input.len() as u64).min(rem);
                let n = usize::try_from(take).unwrap_or(input.len());
                self.count_body(dir, input.get(..n).unwrap_or(&[]), cx.cfg);
                self.add_wire(dir, take);
                let left = rem - take;
                self.dir_mut(dir).phase = Phase::Body(Body::Length(left));
                if left == 0 {
                    self.end_message(dir, None, cx);
                }
                usize::try_from(take).unwrap_or(input.len())
            }
            Body::UntilClose => {
                self.count_body(dir, input, cx.cfg);
                self.add_wire(dir, input.len() as u64);
                input.len()
            }
            Body::ChunkData(rem) => {
                let take = (input.len() as u64).min(rem);
                let n = usize::try_from(take).unwrap_or(input.len());
                self.count_body(dir, input.get(..n).unwrap_or(&[]), cx.cfg);
                self.add_wire(dir, take);
                let left = rem - take;
                self.dir_mut(dir).phase = Phase::Body(if left == 0 {
                    Body::ChunkEnd
                } else {
                    Body::ChunkData(left)
                });
                usize::try_from(take).unwrap_or(input.len())
            }
            Body::ChunkEnd => match input.first() {
                Some(b'\r') => {
                    self.add_wire(dir, 1);
                    1
                }
                Some(b'\n') => {
                    self.add_wire(dir, 1);
                    self.dir_mut(dir).phase = Phase::Body(Body::ChunkSize);
                    1
                }
                _ => {
                    self.bad_chunk(dir, cx);
                    0
                }
            },
            Body::ChunkSize => {
                let Some((line, used)) = self.take_line(dir, input) else {
                    self.add_wire(dir, input.len() as u64);
                    if self.dir(dir).line.len() > MAX_LINE {
                        self.bad_chunk(dir, cx);
                    }
                    return input.len();
                };
                self.add_wire(dir, used as u64);
                match parse_chunk_size(&line) {
                    Some(0) => {
                        self.dir_mut(dir).phase = Phase::Body(Body::Trailer { bytes: 0 });
                    }
                    Some(n) => {
                        self.dir_mut(dir).phase = Phase::Body(Body::ChunkData(n));
                    }
                    None => {
                        self.bad_chunk(dir, cx);
                        return used;
                    }
                }
                used
            }
            Body::Trailer { bytes } => {
                let Some((line, used)) = self.take_line(dir, input) else {
                    self.add_wire(dir, input.len() as u64);
                    if bytes + self.dir(dir).line.len() > cx.cfg.max_head_bytes {
                        self.mark(dir, Anomaly::HeadTooLarge);
                        self.end_message(dir, None, cx);
                        self.lose_sync(dir, Anomaly::HeadTooLarge, cx);
                    }
                    return input.len();
                };
                self.add_wire(dir, used as u64);
                if line.iter().all(|&b| b == b'\r' || b == b'\n') {
                    self.end_message(dir, None, cx);
                } else {
                    self.mark(dir, Anomaly::Trailers);
                    self.dir_mut(dir).phase = Phase::Body(Body::Trailer {
                        bytes: bytes + line.len(),
                    });
                }
                used
            }
        }
    }

    /// Collects bytes up to and including the next LF; returns the line and the bytes of
    /// `input` used, or None when the line continues past `input`.
    pub(super) fn take_line(&mut self, dir: Direction, input: &[u8]) -> Option<(Vec<u8>, usize)> {
        let d = self.dir_mut(dir);
        match memchr::memchr(b'\n', input) {
            Some(i) => {
                let mut line = std::mem::take(&mut d.line);
                line.extend_from_slice(input.get(..=i).unwrap_or(&[]));
                Some((line, i + 1))
            }
            None => {
                if d.line.len() <= MAX_LINE * 16 {
                    d.line.extend_from_slice(input);
                }
                None
            }
        }
    }

    pub(super) fn bad_chunk(&mut self, dir: Direction, cx: &mut Ctx<'_>) {
        self.mark(dir, Anomaly::InvalidChunkSize);
        self.mark(dir, Anomaly::BodyTruncated);
        self.end_message(dir, Some(truncated_reason(dir)), cx);
        // The bad chunk is on the message that had it, not on the next one.
        self.skip_to_next_message(dir, cx);
    }

    /// No more bytes will come in `dir`: end what is in progress.
    pub(super) fn end_direction(&mut self, dir: Direction, cx: &mut Ctx<'_>) {
        match self.dir(dir).phase {
            Phase::Body(Body::UntilClose) => self.end_message(dir, None, cx),
            Phase::Body(_) => {
                self.mark(dir, Anomaly::BodyTruncated);
                self.end_message(dir, Some(truncated_reason(dir)), cx);
            }
            Phase::Head => {
                self.cut_head(dir, None, cx);
                self.dir_mut(dir).phase = Phase::Start;
            }
            Phase::SkipHead => self.end_message(dir, None, cx),
            Phase::Start | Phase::Resync => {}
        }
        let d = self.dir_mut(dir);
        d.line.clear();
        if dir == Direction::ToClient {
            self.lone_key = None;
        }
    }

    pub(super) fn resync(&mut self, dir: Direction, input: &[u8], cx: &mut Ctx<'_>) -> usize {
        let mut pos = 0usize;
        loop {
            let rest = input.get(pos..).unwrap_or(&[]);
            if rest.is_empty() {
                if pos > 0 {
                    self.dir_mut(dir).carry.insert(Anomaly::SkippedBytes);
                    self.note_skipped(pos as u64, cx);
                }
                return input.len();
            }
            if self.dir(dir).at_line_start {
                let looks = Self::looks(dir, rest);
                if looks != Looks::No {
                    let d = self.dir_mut(dir);
                    if pos > 0 {
                        d.carry.insert(Anomaly::SkippedBytes);
                    }
                    d.tentative = looks == Looks::NeedMore;
                    d.phase = Phase::Start;
                    self.note_skipped(pos as u64, cx);
                    return pos;
                }
            }
            // The next place a message may start: after the next line end, or, for
            // responses, at a status line in the middle of a line (a JSON body does not
            // end with a line end, and the next status line follows it directly).
            let newline = memchr::memchr(b'\n', rest).map(|i| i + 1);
            // At a line start, the first byte was just looked at.
            let from = usize::from(self.dir(dir).at_line_start);
            let status = match dir {
                Direction::ToClient => status_line_inside(rest, from),
                Direction::ToServer => None,
            };
            let d = self.dir_mut(dir);
            let next = match (newline, status) {
                (Some(n), Some(s)) => Some(n.min(s)),
                (n, s) => n.or(s),
            };
            match next {
                Some(i) => {
                    pos += i;
                    d.at_line_start = true;
                }
                None => {
                    d.at_line_start = false;
                    d.carry.insert(Anomaly::SkippedBytes);
                    self.note_skipped(input.len() as u64, cx);
                    return input.len();
                }
            }
        }
    }

    /// Counts skipped bytes; a connection that never parsed a message and skipped more
    /// than `max_non_http_bytes` is given up.
    pub(super) fn note_skipped(&mut self, n: u64, cx: &mut Ctx<'_>) {
        cx.stats.bytes_skipped += n;
        self.skipped = self.skipped.saturating_add(n);
        if self.heads_parsed == 0 && self.skipped > cx.cfg.max_non_http_bytes && !self.passthrough {
            self.give_up_not_http(cx);
        }
    }

    /// Stops parsing a connection that is not HTTP; what was pending is emitted at finish.
    pub(super) fn give_up_not_http(&mut self, cx: &mut Ctx<'_>) {
        self.passthrough = true;
        cx.stats.non_http_connections += 1;
        for d in [&mut self.req, &mut self.resp] {
            d.head_buf = Vec::new();
            d.line = Vec::new();
            d.key = None;
            d.phase = Phase::Resync;
        }
        self.lone_key = None;
    }
}

/// Where, from `from` on, `data` holds `HTTP/1.0 ` or `HTTP/1.1 ` and a status code (the
/// stricter form asked of a status line that does not start a line).
fn status_line_inside(data: &[u8], mut from: usize) -> Option<usize> {
    while let Some(i) = data
        .get(from..)
        .and_then(|d| memchr::memmem::find(d, b"HTTP/1."))
    {
        let at = from + i;
        match data.get(at + 7..at + 13) {
            Some([b'0' | b'1', b' ', b'1'..=b'5', b'0'..=b'9', b'0'..=b'9', b' ' | b'\r']) => {
                return Some(at)
            }
            // Cut short: it may be one; looked at again with more bytes.
            None => return Some(at),
            Some(_) => from = at + 1,
        }
    }
    None
}

/// Parses a chunk-size line (`1a;ext=x\r\n`): hex digits, then optional whitespace and
/// extensions. None when invalid or over 2^60.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.trim_ascii();
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return None;
    }
    let rest = line.get(digits..).unwrap_or(&[]).trim_ascii_start();
    if !rest.is_empty() && rest.first() != Some(&b';') {
        return None;
    }
    let text = std::str::from_utf8(line.get(..digits)?).ok()?;
    u64::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1a\r\n"), Some(26));
        assert_eq!(parse_chunk_size(b"0\r\n"), Some(0));
        assert_eq!(parse_chunk_size(b"10;name=value\r\n"), Some(16));
        assert_eq!(parse_chunk_size(b"10 ; x\n"), Some(16));
        assert_eq!(parse_chunk_size(b"\r\n"), None);
        assert_eq!(parse_chunk_size(b"xyz\r\n"), None);
        assert_eq!(parse_chunk_size(b"10000000000000000\r\n"), None);
        assert_eq!(parse_chunk_size(b"-1\r\n"), None);
        assert_eq!(parse_chunk_size(b"1 2\r\n"), None);
    }
}
