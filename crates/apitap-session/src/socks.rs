//! SOCKS 4, 4a and 5 (RFC 1928, with RFC 1929 username/password authentication): the
//! handshake is followed until the proxy answers the CONNECT; a granted connection hands
//! the rest of the stream to an inner layer, whose protocol is found out again (HTTP,
//! TLS, ...), as an HTTP CONNECT tunnel does. Credentials are skipped, never kept.

use apitap_core::{Direction, Handoff, Probe};

apitap_core::counters! {
    /// SOCKS counters (`session.socks`).
    pub struct SocksStats {
        /// SOCKS 4 handshakes.
        pub socks4: u64,
        /// SOCKS 4a handshakes (the destination by name).
        pub socks4a: u64,
        /// SOCKS 5 handshakes.
        pub socks5: u64,
        /// SOCKS 5 handshakes with username/password authentication.
        pub username_password: u64,
        /// CONNECTs the proxy granted: the stream inside is parsed.
        pub granted: u64,
        /// CONNECTs (or authentications) the proxy refused.
        pub refused: u64,
        /// Handshakes that broke the protocol (not followed further).
        pub invalid: u64,
        /// Client bytes sent after the request and before the reply, past the bound kept
        /// for the inner layer.
        pub early_bytes_dropped: u64,
    }
}

/// Most bytes one handshake message may take (a SOCKS 5 authentication with a 255-byte
/// user and password is the longest).
const MAX_MESSAGE: usize = 1 + 1 + 255 + 1 + 255;

/// Client bytes kept between the request and the proxy's answer.
const MAX_EARLY: usize = 64 * 1024;

/// Whether a stream's first bytes are a SOCKS client's first message: a SOCKS 5 greeting
/// (version, method count, methods, exactly), or a SOCKS 4/4a request (ending at its
/// terminating NUL).
pub fn probe(first: &[u8]) -> Probe {
    match first.first() {
        Some(5) => match first.get(1) {
            None => Probe::NeedMore,
            Some(&0) => Probe::No,
            Some(&n) => {
                let end = 2 + usize::from(n);
                if first.len() < end {
                    Probe::NeedMore
                } else if first.len() == end && first[2..].iter().all(|&m| m <= 3 || m >= 0x80) {
                    Probe::Yes(Some(Direction::ToServer))
                } else {
                    Probe::No
                }
            }
        },
        Some(4) => match socks4_request(first) {
            Ok(Some((len, _))) if len == first.len() => Probe::Yes(Some(Direction::ToServer)),
            Ok(None) if first.len() < MAX_MESSAGE => Probe::NeedMore,
            _ => Probe::No,
        },
        _ => Probe::No,
    }
}

/// A SOCKS 4/4a request at the start of `b`: its length and whether it is 4a; `Ok(None)`
/// when incomplete, `Err` when it is not one.
fn socks4_request(b: &[u8]) -> Result<Option<(usize, bool)>, ()> {
    if b.first() != Some(&4) {
        return Err(());
    }
    match b.get(1) {
        None => return Ok(None),
        Some(1 | 2) => {}
        Some(_) => return Err(()),
    }
    let Some(ip) = b.get(4..8) else {
        return Ok(None);
    };
    let v4a = ip[..3] == [0, 0, 0] && ip[3] != 0;
    let nul = |from: usize| b.get(from..).and_then(|r| r.iter().position(|&c| c == 0));
    let Some(user_end) = nul(8) else {
        return if b.len() > MAX_MESSAGE {
            Err(())
        } else {
            Ok(None)
        };
    };
    let mut end = 8 + user_end + 1;
    if v4a {
        let Some(name_end) = nul(end) else {
            return if b.len() > MAX_MESSAGE {
                Err(())
            } else {
                Ok(None)
            };
        };
        end += name_end + 1;
    }
    Ok(Some((end, v4a)))
}

