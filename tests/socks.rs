//! SOCKS 4, 4a and 5 end to end on the capture scripts/make-socks-fixtures.sh made (curl
//! through a SOCKS proxy to nginx, plain HTTP and TLS, no authentication and
//! username/password, a refused login and a refused destination): every request nginx
//! logged appears once, parsed inside its tunnel; the TLS one is a TLS connection with its
//! server name; the handshakes are counted and no password reaches the output.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::*;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    root().join("fixtures/socks").join(name)
}

#[test]
fn every_request_through_the_proxy_appears_once_parsed_inside_its_tunnel() {
    let (out, summary) = run_replay(&[fixture("socks.pcap")], 2);
    let events = parse_lines(&out);
    let http: Vec<_> = events
        .iter()
        .filter(|e| field(e, "network.protocol") == "http")
        .collect();
    let tls: Vec<_> = events
        .iter()
        .filter(|e| field(e, "network.protocol") == "tls")
        .collect();
    let logged: Vec<Vec<String>> = std::fs::read_to_string(fixture("socks.access.log"))
        .unwrap()
        .lines()
        .map(|l| l.split(' ').map(str::to_string).collect())
        .collect();
    // One logged request went through the TLS tunnel: a TLS connection, not HTTP.
    assert_eq!(http.len() + tls.len(), logged.len());
    assert_eq!(tls.len(), 1);
    assert_eq!(field(tls[0], "tls.client.server_name"), "api.test");
    let mut used = vec![false; http.len()];
    for l in &logged {
        let (method, uri, status, body) = (&l[0], &l[1], &l[2], &l[3]);
        let found = (0..http.len()).find(|&i| {
            !used[i]
                && field(http[i], "http.request.method") == method.as_str()
                && field(http[i], "url.original") == uri.as_str()
                && field(http[i], "http.response.status_code").as_u64() == status.parse().ok()
                && field(http[i], "http.response.body.bytes").as_u64() == body.parse().ok()
        });
        match found {
            Some(i) => used[i] = true,
            // The TLS request is not visible inside its tunnel.
            None => assert_eq!(uri, "/api/users", "{l:?} not found"),
        }
    }
    assert!(used.iter().all(|&u| u), "events not in nginx's log");
    for e in &http {
        assert_eq!(field(e, "apitap.complete"), true, "{e}");
        assert_eq!(field(e, "destination.port"), 1080, "{e}");
    }
    let s = &summary.workers.session;
    assert_eq!(s.layers.socks, 11);
    assert_eq!((s.socks.socks4, s.socks.socks4a, s.socks.socks5), (1, 1, 9));
    assert_eq!(s.socks.username_password, 2);
    assert_eq!(
        (s.socks.granted, s.socks.refused, s.socks.invalid),
        (9, 2, 0)
    );
    // Username/password authentication: the password is on the wire, never in the output.
    assert!(!String::from_utf8_lossy(&out).contains("s3cret"));
}
