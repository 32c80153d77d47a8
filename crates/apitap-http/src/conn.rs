//! Per-connection HTTP/1.x parsing and request/response pairing.

use crate::head::{self, body_framing, find_head_end, resume_from, Framing, HeadError};
use crate::sniff::{looks_like_request, looks_like_response, Looks};
use apitap_core::{
    Anomalies, Anomaly, Direction, HttpRequest, HttpResponse, HttpTransaction, IncompleteReason,
    PacketRef, SortKey, Timestamp,
};
use std::collections::VecDeque;

/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

/// HTTP parsing bounds (`[http]` in sensor.toml).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest head (start line + fields) parsed; larger ones are skipped and counted.
    pub max_head_bytes: usize,
    /// Header fields kept per message (at most 256).
    pub max_headers: usize,
    /// Requests waiting for a response before the oldest is given up.
    pub max_pending_requests: usize,
    /// Packet time after which a request without a response start is emitted alone.
    pub transaction_timeout_ms: u64,
    /// A connection that skipped this many bytes without a single HTTP message is not
    /// HTTP: it is no longer parsed (counted in `non_http_connections`).
    pub max_non_http_bytes: u64,
    /// Media-type prefixes whose bodies are captured (e.g. "application/json", "text/");
    /// empty (the default) captures none.
    pub include_body_for: Vec<String>,
    /// Body bytes kept per message, before decoding; the rest is counted, not kept.
    pub max_body_bytes: usize,
    /// Most bytes a compressed body may inflate to; past it decoding stops
    /// (anomaly `decompression_bomb`).
    pub max_decoded_body_bytes: usize,
    /// Most a compressed body may inflate relative to its compressed size.
    pub max_decompression_ratio: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_head_bytes: 65_536,
            max_headers: 128,
            max_pending_requests: 64,
            transaction_timeout_ms: 60_000,
            max_non_http_bytes: 16_384,
            include_body_for: Vec::new(),
            max_body_bytes: 65_536,
            max_decoded_body_bytes: 1 << 20,
            max_decompression_ratio: 100,
        }
    }
}

/// HTTP parser counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Request heads parsed.
    pub requests: u64,
    /// Final response heads parsed.
    pub responses: u64,
    /// Interim (1xx other than 101) responses parsed.
    pub interim_responses: u64,
    /// Transactions emitted.
    pub transactions_emitted: u64,
    /// Bytes skipped while looking for the next message start.
    pub bytes_skipped: u64,
    /// Times a direction lost sync (invalid data or a gap) and had to resync.
    pub resyncs: u64,
    /// Heads larger than `max_head_bytes` (skipped).
    pub heads_too_large: u64,
    /// Bytes where a request or status line was expected but none was.
    pub invalid_start_lines: u64,
    /// Requests given up because too many were waiting for responses.
    pub pipeline_overflows: u64,
    /// Connections switched to another protocol (101, CONNECT) and no longer parsed.
    pub upgrades: u64,
    /// Bytes after an upgrade, not parsed.
    pub passthrough_bytes: u64,
    /// Gaps that fell inside a body and were absorbed.
    pub gaps_in_body: u64,
    /// Gaps that broke framing and forced a resync.
    pub gaps_resync: u64,
    /// Connections given up as not HTTP (TLS, or `max_non_http_bytes` of non-HTTP bytes).
    pub non_http_connections: u64,
    /// Message bodies captured (`include_body_for`).
    pub bodies_captured: u64,
    /// Bytes of captured bodies kept (after decoding).
    pub body_bytes_captured: u64,
    /// Captured bodies not kept whole (size limit, gap, cut short, decode limit).
    pub bodies_truncated: u64,
    /// Captured bodies whose content coding was removed.
    pub bodies_decoded: u64,
    /// Bodies that inflated past `max_decoded_body_bytes` or `max_decompression_ratio`.
    pub decompression_bombs: u64,
    /// Bodies whose content coding could not be decoded.
    pub body_decode_errors: u64,
}