/// The message the handshake waits for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// SOCKS 5: the client's greeting.
    Greeting,
    /// SOCKS 5: the proxy's chosen method.
    Method,
    /// SOCKS 5: the client's username/password.
    Auth,
    /// SOCKS 5: the proxy's answer to them.
    AuthReply,
    /// The client's CONNECT (SOCKS 4 starts here).
    Request,
    /// The proxy's answer.
    Reply,
    /// Granted: the stream is handed on.
    Tunnel,
    /// Refused or broken: the rest is not parsed.
    Done,
}

/// One SOCKS connection's handshake.
#[derive(Debug)]
pub struct SocksConn {
    v4: bool,
    step: Step,
    /// Bytes of the message in progress, per direction (client, server).
    buf: [Vec<u8>; 2],
    /// Client bytes after its request, before the proxy answered: the inner layer's.
    early: Vec<u8>,
}

fn index(dir: Direction) -> usize {
    match dir {
        Direction::ToServer => 0,
        Direction::ToClient => 1,
    }
}

impl SocksConn {
    /// A connection whose first client bytes `first` passed [`probe`].
    pub fn new(first: &[u8]) -> SocksConn {
        let v4 = first.first() == Some(&4);
        SocksConn {
            v4,
            step: if v4 { Step::Request } else { Step::Greeting },
            buf: [Vec::new(), Vec::new()],
            early: Vec::new(),
        }
    }

    /// The rest of the stream belongs to the inner layer.
    pub fn handoff(&self) -> Option<Handoff> {
        (self.step == Step::Tunnel).then_some(Handoff::Tunnel)
    }

    /// Client bytes that came between its request and the proxy's answer, for the inner
    /// layer (taken once).
    pub fn take_early(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.early)
    }

    /// Memory held.
    pub fn buffered_bytes(&self) -> usize {
        self.buf[0].capacity() + self.buf[1].capacity() + self.early.capacity()
    }

    /// Feeds one direction's bytes; returns how many were used (all, unless the proxy's
    /// answer granted the tunnel part way through: the rest is the inner layer's).
    pub fn on_data(&mut self, dir: Direction, data: &[u8], stats: &mut SocksStats) -> usize {
        let d = index(dir);
        match self.step {
            Step::Tunnel => return 0,
            Step::Done => return data.len(),
            _ => {}
        }
        if dir == Direction::ToServer && self.step == Step::Reply {
            self.keep_early(data, stats);
            return data.len();
        }
        self.buf[d].extend_from_slice(data);
        self.advance(stats);
        if matches!(self.step, Step::Reply | Step::Tunnel) && !self.buf[0].is_empty() {
            // Client bytes after its request: the inner layer's, in order.
            let early = std::mem::take(&mut self.buf[0]);
            self.keep_early(&early, stats);
        }
        match self.step {
            Step::Tunnel => {
                // What is left of this call's bytes after the proxy's answer.
                let rest = std::mem::take(&mut self.buf[d]);
                self.forget();
                data.len().saturating_sub(rest.len())
            }
            Step::Done => {
                self.forget();
                data.len()
            }
            _ => {
                if self.buf.iter().any(|b| b.len() > 2 * MAX_MESSAGE) {
                    stats.invalid += 1;
                    self.step = Step::Done;
                    self.forget();
                }
                data.len()
            }
        }
    }

    fn keep_early(&mut self, data: &[u8], stats: &mut SocksStats) {
        let room = MAX_EARLY.saturating_sub(self.early.len());
        let n = room.min(data.len());
        self.early.extend_from_slice(data.get(..n).unwrap_or(&[]));
        stats.early_bytes_dropped += (data.len() - n) as u64;
    }

    /// Drops the buffers (zeroed first: they may hold a password).
    fn forget(&mut self) {
        for b in &mut self.buf {
            b.fill(0);
            *b = Vec::new();
        }
    }

    /// Consumes every whole message that is due, in protocol order.
    fn advance(&mut self, stats: &mut SocksStats) {
        loop {
            let (side, step) = match self.step {
                Step::Greeting | Step::Auth | Step::Request => (0, self.step),
                Step::Method | Step::AuthReply | Step::Reply => (1, self.step),
                Step::Tunnel | Step::Done => return,
            };
            let b = &self.buf[side];
            let parsed = match step {
                Step::Greeting => greeting(b),
                Step::Method => fixed(b, 2, 5),
                Step::Auth => auth(b),
                Step::AuthReply => fixed(b, 2, 1),
                Step::Request if self.v4 => {
                    socks4_request(b).map(|r| r.map(|(n, a)| (n, u8::from(a))))
                }
                Step::Request => request5(b),
                Step::Reply if self.v4 => fixed(b, 8, 0),
                Step::Reply => reply5(b),
                Step::Tunnel | Step::Done => return,
            };
            let (len, value) = match parsed {
                Ok(Some(m)) => m,
                Ok(None) => return,
                Err(()) => {
                    stats.invalid += 1;
                    self.step = Step::Done;
                    return;
                }
            };
            let message = self.buf[side].get(..len).unwrap_or(&[]).to_vec();
            self.buf[side].drain(..len.min(self.buf[side].len()));
            self.step = match step {
                Step::Greeting => Step::Method,
                Step::Method => match message.get(1) {
                    Some(0) => Step::Request,
                    Some(2) => {
                        stats.username_password += 1;
                        Step::Auth
                    }
                    _ => {
                        // No acceptable method (0xFF), or one not followed.
                        stats.socks5 += 1;
                        stats.refused += 1;
                        Step::Done
                    }
                },
                Step::Auth => Step::AuthReply,
                Step::AuthReply if message.get(1) == Some(&0) => Step::Request,
                Step::AuthReply => {
                    stats.socks5 += 1;
                    stats.refused += 1;
                    Step::Done
                }
                Step::Request => {
                    match (self.v4, value) {
                        (true, 1) => stats.socks4a += 1,
                        (true, _) => stats.socks4 += 1,
                        (false, _) => stats.socks5 += 1,
                    }
                    Step::Reply
                }
                Step::Reply => {
                    let granted = if self.v4 {
                        message.get(1) == Some(&0x5a)
                    } else {
                        message.get(1) == Some(&0)
                    };
                    if granted {
                        stats.granted += 1;
                        Step::Tunnel
                    } else {
                        stats.refused += 1;
                        Step::Done
                    }
                }
                Step::Tunnel | Step::Done => return,
            };
            let _ = value;
        }
    }
}

