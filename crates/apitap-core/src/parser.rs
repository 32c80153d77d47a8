//! The application-layer parser contract, after Suricata's app-layer one: a parser gets
//! one connection's reassembled bytes per direction in any split, is told about gaps and
//! ends, keeps its own state, hands finished transactions out with anomaly flags, and
//! never panics on input. apitap-session drives one parser per connection (and per layer
//! of a connection that changes protocol) through this trait.

use crate::flow::Direction;
use crate::http::{Anomaly, HttpTransaction};
use crate::time::{PacketRef, SortKey, Timestamp};

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

/// What a connection's bytes become after a parser hands the stream on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handoff {
    /// A tunnel (HTTP CONNECT answered 2xx): the bytes are another connection's, whose
    /// protocol is found out from them.
    Tunnel,
    /// `101 Switching Protocols` to the protocol the `Upgrade` header named.
    Upgrade(UpgradeTo),
}

/// The protocol an HTTP/1.1 `Upgrade` switched to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpgradeTo {
    /// `websocket`.
    WebSocket,
    /// `h2c` (HTTP/2 over cleartext).
    H2c,
    /// Anything else, or no `Upgrade` header.
    Other,
}

/// Everything one parser call needs besides the parser's own state. `O` is what the
/// parser hands out: HTTP transactions, or a connection record.
#[derive(Debug)]
pub struct ParseCx<'a, C, S, O = HttpTransaction> {
    /// The packet that delivered what is being parsed; its time runs every timeout.
    pub at: PacketRef,
    /// Settings.
    pub cfg: &'a C,
    /// Counters.
    pub stats: &'a mut S,
    /// Where finished transactions (or records) go.
    pub out: &'a mut Vec<O>,
    /// The connection's next transaction ordinal, shared by every parser of the
    /// connection so that event ids stay unique when it changes protocol.
    pub ordinal: &'a mut u32,
}

impl<C, S, O> ParseCx<'_, C, S, O> {
    /// The key of a transaction that starts now: this packet, the next ordinal.
    pub fn next_key(&mut self) -> SortKey {
        let key = SortKey {
            packet: self.at.index,
            flow: 0,
            ordinal: *self.ordinal,
        };
        *self.ordinal = self.ordinal.saturating_add(1);
        key
    }
}

/// A parser's surroundings when it is driven on its own (tests, benches, fuzzing): its
/// settings, counters, output and the connection's ordinals in one place.
#[derive(Debug, Default)]
pub struct ParserEnv<C, S, O = HttpTransaction> {
    /// Settings.
    pub cfg: C,
    /// Counters.
    pub stats: S,
    /// Transactions handed out.
    pub out: Vec<O>,
    /// The next transaction ordinal.
    pub ordinal: u32,
}

impl<C, S: Default, O> ParserEnv<C, S, O> {
    /// Surroundings with `cfg`, zero counters and no output.
    pub fn new(cfg: C) -> ParserEnv<C, S, O> {
        ParserEnv {
            cfg,
            stats: S::default(),
            out: Vec::new(),
            ordinal: 0,
        }
    }
}

impl<C, S, O> ParserEnv<C, S, O> {
    /// The context of one call at packet `at`.
    pub fn cx(&mut self, at: PacketRef) -> ParseCx<'_, C, S, O> {
        ParseCx {
            at,
            cfg: &self.cfg,
            stats: &mut self.stats,
            out: &mut self.out,
            ordinal: &mut self.ordinal,
        }
    }
}

/// One application-layer parser for one connection (or one layer of it).
pub trait AppParser {
    /// Its settings.
    type Config;
    /// Its counters.
    type Stats;
    /// What it hands out.
    type Output;

    /// Feeds in-order bytes of one direction. Returns how many it used: all of them,
    /// unless the connection was handed on (see [`AppParser::handoff`]) part way through,
    /// in which case the rest, and every later byte, belong to the next layer.
    fn on_data(
        &mut self,
        dir: Direction,
        data: &[u8],
        cx: &mut ParseCx<'_, Self::Config, Self::Stats, Self::Output>,
    ) -> usize;

    /// `len` bytes of direction `dir` were lost.
    fn on_gap(
        &mut self,
        dir: Direction,
        len: u64,
        cx: &mut ParseCx<'_, Self::Config, Self::Stats, Self::Output>,
    );

    /// The sender of `dir` finished sending.
    fn on_fin(
        &mut self,
        dir: Direction,
        cx: &mut ParseCx<'_, Self::Config, Self::Stats, Self::Output>,
    );

    /// Flags `anomaly`, seen below the parser (a TCP overlap conflict), on what is in
    /// progress in `dir`, or on what comes next.
    fn on_anomaly(&mut self, dir: Direction, anomaly: Anomaly);

    /// Gives up on what timed out by packet time `cx.at`.
    fn expire(&mut self, cx: &mut ParseCx<'_, Self::Config, Self::Stats, Self::Output>);

    /// The connection is over: everything still open is handed out.
    fn finish(
        &mut self,
        cause: FinishCause,
        cx: &mut ParseCx<'_, Self::Config, Self::Stats, Self::Output>,
    );

    /// Every started, not yet handed out transaction: key and start time, appended.
    fn open_transactions(&self, out: &mut Vec<(SortKey, Timestamp)>);

    /// Set once the parser has handed the stream on: what the bytes are from then on.
    fn handoff(&self) -> Option<Handoff>;

    /// Memory the parser holds for this connection beyond its own size (buffers of heads
    /// and lines in progress): what a worker's parser memcap counts.
    fn buffered_bytes(&self) -> usize;

    /// Gives that memory back (the worker is over its memcap): what is in progress is cut
    /// and handed out as it stands, flagged.
    fn shed(&mut self, cx: &mut ParseCx<'_, Self::Config, Self::Stats, Self::Output>);
}

/// A cheap answer about the first bytes of a stream: is this the protocol?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// It is; the bytes go this way (`None` when the protocol does not tell).
    Yes(Option<Direction>),
    /// It cannot be.
    No,
    /// Too few bytes to tell.
    NeedMore,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    #[test]
    fn keys_take_the_packet_and_the_next_ordinal() {
        let mut ordinal = 7;
        let mut stats = ();
        let mut out: Vec<crate::HttpTransaction> = Vec::new();
        let mut cx = ParseCx {
            at: PacketRef {
                index: 42,
                ts: Timestamp(0),
            },
            cfg: &(),
            stats: &mut stats,
            out: &mut out,
            ordinal: &mut ordinal,
        };
        assert_eq!(
            (cx.next_key(), cx.next_key()),
            (
                SortKey {
                    packet: 42,
                    flow: 0,
                    ordinal: 7
                },
                SortKey {
                    packet: 42,
                    flow: 0,
                    ordinal: 8
                }
            )
        );
        assert_eq!(ordinal, 9);
    }
}