impl HttpStats {
    /// Adds another set of counters.
    pub fn add(&mut self, o: &HttpStats) {
        self.requests += o.requests;
        self.responses += o.responses;
        self.interim_responses += o.interim_responses;
        self.transactions_emitted += o.transactions_emitted;
        self.bytes_skipped += o.bytes_skipped;
        self.resyncs += o.resyncs;
        self.heads_too_large += o.heads_too_large;
        self.invalid_start_lines += o.invalid_start_lines;
        self.pipeline_overflows += o.pipeline_overflows;
        self.upgrades += o.upgrades;
        self.passthrough_bytes += o.passthrough_bytes;
        self.gaps_in_body += o.gaps_in_body;
        self.gaps_resync += o.gaps_resync;
        self.non_http_connections += o.non_http_connections;
        self.bodies_captured += o.bodies_captured;
        self.body_bytes_captured += o.body_bytes_captured;
        self.bodies_truncated += o.bodies_truncated;
        self.bodies_decoded += o.bodies_decoded;
        self.decompression_bombs += o.decompression_bombs;
        self.body_decode_errors += o.body_decode_errors;
    }
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishCause {
    /// FIN/RST, or evicted from a full flow table.
    ConnectionClosed,
    /// No packets for the idle timeout.
    IdleTimeout,
    /// End of the capture.
    EndOfCapture,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
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
enum Body {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailer { bytes: usize },
    UntilClose,
}

/// Parser state of one direction.
#[derive(Debug)]
struct Dir {
    phase: Phase,
    head_buf: Vec<u8>,
    scan_from: usize,
    line: Vec<u8>,
    /// Start of the message in progress.
    start: PacketRef,
    /// Key of the request in progress (requests only).
    key: Option<SortKey>,
    /// In resync: the next byte begins a line.
    at_line_start: bool,
    /// The message start was guessed during resync from too few bytes.
    tentative: bool,
    /// Anomalies for the next message of this direction.
    carry: Anomalies,
    /// Anomalies of the message in progress (head not parsed yet).
    current: Anomalies,
    body_bytes: u64,
    /// Wire bytes of the message in progress (for responses, since the first interim).
    msg_bytes: u64,
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

impl Dir {
    fn in_message(&self) -> bool {
        matches!(self.phase, Phase::Head | Phase::Body(_))
    }
}

#[derive(Debug)]
struct Pending {
    key: SortKey,
    req: HttpRequest,
    anomalies: Anomalies,
    is_head: bool,
    is_connect: bool,
    incomplete: Option<IncompleteReason>,
}

#[derive(Debug)]
struct InResponse {
    resp: HttpResponse,
    anomalies: Anomalies,
    /// Paired with the front pending request (else a lone response with `key`).
    paired: bool,
    key: SortKey,
    /// Switch to passthrough once this response ends.
    upgrade: bool,
}

/// One TCP connection's HTTP state, both directions.
#[derive(Debug, Default)]
pub struct HttpConn {
    req: Dir,
    resp: Dir,
    pending: VecDeque<Pending>,
    in_response: Option<InResponse>,
    /// Key reserved for a response that started with no request pending.
    lone_key: Option<SortKey>,
    interim_count: u16,
    interim_start: Option<PacketRef>,
    ordinal: u32,
    passthrough: bool,
    /// Heads parsed on this connection (both directions, interim responses included).
    heads_parsed: u32,
    /// Bytes skipped on this connection while looking for a message start.
    skipped: u64,
}

/// Everything a parsing step needs besides the connection.
struct Ctx<'a> {
    at: PacketRef,
    cfg: &'a HttpConfig,
    stats: &'a mut HttpStats,
    out: &'a mut Vec<HttpTransaction>,
}

impl HttpConn {
    /// A connection with nothing seen yet.
    pub fn new() -> HttpConn {
        HttpConn::default()
    }

    /// True after an upgrade or tunnel: further bytes are not parsed.
    pub fn is_passthrough(&self) -> bool {
        self.passthrough
    }

    /// Earliest started, not yet emitted transaction: its key and start time.
    pub fn oldest_open(&self) -> Option<(SortKey, Timestamp)> {
        let mut best: Option<(SortKey, Timestamp)> = None;
        let mut consider = |k: SortKey, ts: Timestamp| {
            if best.is_none_or(|(b, _)| k < b) {
                best = Some((k, ts));
            }
        };
        if let Some(p) = self.pending.front() {
            consider(p.key, p.req.start.ts);
        }
        if let (Some(k), Phase::Head) = (self.req.key, self.req.phase) {
            consider(k, self.req.start.ts);
        }
        if let Some(r) = &self.in_response {
            if !r.paired {
                consider(r.key, r.resp.start.ts);
            }
        }
        if let Some(k) = self.lone_key {
            consider(k, self.interim_start.unwrap_or(self.resp.start).ts);
        }
        best
    }

    /// Every started, not yet emitted transaction: key and start time, appended to `out`.
    pub fn open_transactions(&self, out: &mut Vec<(SortKey, Timestamp)>) {
        out.extend(self.pending.iter().map(|p| (p.key, p.req.start.ts)));
        if let (Some(k), Phase::Head) = (self.req.key, self.req.phase) {
            out.push((k, self.req.start.ts));
        }
        if let Some(r) = &self.in_response {
            if !r.paired {
                out.push((r.key, r.resp.start.ts));
            }
        }
        if let Some(k) = self.lone_key {
            out.push((k, self.interim_start.unwrap_or(self.resp.start).ts));
        }
    }

    /// Feeds in-order bytes of one direction.
    pub fn on_data(
        &mut self,
        dir: Direction,
        data: &[u8],
        at: PacketRef,
        cfg: &HttpConfig,
        stats: &mut HttpStats,
        out: &mut Vec<HttpTransaction>,
    ) {
        let mut cx = self.enter(at, cfg, stats, out);
        let mut input = data;
        let mut stalls = 0;
        while !input.is_empty() {
            if self.passthrough {
                cx.stats.passthrough_bytes += input.len() as u64;
                return;
            }
            let phase = self.dir(dir).phase;
            let used = match phase {
                Phase::Start => self.start(dir, input, &mut cx),
                Phase::Head => self.head(dir, input, &mut cx),
                Phase::Body(body) => self.body(dir, body, input, &mut cx),
                Phase::Resync => self.resync(dir, input, &mut cx),
                Phase::SkipHead => self.skip_head(dir, input, &mut cx),
            };
            if used == 0 {
                // Phase changes consume nothing; a handler never stalls twice in a row.
                stalls += 1;
                if stalls > 3 {
                    debug_assert!(false, "HTTP parser made no progress");
                    return;
                }
            } else {
                stalls = 0;
            }
            input = input.get(used..).unwrap_or(&[]);
        }
    }

    /// `len` bytes of direction `dir` were lost.
    pub fn on_gap(
        &mut self,
        dir: Direction,
        len: u64,
        at: PacketRef,
        cfg: &HttpConfig,
        stats: &mut HttpStats,
        out: &mut Vec<HttpTransaction>,
    ) {
        let mut cx = self.enter(at, cfg, stats, out);
        if self.passthrough || len == 0 {
            return;
        }
        let phase = self.dir(dir).phase;
        match phase {
            Phase::Body(Body::Length(rem)) if len <= rem => {
                cx.stats.gaps_in_body += 1;
                self.add_body(dir, len, Anomaly::Gap);
                self.dir_mut(dir).phase = Phase::Body(Body::Length(rem - len));
                if rem == len {
                    self.end_message(dir, None, &mut cx);
                }
            }
            Phase::Body(Body::ChunkData(rem)) if len <= rem => {
                cx.stats.gaps_in_body += 1;
                self.add_body(dir, len, Anomaly::Gap);
                self.dir_mut(dir).phase = Phase::Body(if rem == len {
                    Body::ChunkEnd
                } else {
                    Body::ChunkData(rem - len)
                });
            }
            Phase::Body(Body::UntilClose) => {
                cx.stats.gaps_in_body += 1;
                self.add_body(dir, len, Anomaly::Gap);
            }
            Phase::Body(Body::Length(rem)) => {
                // The body ends inside the gap; what follows it is lost too.
                cx.stats.gaps_resync += 1;
                self.add_body(dir, rem, Anomaly::Gap);
                self.end_message(dir, None, &mut cx);
                self.lose_sync(dir, Anomaly::Gap, &mut cx);
            }
            Phase::Body(_) => {
                cx.stats.gaps_resync += 1;
                self.add_body(dir, 0, Anomaly::Gap);
                self.end_message(dir, Some(truncated_reason(dir)), &mut cx);
                self.lose_sync(dir, Anomaly::Gap, &mut cx);
            }
            Phase::Head => {
                cx.stats.gaps_resync += 1;
                self.abandon_head(dir, &mut cx);
                self.lose_sync(dir, Anomaly::Gap, &mut cx);
            }
            Phase::SkipHead => {
                // The oversize message was already recorded (a request is still pending).
                cx.stats.gaps_resync += 1;
                self.mark(dir, Anomaly::Gap);
                self.end_message(dir, None, &mut cx);
                self.lose_sync(dir, Anomaly::Gap, &mut cx);
            }
            Phase::Start | Phase::Resync => {
                cx.stats.gaps_resync += 1;
                self.lose_sync(dir, Anomaly::Gap, &mut cx);
            }
        }
        // After a gap the next byte may well start a message.
        if self.dir(dir).phase == Phase::Resync {
            self.dir_mut(dir).at_line_start = true;
        }
    }

    /// The sender of `dir` closed its side: a close-delimited response ends here.
    pub fn on_fin(
        &mut self,
        dir: Direction,
        at: PacketRef,
        cfg: &HttpConfig,
        stats: &mut HttpStats,
        out: &mut Vec<HttpTransaction>,
    ) {
        let mut cx = self.enter(at, cfg, stats, out);
        if dir == Direction::ToClient {
            self.end_direction(dir, &mut cx);
        }
    }

    /// Flags `anomaly` (seen below HTTP, e.g. a TCP overlap conflict) on the message in
    /// progress in `dir`, or on the next one if none is.
    pub fn on_anomaly(&mut self, dir: Direction, anomaly: Anomaly) {
        match self.dir(dir).phase {
            // Head not parsed yet: it joins the head's own anomalies.
            Phase::Head => self.dir_mut(dir).current.insert(anomaly),
            Phase::Body(_) => self.mark(dir, anomaly),
            // An oversize request head being skipped: the request is pending.
            Phase::SkipHead if dir == Direction::ToServer => self.mark(dir, anomaly),
            Phase::Start | Phase::Resync | Phase::SkipHead => {
                self.dir_mut(dir).carry.insert(anomaly)
            }
        }
    }

    /// Gives up on requests whose response has not started within the timeout.
    pub fn expire(
        &mut self,
        now: PacketRef,
        cfg: &HttpConfig,
        stats: &mut HttpStats,
        out: &mut Vec<HttpTransaction>,
    ) {
        self.enter(now, cfg, stats, out);
    }

    /// The connection is over: everything still open is emitted.
    pub fn finish(
        &mut self,
        cause: FinishCause,
        at: PacketRef,
        cfg: &HttpConfig,
        stats: &mut HttpStats,
        out: &mut Vec<HttpTransaction>,
    ) {
        let mut cx = self.enter(at, cfg, stats, out);
        self.end_direction(Direction::ToClient, &mut cx);
        self.end_direction(Direction::ToServer, &mut cx);
        let reason = match cause {
            FinishCause::ConnectionClosed | FinishCause::IdleTimeout => {
                IncompleteReason::ConnectionClosed
            }
            FinishCause::EndOfCapture => IncompleteReason::EndOfCapture,
        };
        while let Some(p) = self.pending.pop_front() {
            let incomplete = p.incomplete.unwrap_or(reason);
            self.emit_request_only(p, incomplete, &mut cx);
        }
        self.lone_key = None;
    }

    // ---- internals ----

    /// Bundles a call's arguments and first times out what is due at `at`, so results
    /// depend only on packet time, not on how often the caller sweeps.
    fn enter<'a>(
        &mut self,
        at: PacketRef,
        cfg: &'a HttpConfig,
        stats: &'a mut HttpStats,
        out: &'a mut Vec<HttpTransaction>,
    ) -> Ctx<'a> {
        let mut cx = Ctx {
            at,
            cfg,
            stats,
            out,
        };
        self.expire_at(&mut cx);
        cx
    }

