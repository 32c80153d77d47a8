//! What every event of one connection repeats: its endpoints, ids and encapsulation.

use apitap_core::{Encap, Endpoint, FlowKey};

/// What tells a connection from an earlier or later one of the same 5-tuple, in its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowSeed {
    /// The client's initial sequence number, from the SYN that opened the connection:
    /// the same on every sensor that saw the SYN, whatever their clocks.
    Syn(u32),
    /// The packet time (Unix ns) of the first packet seen, for a connection picked up
    /// after its SYN.
    FirstSeen(i64),
}

impl FlowSeed {
    /// The seed of a flow whose first packet had these TCP flags and sequence number and
    /// was seen at `ts_ns`.
    pub fn of_first_packet(syn: bool, ack: bool, seq: u32, ts_ns: i64) -> FlowSeed {
        if syn && !ack {
            FlowSeed::Syn(seq)
        } else {
            FlowSeed::FirstSeen(ts_ns)
        }
    }
}

/// Per-flow facts every event of that flow repeats; computed once per flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowContext {
    /// The client (sender of requests).
    pub client: Endpoint,
    /// The server.
    pub server: Endpoint,
    /// Stable flow id (same for every worker count and every run).
    pub flow_id: String,
    /// Community ID v1 of the flow.
    pub community_id: String,
    /// Outermost VLAN id and tunnel of the flow's first packet
    /// (`observer.ingress.vlan.id`, `apitap.tunnel`).
    pub encap: Encap,
}

impl FlowContext {
    /// Builds the context; `seed` tells this connection from others of the same 5-tuple
    /// ([`FlowSeed`]). The id depends on nothing else, so every sensor that sees a
    /// connection open names it alike, whatever else it sees and whatever its clock.
    pub fn new(client: Endpoint, server: Endpoint, seed: FlowSeed) -> FlowContext {
        let community_id = crate::community_id_v1(client, server, 6);
        let (key, _) = FlowKey::from_packet(client, server, 6);
        let seed = match seed {
            FlowSeed::Syn(isn) => u64::from(isn) | 1 << 63,
            FlowSeed::FirstSeen(ns) => ns as u64 & !(1 << 63),
        };
        let mut h = key.shard_hash() ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 29;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 32;
        FlowContext {
            client,
            server,
            flow_id: format!("F{h:016x}"),
            community_id,
            encap: Encap::default(),
        }
    }

    /// The same context, seen through `encap` (VLAN and tunnel).
    pub fn with_encap(mut self, encap: Encap) -> FlowContext {
        self.encap = encap;
        self
    }
}
