//! Community ID flow hashing, version 1 (<https://github.com/corelight/community-id-spec>),
//! so events join with Zeek and Suricata logs of the same connection.

use apitap_core::Endpoint;
use base64::Engine as _;
use sha1::{Digest, Sha1};
use std::net::IpAddr;

/// Community ID v1 string (`1:<base64 sha1>`) for a TCP/UDP flow, with seed 0.
pub fn community_id_v1(a: Endpoint, b: Endpoint, proto: u8) -> String {
    // The spec orders the endpoints so the smaller (ip, then port) comes first.
    let (first, second) =
        if (ip_bytes(&a.ip).as_ref(), a.port) <= (ip_bytes(&b.ip).as_ref(), b.port) {
            (a, b)
        } else {
            (b, a)
        };
    let mut h = Sha1::new();
    h.update(0u16.to_be_bytes());
    h.update(ip_bytes(&first.ip));
    h.update(ip_bytes(&second.ip));
    h.update([proto, 0]);
    h.update(first.port.to_be_bytes());
    h.update(second.port.to_be_bytes());
    let digest = h.finalize();
    let mut out = String::with_capacity(30);
    out.push_str("1:");
    base64::engine::general_purpose::STANDARD.encode_string(digest, &mut out);
    out
}

/// Address bytes in network order without allocating.
struct IpBytes([u8; 16], usize);

impl AsRef<[u8]> for IpBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.get(..self.1).unwrap_or(&[])
    }
}

fn ip_bytes(ip: &IpAddr) -> IpBytes {
    match ip {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            IpBytes(b, 4)
        }
        IpAddr::V6(v6) => IpBytes(v6.octets(), 16),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(ip: &str, port: u16) -> Endpoint {
        Endpoint {
            ip: ip.parse().unwrap(),
            port,
        }
    }

    #[test]
    fn matches_spec_test_vectors() {
        // Vectors from the community-id-spec baseline (tcp, seed 0).
        assert_eq!(
            community_id_v1(ep("128.232.110.120", 34855), ep("66.35.250.204", 80), 6),
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
        );
        assert_eq!(
            community_id_v1(ep("66.35.250.204", 80), ep("128.232.110.120", 34855), 6),
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
        );
        assert_eq!(
            community_id_v1(
                ep("fe80::200:86ff:fe05:80da", 0),
                ep("fe80::260:97ff:fe07:69ea", 0),
                58
            )
            .len(),
            30
        );
    }
}