    fn dir(&self, d: Direction) -> &Dir {
        match d {
            Direction::ToServer => &self.req,
            Direction::ToClient => &self.resp,
        }
    }

    fn dir_mut(&mut self, d: Direction) -> &mut Dir {
        match d {
            Direction::ToServer => &mut self.req,
            Direction::ToClient => &mut self.resp,
        }
    }

    fn next_key(&mut self, at: PacketRef) -> SortKey {
        let k = SortKey {
            packet: at.index,
            flow: 0,
            ordinal: self.ordinal,
        };
        self.ordinal = self.ordinal.saturating_add(1);
        k
    }

    /// Is the front pending request being answered right now?
    fn front_is_answered(&self) -> bool {
        self.resp.in_message() && self.in_response.as_ref().is_none_or(|r| r.paired)
    }

    fn expire_at(&mut self, cx: &mut Ctx<'_>) {
        let timeout_ns = cx.cfg.transaction_timeout_ms.saturating_mul(1_000_000);
        while let Some(front) = self.pending.front() {
            if self.front_is_answered() || cx.at.ts.nanos_since(front.req.start.ts) <= timeout_ns {
                break;
            }
            if let Some(p) = self.pending.pop_front() {
                let incomplete = p.incomplete.unwrap_or(IncompleteReason::ResponseTimeout);
                self.emit_request_only(p, incomplete, cx);
            }
        }
    }

