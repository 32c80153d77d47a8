//! Who is the client: the sender of the SYN; without a handshake, whoever speaks first
//! in a way a protocol recognises (a request line, a TLS ClientHello); failing that, the
//! well-known or lower port is the server.

use crate::detect;
use crate::SessionStats;
use apitap_core::{Direction, FlowKey, Probe, Side};

/// The client side, decided from the first payload `first_bytes` sent by `side`.
pub(crate) fn client_from_payload(
    key: &FlowKey,
    side: Side,
    first_bytes: &[u8],
    stats: &mut SessionStats,
) -> Side {
    match detect::direction_of(first_bytes) {
        Some(Direction::ToServer) => {
            stats.role_from_payload += 1;
            side
        }
        Some(Direction::ToClient) => {
            stats.role_from_payload += 1;
            side.other()
        }
        None => {
            stats.role_from_port += 1;
            client_by_port(key)
        }
    }
}

/// Which way bytes sent by `side` go when `client` is the client.
pub(crate) fn direction(side: Side, client: Side) -> Direction {
    if side == client {
        Direction::ToServer
    } else {
        Direction::ToClient
    }
}

/// Ports that are usually servers of the protocols apitap reads.
const SERVER_PORTS: &[u16] = &[
    80, 8080, 8000, 8008, 8081, 8443, 8888, 3000, 5000, 9000, 443,
];

/// The client side by port: a well-known server port is the server; else the lower port is.
pub fn client_by_port(key: &FlowKey) -> Side {
    let lo_server = SERVER_PORTS.contains(&key.lo.port);
    let hi_server = SERVER_PORTS.contains(&key.hi.port);
    match (lo_server, hi_server) {
        (true, false) => Side::Hi,
        (false, true) => Side::Lo,
        _ if key.lo.port <= key.hi.port => Side::Hi,
        _ => Side::Lo,
    }
}

/// Whether a probe says which way bytes go.
pub(crate) fn probe_direction(p: Probe) -> Option<Direction> {
    match p {
        Probe::Yes(dir) => dir,
        Probe::No | Probe::NeedMore => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use apitap_core::Endpoint;

    fn key(a: u16, b: u16) -> FlowKey {
        let ip = "10.0.0.1".parse().unwrap();
        FlowKey::from_packet(Endpoint { ip, port: a }, Endpoint { ip, port: b }, 6).0
    }

    #[test]
    fn port_guess_prefers_known_server_ports_then_lower_port() {
        let k = key(8080, 1000);
        assert_eq!(k.endpoint(client_by_port(&k)).port, 1000);
        let k = key(40000, 5555);
        assert_eq!(k.endpoint(client_by_port(&k)).port, 40000);
        let k = key(80, 8080);
        assert_eq!(k.endpoint(client_by_port(&k)).port, 8080);
    }

    #[test]
    fn first_bytes_decide_the_client() {
        let k = key(40000, 8080);
        let mut stats = SessionStats::default();
        let lo = Side::Lo;
        assert_eq!(
            client_from_payload(&k, lo, b"GET / HTTP/1.1\r\n", &mut stats),
            lo
        );
        assert_eq!(
            client_from_payload(&k, lo, b"HTTP/1.1 200 OK\r\n", &mut stats),
            lo.other()
        );
        // A TLS ClientHello comes from the client, a ServerHello from the server.
        assert_eq!(
            client_from_payload(&k, lo, &[0x16, 3, 1, 0, 5, 1], &mut stats),
            lo
        );
        assert_eq!(
            client_from_payload(&k, lo, &[0x16, 3, 3, 0, 5, 2], &mut stats),
            lo.other()
        );
        assert_eq!(stats.role_from_payload, 4);
        assert_eq!(
            client_from_payload(&k, lo, b"\x00\x01", &mut stats),
            client_by_port(&k)
        );
        assert_eq!(stats.role_from_port, 1);
    }
}
