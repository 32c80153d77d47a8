//! HTTP/2 (RFC 9113) for a passive observer: [`H2Conn`] frames both directions, decodes
//! header blocks with the dynamic table of each direction ([`hpack`]), and hands out one
//! transaction per stream (a pushed response is a stream of its own). gRPC calls are
//! recognised by their content type and their messages counted ([`grpc`]).
//!
//! Joining midway, or after a loss, never yields a wrong header: fields that name table
//! state not seen are left out and the stream is marked (`hpack_state_missing`). A gap
//! inside a frame's payload is absorbed (the frame's length is known); a gap anywhere
//! else loses the frame boundaries, and the connection is given up (counted), since
//! finding them again cannot be made certain.

mod frame;
mod grpc;
mod hpack;
mod huffman;

pub use frame::{probe_midstream, probe_server_preface, PREFACE};

use crate::{body, HttpConfig, HttpStats};
use apitap_core::{
    Anomalies, Anomaly, AppParser, CapturedBody, Direction, FinishCause, FrameCounts, GoAway,
    GrpcMessages, Handoff, Head, Http2Connection, Http2Stream, HttpRequest, HttpResponse,
    HttpTransaction, HttpVersion, IncompleteReason, PacketRef, ParseCx, Probe, SortKey, Span,
    StreamReset, Timestamp,
};
use frame::{FrameHeader, Kind, END_HEADERS, END_STREAM, HEADER_LEN, PADDED, PRIORITY};

type Ctx<'a> = ParseCx<'a, HttpConfig, HttpStats>;

/// Payload bytes kept of a control frame (SETTINGS, GOAWAY, ...): enough for every field
/// apitap reads; the rest is skipped.
const CONTROL_PREFIX: usize = 1024;

/// The largest frame a peer may send (2^24 - 1): the limit until SETTINGS say otherwise
/// on a connection joined midway.
const MAX_FRAME_LIMIT: u32 = (1 << 24) - 1;

/// The default SETTINGS_MAX_FRAME_SIZE.
const DEFAULT_MAX_FRAME: u32 = 1 << 14;

/// Whether a stream's first bytes are the HTTP/2 client preface.
pub fn probe(first: &[u8]) -> Probe {
    let n = first.len().min(PREFACE.len());
    if first.get(..n) != PREFACE.get(..n) {
        Probe::No
    } else if n < PREFACE.len() {
        Probe::NeedMore
    } else {
        Probe::Yes(Some(Direction::ToServer))
    }
}

/// One direction's framing state.
#[derive(Debug)]
struct Side {
    /// Bytes of the client preface still expected.
    preface_left: u8,
    /// The frame header being read.
    header: [u8; HEADER_LEN],
    have: u8,
    /// The frame whose payload is being read.
    frame: Option<Current>,
    /// Kept payload of the current frame (not DATA).
    payload: Vec<u8>,
    /// The sender's HPACK table.
    table: hpack::Table,
    /// A header block in progress (HEADERS or PUSH_PROMISE, then CONTINUATION).
    block: Option<Block>,
    /// The largest frame the receiving peer accepts (its SETTINGS_MAX_FRAME_SIZE).
    max_frame: u32,
    /// Frame boundaries are not known (a connection joined midway whose first bytes in
    /// this direction did not start with frames).
    lost: bool,
    /// No bytes of this direction seen yet.
    fresh: bool,
}

#[derive(Debug)]
struct Current {
    h: FrameHeader,
    /// Payload bytes still to come.
    left: u32,
    /// Payload bytes seen.
    pos: u32,
    /// DATA: the pad length, once read.
    pad: u8,
    /// The header passed the checks of its type.
    valid: bool,
    /// Part of the payload was lost (a gap).
    lost: bool,
    /// DATA: the pad length was lost, so data cannot be told from padding.
    pad_lost: bool,
}

#[derive(Debug)]
struct Block {
    stream: u32,
    /// A PUSH_PROMISE's block (never a response head, even when lost).
    push: bool,
    /// The stream a PUSH_PROMISE promised, once read.
    promised: Option<u32>,
    buf: Vec<u8>,
    start: PacketRef,
    /// Reserved for a stream this block opens.
    key: Option<SortKey>,
    /// Fragments were lost or the block outgrew `max_head_bytes`.
    lost: Option<Anomaly>,
    end_stream: bool,
    /// Frames it took so far.
    frames: u32,
    /// Frame bytes on the wire, headers included.
    wire: u64,
}

#[derive(Debug)]
struct Stream {
    id: u32,
    key: SortKey,
    start: PacketRef,
    req: Option<HttpRequest>,
    resp: Option<HttpResponse>,
    req_done: bool,
    resp_done: bool,
    interim: u16,
    anomalies: Anomalies,
    info: Http2Stream,
    grpc: Option<Box<[grpc::Framing; 2]>>,
    /// Frame bytes of the response direction before the response head.
    resp_wire_before: u64,
}

impl Stream {
    /// The body byte count and captured body of the message `dir` carries, once its head
    /// was seen.
    fn body_mut(&mut self, dir: Direction) -> Option<(&mut u64, &mut Option<Box<CapturedBody>>)> {
        match dir {
            Direction::ToServer => self.req.as_mut().map(|r| (&mut r.body_bytes, &mut r.body)),
            Direction::ToClient => self.resp.as_mut().map(|r| (&mut r.body_bytes, &mut r.body)),
        }
    }

    /// Bytes its heads and captured bodies hold.
    fn held_bytes(&self) -> usize {
        let head = |h: &Head| h.buf.capacity() + h.headers.capacity() * 16;
        let body = |b: &Option<Box<CapturedBody>>| b.as_ref().map_or(0, |b| b.bytes.capacity());
        self.req
            .as_ref()
            .map_or(0, |r| head(&r.head) + body(&r.body))
            + self
                .resp
                .as_ref()
                .map_or(0, |r| head(&r.head) + head(&r.trailers) + body(&r.body))
    }
}

/// One HTTP/2 connection, both directions.
#[derive(Debug)]
pub struct H2Conn {
    sides: [Side; 2],
    streams: Vec<Stream>,
    /// The highest stream id a client HEADERS opened.
    last_client_stream: u32,
    /// Joined midway: the first stream a client HEADERS opened after the join; only
    /// streams below it can have started before the capture.
    midstream_floor: Option<u32>,
    /// Joined midway: streams opened by a response whose request came before the capture
    /// (at most `max_concurrent_streams`, so none is opened twice).
    lone_streams: Vec<u32>,
    /// Joined midway: streams may have started before the capture did.
    midstream: bool,
    /// Reached by an HTTP/1.1 `Upgrade: h2c`: stream 1 answers that request.
    upgrade: bool,
    /// That request, when the layer below handed it over.
    upgrade_request: Option<Box<HttpRequest>>,
    /// A GOAWAY's error code, once one was seen.
    goaway: Option<u32>,
    /// Frame boundaries were lost: nothing more is parsed.
    given_up: bool,
    /// Anomalies seen below (overlap conflicts) for the next stream.
    carried: Anomalies,
    /// The connection's record, filled as it goes and handed out when it ends.
    record: Box<Http2Connection>,
    /// Set once the record is ready to be handed out.
    finished: bool,
}

fn side_index(dir: Direction) -> usize {
    match dir {
        Direction::ToServer => 0,
        Direction::ToClient => 1,
    }
}

impl Side {
    fn new(preface: bool, midstream: bool, table_cap: usize) -> Side {
        Side {
            preface_left: if preface { PREFACE.len() as u8 } else { 0 },
            header: [0; HEADER_LEN],
            have: 0,
            frame: None,
            payload: Vec::new(),
            table: hpack::Table::new(table_cap, !midstream),
            block: None,
            max_frame: if midstream {
                MAX_FRAME_LIMIT
            } else {
                DEFAULT_MAX_FRAME
            },
            lost: false,
            fresh: true,
        }
    }
}

impl H2Conn {
    fn with(cfg: &HttpConfig, midstream: bool, upgrade: bool, stats: &mut HttpStats) -> H2Conn {
        stats.http2.connections += 1;
        if midstream {
            stats.http2.midstream_connections += 1;
        }
        let cap = cfg.max_hpack_table_bytes;
        H2Conn {
            sides: [
                Side::new(!midstream, midstream, cap),
                Side::new(false, midstream, cap),
            ],
            streams: Vec::new(),
            last_client_stream: 0,
            midstream_floor: None,
            lone_streams: Vec::new(),
            midstream,
            upgrade,
            upgrade_request: None,
            goaway: None,
            given_up: false,
            carried: Anomalies::default(),
            record: Box::new(Http2Connection {
                midstream,
                ..Http2Connection::default()
            }),
            finished: false,
        }
    }

    /// The connection's record, once the connection has ended ([`AppParser::finish`]).
    pub fn take_connection(&mut self) -> Option<Http2Connection> {
        if !self.finished {
            return None;
        }
        self.finished = false;
        Some(std::mem::take(&mut *self.record))
    }

