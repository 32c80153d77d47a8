//! One TCP connection's HTTP/1.x state, both directions: framing per direction
//! ([`framing`]) and the pairing of requests with responses, first in first out, with
//! interim responses, pipelining and request/response halves that never meet.

mod framing;

use crate::head::{self, Framing, HeadError};
use crate::{HttpConfig, HttpStats};
use apitap_core::{
    Anomalies, Anomaly, AppParser, Direction, FinishCause, Handoff, HttpRequest, HttpResponse,
    HttpTransaction, IncompleteReason, PacketRef, ParseCx, SortKey, Timestamp, UpgradeTo,
};
use framing::{Body, Dir, Phase};
use std::collections::VecDeque;

/// Everything a parsing step needs besides the connection.
type Ctx<'a> = ParseCx<'a, HttpConfig, HttpStats>;

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
    /// What the connection becomes once this response ends (101, CONNECT answered 2xx).
    handoff: Option<Handoff>,
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
    /// No longer parsed: given up as not HTTP, or handed on (see `handoff`).
    passthrough: bool,
    /// What the stream became after a 101 or a CONNECT tunnel.
    handoff: Option<Handoff>,
    /// Heads parsed on this connection (both directions, interim responses included).
    heads_parsed: u32,
    /// Bytes skipped on this connection while looking for a message start.
    skipped: u64,
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

    /// Is the front pending request being answered right now?
    fn front_is_answered(&self) -> bool {
        self.resp.in_message() && self.in_response.as_ref().is_none_or(|r| r.paired)
    }

    fn expire_at(&mut self, cx: &mut Ctx<'_>) {
        let timeout_ns = cx.cfg.transaction_timeout_ms.saturating_mul(1_000_000);
        // A request head still unfinished after the timeout (slowloris) is cut; what
        // remains of it is skipped.
        if self.req.phase == Phase::Head && cx.at.ts.nanos_since(self.req.start.ts) > timeout_ns {
            cx.stats.heads_timed_out += 1;
            self.cut_head(Direction::ToServer, None, cx);
            self.skip_to_next_message(Direction::ToServer, cx);
        }
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
            tls: None,
            http2: None,
            grpc: None,
        });
    }

    fn parse_head(&mut self, dir: Direction, raw: &[u8], cx: &mut Ctx<'_>) {
        match dir {
            Direction::ToServer => match head::parse_request(raw, cx.cfg.max_headers) {
                Ok(h) => self.on_request_head(h, cx),
                // A request line without a version and a blank line: HTTP/0.9.
                Err(e) => match head::parse_simple_request(raw, cx.cfg.max_headers) {
                    Ok(h) => self.on_request_head(h, cx),
                    Err(_) => self.bad_head(dir, e, cx),
                },
            },
            Direction::ToClient => match head::parse_response(raw, cx.cfg.max_headers) {
                Ok(h) => self.on_response_head(h, false, None, cx),
                Err(e) => self.bad_head(dir, e, cx),
            },
        }
    }

    /// An HTTP/0.9 simple request.
    fn parse_simple(&mut self, raw: &[u8], cx: &mut Ctx<'_>) {
        match head::parse_simple_request(raw, cx.cfg.max_headers) {
            Ok(h) => self.on_request_head(h, cx),
            Err(e) => self.bad_head(Direction::ToServer, e, cx),
        }
    }

    fn bad_head(&mut self, dir: Direction, _: HeadError, cx: &mut Ctx<'_>) {
        self.invalid_start(dir, cx);
        // The head ended with a blank line: a new message may start right after it.
        self.dir_mut(dir).at_line_start = true;
    }

    fn on_request_head(&mut self, h: head::RequestHead, cx: &mut Ctx<'_>) {
        cx.stats.requests += 1;
        self.heads_parsed = self.heads_parsed.saturating_add(1);
        let at = cx.at;
        let d = &mut self.req;
        d.tentative = false;
        let (framing, framing_anomalies) = h.framing;
        let anomalies = h
            .anomalies
            .union(std::mem::take(&mut d.current))
            .union(framing_anomalies);
        let key = match d.key.take() {
            Some(k) => k,
            None => cx.next_key(),
        };
        let body = if matches!(framing, Framing::None | Framing::Length(0)) {
            None
        } else {
            crate::body::new_body(&h.head, cx.cfg)
        };
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
                body,
                start,
                end: at,
                authority: apitap_core::Span::default(),
                scheme: apitap_core::Span::default(),
            },
            anomalies,
            is_head,
            is_connect,
            incomplete: None,
        });
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

    /// `cut`: only the status line of the head is known (an oversize head, or one cut
    /// short); its body is not framed, and `incomplete` says why when it was cut short.
    fn on_response_head(
        &mut self,
        h: head::ResponseHead,
        cut: bool,
        incomplete: Option<IncompleteReason>,
        cx: &mut Ctx<'_>,
    ) {
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
                None => cx.next_key(),
            }
        };
        let handoff = if h.status == 101 {
            Some(Handoff::Upgrade(upgrade_to(&h.head)))
        } else if is_connect && (200..300).contains(&h.status) {
            Some(Handoff::Tunnel)
        } else {
            None
        };
        let upgrade = handoff.is_some();
        // Status 0: the bare answer to an HTTP/0.9 request, framed until close.
        let informational = h.status < 200 && h.status != 0;
        let framing =
            if cut || upgrade || is_head || h.status == 204 || h.status == 304 || informational {
                Framing::None
            } else {
                anomalies = anomalies.union(h.framing.1);
                h.framing.0
            };
        let body = if matches!(framing, Framing::None | Framing::Length(0)) {
            None
        } else {
            crate::body::new_body(&h.head, cx.cfg)
        };
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
                body,
                interim_count,
                trailers: apitap_core::Head::default(),
                start,
                end: at,
            },
            anomalies,
            paired,
            key,
            handoff,
        });
        self.resp.body_bytes = 0;
        match framing {
            Framing::None | Framing::Length(0) => {
                self.resp.phase = Phase::Start;
                self.end_message(Direction::ToClient, incomplete, cx);
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

    fn mark(&mut self, dir: Direction, a: Anomaly) {
        self.add_body(dir, 0, a);
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
                if let Some(handoff) = r.handoff {
                    self.passthrough = true;
                    self.handoff = Some(handoff);
                    cx.stats.upgrades += 1;
                }
                cx.stats.transactions_emitted += 1;
                if r.paired {
                    if let Some(mut p) = self.pending.pop_front() {
                        let body_unfinished = matches!(self.req.phase, Phase::Body(_));
                        if self.req.key == Some(p.key) && body_unfinished {
                            // The response finished before the request body (an early
                            // 413 or 401): the request ends where it is, short of its
                            // length, and the rest of its body counts into nothing.
                            p.req.end = at;
                            p.anomalies.insert(Anomaly::BodyTruncated);
                            p.incomplete =
                                p.incomplete.or(Some(IncompleteReason::RequestIncomplete));
                            if let Some(body) = p.req.body.as_deref_mut() {
                                body.truncated = true;
                                crate::body::finish(
                                    body,
                                    &p.req.head,
                                    cx.cfg,
                                    cx.stats,
                                    &mut p.anomalies,
                                );
                            }
                        }
                        if self.req.key == Some(p.key) {
                            self.req.key = None;
                        }
                        cx.out.push(HttpTransaction {
                            key: p.key,
                            anomalies: p.anomalies.union(r.anomalies),
                            incomplete: incomplete.or(p.incomplete),
                            tls: None,
                            http2: None,
                            grpc: None,
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
                    tls: None,
                    http2: None,
                    grpc: None,
                });
            }
        }
    }
}

impl AppParser for HttpConn {
    type Config = HttpConfig;
    type Stats = HttpStats;
    type Output = HttpTransaction;

    fn on_data(&mut self, dir: Direction, data: &[u8], cx: &mut Ctx<'_>) -> usize {
        self.expire_at(cx);
        let mut input = data;
        let mut stalls = 0;
        while !input.is_empty() {
            if self.passthrough {
                if self.handoff.is_some() {
                    // The rest belongs to whatever the connection was handed on to.
                    return data.len() - input.len();
                }
                cx.stats.non_http_bytes += input.len() as u64;
                return data.len();
            }
            let phase = self.dir(dir).phase;
            let used = match phase {
                Phase::Start => self.start(dir, input, cx),
                Phase::Head => self.head(dir, input, cx),
                Phase::Body(body) => self.body(dir, body, input, cx),
                Phase::Resync => self.resync(dir, input, cx),
                Phase::SkipHead => self.skip_head(dir, input, cx),
            };
            if used == 0 {
                // Phase changes consume nothing; a handler never stalls twice in a row.
                stalls += 1;
                if stalls > 3 {
                    debug_assert!(false, "HTTP parser made no progress");
                    return data.len();
                }
            } else {
                stalls = 0;
            }
            input = input.get(used..).unwrap_or(&[]);
        }
        data.len()
    }

    fn on_gap(&mut self, dir: Direction, len: u64, cx: &mut Ctx<'_>) {
        self.expire_at(cx);
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
                    self.end_message(dir, None, cx);
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
                self.end_message(dir, None, cx);
                self.lose_sync(dir, Anomaly::Gap, cx);
            }
            Phase::Body(_) => {
                cx.stats.gaps_resync += 1;
                self.add_body(dir, 0, Anomaly::Gap);
                self.end_message(dir, Some(truncated_reason(dir)), cx);
                self.lose_sync(dir, Anomaly::Gap, cx);
            }
            Phase::Head => {
                cx.stats.gaps_resync += 1;
                self.cut_head(dir, Some(Anomaly::Gap), cx);
                self.lose_sync(dir, Anomaly::Gap, cx);
            }
            Phase::SkipHead => {
                // The oversize message was already recorded (a request is still pending).
                cx.stats.gaps_resync += 1;
                self.mark(dir, Anomaly::Gap);
                self.end_message(dir, None, cx);
                self.lose_sync(dir, Anomaly::Gap, cx);
            }
            Phase::Start | Phase::Resync => {
                cx.stats.gaps_resync += 1;
                self.lose_sync(dir, Anomaly::Gap, cx);
            }
        }
        // After a gap the next byte may well start a message.
        if self.dir(dir).phase == Phase::Resync {
            self.dir_mut(dir).at_line_start = true;
        }
    }

    /// A close-delimited response ends when the server closes its side.
    fn on_fin(&mut self, dir: Direction, cx: &mut Ctx<'_>) {
        self.expire_at(cx);
        if dir == Direction::ToClient {
            self.end_direction(dir, cx);
        }
    }

    fn on_anomaly(&mut self, dir: Direction, anomaly: Anomaly) {
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

    /// Requests whose response has not started within `transaction_timeout_ms` are
    /// handed out alone.
    fn expire(&mut self, cx: &mut Ctx<'_>) {
        self.expire_at(cx);
    }

    fn finish(&mut self, cause: FinishCause, cx: &mut Ctx<'_>) {
        self.expire_at(cx);
        self.end_direction(Direction::ToClient, cx);
        self.end_direction(Direction::ToServer, cx);
        let reason = match cause {
            FinishCause::ConnectionClosed | FinishCause::IdleTimeout => {
                IncompleteReason::ConnectionClosed
            }
            FinishCause::EndOfCapture => IncompleteReason::EndOfCapture,
        };
        while let Some(p) = self.pending.pop_front() {
            let incomplete = p.incomplete.unwrap_or(reason);
            self.emit_request_only(p, incomplete, cx);
        }
        self.lone_key = None;
    }

    fn open_transactions(&self, out: &mut Vec<(SortKey, Timestamp)>) {
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

    fn handoff(&self) -> Option<Handoff> {
        self.handoff
    }

    fn buffered_bytes(&self) -> usize {
        self.req.held_bytes() + self.resp.held_bytes()
    }

    /// Heads in progress are cut (`head_memcap`) and the directions resync at the next
    /// message; idle buffers are given back.
    fn shed(&mut self, cx: &mut Ctx<'_>) {
        self.expire_at(cx);
        for dir in [Direction::ToServer, Direction::ToClient] {
            if self.dir(dir).phase == Phase::Head {
                cx.stats.heads_shed += 1;
                self.cut_head(dir, Some(Anomaly::HeadMemcap), cx);
                self.skip_to_next_message(dir, cx);
            }
            let d = self.dir_mut(dir);
            d.head_buf = Vec::new();
            if !matches!(
                d.phase,
                Phase::Body(Body::ChunkSize | Body::Trailer { .. }) | Phase::SkipHead
            ) {
                d.line = Vec::new();
            }
        }
    }
}

fn truncated_reason(dir: Direction) -> IncompleteReason {
    match dir {
        Direction::ToServer => IncompleteReason::RequestIncomplete,
        Direction::ToClient => IncompleteReason::ResponseIncomplete,
    }
}

/// The protocol a `101 Switching Protocols` response's `Upgrade` header names.
fn upgrade_to(head: &apitap_core::Head) -> UpgradeTo {
    let Some(value) = head.header("upgrade") else {
        return UpgradeTo::Other;
    };
    let first = value
        .split(|&b| b == b',')
        .next()
        .unwrap_or(value)
        .trim_ascii();
    if first.eq_ignore_ascii_case(b"websocket") {
        UpgradeTo::WebSocket
    } else if first.eq_ignore_ascii_case(b"h2c") {
        UpgradeTo::H2c
    } else {
        UpgradeTo::Other
    }
}