    fn emit_request_only(
        &mut self,
        mut p: Pending,
        incomplete: IncompleteReason,
        cx: &mut Ctx<'_>,
    ) {
        if self.req.key == Some(p.key) {
            // Emitted while its body is still being read: the body ends here, cut short.
            self.req.key = None;
            if let Some(body) = p.req.body.as_deref_mut() {
                body.truncated = true;
                crate::body::finish(body, &p.req.head, cx.cfg, cx.stats, &mut p.anomalies);
            }
        }
        cx.stats.transactions_emitted += 1;
        cx.out.push(HttpTransaction {
            key: p.key,
            request: Some(p.req),
            response: None,
            anomalies: p.anomalies,
            incomplete: Some(incomplete),
        });
    }

    fn looks(dir: Direction, data: &[u8]) -> Looks {
        match dir {
            Direction::ToServer => looks_like_request(data),
            Direction::ToClient => looks_like_response(data),
        }
    }

    /// Marks the direction out of sync: skip to the next message start, which is flagged
    /// with `why`.
    fn lose_sync(&mut self, dir: Direction, why: Anomaly, cx: &mut Ctx<'_>) {
        self.dir_mut(dir).carry.insert(why);
        self.skip_to_next_message(dir, cx);
    }

    /// Skip to the next message start (bytes skipped on the way flag it `skipped_bytes`).
    fn skip_to_next_message(&mut self, dir: Direction, cx: &mut Ctx<'_>) {
        cx.stats.resyncs += 1;
        let d = self.dir_mut(dir);
        d.phase = Phase::Resync;
        d.at_line_start = false;
        d.head_buf.clear();
        d.line.clear();
    }