    fn frames_mut(&mut self, dir: Direction) -> &mut FrameCounts {
        match dir {
            Direction::ToServer => &mut self.record.client_frames,
            Direction::ToClient => &mut self.record.server_frames,
        }
    }

    /// A frame that broke the protocol, counted.
    fn count_invalid(&mut self, dir: Direction, cx: &mut Ctx<'_>) {
        cx.stats.http2.frames_invalid += 1;
        let f = self.frames_mut(dir);
        f.invalid = f.invalid.saturating_add(1);
    }

    /// A connection that starts with the client preface (prior knowledge, or ALPN `h2`).
    pub fn new(cfg: &HttpConfig, stats: &mut HttpStats) -> H2Conn {
        H2Conn::with(cfg, false, false, stats)
    }

    /// A connection joined midway, whose first bytes were frames
    /// ([`probe_midstream`]).
    pub fn midstream(cfg: &HttpConfig, stats: &mut HttpStats) -> H2Conn {
        H2Conn::with(cfg, true, false, stats)
    }

    /// A connection switched to HTTP/2 by an HTTP/1.1 `Upgrade: h2c` answered 101.
    pub fn upgraded(cfg: &HttpConfig, stats: &mut HttpStats) -> H2Conn {
        H2Conn::with(cfg, false, true, stats)
    }

    /// The HTTP/1.1 request that asked for the upgrade: stream 1's request.
    pub fn set_upgrade_request(&mut self, mut request: HttpRequest) {
        request.version = HttpVersion::Http2;
        self.upgrade_request = Some(Box::new(request));
    }

    fn stream_mut(&mut self, id: u32) -> Option<&mut Stream> {
        self.streams.iter_mut().find(|s| s.id == id)
    }

