//! What every event of one connection repeats: its endpoints, ids and encapsulation.

use apitap_core::{Encap, Endpoint, FlowKey};

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
    /// Builds the context; `first_packet` is the global index of the flow's first packet,
    /// which keeps `flow_id` unique when a 5-tuple is reused.
    pub fn new(client: Endpoint, server: Endpoint, first_packet: u64) -> FlowContext {
        let community_id = crate::community_id_v1(client, server, 6);
        let (key, _) = FlowKey::from_packet(client, server, 6);
        let mut h = key.shard_hash() ^ first_packet.wrapping_mul(0x9e37_79b9_7f4a_7c15);
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