type Parsed = Result<Option<(usize, u8)>, ()>;

/// A fixed-size message whose first byte is `version`.
fn fixed(b: &[u8], len: usize, version: u8) -> Parsed {
    match b.first() {
        None => Ok(None),
        Some(&v) if v != version => Err(()),
        Some(_) if b.len() < len => Ok(None),
        Some(_) => Ok(Some((len, 0))),
    }
}

/// SOCKS 5 greeting: 5, n, n methods.
fn greeting(b: &[u8]) -> Parsed {
    match (b.first(), b.get(1)) {
        (None, _) | (Some(5), None) => Ok(None),
        (Some(5), Some(&n)) if n > 0 => {
            let len = 2 + usize::from(n);
            Ok((b.len() >= len).then_some((len, 0)))
        }
        _ => Err(()),
    }
}

/// RFC 1929: 1, user length, user, password length, password.
fn auth(b: &[u8]) -> Parsed {
    if b.first().is_some_and(|&v| v != 1) {
        return Err(());
    }
    let Some(&ulen) = b.get(1) else {
        return Ok(None);
    };
    let Some(&plen) = b.get(2 + usize::from(ulen)) else {
        return Ok(None);
    };
    let len = 3 + usize::from(ulen) + usize::from(plen);
    Ok((b.len() >= len).then_some((len, 0)))
}

/// The length of a SOCKS 5 address (ATYP at `b[at]`) and port, from `at`.
fn address(b: &[u8], at: usize) -> Result<Option<usize>, ()> {
    match b.get(at) {
        None => Ok(None),
        Some(1) => Ok(Some(1 + 4 + 2)),
        Some(4) => Ok(Some(1 + 16 + 2)),
        Some(3) => Ok(b.get(at + 1).map(|&n| 1 + 1 + usize::from(n) + 2)),
        Some(_) => Err(()),
    }
}

