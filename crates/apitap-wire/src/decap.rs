//! What decapsulation learns on the way to a packet, and the bound on tunnel depth.

use crate::stats::Skip;
use apitap_core::{Encap, Tunnel, TunnelKind};

/// Tunnels (any [`TunnelKind`]) followed per frame; one more is counted as `encap_too_deep`.
pub const MAX_TUNNEL_DEPTH: u8 = 4;

/// What decapsulation learned on the way to a packet: the outermost VLAN id and tunnel,
/// and how many tunnels deep the packet sits. Small and `Copy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Decap {
    /// Outermost VLAN id and tunnel.
    pub encap: Encap,
    /// Tunnels entered so far.
    pub depth: u8,
    /// The tunnel whose header was read last: a tunnel skip is counted under its kind.
    pub reading: Option<TunnelKind>,
}

impl Decap {
    /// Notes that a `kind` header is being read (before it is entered).
    pub(crate) fn reading(&mut self, kind: TunnelKind) {
        self.reading = Some(kind);
    }

    /// Enters a tunnel: the first one is the one reported; too many is a drop.
    pub(crate) fn enter(&mut self, kind: TunnelKind, id: Option<u32>) -> Result<(), Skip> {
        if self.depth >= MAX_TUNNEL_DEPTH {
            return Err(Skip::TooDeep);
        }
        self.depth += 1;
        if self.encap.tunnel.is_none() {
            self.encap.tunnel = Some(Tunnel { kind, id });
        }
        Ok(())
    }
}