    /// Reads one direction's bytes frame by frame.
    fn read(&mut self, dir: Direction, mut data: &[u8], cx: &mut Ctx<'_>) {
        let d = side_index(dir);
        if self.record.start.index == 0 {
            self.record.start = cx.at;
        }
        if self.sides[d].fresh {
            self.sides[d].fresh = false;
            if self.midstream && !probe_midstream(data) {
                self.sides[d].lost = true;
                cx.stats.http2.directions_lost += 1;
            }
        }
        while !data.is_empty() {
            if self.given_up || self.sides[d].lost {
                cx.stats.http2.bytes_ignored += data.len() as u64;
                return;
            }
            let side = &mut self.sides[d];
            if side.preface_left > 0 {
                let at = PREFACE.len() - usize::from(side.preface_left);
                let n = usize::from(side.preface_left).min(data.len());
                if PREFACE.get(at..at + n) != data.get(..n) {
                    cx.stats.http2.invalid_prefaces += 1;
                    self.give_up(cx);
                    continue;
                }
                side.preface_left -= n as u8;
                data = data.get(n..).unwrap_or(&[]);
                continue;
            }
            if side.frame.is_none() {
                let have = usize::from(side.have);
                let n = (HEADER_LEN - have).min(data.len());
                if let (Some(dst), Some(src)) = (side.header.get_mut(have..have + n), data.get(..n))
                {
                    dst.copy_from_slice(src);
                }
                side.have += n as u8;
                data = data.get(n..).unwrap_or(&[]);
                if usize::from(side.have) == HEADER_LEN {
                    side.have = 0;
                    let h = FrameHeader::parse(&side.header);
                    self.begin_frame(dir, h, cx);
                }
                continue;
            }
            let Some(cur) = side.frame.as_mut() else {
                continue;
            };
            let n = (cur.left as usize).min(data.len());
            let (chunk, rest) = data.split_at(n);
            data = rest;
            let (h, pos) = (cur.h, cur.pos);
            cur.left -= n as u32;
            cur.pos += n as u32;
            if h.kind == Kind::Data {
                self.data_chunk(dir, chunk, pos, cx);
            } else if cur.valid {
                let room = payload_room(&h, cx.cfg).saturating_sub(side.payload.len());
                side.payload
                    .extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or(&[]));
            }
            self.maybe_end_frame(dir, cx);
        }
    }

    /// A frame header was read: checks it and sets up its payload.
    fn begin_frame(&mut self, dir: Direction, h: FrameHeader, cx: &mut Ctx<'_>) {
        let d = side_index(dir);
        cx.stats.http2.frames += 1;
        let f = self.frames_mut(dir);
        let slot = match h.kind {
            Kind::Data => &mut f.data,
            Kind::Headers => &mut f.headers,
            Kind::Continuation => &mut f.continuation,
            Kind::Priority => &mut f.priority,
            Kind::RstStream => &mut f.rst_stream,
            Kind::Settings => &mut f.settings,
            Kind::PushPromise => &mut f.push_promise,
            Kind::Ping => &mut f.ping,
            Kind::GoAway => &mut f.goaway,
            Kind::WindowUpdate => &mut f.window_update,
            Kind::Unknown => &mut f.unknown,
        };
        *slot = slot.saturating_add(1);
        let valid = h.is_valid(self.sides[d].max_frame);
        if !valid {
            self.count_invalid(dir, cx);
            self.flag_stream(h.stream, Anomaly::Http2FrameInvalid);
        }
        // A header block must be continued by CONTINUATION frames on its stream.
        if let Some(b) = &self.sides[d].block {
            if h.kind != Kind::Continuation || h.stream != b.stream {
                let stream = b.stream;
                self.count_invalid(dir, cx);
                self.lose_block(dir, stream, Anomaly::Http2FrameInvalid, cx);
            }
        }
        // A block that opens a stream reserves its key now, at its first packet.
        if valid && matches!(h.kind, Kind::Headers | Kind::PushPromise) {
            let opens = match (dir, h.kind) {
                (Direction::ToServer, Kind::Headers) => {
                    let new = self.streams.iter().all(|s| s.id != h.stream);
                    let above = h.stream > self.last_client_stream;
                    if new && (h.stream % 2 == 0 || !(above || self.midstream)) {
                        // Clients open odd ids, each above the last.
                        self.record.stream_id_errors =
                            self.record.stream_id_errors.saturating_add(1);
                    }
                    if new && above && self.midstream {
                        self.midstream_floor.get_or_insert(h.stream);
                    }
                    new && above
                }
                (Direction::ToClient, Kind::Headers) => {
                    let new = self.streams.iter().all(|s| s.id != h.stream);
                    let before_capture = self.midstream
                        && h.stream < self.midstream_floor.unwrap_or(u32::MAX)
                        && !self.lone_streams.contains(&h.stream)
                        && self.lone_streams.len() < cx.cfg.max_concurrent_streams;
                    new && (before_capture || (self.upgrade && h.stream == 1))
                }
                _ => dir == Direction::ToClient,
            };
            self.sides[d].block = Some(Block {
                stream: h.stream,
                push: h.kind == Kind::PushPromise,
                promised: None,
                buf: Vec::new(),
                start: cx.at,
                key: opens.then(|| cx.next_key()),
                lost: None,
                end_stream: h.kind == Kind::Headers && h.flags & END_STREAM != 0,
                wire: 0,
                frames: 0,
            });
        }
        let side = &mut self.sides[d];
        side.payload.clear();
        side.frame = Some(Current {
            h,
            left: h.len,
            pos: 0,
            pad: 0,
            valid,
            lost: false,
            pad_lost: false,
        });
        self.maybe_end_frame(dir, cx);
    }

    /// Ends the current frame once its payload is all there.
    fn maybe_end_frame(&mut self, dir: Direction, cx: &mut Ctx<'_>) {
        let d = side_index(dir);
        let done = self.sides[d].frame.as_ref().is_some_and(|c| c.left == 0);
        if !done {
            return;
        }
        let Some(cur) = self.sides[d].frame.take() else {
            return;
        };
        let payload = std::mem::take(&mut self.sides[d].payload);
        self.end_frame(dir, &cur, &payload, cx);
        let side = &mut self.sides[d];
        if side.payload.is_empty() {
            // Keep the allocation for the next frame.
            side.payload = payload;
            side.payload.clear();
        }
    }

    fn end_frame(&mut self, dir: Direction, cur: &Current, payload: &[u8], cx: &mut Ctx<'_>) {
        let h = cur.h;
        let wire = HEADER_LEN as u64 + u64::from(h.len);
        if !cur.valid {
            // Skipped; a header block it belonged to is lost with it.
            if matches!(
                h.kind,
                Kind::Headers | Kind::PushPromise | Kind::Continuation
            ) {
                self.lose_block(dir, h.stream, Anomaly::Http2FrameInvalid, cx);
            }
            return;
        }
        match h.kind {
            Kind::Data => {
                if self.stream_mut(h.stream).is_none() {
                    cx.stats.http2.frames_on_closed_streams += 1;
                }
                self.add_wire(dir, h.stream, wire);
                if h.flags & END_STREAM != 0 {
                    self.end_direction(dir, h.stream, cx);
                }
            }
            Kind::Headers | Kind::PushPromise | Kind::Continuation => {
                self.block_frame(dir, cur, payload, cx);
            }
            Kind::RstStream => {
                cx.stats.http2.resets += 1;
                let code = be32(payload, 0);
                self.reset(dir, h.stream, code, cx);
            }
            Kind::Settings => {
                cx.stats.http2.settings_frames += 1;
                // SETTINGS_MAX_FRAME_SIZE (5) limits what the other direction sends.
                for s in payload.chunks_exact(6) {
                    let id = u16::from_be_bytes([s[0], s[1]]);
                    let value = be32(s, 2);
                    if id == 5 && (DEFAULT_MAX_FRAME..=MAX_FRAME_LIMIT).contains(&value) {
                        self.sides[side_index(dir.reverse())].max_frame = value;
                    }
                    // SETTINGS_MAX_CONCURRENT_STREAMS (3) from the server.
                    if id == 3 && dir == Direction::ToClient {
                        self.record.server_max_concurrent_streams = Some(value);
                    }
                }
            }
            Kind::Ping => cx.stats.http2.ping_frames += 1,
            Kind::GoAway => {
                cx.stats.http2.goaways += 1;
                let code = be32(payload, 4);
                self.record.goaway.get_or_insert(GoAway {
                    by: dir,
                    error_code: code,
                    last_stream_id: be32(payload, 0) & 0x7fff_ffff,
                });
                self.goaway = Some(code);
                for s in &mut self.streams {
                    s.info.goaway = Some(code);
                }
            }
            Kind::Priority | Kind::WindowUpdate | Kind::Unknown => {}
        }
    }

    /// A HEADERS, PUSH_PROMISE or CONTINUATION frame: its fragment joins the block.
    fn block_frame(&mut self, dir: Direction, cur: &Current, payload: &[u8], cx: &mut Ctx<'_>) {
        let h = cur.h;
        let d = side_index(dir);
        let max = cx.cfg.max_head_bytes;
        if h.kind == Kind::Continuation {
            cx.stats.http2.continuation_frames += 1;
        }
        if h.kind == Kind::PushPromise && dir == Direction::ToServer {
            // Only servers push.
            self.count_invalid(dir, cx);
            self.lose_block(dir, h.stream, Anomaly::Http2FrameInvalid, cx);
            return;
        }
        let Some(block) = self.sides[d].block.as_mut() else {
            // A CONTINUATION with no block open: what it carried may have changed the
            // table.
            self.count_invalid(dir, cx);
            self.sides[d].table.lose();
            self.flag_stream(h.stream, Anomaly::Http2FrameInvalid);
            return;
        };
        block.wire += HEADER_LEN as u64 + u64::from(h.len);
        block.frames = block.frames.saturating_add(1);
        if h.kind == Kind::PushPromise && !cur.lost {
            // The promised id comes before the fragment: known even when the block is not.
            let at = usize::from(h.flags & PADDED != 0);
            if payload.len() >= at + 4 {
                block.promised = Some(be32(payload, at) & 0x7fff_ffff);
            }
        }
        if cur.lost {
            block.lost.get_or_insert(Anomaly::Gap);
        } else if h.len as usize > payload.len() {
            block.lost.get_or_insert(Anomaly::HeadTooLarge);
        }
        if block.lost.is_none() {
            match fragment(&h, payload) {
                Some(fragment) => {
                    if block.buf.len() + fragment.len() > max {
                        block.lost = Some(Anomaly::HeadTooLarge);
                        block.buf = Vec::new();
                    } else {
                        block.buf.extend_from_slice(fragment);
                    }
                }
                None => {
                    block.lost = Some(Anomaly::Http2FrameInvalid);
                    self.count_invalid(dir, cx);
                }
            }
        }
        if h.flags & END_HEADERS != 0 {
            if let Some(block) = self.sides[d].block.take() {
                self.end_block(dir, block, cx);
            }
        }
    }

    /// Drops the block in progress on `dir` (its fields are lost, and with them the
    /// table's state), flagging its stream.
    fn lose_block(&mut self, dir: Direction, stream: u32, anomaly: Anomaly, cx: &mut Ctx<'_>) {
        let d = side_index(dir);
        self.sides[d].table.lose();
        if let Some(mut block) = self.sides[d].block.take() {
            block.lost = Some(anomaly);
            self.end_block(dir, block, cx);
        } else {
            cx.stats.http2.header_blocks_lost += 1;
            self.flag_stream(stream, anomaly);
        }
    }

    /// A whole header block: decoded, then applied to its stream.
    fn end_block(&mut self, dir: Direction, block: Block, cx: &mut Ctx<'_>) {
        let d = side_index(dir);
        cx.stats.http2.header_blocks += 1;
        self.note_block_frames(block.frames);
        let mut head = Head::default();
        let mut anomalies = std::mem::take(&mut self.carried);
        match block.lost {
            Some(a) => {
                cx.stats.http2.header_blocks_lost += 1;
                self.sides[d].table.lose();
                anomalies.insert(a);
            }
            None => {
                let limits = hpack::Limits {
                    max_fields: cx.cfg.max_headers,
                    max_list_bytes: cx.cfg.max_head_bytes,
                };
                let r = self.sides[d].table.decode(&block.buf, &mut head, limits);
                if r.list_size > self.record.largest_header_list.0 {
                    self.record.largest_header_list = (r.list_size, block.buf.len() as u64);
                }
                if r.unknown_fields > 0 {
                    self.record.hpack_fields_unknown = self
                        .record
                        .hpack_fields_unknown
                        .saturating_add(r.unknown_fields);
                    cx.stats.http2.hpack_fields_unknown += u64::from(r.unknown_fields);
                    anomalies.insert(Anomaly::HpackStateMissing);
                }
                if r.error.is_some() {
                    cx.stats.http2.hpack_errors += 1;
                    anomalies.insert(Anomaly::HpackInvalid);
                }
                if r.fields_dropped > 0 {
                    anomalies.insert(Anomaly::TooManyHeaders);
                }
                if r.list_too_large {
                    anomalies.insert(Anomaly::HeadTooLarge);
                }
                let wire = block.buf.len().max(1) as u64;
                if r.list_size > 16_384 && r.list_size > wire.saturating_mul(BOMB_RATIO) {
                    cx.stats.http2.hpack_bombs += 1;
                    self.record.hpack_bombs = self.record.hpack_bombs.saturating_add(1);
                    anomalies.insert(Anomaly::HpackBomb);
                }
            }
        }
        let pseudo = split_pseudo(&mut head);
        match (dir, block.push, block.promised) {
            (Direction::ToClient, true, None) | (Direction::ToServer, true, _) => {
                // A push whose promised stream is not known: nothing to open.
                cx.stats.http2.frames_on_closed_streams += 1;
            }
            (Direction::ToClient, true, Some(promised)) => {
                cx.stats.http2.pushes += 1;
                let Some(key) = block.key else {
                    return;
                };
                let mut s = self.open_stream(promised, key, block.start, cx);
                s.req = Some(request(head, &pseudo, &block, cx.at));
                s.req_done = true;
                s.info.promised_by = Some(block.stream);
                s.anomalies = anomalies;
                self.add_stream(s, cx);
            }
            (Direction::ToServer, false, _) => {
                self.request_block(head, pseudo, block, anomalies, cx)
            }
            (Direction::ToClient, false, _) => {
                self.response_block(head, pseudo, block, anomalies, cx)
            }
        }
    }

    fn request_block(
        &mut self,
        head: Head,
        pseudo: Pseudo,
        block: Block,
        anomalies: Anomalies,
        cx: &mut Ctx<'_>,
    ) {
        if let Some(s) = self.stream_mut(block.stream) {
            // Trailers of a request: noted, not kept.
            s.anomalies = s.anomalies.union(anomalies);
            s.anomalies.insert(Anomaly::Trailers);
            if let Some(r) = s.req.as_mut() {
                r.wire_bytes += block.wire;
            }
            if block.end_stream {
                self.end_direction(Direction::ToServer, block.stream, cx);
            }
            return;
        }
        let Some(key) = block.key else {
            cx.stats.http2.frames_on_closed_streams += 1;
            return;
        };
        self.last_client_stream = self.last_client_stream.max(block.stream);
        let mut s = self.open_stream(block.stream, key, block.start, cx);
        let mut anomalies = anomalies;
        let connect = pseudo.method.is_some_and(|m| head.get(m) == b"CONNECT");
        let incomplete_line = pseudo.method.is_none() || (pseudo.path.is_none() && !connect);
        if incomplete_line
            && block.lost.is_none()
            && !anomalies.contains(Anomaly::HpackStateMissing)
        {
            // No :method or :path, and not for want of table state: a malformed request.
            anomalies.insert(Anomaly::InvalidStartLine);
        }
        let mut req = request(head, &pseudo, &block, cx.at);
        req.body = body::new_body(&req.head, cx.cfg);
        if req.head.is_grpc() {
            cx.stats.http2.grpc_calls += 1;
            s.grpc = Some(Box::default());
        }
        s.req = Some(req);
        s.anomalies = anomalies;
        let id = s.id;
        self.add_stream(s, cx);
        if block.end_stream {
            self.end_direction(Direction::ToServer, id, cx);
        }
    }

    fn response_block(
        &mut self,
        head: Head,
        pseudo: Pseudo,
        block: Block,
        anomalies: Anomalies,
        cx: &mut Ctx<'_>,
    ) {
        if self.streams.iter().all(|s| s.id != block.stream) {
            let Some(key) = block.key else {
                cx.stats.http2.frames_on_closed_streams += 1;
                return;
            };
            // A response whose request came before the capture (or, after an upgrade,
            // in HTTP/1.1).
            if self.midstream {
                self.lone_streams.push(block.stream);
            }
            let mut s = self.open_stream(block.stream, key, block.start, cx);
            s.req_done = true;
            s.info.upgrade = self.upgrade && block.stream == 1;
            if s.info.upgrade {
                s.req = self.upgrade_request.take().map(|r| *r);
            }
            self.add_stream(s, cx);
        }
        let at = cx.at;
        let cfg = cx.cfg;
        let Some(s) = self.stream_mut(block.stream) else {
            return;
        };
        s.anomalies = s.anomalies.union(anomalies);
        match s.resp.as_mut() {
            Some(r) => {
                // Trailers.
                r.wire_bytes += block.wire;
                r.trailers = head;
            }
            None => {
                let status = pseudo.status(&head);
                if (100..200).contains(&status) && status != 101 {
                    s.interim = s.interim.saturating_add(1);
                    s.resp_wire_before += block.wire;
                    return;
                }
                if pseudo.status.is_none() {
                    s.anomalies.insert(Anomaly::HpackStateMissing);
                }
                let mut resp = HttpResponse {
                    status,
                    version: HttpVersion::Http2,
                    wire_bytes: s.resp_wire_before + block.wire,
                    interim_count: s.interim,
                    start: block.start,
                    end: at,
                    ..HttpResponse::default()
                };
                resp.head = head;
                resp.body = body::new_body(&resp.head, cfg);
                if s.grpc.is_none() && resp.head.is_grpc() {
                    let mut g: Box<[grpc::Framing; 2]> = Box::default();
                    if s.req.as_ref().is_some_and(|r| r.body_bytes > 0) {
                        // The request's messages went by before the call was known.
                        g[0].lose();
                    }
                    s.grpc = Some(g);
                }
                s.resp = Some(resp);
            }
        }
        if block.end_stream {
            self.end_direction(Direction::ToClient, block.stream, cx);
        }
    }

    /// A header block cut short (the connection ended inside it): a stream it would have
    /// opened is kept, with what its frames were, and flagged.
    fn open_unfinished(&mut self, dir: Direction, block: Block, cx: &mut Ctx<'_>) {
        let Some(key) = block.key else {
            return;
        };
        let id = match (block.push, block.promised) {
            (false, _) => block.stream,
            (true, Some(id)) => id,
            (true, None) => return,
        };
        let mut s = self.open_stream(id, key, block.start, cx);
        s.anomalies = std::mem::take(&mut self.carried);
        if let Some(a) = block.lost {
            s.anomalies.insert(a);
        }
        match dir {
            Direction::ToServer => {
                s.req = Some(request(Head::default(), &Pseudo::default(), &block, cx.at));
            }
            Direction::ToClient => {
                s.req_done = true;
                s.resp_wire_before = block.wire;
            }
        }
        self.add_stream(s, cx);
    }

    /// Keeps the most frames one header block took.
    fn note_block_frames(&mut self, frames: u32) {
        let r = &mut self.record.longest_header_block_frames;
        *r = (*r).max(frames);
    }

    fn open_stream(&mut self, id: u32, key: SortKey, start: PacketRef, cx: &mut Ctx<'_>) -> Stream {
        cx.stats.http2.streams += 1;
        self.record.streams = self.record.streams.saturating_add(1);
        Stream {
            id,
            key,
            start,
            req: None,
            resp: None,
            req_done: false,
            resp_done: false,
            interim: 0,
            anomalies: Anomalies::default(),
            info: Http2Stream {
                stream_id: id,
                goaway: self.goaway,
                ..Http2Stream::default()
            },
            grpc: None,
            resp_wire_before: 0,
        }
    }

    /// Adds a stream, giving up the oldest when `max_concurrent_streams` are open.
    fn add_stream(&mut self, s: Stream, cx: &mut Ctx<'_>) {
        if self.streams.len() >= cx.cfg.max_concurrent_streams.max(1) {
            cx.stats.http2.streams_overflowed += 1;
            let oldest = self.streams.remove(0);
            emit(oldest, Some(IncompleteReason::PipelineOverflow), cx);
        }
        self.streams.push(s);
        let open = u32::try_from(self.streams.len()).unwrap_or(u32::MAX);
        self.record.max_open_streams = self.record.max_open_streams.max(open);
    }

    /// Body bytes of a DATA frame's payload, `pos` bytes into it.
    fn data_chunk(&mut self, dir: Direction, chunk: &[u8], pos: u32, cx: &mut Ctx<'_>) {
        let d = side_index(dir);
        let Some(cur) = self.sides[d].frame.as_mut() else {
            return;
        };
        if !cur.valid || cur.pad_lost {
            return;
        }
        let (h, mut chunk, mut pos) = (cur.h, chunk, pos);
        if h.flags & PADDED != 0 {
            if pos == 0 {
                let Some((&pad, rest)) = chunk.split_first() else {
                    return;
                };
                cur.pad = pad;
                if u32::from(pad) >= h.len {
                    cur.valid = false;
                    self.count_invalid(dir, cx);
                    self.flag_stream(h.stream, Anomaly::Http2FrameInvalid);
                    return;
                }
                chunk = rest;
                pos = 1;
            }
            let data_end = h.len - u32::from(cur.pad);
            let keep = data_end.saturating_sub(pos) as usize;
            chunk = chunk.get(..keep.min(chunk.len())).unwrap_or(&[]);
        }
        if chunk.is_empty() {
            return;
        }
        let cfg = cx.cfg;
        let Some(s) = self.stream_mut(h.stream) else {
            return;
        };
        let Some((bytes, captured)) = s.body_mut(dir) else {
            // DATA before the head it belongs to.
            s.anomalies.insert(Anomaly::Http2FrameInvalid);
            return;
        };
        *bytes += chunk.len() as u64;
        if let Some(b) = captured.as_deref_mut() {
            body::capture(b, chunk, cfg);
        }
        if let Some(g) = s.grpc.as_mut() {
            g[side_index(dir)].feed(chunk);
        }
    }

    fn add_wire(&mut self, dir: Direction, stream: u32, wire: u64) {
        if let Some(s) = self.stream_mut(stream) {
            match dir {
                Direction::ToServer => {
                    if let Some(r) = s.req.as_mut() {
                        r.wire_bytes += wire;
                    }
                }
                Direction::ToClient => match s.resp.as_mut() {
                    Some(r) => r.wire_bytes += wire,
                    None => s.resp_wire_before += wire,
                },
            }
        }
    }

    /// END_STREAM in `dir`: that message is complete; a stream with both is handed out.
    fn end_direction(&mut self, dir: Direction, id: u32, cx: &mut Ctx<'_>) {
        let at = cx.at;
        let Some(i) = self.streams.iter().position(|s| s.id == id) else {
            return;
        };
        let s = &mut self.streams[i];
        match dir {
            Direction::ToServer => {
                s.req_done = true;
                if let Some(r) = s.req.as_mut() {
                    r.end = at;
                    finish_body(&mut r.body, &r.head, &mut s.anomalies, cx);
                }
            }
            Direction::ToClient => {
                if s.resp.is_none() {
                    return;
                }
                s.resp_done = true;
                if let Some(r) = s.resp.as_mut() {
                    r.end = at;
                    finish_body(&mut r.body, &r.head, &mut s.anomalies, cx);
                }
            }
        }
        if s.req_done && s.resp_done {
            let s = self.streams.remove(i);
            let reason = s.req.is_none().then_some(IncompleteReason::RequestNotSeen);
            let reason = reason.filter(|_| !s.info.upgrade);
            emit(s, reason, cx);
        }
    }

    /// RST_STREAM: the stream ends here, incomplete unless it already was complete.
    fn reset(&mut self, dir: Direction, id: u32, code: u32, cx: &mut Ctx<'_>) {
        let Some(i) = self.streams.iter().position(|s| s.id == id) else {
            return;
        };
        let mut s = self.streams.remove(i);
        if dir == Direction::ToServer && s.resp.is_none() {
            self.record.rapid_resets = self.record.rapid_resets.saturating_add(1);
        }
        s.info.reset = Some(StreamReset {
            by: dir,
            error_code: code,
        });
        cx.stats.http2.streams_reset += 1;
        emit(s, Some(IncompleteReason::StreamReset), cx);
    }

    fn flag_stream(&mut self, id: u32, a: Anomaly) {
        match self.stream_mut(id) {
            Some(s) => s.anomalies.insert(a),
            None => self.carried.insert(a),
        }
    }

    /// Frame boundaries are lost: every open stream is handed out, nothing more parsed.
    fn give_up(&mut self, cx: &mut Ctx<'_>) {
        if !self.given_up {
            self.given_up = true;
            cx.stats.http2.connections_given_up += 1;
        }
        // A header block in progress still opened its stream.
        for dir in [Direction::ToServer, Direction::ToClient] {
            if let Some(mut block) = self.sides[side_index(dir)].block.take() {
                cx.stats.http2.header_blocks_lost += 1;
                block.lost.get_or_insert(Anomaly::Gap);
                self.open_unfinished(dir, block, cx);
            }
        }
        for mut s in std::mem::take(&mut self.streams) {
            s.anomalies.insert(Anomaly::Gap);
            let reason = open_reason(&s, IncompleteReason::ConnectionClosed);
            emit(s, Some(reason), cx);
        }
        for side in &mut self.sides {
            side.block = None;
            side.frame = None;
            side.payload = Vec::new();
            side.table.lose();
        }
    }
}