/// SOCKS 5 request: 5, command (CONNECT only), 0, address, port.
fn request5(b: &[u8]) -> Parsed {
    match (b.first(), b.get(1)) {
        (None, _) | (Some(5), None) => return Ok(None),
        (Some(5), Some(1..=3)) => {}
        _ => return Err(()),
    }
    let Some(addr) = address(b, 3)? else {
        return Ok(None);
    };
    let len = 3 + addr;
    Ok((b.len() >= len).then_some((len, 0)))
}

/// SOCKS 5 reply: 5, status, 0, bound address, port.
fn reply5(b: &[u8]) -> Parsed {
    match b.first() {
        None => return Ok(None),
        Some(5) => {}
        Some(_) => return Err(()),
    }
    let Some(addr) = address(b, 3)? else {
        return Ok(None);
    };
    let len = 3 + addr;
    Ok((b.len() >= len).then_some((len, 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socks5_connect(user: Option<(&str, &str)>) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let mut client = Vec::new();
        let mut server = Vec::new();
        match user {
            None => {
                client.push(vec![5, 1, 0]);
                server.push(vec![5, 0]);
            }
            Some((u, p)) => {
                client.push(vec![5, 2, 0, 2]);
                server.push(vec![5, 2]);
                let mut a = vec![1, u.len() as u8];
                a.extend_from_slice(u.as_bytes());
                a.push(p.len() as u8);
                a.extend_from_slice(p.as_bytes());
                client.push(a);
                server.push(vec![1, 0]);
            }
        }
        let mut req = vec![5, 1, 0, 3, 8];
        req.extend_from_slice(b"api.test");
        req.extend_from_slice(&8080u16.to_be_bytes());
        client.push(req);
        server.push(vec![5, 0, 0, 1, 10, 0, 0, 1, 0x1f, 0x90]);
        (client, server)
    }

    /// Runs a handshake message by message, then sends `tail` from both sides; returns
    /// the bytes the inner layer gets (client early bytes, server rest).
    fn run(
        client: &[Vec<u8>],
        server: &[Vec<u8>],
        stats: &mut SocksStats,
    ) -> (SocksConn, Vec<u8>, Vec<u8>) {
        let mut c = SocksConn::new(&client[0]);
        let mut rest = Vec::new();
        for i in 0..client.len().max(server.len()) {
            if let Some(m) = client.get(i) {
                assert_eq!(c.on_data(Direction::ToServer, m, stats), m.len());
                if i + 1 == client.len() {
                    // Sent before the proxy answers: the inner layer's first bytes.
                    c.on_data(Direction::ToServer, b"GET / HTTP/1.1\r\n", stats);
                }
            }
            if let Some(m) = server.get(i) {
                let mut m = m.clone();
                if i + 1 == server.len() {
                    m.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
                }
                let used = c.on_data(Direction::ToClient, &m, stats);
                rest.extend_from_slice(&m[used..]);
            }
        }
        let early = c.take_early();
        (c, early, rest)
    }

    #[test]
    fn socks5_with_and_without_a_password_hands_the_tunnel_on() {
        for user in [None, Some(("alice", "s3cret"))] {
            let mut stats = SocksStats::default();
            let (client, server) = socks5_connect(user);
            assert_eq!(probe(&client[0]), Probe::Yes(Some(Direction::ToServer)));
            let (c, early, rest) = run(&client, &server, &mut stats);
            assert_eq!(c.handoff(), Some(Handoff::Tunnel));
            assert_eq!(early, b"GET / HTTP/1.1\r\n");
            assert_eq!(rest, b"HTTP/1.1 200 OK\r\n");
            assert_eq!((stats.socks5, stats.granted), (1, 1));
            assert_eq!(stats.username_password, u64::from(user.is_some()));
        }
    }

    #[test]
    fn socks4_and_4a() {
        for (req, v4a) in [
            (vec![4, 1, 0x1f, 0x90, 10, 0, 0, 1, b'u', 0], false),
            (
                [&[4u8, 1, 0x1f, 0x90, 0, 0, 0, 1, 0][..], b"api.test\0"].concat(),
                true,
            ),
        ] {
            let mut stats = SocksStats::default();
            assert_eq!(probe(&req), Probe::Yes(Some(Direction::ToServer)));
            let (c, _, rest) = run(&[req], &[vec![0, 0x5a, 0, 0, 0, 0, 0, 0]], &mut stats);
            assert_eq!(c.handoff(), Some(Handoff::Tunnel));
            assert_eq!(rest, b"HTTP/1.1 200 OK\r\n");
            assert_eq!(
                (stats.socks4, stats.socks4a),
                (u64::from(!v4a), u64::from(v4a))
            );
        }
    }

    #[test]
    fn refusals_and_garbage_end_the_handshake_counted() {
        let mut stats = SocksStats::default();
        let (client, mut server) = socks5_connect(Some(("alice", "wrong")));
        server[1] = vec![1, 1];
        let (c, _, _) = run(&client, &server, &mut stats);
        assert_eq!(c.handoff(), None);
        assert_eq!(stats.refused, 1);
        let mut stats = SocksStats::default();
        let (client, mut server) = socks5_connect(None);
        server[1] = vec![5, 5, 0, 1, 0, 0, 0, 0, 0, 0];
        let (c, _, _) = run(&client, &server, &mut stats);
        assert_eq!((c.handoff(), stats.refused), (None, 1));
        let mut stats = SocksStats::default();
        let mut c = SocksConn::new(&[5, 1, 0]);
        c.on_data(Direction::ToServer, &[5, 1, 0], &mut stats);
        c.on_data(Direction::ToClient, &[9, 9], &mut stats);
        assert_eq!(stats.invalid, 1);
        assert_eq!(c.buffered_bytes(), 0);
    }

    #[test]
    fn the_probe_says_no_to_other_protocols() {
        assert_eq!(probe(b"GET / HTTP/1.1\r\n"), Probe::No);
        assert_eq!(probe(&[5, 1, 0, 7]), Probe::No);
        assert_eq!(probe(&[5, 2, 0]), Probe::NeedMore);
        assert_eq!(probe(&[5, 0]), Probe::No);
        assert_eq!(probe(&[4, 9, 0, 0, 0, 0, 0, 0, 0]), Probe::No);
        assert_eq!(probe(&[0x16, 3, 1, 0, 5]), Probe::No);
    }

    #[test]
    fn any_split_gives_the_same_handshake() {
        let (client, server) = socks5_connect(Some(("alice", "s3cret")));
        let c_all: Vec<u8> = client.concat();
        let mut s_all: Vec<u8> = server.concat();
        s_all.extend_from_slice(b"DATA");
        // Messages wait in their side's buffer until the other side's answer, so the
        // client's may all come first; each side is cut at every byte.
        for side in 0..2 {
            let all = if side == 0 { &c_all } else { &s_all };
            for cut in 0..=all.len() {
                let mut stats = SocksStats::default();
                let mut c = SocksConn::new(&client[0]);
                let mut rest = Vec::new();
                let pieces: Vec<(Direction, &[u8])> = if side == 0 {
                    vec![
                        (Direction::ToServer, &c_all[..cut]),
                        (Direction::ToServer, &c_all[cut..]),
                        (Direction::ToClient, &s_all[..]),
                    ]
                } else {
                    vec![
                        (Direction::ToServer, &c_all[..]),
                        (Direction::ToClient, &s_all[..cut]),
                        (Direction::ToClient, &s_all[cut..]),
                    ]
                };
                for (dir, piece) in pieces {
                    if c.handoff().is_some() {
                        rest.extend_from_slice(piece);
                        continue;
                    }
                    let used = c.on_data(dir, piece, &mut stats);
                    rest.extend_from_slice(&piece[used..]);
                }
                assert_eq!(c.handoff(), Some(Handoff::Tunnel), "side {side} cut {cut}");
                assert_eq!(rest, b"DATA", "side {side} cut {cut}");
                assert_eq!(stats.username_password, 1);
            }
        }
    }
}
