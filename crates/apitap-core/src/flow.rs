//! Flow identity: endpoints, the canonical 5-tuple key, and which way bytes travel.

use std::fmt;
use std::net::IpAddr;

/// One end of a transport connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// IP address.
    pub ip: IpAddr,
    /// Transport port.
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.port),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

/// Which of the two canonical endpoints of a [`FlowKey`] sent a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The lower endpoint (`FlowKey::lo`).
    Lo,
    /// The higher endpoint (`FlowKey::hi`).
    Hi,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Lo => Side::Hi,
            Side::Hi => Side::Lo,
        }
    }

    /// 0 for `Lo`, 1 for `Hi`; handy for indexing per-side arrays.
    pub fn index(self) -> usize {
        match self {
            Side::Lo => 0,
            Side::Hi => 1,
        }
    }
}

/// Direction of bytes relative to the client/server roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server (requests).
    ToServer,
    /// Server to client (responses).
    ToClient,
}

impl Direction {
    /// The opposite direction.
    pub fn reverse(self) -> Direction {
        match self {
            Direction::ToServer => Direction::ToClient,
            Direction::ToClient => Direction::ToServer,
        }
    }

    /// 0 for `ToServer`, 1 for `ToClient`.
    pub fn index(self) -> usize {
        match self {
            Direction::ToServer => 0,
            Direction::ToClient => 1,
        }
    }
}

/// Canonical transport 5-tuple: both directions of a connection map to the same key.
///
/// `lo` is the smaller endpoint by (ip, port) order; `Side` tells which one sent a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowKey {
    /// Smaller endpoint.
    pub lo: Endpoint,
    /// Larger endpoint.
    pub hi: Endpoint,
    /// IP protocol number (6 for TCP).
    pub proto: u8,
}

impl FlowKey {
    /// Canonical key of a packet from `src` to `dst`, and the side `src` is on.
    pub fn from_packet(src: Endpoint, dst: Endpoint, proto: u8) -> (FlowKey, Side) {
        if src <= dst {
            (
                FlowKey {
                    lo: src,
                    hi: dst,
                    proto,
                },
                Side::Lo,
            )
        } else {
            (
                FlowKey {
                    lo: dst,
                    hi: src,
                    proto,
                },
                Side::Hi,
            )
        }
    }

    /// The endpoint on `side`.
    pub fn endpoint(&self, side: Side) -> Endpoint {
        match side {
            Side::Lo => self.lo,
            Side::Hi => self.hi,
        }
    }

    /// Symmetric 64-bit hash for sharding: the same for both directions, cheap, and stable
    /// across runs and machines (FNV-1a over the canonical tuple, then a final mix).
    pub fn shard_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for ep in [self.lo, self.hi] {
            match ep.ip {
                IpAddr::V4(ip) => feed(&ip.octets()),
                IpAddr::V6(ip) => feed(&ip.octets()),
            }
            feed(&ep.port.to_be_bytes());
        }
        feed(&[self.proto]);
        // splitmix64 finaliser so the low bits used for `% workers` are well spread.
        h ^= h >> 30;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 27;
        h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str, port: u16) -> Endpoint {
        Endpoint {
            ip: s.parse().unwrap(),
            port,
        }
    }

    #[test]
    fn both_directions_share_key_and_hash() {
        let a = ep("10.0.0.2", 40000);
        let b = ep("10.0.0.1", 80);
        let (k1, s1) = FlowKey::from_packet(a, b, 6);
        let (k2, s2) = FlowKey::from_packet(b, a, 6);
        assert_eq!(k1, k2);
        assert_eq!(k1.shard_hash(), k2.shard_hash());
        assert_eq!(s1, s2.other());
        assert_eq!(k1.endpoint(s1), a);
        assert_eq!(k1.endpoint(s2), b);
    }

    #[test]
    fn endpoint_display_brackets_v6() {
        assert_eq!(ep("::1", 80).to_string(), "[::1]:80");
        assert_eq!(ep("1.2.3.4", 8080).to_string(), "1.2.3.4:8080");
    }
}