/// Ratio of decoded header-list size to block size past which a block is an HPACK bomb
/// indicator (with at least 16 KiB decoded).
const BOMB_RATIO: u64 = 64;

/// Payload bytes kept of a frame: a header block fragment up to the head limit (plus
/// padding and priority fields), a control frame's first [`CONTROL_PREFIX`].
fn payload_room(h: &FrameHeader, cfg: &HttpConfig) -> usize {
    match h.kind {
        Kind::Headers | Kind::PushPromise | Kind::Continuation => cfg.max_head_bytes + 262,
        Kind::Data => 0,
        _ => CONTROL_PREFIX,
    }
}

/// The header block fragment of a HEADERS, PUSH_PROMISE or CONTINUATION payload; None
/// when the padding does not fit.
fn fragment<'p>(h: &FrameHeader, payload: &'p [u8]) -> Option<&'p [u8]> {
    let mut start = 0;
    let mut end = payload.len();
    if h.kind != Kind::Continuation && h.flags & PADDED != 0 {
        let pad = usize::from(*payload.first()?);
        start = 1;
        end = end.checked_sub(pad)?;
    }
    match h.kind {
        Kind::Headers if h.flags & PRIORITY != 0 => start += 5,
        Kind::PushPromise => start += 4,
        _ => {}
    }
    payload.get(start..end)
}

fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Pseudo-header fields of a block, taken out of its header list.
#[derive(Debug, Default)]
struct Pseudo {
    method: Option<Span>,
    path: Option<Span>,
    authority: Option<Span>,
    scheme: Option<Span>,
    status: Option<Span>,
}

impl Pseudo {
    /// The `:status` as a number; 0 when missing or not three digits.
    fn status(&self, head: &Head) -> u16 {
        let Some(s) = self.status else {
            return 0;
        };
        match head.get(s) {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_digit) && a != b'0' => {
                u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
            }
            _ => 0,
        }
    }
}

fn split_pseudo(head: &mut Head) -> Pseudo {
    let mut p = Pseudo::default();
    let buf = &head.buf;
    head.headers.retain(|&(name, value)| {
        let n = buf.get(name.range()).unwrap_or(&[]);
        if n.first() != Some(&b':') {
            return true;
        }
        let slot = match n {
            b":method" => &mut p.method,
            b":path" => &mut p.path,
            b":authority" => &mut p.authority,
            b":scheme" => &mut p.scheme,
            b":status" => &mut p.status,
            _ => return false,
        };
        slot.get_or_insert(value);
        false
    });
    p
}

fn request(head: Head, p: &Pseudo, block: &Block, at: PacketRef) -> HttpRequest {
    let empty = Span::new(head.buf.len(), 0);
    let method = p.method.unwrap_or(empty);
    let is_connect = head.get(method) == b"CONNECT";
    let target = match (p.path, is_connect) {
        (Some(path), _) => path,
        (None, true) => p.authority.unwrap_or(empty),
        (None, false) => empty,
    };
    HttpRequest {
        method,
        target,
        authority: p.authority.unwrap_or(empty),
        scheme: p.scheme.unwrap_or(empty),
        version: HttpVersion::Http2,
        wire_bytes: block.wire,
        start: block.start,
        end: at,
        head,
        ..HttpRequest::default()
    }
}

fn finish_body(
    captured: &mut Option<Box<CapturedBody>>,
    head: &Head,
    anomalies: &mut Anomalies,
    cx: &mut Ctx<'_>,
) {
    if let Some(b) = captured.as_deref_mut() {
        body::finish(b, head, cx.cfg, cx.stats, anomalies);
    }
}

/// Why an open stream is handed out before it ended.
fn open_reason(s: &Stream, resp_missing: IncompleteReason) -> IncompleteReason {
    if s.req.is_none() && !s.info.upgrade {
        IncompleteReason::RequestNotSeen
    } else if !s.req_done {
        IncompleteReason::RequestIncomplete
    } else if s.resp.is_none() {
        resp_missing
    } else {
        IncompleteReason::ResponseIncomplete
    }
}

/// Hands a stream out as a transaction.
fn emit(mut s: Stream, incomplete: Option<IncompleteReason>, cx: &mut Ctx<'_>) {
    // Bodies cut short keep what was captured, marked.
    if let Some(b) = s.req.as_mut().and_then(|r| r.body.as_deref_mut()) {
        b.truncated |= !s.req_done;
    }
    if let Some(b) = s.resp.as_mut().and_then(|r| r.body.as_deref_mut()) {
        b.truncated |= !s.resp_done;
    }
    let _ = incomplete;
    let grpc = s.grpc.take().map(|mut g| {
        Box::new(GrpcMessages {
            request: g[0].end(),
            response: g[1].end(),
        })
    });
    cx.stats.transactions_emitted += 1;
    cx.out.push(HttpTransaction {
        key: s.key,
        request: s.req,
        response: s.resp,
        anomalies: s.anomalies,
        incomplete,
        tls: None,
        http2: Some(Box::new(s.info)),
        grpc,
    });
}

impl AppParser for H2Conn {
    type Config = HttpConfig;
    type Stats = HttpStats;
    type Output = HttpTransaction;

    fn on_data(&mut self, dir: Direction, data: &[u8], cx: &mut Ctx<'_>) -> usize {
        self.read(dir, data, cx);
        data.len()
    }

    fn on_gap(&mut self, dir: Direction, len: u64, cx: &mut Ctx<'_>) {
        let d = side_index(dir);
        if self.given_up || self.sides[d].lost {
            return;
        }
        let inside = self.sides[d]
            .frame
            .as_ref()
            .is_some_and(|c| u64::from(c.left) >= len);
        if !inside {
            cx.stats.http2.directions_lost += 1;
            self.give_up(cx);
            return;
        }
        let Some(cur) = self.sides[d].frame.as_mut() else {
            return;
        };
        // The body bytes the gap took: all of it, or its overlap with the data between a
        // known pad length and the padding.
        let gap = len as u32;
        let body = if cur.h.flags & PADDED == 0 {
            u64::from(gap)
        } else if cur.pos == 0 {
            cur.pad_lost = true;
            0
        } else {
            let data_end = cur.h.len.saturating_sub(u32::from(cur.pad));
            u64::from(data_end.min(cur.pos + gap).saturating_sub(cur.pos.max(1)))
        };
        cur.left -= gap;
        cur.pos += gap;
        cur.lost = true;
        let (h, valid) = (cur.h, cur.valid);
        match h.kind {
            Kind::Data if valid => {
                cx.stats.gaps_in_body += 1;
                if let Some(s) = self.stream_mut(h.stream) {
                    s.anomalies.insert(Anomaly::Gap);
                    if let Some((bytes, captured)) = s.body_mut(dir) {
                        *bytes += body;
                        if let Some(b) = captured.as_deref_mut() {
                            b.truncated = true;
                        }
                    }
                    if let Some(g) = s.grpc.as_mut() {
                        g[d].lose();
                    }
                }
            }
            _ => {
                // A control frame is not read; a header block is lost (at its end).
                if let Some(c) = self.sides[d].frame.as_mut() {
                    c.valid = c.valid
                        && matches!(
                            h.kind,
                            Kind::Headers | Kind::PushPromise | Kind::Continuation
                        );
                }
            }
        }
        self.maybe_end_frame(dir, cx);
    }