    fn invalid_start(&mut self, dir: Direction, cx: &mut Ctx<'_>) {
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

    fn start(&mut self, dir: Direction, input: &[u8], cx: &mut Ctx<'_>) -> usize {
        // A TLS record (handshake or alert) before any HTTP: this connection is encrypted.
        if self.heads_parsed == 0 && matches!(input, [0x15 | 0x16, 0x03, ..]) {
            self.give_up_not_http(cx);
            return 0;
        }
        if Self::looks(dir, input) == Looks::No {
            self.invalid_start(dir, cx);
            return 0;
        }
        let at = cx.at;
        let key = match dir {
            Direction::ToServer => Some(self.next_key(at)),
            Direction::ToClient => {
                if self.pending.is_empty() && self.lone_key.is_none() {
                    self.lone_key = Some(self.next_key(at));
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

    fn head(&mut self, dir: Direction, input: &[u8], cx: &mut Ctx<'_>) -> usize {
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
            d.head_buf.clear();
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
    fn head_too_large(&mut self, dir: Direction, take: usize, cx: &mut Ctx<'_>) -> usize {
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
        d.head_buf.clear();
        match parsed {
            Ok(h) => self.on_request_head(h, cx),
            Err(h) => self.on_response_head(h, true, cx),
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
    fn skip_head(&mut self, dir: Direction, input: &[u8], cx: &mut Ctx<'_>) -> usize {
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
    fn skipped_head_ended(&mut self, dir: Direction, cx: &mut Ctx<'_>) {
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

    fn abandon_head(&mut self, dir: Direction, cx: &mut Ctx<'_>) {
        let d = self.dir_mut(dir);
        cx.stats.bytes_skipped += d.head_buf.len() as u64;
        d.head_buf.clear();
        d.key = None;
        if dir == Direction::ToClient {
            self.lone_key = None;
        }
    }

    fn parse_head(&mut self, dir: Direction, raw: &[u8], cx: &mut Ctx<'_>) {
        match dir {
            Direction::ToServer => match head::parse_request(raw, cx.cfg.max_headers) {
                Ok(h) => self.on_request_head(h, cx),
                Err(e) => self.bad_head(dir, e, cx),
            },
            Direction::ToClient => match head::parse_response(raw, cx.cfg.max_headers) {
                Ok(h) => self.on_response_head(h, false, cx),
                Err(e) => self.bad_head(dir, e, cx),
            },
        }
    }

    fn bad_head(&mut self, dir: Direction, e: HeadError, cx: &mut Ctx<'_>) {
        match e {
            HeadError::TooManyHeaders => {
                let d = self.dir_mut(dir);
                d.key = None;
                d.tentative = false;
                if dir == Direction::ToClient {
                    self.lone_key = None;
                }
                self.lose_sync(dir, Anomaly::TooManyHeaders, cx);
            }
            HeadError::Invalid => self.invalid_start(dir, cx),
        }
        // The head ended with a blank line: a new message may start right after it.
        self.dir_mut(dir).at_line_start = true;
    }

    fn on_request_head(&mut self, h: head::RequestHead, cx: &mut Ctx<'_>) {
        cx.stats.requests += 1;
        self.heads_parsed = self.heads_parsed.saturating_add(1);
        let at = cx.at;
        let d = &mut self.req;
        d.tentative = false;
        let mut anomalies = h.anomalies.union(std::mem::take(&mut d.current));
        let framing = body_framing(&h.head, true, &mut anomalies);
        let key = match d.key.take() {
            Some(k) => k,
            None => self.next_key(at),
        };
        let capture_body = !matches!(framing, Framing::None | Framing::Length(0))
            && crate::body::wants_body(&h.head, cx.cfg);
        let method = h.head.get(h.method);
        let is_head = method.eq_ignore_ascii_case(b"HEAD");
        let is_connect = method.eq_ignore_ascii_case(b"CONNECT");
        let start = self.req.start;
        self.pending.push_back(Pending {
            key,
            req: HttpRequest {
                head: h.head,
                method: h.method,
                target: h.target,
                version: h.version,
                body_bytes: 0,
                wire_bytes: self.req.msg_bytes,
                body: None,
                start,
                end: at,
            },
            anomalies,
            is_head,
            is_connect,
            incomplete: None,
        });
        if capture_body {
            if let Some(p) = self.pending.back_mut() {
                p.req.body = Some(Box::default());
            }
        }
        self.req.key = Some(key);
        self.req.body_bytes = 0;
        self.req.phase = match framing {
            Framing::None | Framing::Length(0) => Phase::Start,
            Framing::Length(n) => Phase::Body(Body::Length(n)),
            Framing::Chunked => Phase::Body(Body::ChunkSize),
            // Requests are never close-delimited (RFC 9112 6.3).
            Framing::UntilClose => Phase::Start,
        };
        if self.pending.len() > cx.cfg.max_pending_requests.max(1) {
            // Give up the oldest request that is not being answered.
            let victim = if self.front_is_answered() { 1 } else { 0 };
            if let Some(p) = self.pending.remove(victim) {
                cx.stats.pipeline_overflows += 1;
                self.emit_request_only(p, IncompleteReason::PipelineOverflow, cx);
            }
        }
    }

    /// `cut`: only the status line of an oversize head is known; its body is not framed.
    fn on_response_head(&mut self, h: head::ResponseHead, cut: bool, cx: &mut Ctx<'_>) {
        let at = cx.at;
        self.heads_parsed = self.heads_parsed.saturating_add(1);
        self.resp.tentative = false;
        if (100..200).contains(&h.status) && h.status != 101 {
            cx.stats.interim_responses += 1;
            self.interim_count = self.interim_count.saturating_add(1);
            if self.interim_start.is_none() {
                self.interim_start = Some(self.resp.start);
            }
            let carried = std::mem::take(&mut self.resp.current);
            self.resp.carry = self.resp.carry.union(carried);
            self.resp.phase = Phase::Start;
            return;
        }
        cx.stats.responses += 1;
        let mut anomalies = h.anomalies.union(std::mem::take(&mut self.resp.current));
        let front = self.pending.front();
        let paired = front.is_some();
        let (is_head, is_connect) = front
            .map(|p| (p.is_head, p.is_connect))
            .unwrap_or((false, false));
        let key = if paired {
            self.lone_key = None;
            SortKey::default()
        } else {
            anomalies.insert(Anomaly::UnsolicitedResponse);
            match self.lone_key.take() {
                Some(k) => k,
                None => self.next_key(at),
            }
        };
        let upgrade = h.status == 101 || (is_connect && (200..300).contains(&h.status));
        let framing =
            if cut || upgrade || is_head || h.status == 204 || h.status == 304 || h.status < 200 {
                Framing::None
            } else {
                body_framing(&h.head, false, &mut anomalies)
            };
        let capture_body = !matches!(framing, Framing::None | Framing::Length(0))
            && crate::body::wants_body(&h.head, cx.cfg);
        let start = self.interim_start.take().unwrap_or(self.resp.start);
        let interim_count = std::mem::take(&mut self.interim_count);
        self.in_response = Some(InResponse {
            resp: HttpResponse {
                head: h.head,
                status: h.status,
                reason: h.reason,
                version: h.version,
                body_bytes: 0,
                wire_bytes: self.resp.msg_bytes,
                body: capture_body.then(Box::default),
                interim_count,
                start,
                end: at,
            },
            anomalies,
            paired,
            key,
            upgrade,
        });
        self.resp.body_bytes = 0;
        match framing {
            Framing::None | Framing::Length(0) => {
                self.resp.phase = Phase::Start;
                self.end_message(Direction::ToClient, None, cx);
            }
            Framing::Length(n) => self.resp.phase = Phase::Body(Body::Length(n)),
            Framing::Chunked => self.resp.phase = Phase::Body(Body::ChunkSize),
            Framing::UntilClose => self.resp.phase = Phase::Body(Body::UntilClose),
        }
    }

    /// Counts `n` body bytes (and an anomaly) on the message in progress.
    fn add_body(&mut self, dir: Direction, n: u64, anomaly: Anomaly) {
        self.add_wire(dir, n);
        // Bytes that are counted but not seen (a gap), or a body cut short: what was
        // captured is no longer the whole body.
        let holes = matches!(anomaly, Anomaly::Gap | Anomaly::BodyTruncated);
        let body = match dir {
            Direction::ToServer => {
                self.req.body_bytes += n;
                self.request_in_progress().and_then(|p| {
                    p.req.body_bytes += n;
                    p.anomalies.insert(anomaly);
                    p.req.body.as_deref_mut()
                })
            }
            Direction::ToClient => {
                self.resp.body_bytes += n;
                self.in_response.as_mut().and_then(|r| {
                    r.resp.body_bytes += n;
                    r.anomalies.insert(anomaly);
                    r.resp.body.as_deref_mut()
                })
            }
        };
        if let (true, Some(b)) = (holes, body) {
            b.truncated = true;
        }
    }

    /// Counts body bytes on the message in progress, and keeps them if its body is captured.
    fn count_body(&mut self, dir: Direction, bytes: &[u8], cfg: &HttpConfig) {
        let n = bytes.len() as u64;
        let (count, body) = match dir {
            Direction::ToServer => match self.request_in_progress() {
                Some(p) => (&mut p.req.body_bytes, p.req.body.as_deref_mut()),
                None => return,
            },
            Direction::ToClient => match self.in_response.as_mut() {
                Some(r) => (&mut r.resp.body_bytes, r.resp.body.as_deref_mut()),
                None => return,
            },
        };
        *count += n;
        if let Some(body) = body {
            crate::body::capture(body, bytes, cfg);
        }
    }

    /// The pending entry of the request whose body is being read (still pending).
    fn request_in_progress(&mut self) -> Option<&mut Pending> {
        let key = self.req.key?;
        self.pending.iter_mut().rev().find(|p| p.key == key)
    }

    /// Counts `n` wire bytes on the message in progress in `dir`.
    fn add_wire(&mut self, dir: Direction, n: u64) {
        let d = self.dir_mut(dir);
        d.msg_bytes += n;
        let total = d.msg_bytes;
        match dir {
            Direction::ToServer => {
                if let Some(p) = self.request_in_progress() {
                    p.req.wire_bytes = total;
                }
            }
            Direction::ToClient => {
                if let Some(r) = self.in_response.as_mut() {
                    r.resp.wire_bytes = total;
                }
            }
        }
    }

    fn body(&mut self, dir: Direction, body: Body, input: &[u8], cx: &mut Ctx<'_>) -> usize {
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
    fn take_line(&mut self, dir: Direction, input: &[u8]) -> Option<(Vec<u8>, usize)> {
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

    fn mark(&mut self, dir: Direction, a: Anomaly) {
        self.add_body(dir, 0, a);
    }

    fn bad_chunk(&mut self, dir: Direction, cx: &mut Ctx<'_>) {
        self.mark(dir, Anomaly::InvalidChunkSize);
        self.mark(dir, Anomaly::BodyTruncated);
        self.end_message(dir, Some(truncated_reason(dir)), cx);
        // The bad chunk is on the message that had it, not on the next one.
        self.skip_to_next_message(dir, cx);
    }

    /// The message in progress in `dir` is over (`incomplete` when cut short).
    fn end_message(
        &mut self,
        dir: Direction,
        incomplete: Option<IncompleteReason>,
        cx: &mut Ctx<'_>,
    ) {
        let at = cx.at;
        match dir {
            Direction::ToServer => {
                if let Some(p) = self.request_in_progress() {
                    p.req.end = at;
                    if incomplete.is_some() {
                        p.incomplete = incomplete;
                    }
                    if let Some(body) = p.req.body.as_deref_mut() {
                        crate::body::finish(body, &p.req.head, cx.cfg, cx.stats, &mut p.anomalies);
                    }
                }
                self.req.key = None;
                self.req.phase = Phase::Start;
            }
            Direction::ToClient => {
                self.resp.phase = Phase::Start;
                let Some(mut r) = self.in_response.take() else {
                    return;
                };
                r.resp.end = at;
                if let Some(body) = r.resp.body.as_deref_mut() {
                    crate::body::finish(body, &r.resp.head, cx.cfg, cx.stats, &mut r.anomalies);
                }
                if r.upgrade {
                    self.passthrough = true;
                    cx.stats.upgrades += 1;
                }
                cx.stats.transactions_emitted += 1;
                if r.paired {
                    if let Some(p) = self.pending.pop_front() {
                        if self.req.key == Some(p.key) {
                            // The response finished before the request body: stop
                            // counting into a transaction that is gone.
                            self.req.key = None;
                        }
                        cx.out.push(HttpTransaction {
                            key: p.key,
                            anomalies: p.anomalies.union(r.anomalies),
                            incomplete: incomplete.or(p.incomplete),
                            request: Some(p.req),
                            response: Some(r.resp),
                        });
                        return;
                    }
                }
                cx.out.push(HttpTransaction {
                    key: r.key,
                    request: None,
                    response: Some(r.resp),
                    anomalies: r.anomalies,
                    incomplete: Some(incomplete.unwrap_or(IncompleteReason::RequestNotSeen)),
                });
            }
        }
    }

    /// No more bytes will come in `dir`: end what is in progress.
    fn end_direction(&mut self, dir: Direction, cx: &mut Ctx<'_>) {
        match self.dir(dir).phase {
            Phase::Body(Body::UntilClose) => self.end_message(dir, None, cx),
            Phase::Body(_) => {
                self.mark(dir, Anomaly::BodyTruncated);
                self.end_message(dir, Some(truncated_reason(dir)), cx);
            }
            Phase::Head => {
                self.abandon_head(dir, cx);
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

    fn resync(&mut self, dir: Direction, input: &[u8], cx: &mut Ctx<'_>) -> usize {
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
            let d = self.dir_mut(dir);
            match memchr::memchr(b'\n', rest) {
                Some(i) => {
                    pos += i + 1;
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
}

impl HttpConn {
    /// Counts skipped bytes; a connection that never parsed a message and skipped more
    /// than `max_non_http_bytes` is given up.
    fn note_skipped(&mut self, n: u64, cx: &mut Ctx<'_>) {
        cx.stats.bytes_skipped += n;
        self.skipped = self.skipped.saturating_add(n);
        if self.heads_parsed == 0 && self.skipped > cx.cfg.max_non_http_bytes && !self.passthrough {
            self.give_up_not_http(cx);
        }
    }

    /// Stops parsing a connection that is not HTTP; what was pending is emitted at finish.
    fn give_up_not_http(&mut self, cx: &mut Ctx<'_>) {
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

fn truncated_reason(dir: Direction) -> IncompleteReason {
    match dir {
        Direction::ToServer => IncompleteReason::RequestIncomplete,
        Direction::ToClient => IncompleteReason::ResponseIncomplete,
    }
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