    fn on_fin(&mut self, _dir: Direction, _cx: &mut Ctx<'_>) {}

    fn on_anomaly(&mut self, _dir: Direction, anomaly: Anomaly) {
        self.carried.insert(anomaly);
    }

    fn expire(&mut self, cx: &mut Ctx<'_>) {
        let timeout = cx.cfg.transaction_timeout_ms.saturating_mul(1_000_000);
        let now = cx.at.ts;
        let mut i = 0;
        while i < self.streams.len() {
            let s = &self.streams[i];
            if s.req_done && s.resp.is_none() && now.nanos_since(s.start.ts) > timeout {
                let s = self.streams.remove(i);
                emit(s, Some(IncompleteReason::ResponseTimeout), cx);
            } else {
                i += 1;
            }
        }
    }

    fn finish(&mut self, cause: FinishCause, cx: &mut Ctx<'_>) {
        let reason = match cause {
            FinishCause::EndOfCapture => IncompleteReason::EndOfCapture,
            FinishCause::ConnectionClosed | FinishCause::IdleTimeout => {
                IncompleteReason::ConnectionClosed
            }
        };
        // A header block that never ended still opened its stream.
        for dir in [Direction::ToServer, Direction::ToClient] {
            let d = side_index(dir);
            if let Some(block) = self.sides[d].block.take() {
                cx.stats.http2.header_blocks_lost += 1;
                self.record.unfinished_header_blocks += 1;
                self.note_block_frames(block.frames);
                self.open_unfinished(dir, block, cx);
            }
        }
        for s in std::mem::take(&mut self.streams) {
            let r = open_reason(&s, reason);
            emit(s, Some(r), cx);
        }
        // The connection's record comes after its streams.
        if !self.finished {
            self.record.given_up = self.given_up;
            self.record.end = cx.at;
            self.record.key = cx.next_key();
            self.finished = true;
        }
    }

    fn open_transactions(&self, out: &mut Vec<(SortKey, Timestamp)>) {
        out.extend(self.streams.iter().map(|s| (s.key, s.start.ts)));
        for side in &self.sides {
            if let Some(key) = side
                .block
                .as_ref()
                .and_then(|b| b.key.map(|k| (k, b.start.ts)))
            {
                out.push(key);
            }
        }
    }

    fn handoff(&self) -> Option<Handoff> {
        None
    }

    fn buffered_bytes(&self) -> usize {
        let sides: usize = self
            .sides
            .iter()
            .map(|s| {
                s.payload.capacity()
                    + s.block.as_ref().map_or(0, |b| b.buf.capacity())
                    + s.table.bytes()
            })
            .sum();
        sides + self.streams.iter().map(Stream::held_bytes).sum::<usize>()
    }

    /// Gives back what the connection holds: a header block in progress is marked lost
    /// (its CONTINUATIONs are still read, so no frame is blamed on the peer), the tables
    /// are forgotten, and open streams are handed out as they stand, flagged `head_memcap`.
    fn shed(&mut self, cx: &mut Ctx<'_>) {
        cx.stats.heads_shed += 1;
        for side in &mut self.sides {
            if let Some(b) = side.block.as_mut() {
                b.lost.get_or_insert(Anomaly::HeadMemcap);
                b.buf = Vec::new();
            }
            side.table.lose();
            if let Some(c) = side.frame.as_mut() {
                match c.h.kind {
                    Kind::Headers | Kind::PushPromise | Kind::Continuation => c.lost = true,
                    Kind::Data => {}
                    _ => c.valid = false,
                }
            }
            side.payload = Vec::new();
        }
        for mut s in std::mem::take(&mut self.streams) {
            s.anomalies.insert(Anomaly::HeadMemcap);
            let reason = open_reason(&s, IncompleteReason::ResponseIncomplete);
            emit(s, Some(reason), cx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apitap_core::ParserEnv;

    type Env = ParserEnv<HttpConfig, HttpStats>;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        v.push(kind);
        v.push(flags);
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    /// A request header block: GET (static 2), http (6), `path` literal, authority a.
    fn request_block(path: &str) -> Vec<u8> {
        let mut b = vec![0x82, 0x86];
        hpack::encode_literal(&mut b, b":path", path.as_bytes(), false);
        hpack::encode_literal(&mut b, b":authority", b"a", false);
        b
    }

    fn response_block(status: &str) -> Vec<u8> {
        let mut b = Vec::new();
        hpack::encode_literal(&mut b, b":status", status.as_bytes(), false);
        hpack::encode_literal(&mut b, b"content-type", b"application/json", false);
        b
    }

    struct Run {
        env: Env,
        conn: H2Conn,
        at: PacketRef,
    }

    impl Run {
        fn new(cfg: HttpConfig) -> Run {
            let mut env = Env::new(cfg.clone());
            let conn = H2Conn::new(&cfg, &mut env.stats);
            let mut run = Run {
                env,
                conn,
                at: PacketRef {
                    index: 1,
                    ts: Timestamp(0),
                },
            };
            run.client(PREFACE);
            run
        }
        fn client(&mut self, b: &[u8]) {
            self.at.index += 1;
            self.conn
                .on_data(Direction::ToServer, b, &mut self.env.cx(self.at));
        }
        fn server(&mut self, b: &[u8]) {
            self.at.index += 1;
            self.conn
                .on_data(Direction::ToClient, b, &mut self.env.cx(self.at));
        }
        fn finish(&mut self) {
            self.conn
                .finish(FinishCause::ConnectionClosed, &mut self.env.cx(self.at));
        }
        fn h2(&self) -> &crate::stats::Http2Stats {
            &self.env.stats.http2
        }
    }

    fn exchange(run: &mut Run, stream: u32, path: &str) {
        run.client(&frame(
            1,
            END_HEADERS | END_STREAM,
            stream,
            &request_block(path),
        ));
        run.server(&frame(1, END_HEADERS, stream, &response_block("200")));
        run.server(&frame(0, END_STREAM, stream, b"{}"));
    }

    #[test]
    fn a_request_and_its_response_make_one_transaction() {
        let mut run = Run::new(HttpConfig::default());
        exchange(&mut run, 1, "/a?x=1");
        let tx = &run.env.out[0];
        let req = tx.request.as_ref().unwrap();
        assert_eq!((req.method(), req.target()), (&b"GET"[..], &b"/a?x=1"[..]));
        assert_eq!(
            (req.authority(), req.scheme()),
            (Some(&b"a"[..]), Some(&b"http"[..]))
        );
        assert!(
            req.head.headers.is_empty(),
            "pseudo-headers are not headers"
        );
        let resp = tx.response.as_ref().unwrap();
        assert_eq!((resp.status, resp.body_bytes), (200, 2));
        assert_eq!(
            resp.head.header("content-type"),
            Some(&b"application/json"[..])
        );
        assert_eq!(tx.incomplete, None);
        assert_eq!(tx.http2.as_ref().unwrap().stream_id, 1);
    }

    #[test]
    fn bad_frames_are_counted_and_skipped_by_their_length() {
        let mut run = Run::new(HttpConfig::default());
        run.client(&frame(0, 0, 0, b"data on stream 0"));
        run.client(&frame(1, END_HEADERS, 0, &request_block("/")));
        run.client(&frame(4, 0, 3, &[0; 6])); // SETTINGS on a stream
        run.client(&frame(6, 0, 0, &[0; 7])); // PING of 7 bytes
        run.client(&frame(3, 0, 0, &[0; 4])); // RST_STREAM on stream 0
        run.client(&frame(8, 0, 0, &[0; 3])); // WINDOW_UPDATE of 3
        run.client(&frame(0, 0, 1, &vec![0; 20_000])); // past the frame size
        run.client(&frame(9, END_HEADERS, 1, &[0x82])); // CONTINUATION with no block
        assert_eq!(run.h2().frames_invalid, 8);
        // Framing held: the next request is read.
        exchange(&mut run, 5, "/ok");
        assert_eq!(run.env.out.len(), 1);
        assert_eq!(run.env.out[0].request.as_ref().unwrap().target(), b"/ok");
    }

    #[test]
    fn bad_padding_loses_the_block_and_flags_the_stream() {
        let mut run = Run::new(HttpConfig::default());
        let mut padded = vec![200];
        padded.extend_from_slice(&request_block("/"));
        run.client(&frame(1, END_HEADERS | END_STREAM | PADDED, 1, &padded));
        run.server(&frame(
            1,
            END_HEADERS | END_STREAM,
            1,
            &response_block("204"),
        ));
        let tx = &run.env.out[0];
        assert!(tx.anomalies.contains(Anomaly::Http2FrameInvalid));
        assert_eq!(run.h2().frames_invalid, 1);
        // DATA padding longer than the frame.
        run.client(&frame(1, END_HEADERS, 3, &request_block("/p")));
        run.client(&frame(0, PADDED | END_STREAM, 3, &[9, 1, 2]));
        assert_eq!(run.h2().frames_invalid, 2);
    }

    #[test]
    fn bad_hpack_is_counted_and_the_table_forgotten() {
        for block in [
            vec![0x80],                                     // index 0
            vec![0xff, 0x80],                               // index past a complete table
            vec![0x40, 0x7f, 0xff, 0xff, 0xff, 0xff, 0x7f], // huge literal length
            vec![0x40, 0x81, 0x00, 0x01, b'v'],             // Huffman garbage
            vec![0x40, 0x05, b'a'],                         // literal past the block
        ] {
            let mut run = Run::new(HttpConfig::default());
            let mut b = vec![0x82, 0x84];
            b.extend_from_slice(&block);
            run.client(&frame(1, END_HEADERS | END_STREAM, 1, &b));
            run.server(&frame(
                1,
                END_HEADERS | END_STREAM,
                1,
                &response_block("200"),
            ));
            let tx = &run.env.out[0];
            assert!(tx.anomalies.contains(Anomaly::HpackInvalid), "{block:?}");
            assert_eq!(tx.request.as_ref().unwrap().target(), b"/", "{block:?}");
            assert_eq!(run.h2().hpack_errors, 1);
            // The table is no longer known: a dynamic index is now left out, not an error.
            run.client(&frame(1, END_HEADERS | END_STREAM, 3, &[0x82, 0x84, 0xbe]));
            run.finish();
            assert!(run.env.out[1]
                .anomalies
                .contains(Anomaly::HpackStateMissing));
            assert_eq!(run.h2().hpack_fields_unknown, 1);
        }
    }

    #[test]
    fn a_header_block_past_the_limit_is_lost_with_the_table() {
        let cfg = HttpConfig {
            max_head_bytes: 64,
            ..HttpConfig::default()
        };
        let mut run = Run::new(cfg);
        let mut b = request_block("/");
        hpack::encode_literal(&mut b, b"x-big", &[b'x'; 100], true);
        run.client(&frame(1, END_HEADERS | END_STREAM, 1, &b));
        run.finish();
        let tx = &run.env.out[0];
        assert!(tx.anomalies.contains(Anomaly::HeadTooLarge));
        assert!(tx.request.as_ref().unwrap().head.headers.is_empty());
        assert_eq!(run.h2().header_blocks_lost, 1);
    }

    #[test]
    fn an_interrupted_block_still_opens_its_stream_flagged() {
        let mut run = Run::new(HttpConfig::default());
        run.client(&frame(1, END_STREAM, 1, &request_block("/a")));
        run.client(&frame(8, 0, 0, &[0, 0, 1, 0]));
        exchange(&mut run, 3, "/b");
        run.finish();
        let lost = run
            .env
            .out
            .iter()
            .find(|t| t.http2.as_ref().unwrap().stream_id == 1)
            .unwrap();
        assert!(lost.anomalies.contains(Anomaly::Http2FrameInvalid));
        assert!(lost.request.as_ref().unwrap().target().is_empty());
        assert_eq!(run.h2().header_blocks_lost, 1);
    }

    #[test]
    fn continuation_frames_join_the_block() {
        let mut run = Run::new(HttpConfig::default());
        let b = request_block("/cont");
        run.client(&frame(1, END_STREAM, 1, &b[..3]));
        run.client(&frame(9, 0, 1, &b[3..6]));
        run.client(&frame(9, END_HEADERS, 1, &b[6..]));
        run.server(&frame(
            1,
            END_HEADERS | END_STREAM,
            1,
            &response_block("200"),
        ));
        assert_eq!(run.env.out[0].request.as_ref().unwrap().target(), b"/cont");
        assert_eq!(run.h2().continuation_frames, 2);
    }

    #[test]
    fn a_push_is_its_own_transaction() {
        let mut run = Run::new(HttpConfig::default());
        run.client(&frame(
            1,
            END_HEADERS | END_STREAM,
            1,
            &request_block("/page"),
        ));
        let mut promise = 2u32.to_be_bytes().to_vec();
        promise.extend_from_slice(&request_block("/style.css"));
        run.server(&frame(5, END_HEADERS, 1, &promise));
        run.server(&frame(
            1,
            END_HEADERS | END_STREAM,
            1,
            &response_block("200"),
        ));
        run.server(&frame(
            1,
            END_HEADERS | END_STREAM,
            2,
            &response_block("200"),
        ));
        assert_eq!(run.env.out.len(), 2);
        let pushed = &run.env.out[1];
        assert_eq!(pushed.request.as_ref().unwrap().target(), b"/style.css");
        assert_eq!(pushed.http2.as_ref().unwrap().promised_by, Some(1));
        assert_eq!(pushed.incomplete, None);
        // A client may not push.
        let mut run = Run::new(HttpConfig::default());
        run.client(&frame(5, END_HEADERS, 1, &promise));
        assert_eq!(run.h2().frames_invalid, 1);
    }

    #[test]
    fn a_gap_inside_data_is_absorbed_and_elsewhere_gives_up() {
        let mut run = Run::new(HttpConfig::default());
        run.client(&frame(1, END_HEADERS | END_STREAM, 1, &request_block("/")));
        run.server(&frame(1, END_HEADERS, 1, &response_block("200")));
        let data = frame(0, END_STREAM, 1, &[7; 100]);
        run.server(&data[..20]);
        run.conn
            .on_gap(Direction::ToClient, 50, &mut run.env.cx(run.at));
        run.server(&data[70..]);
        let tx = &run.env.out[0];
        assert!(tx.anomalies.contains(Anomaly::Gap));
        assert_eq!(
            (tx.response.as_ref().unwrap().body_bytes, tx.incomplete),
            (100, None)
        );
        // A gap between frames: boundaries are lost, open streams go out, nothing more.
        run.client(&frame(1, END_HEADERS | END_STREAM, 3, &request_block("/x")));
        run.conn
            .on_gap(Direction::ToClient, 10, &mut run.env.cx(run.at));
        exchange(&mut run, 5, "/y");
        assert_eq!(run.env.out.len(), 2);
        assert_eq!(
            run.env.out[1].incomplete,
            Some(IncompleteReason::ConnectionClosed)
        );
        assert_eq!(run.h2().connections_given_up, 1);
        assert!(run.h2().bytes_ignored > 0);
    }

    #[test]
    fn too_many_open_streams_give_up_the_oldest_and_requests_time_out() {
        let cfg = HttpConfig {
            max_concurrent_streams: 2,
            transaction_timeout_ms: 1000,
            ..HttpConfig::default()
        };
        let mut run = Run::new(cfg);
        for id in [1, 3, 5] {
            run.client(&frame(1, END_HEADERS | END_STREAM, id, &request_block("/")));
        }
        assert_eq!(
            run.env.out[0].incomplete,
            Some(IncompleteReason::PipelineOverflow)
        );
        run.at.ts = Timestamp(2_000_000_000);
        run.conn.expire(&mut run.env.cx(run.at));
        assert_eq!(run.env.out.len(), 3);
        assert!(run.env.out[1..]
            .iter()
            .all(|t| t.incomplete == Some(IncompleteReason::ResponseTimeout)));
    }

    #[test]
    fn resets_say_who_and_why() {
        let mut run = Run::new(HttpConfig::default());
        run.client(&frame(1, END_HEADERS | END_STREAM, 1, &request_block("/")));
        run.client(&frame(3, 0, 1, &8u32.to_be_bytes()));
        let tx = &run.env.out[0];
        assert_eq!(tx.incomplete, Some(IncompleteReason::StreamReset));
        let reset = tx.http2.as_ref().unwrap().reset.unwrap();
        assert_eq!((reset.by, reset.error_code), (Direction::ToServer, 8));
    }

    #[test]
    fn a_wrong_preface_gives_the_connection_up() {
        let cfg = HttpConfig::default();
        let mut env = Env::new(cfg.clone());
        let mut conn = H2Conn::new(&cfg, &mut env.stats);
        conn.on_data(
            Direction::ToServer,
            b"PRI * HTTP/2.0\r\n\r\nXX",
            &mut env.cx(PacketRef::default()),
        );
        assert_eq!(env.stats.http2.invalid_prefaces, 1);
        assert_eq!(env.stats.http2.connections_given_up, 1);
    }

    #[test]
    fn a_block_far_larger_decoded_than_on_the_wire_is_a_bomb() {
        let mut run = Run::new(HttpConfig::default());
        let mut b = request_block("/");
        hpack::encode_literal(&mut b, b"x", &[b'a'; 4000], true);
        run.client(&frame(1, END_HEADERS | END_STREAM, 1, &b));
        // 4000 decoded bytes per byte on the wire.
        let mut bomb = vec![0x82, 0x84];
        bomb.extend(std::iter::repeat_n(0xbe, 200));
        run.client(&frame(1, END_HEADERS | END_STREAM, 3, &bomb));
        run.finish();
        assert!(run.env.out[1].anomalies.contains(Anomaly::HpackBomb));
        assert!(!run.env.out[0].anomalies.contains(Anomaly::HpackBomb));
        assert_eq!(run.h2().hpack_bombs, 1);
    }

    #[test]
    fn grpc_messages_are_counted_per_direction() {
        let mut run = Run::new(HttpConfig::default());
        let mut b = vec![0x83, 0x86];
        hpack::encode_literal(&mut b, b":path", b"/pkg.Svc/Get", false);
        hpack::encode_literal(&mut b, b"content-type", b"application/grpc", false);
        run.client(&frame(1, END_HEADERS, 1, &b));
        run.client(&frame(0, END_STREAM, 1, &[0, 0, 0, 0, 2, 1, 2]));
        let mut r = Vec::new();
        hpack::encode_literal(&mut r, b":status", b"200", false);
        hpack::encode_literal(&mut r, b"content-type", b"application/grpc", false);
        run.server(&frame(1, END_HEADERS, 1, &r));
        run.server(&frame(0, 0, 1, &[1, 0, 0, 0, 1, 9, 0, 0, 0, 0, 0]));
        let mut t = Vec::new();
        hpack::encode_literal(&mut t, b"grpc-status", b"0", false);
        run.server(&frame(1, END_HEADERS | END_STREAM, 1, &t));
        let tx = &run.env.out[0];
        let g = tx.grpc.as_ref().unwrap();
        assert_eq!((g.request.messages, g.request.bytes), (1, 2));
        assert_eq!((g.response.messages, g.response.compressed), (2, 1));
        assert_eq!(
            tx.response.as_ref().unwrap().trailers.header("grpc-status"),
            Some(&b"0"[..])
        );
        assert_eq!(run.h2().grpc_calls, 1);
    }
    #[test]
    fn a_lost_push_promise_never_becomes_its_parents_response() {
        let mut run = Run::new(HttpConfig::default());
        run.client(&frame(
            1,
            END_HEADERS | END_STREAM,
            1,
            &request_block("/page"),
        ));
        let mut promise = 2u32.to_be_bytes().to_vec();
        promise.extend_from_slice(&request_block("/style.css"));
        let f = frame(5, END_HEADERS, 1, &promise);
        run.server(&f[..15]);
        run.conn
            .on_gap(Direction::ToClient, 3, &mut run.env.cx(run.at));
        run.server(&f[18..]);
        run.server(&frame(
            1,
            END_HEADERS | END_STREAM,
            1,
            &response_block("404"),
        ));
        let page = run
            .env
            .out
            .iter()
            .find(|t| t.http2.as_ref().unwrap().stream_id == 1)
            .unwrap();
        assert_eq!(page.response.as_ref().unwrap().status, 404);
        assert!(page.response.as_ref().unwrap().trailers.headers.is_empty());
        // The pushed stream was opened, flagged, with what could be known.
        let pushed = run
            .env
            .out
            .iter()
            .find(|t| t.http2.as_ref().unwrap().stream_id == 2);
        assert!(pushed.is_none_or(|t| t.anomalies.contains(Anomaly::Gap)));
    }

    #[test]
    fn giving_up_hands_out_a_block_in_progress() {
        let mut run = Run::new(HttpConfig::default());
        run.client(&frame(1, END_STREAM, 3, &request_block("/a")));
        let mut open = Vec::new();
        run.conn.open_transactions(&mut open);
        assert_eq!(open.len(), 1);
        run.conn
            .on_gap(Direction::ToServer, 100, &mut run.env.cx(run.at));
        run.finish();
        assert_eq!(run.env.out.len(), 1);
        assert!(run.env.out[0].anomalies.contains(Anomaly::Gap));
        assert_eq!(run.h2().header_blocks_lost, 1);
    }

    #[test]
    fn joined_midway_a_stream_is_never_handed_out_twice() {
        let cfg = HttpConfig::default();
        let mut env = Env::new(cfg.clone());
        let mut conn = H2Conn::midstream(&cfg, &mut env.stats);
        let at = PacketRef {
            index: 1,
            ts: Timestamp(0),
        };
        // A response to a request from before the capture, then the client's stream 5
        // reset while its response is in flight.
        let mut first = frame(1, END_HEADERS | END_STREAM, 3, &response_block("200"));
        first.extend(frame(8, 0, 0, &[0, 0, 1, 0]));
        conn.on_data(Direction::ToClient, &first, &mut env.cx(at));
        conn.on_data(
            Direction::ToServer,
            &frame(1, END_HEADERS | END_STREAM, 5, &request_block("/x")),
            &mut env.cx(at),
        );
        conn.on_data(
            Direction::ToServer,
            &frame(3, 0, 5, &8u32.to_be_bytes()),
            &mut env.cx(at),
        );
        conn.on_data(
            Direction::ToClient,
            &frame(1, END_HEADERS | END_STREAM, 5, &response_block("200")),
            &mut env.cx(at),
        );
        conn.on_data(
            Direction::ToClient,
            &frame(1, END_HEADERS | END_STREAM, 3, &response_block("200")),
            &mut env.cx(at),
        );
        conn.finish(FinishCause::EndOfCapture, &mut env.cx(at));
        let ids: Vec<u32> = env
            .out
            .iter()
            .map(|t| t.http2.as_ref().unwrap().stream_id)
            .collect();
        assert_eq!(ids, [3, 5]);
        assert_eq!(env.stats.http2.frames_on_closed_streams, 2);
    }

    #[test]
    fn endless_interim_responses_do_not_overflow() {
        let mut run = Run::new(HttpConfig::default());
        run.client(&frame(1, END_HEADERS | END_STREAM, 1, &request_block("/")));
        let mut b = Vec::new();
        hpack::encode_literal(&mut b, b":status", b"100", true);
        run.server(&frame(1, END_HEADERS, 1, &b));
        let more: Vec<u8> = (0..70_000)
            .flat_map(|_| frame(1, END_HEADERS, 1, &[0xbe]))
            .collect();
        run.server(&more);
        run.server(&frame(
            1,
            END_HEADERS | END_STREAM,
            1,
            &response_block("200"),
        ));
        let resp = run.env.out[0].response.as_ref().unwrap();
        assert_eq!((resp.status, resp.interim_count), (200, u16::MAX));
    }

    #[test]
    fn shedding_frees_streams_and_blames_no_frame_on_the_peer() {
        let mut run = Run::new(HttpConfig::default());
        exchange(&mut run, 1, "/done");
        run.client(&frame(
            1,
            END_HEADERS | END_STREAM,
            3,
            &request_block("/open"),
        ));
        let b = request_block("/cut");
        run.client(&frame(1, END_STREAM, 5, &b[..4]));
        assert!(run.conn.buffered_bytes() > 0);
        run.conn.shed(&mut run.env.cx(run.at));
        assert_eq!(run.conn.buffered_bytes(), 0);
        run.client(&frame(9, END_HEADERS, 5, &b[4..]));
        run.finish();
        assert_eq!(run.h2().frames_invalid, 0);
        let cut: Vec<_> = run.env.out[1..]
            .iter()
            .map(|t| t.anomalies.contains(Anomaly::HeadMemcap))
            .collect();
        assert_eq!(cut, [true, true]);
    }

    #[test]
    fn a_gap_in_padded_data_counts_only_data() {
        let mut run = Run::new(HttpConfig::default());
        run.client(&frame(1, END_HEADERS | END_STREAM, 1, &request_block("/")));
        run.server(&frame(1, END_HEADERS, 1, &response_block("200")));
        // Pad length 10, 20 data bytes, 10 padding; the gap takes data 5..15.
        let mut payload = vec![10];
        payload.extend_from_slice(&[1; 20]);
        payload.extend_from_slice(&[0; 10]);
        let f = frame(0, PADDED | END_STREAM, 1, &payload);
        run.server(&f[..9 + 6]);
        run.conn
            .on_gap(Direction::ToClient, 10, &mut run.env.cx(run.at));
        run.server(&f[9 + 16..]);
        assert_eq!(run.env.out[0].response.as_ref().unwrap().body_bytes, 20);
    }

    #[test]
    fn a_request_without_method_or_path_is_flagged() {
        let mut run = Run::new(HttpConfig::default());
        let mut b = Vec::new();
        hpack::encode_literal(&mut b, b"x-only", b"1", false);
        run.client(&frame(1, END_HEADERS | END_STREAM, 1, &b));
        run.finish();
        assert!(run.env.out[0].anomalies.contains(Anomaly::InvalidStartLine));
    }

    #[test]
    fn the_connection_record_says_what_its_frames_and_streams_were() {
        let mut run = Run::new(HttpConfig::default());
        let mut settings = Vec::new();
        settings.extend_from_slice(&[0, 3, 0, 0, 0, 100]);
        run.server(&frame(4, 0, 0, &settings));
        for id in [1, 3, 5] {
            run.client(&frame(1, END_HEADERS | END_STREAM, id, &request_block("/")));
            run.client(&frame(3, 0, id, &8u32.to_be_bytes()));
        }
        run.client(&frame(
            1,
            END_HEADERS | END_STREAM,
            4,
            &request_block("/even"),
        ));
        run.client(&frame(6, 0, 0, &[0; 8]));
        run.client(&frame(7, 0, 0, &[0, 0, 0, 5, 0, 0, 0, 0]));
        assert!(run.conn.take_connection().is_none(), "only once it ended");
        run.finish();
        let c = run.conn.take_connection().unwrap();
        // Stream 4 (even, and below 5) is not opened: counted.
        assert_eq!((c.streams, c.rapid_resets, c.stream_id_errors), (3, 3, 1));
        assert_eq!(
            (
                c.client_frames.headers,
                c.client_frames.rst_stream,
                c.client_frames.ping
            ),
            (4, 3, 1)
        );
        assert_eq!(c.server_max_concurrent_streams, Some(100));
        assert_eq!(
            c.goaway.map(|g| (g.by, g.last_stream_id)),
            Some((Direction::ToServer, 5))
        );
        assert!(c.key.ordinal > run.env.out.iter().map(|t| t.key.ordinal).max().unwrap());
        assert!(run.conn.take_connection().is_none());
    }
}
