//! One TLS connection: records per direction, handshake messages across records, and the
//! connection record handed out when it ends.
//!
//! Record bodies are kept only where they are read (plaintext handshake and alert
//! records); encrypted records are counted and skipped by their length, so a gap inside
//! one leaves the framing intact. A direction that loses its framing (a gap elsewhere, a
//! header that is not one, a connection joined midway) finds it again only at a header
//! whose record is followed by another header, or ends where the delivered bytes end.

use crate::{hello, TlsConfig, TlsStats};
use apitap_core::{
    Anomalies, Anomaly, AppParser, Direction, FinishCause, Handoff, PacketRef, ParseCx, SortKey,
    Timestamp, TlsConnection, TlsHandshake,
};
use std::sync::Arc;
use tls_parser::TlsMessageHandshake;

/// Largest record body on the wire: 2^14 plus the 2048 bytes of expansion TLS 1.2 allows.
pub const MAX_RECORD_BODY: usize = (1 << 14) + 2048;

const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
const HEARTBEAT: u8 = 24;

type Ctx<'a> = ParseCx<'a, TlsConfig, TlsStats, TlsConnection>;

/// The body length of a 5-byte record header, if it is one: content type 20..=24,
/// version 3.0 to 3.4 (TLS 1.3 records say 3.3; 3.1 and 3.0 appear in first hellos), and
/// a length TLS allows.
pub fn record_header(h: &[u8]) -> Option<usize> {
    match h {
        [t @ CHANGE_CIPHER_SPEC..=HEARTBEAT, 3, 0..=4, hi, lo, ..] => {
            let _ = t;
            let len = usize::from(u16::from_be_bytes([*hi, *lo]));
            (len <= MAX_RECORD_BODY).then_some(len)
        }
        _ => None,
    }
}

/// Where in `data` a record boundary can be trusted: a header whose record is followed by
/// another header, or whose record ends exactly where `data` does.
fn find_boundary(data: &[u8]) -> Option<usize> {
    (0..data.len().saturating_sub(4)).find(|&i| {
        let Some(len) = data.get(i..).and_then(record_header) else {
            return false;
        };
        let next = i + 5 + len;
        next == data.len() || data.get(next..).and_then(record_header).is_some()
    })
}

/// One direction's record stream.
#[derive(Debug, Default)]
struct Records {
    /// Bytes sent, lost ones included.
    bytes: u64,
    header: [u8; 5],
    header_len: usize,
    /// Inside a record body: its content type and the bytes still to come.
    in_body: bool,
    content_type: u8,
    body_left: usize,
    /// The body is being kept (it is read when complete).
    keep: bool,
    body: Vec<u8>,
    /// Plaintext handshake messages in progress (they may span records).
    handshake: Vec<u8>,
    /// Bytes of an oversized handshake message still to skip.
    skip_handshake: usize,
    /// Handshake message boundaries were lost: plaintext handshake is no longer read.
    handshake_lost: bool,
    /// Framing was lost: waiting for a trustworthy record boundary.
    lost: bool,
    /// ChangeCipherSpec seen: what follows is encrypted.
    ccs: bool,
    /// Encrypted records sent (application data, or handshake after ChangeCipherSpec).
    protected: u64,
}

impl Records {
    fn lose(&mut self) {
        self.lost = true;
        self.in_body = false;
        self.header_len = 0;
        self.body = Vec::new();
        self.handshake = Vec::new();
        self.skip_handshake = 0;
        self.handshake_lost = true;
    }
}

/// A complete record, as the direction hands it to the connection.
struct Record {
    content_type: u8,
    body: Vec<u8>,
}

/// One TLS connection (or TLS layer inside a tunnel).
#[derive(Debug, Default)]
pub struct TlsConn {
    dirs: [Records; 2],
    hs: TlsHandshake,
    client_hello: bool,
    server_hello: bool,
    /// The server finished its first flight with ServerHelloDone (a full TLS ≤ 1.2 handshake).
    server_hello_done: bool,
    alert: Option<u8>,
    anomalies: Anomalies,
    start: Option<PacketRef>,
    end: PacketRef,
    finished: bool,
}

impl TlsConn {
    /// A connection with nothing seen yet.
    pub fn new() -> TlsConn {
        TlsConn::default()
    }

    /// What the handshake showed so far.
    pub fn handshake(&self) -> &TlsHandshake {
        &self.hs
    }

    /// Frames `data` into records, reading each complete one.
    fn frame(&mut self, dir: Direction, mut data: &[u8], cx: &mut Ctx<'_>) {
        while !data.is_empty() {
            let r = &mut self.dirs[dir.index()];
            if r.lost {
                match find_boundary(data) {
                    Some(at) => {
                        r.lost = false;
                        cx.stats.resyncs += 1;
                        cx.stats.unsynced_bytes += at as u64;
                        data = data.get(at..).unwrap_or(&[]);
                    }
                    None => {
                        cx.stats.unsynced_bytes += data.len() as u64;
                        return;
                    }
                }
                continue;
            }
            if !r.in_body {
                let need = 5 - r.header_len;
                let take = need.min(data.len());
                r.header[r.header_len..r.header_len + take].copy_from_slice(&data[..take]);
                r.header_len += take;
                data = &data[take..];
                if r.header_len < 5 {
                    return;
                }
                r.header_len = 0;
                let Some(len) = record_header(&r.header) else {
                    r.lose();
                    self.anomalies.insert(Anomaly::TlsRecordInvalid);
                    cx.stats.records_invalid += 1;
                    continue;
                };
                let content_type = r.header[0];
                r.content_type = content_type;
                r.body_left = len;
                r.in_body = true;
                r.keep = !r.ccs
                    && (content_type == ALERT || (content_type == HANDSHAKE && !r.handshake_lost));
                r.body.clear();
            }
            let take = r.body_left.min(data.len());
            if r.keep {
                r.body.extend_from_slice(&data[..take]);
            }
            r.body_left -= take;
            data = &data[take..];
            if r.body_left == 0 {
                r.in_body = false;
                let record = Record {
                    content_type: r.content_type,
                    body: std::mem::take(&mut r.body),
                };
                self.read(dir, record, cx);
            }
        }
    }

    /// Reads one complete record.
    fn read(&mut self, dir: Direction, record: Record, cx: &mut Ctx<'_>) {
        cx.stats.records += 1;
        let r = &mut self.dirs[dir.index()];
        match record.content_type {
            CHANGE_CIPHER_SPEC => r.ccs = true,
            ALERT if r.ccs => r.protected += 1,
            ALERT => {
                if let [2, description, ..] = record.body[..] {
                    cx.stats.fatal_alerts += 1;
                    self.alert.get_or_insert(description);
                }
            }
            HANDSHAKE if r.ccs => r.protected += 1,
            HANDSHAKE if !r.handshake_lost => self.handshake_bytes(dir, &record.body, cx),
            APPLICATION_DATA => r.protected += 1,
            _ => {}
        }
        // The body buffer goes back for the next record.
        let r = &mut self.dirs[dir.index()];
        if r.body.capacity() == 0 {
            r.body = record.body;
            r.body.clear();
        }
    }

    /// Appends plaintext handshake bytes and reads every message they complete.
    fn handshake_bytes(&mut self, dir: Direction, data: &[u8], cx: &mut Ctx<'_>) {
        let max = cx.cfg.max_handshake_bytes;
        let r = &mut self.dirs[dir.index()];
        let skip = r.skip_handshake.min(data.len());
        r.skip_handshake -= skip;
        r.handshake
            .extend_from_slice(data.get(skip..).unwrap_or(&[]));
        loop {
            let r = &mut self.dirs[dir.index()];
            let Some(&[_, a, b, c]) = r.handshake.get(..4) else {
                return;
            };
            let len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
            if len > max {
                self.anomalies.insert(Anomaly::TlsHandshakeTooLarge);
                cx.stats.handshake_too_large += 1;
                let have = r.handshake.len() - 4;
                if have >= len {
                    r.handshake.drain(..4 + len);
                } else {
                    r.skip_handshake = len - have;
                    r.handshake.clear();
                }
                continue;
            }
            if r.handshake.len() < 4 + len {
                return;
            }
            let message: Vec<u8> = r.handshake.drain(..4 + len).collect();
            self.message(dir, &message, cx);
        }
    }

    /// Reads one whole handshake message (type, length, body).
    fn message(&mut self, dir: Direction, msg: &[u8], cx: &mut Ctx<'_>) {
        let Some((&kind, _)) = msg.split_first() else {
            return;
        };
        let body = msg.get(4..).unwrap_or(&[]);
        match (dir, kind) {
            (Direction::ToServer, 1) if !self.client_hello => {
                self.client_hello = true;
                cx.stats.client_hellos += 1;
                match tls_parser::parse_tls_handshake_msg_client_hello(body) {
                    Ok((_, TlsMessageHandshake::ClientHello(ch))) => {
                        let (rest, exts) = ch
                            .ext
                            .map(tls_parser::parse_tls_client_hello_extensions)
                            .and_then(Result::ok)
                            .unwrap_or((&[], Vec::new()));
                        if !rest.is_empty() {
                            self.invalid(cx);
                        }
                        hello::client_hello(&mut self.hs, &ch, &exts);
                    }
                    _ => self.invalid(cx),
                }
            }
            (Direction::ToClient, 2) => {
                self.server_hello = true;
                cx.stats.server_hellos += 1;
                match tls_parser::parse_tls_handshake_msg_server_hello(body) {
                    Ok((_, TlsMessageHandshake::ServerHello(sh))) => {
                        let (rest, exts) = sh
                            .ext
                            .map(tls_parser::parse_tls_server_hello_extensions)
                            .and_then(Result::ok)
                            .unwrap_or((&[], Vec::new()));
                        if !rest.is_empty() {
                            self.invalid(cx);
                        }
                        hello::server_hello(&mut self.hs, &sh, &exts);
                    }
                    _ => self.invalid(cx),
                }
            }
            (Direction::ToClient, 11) if self.hs.certificate_chain_len == 0 => {
                match tls_parser::parse_tls_handshake_msg_certificate(body) {
                    Ok((_, TlsMessageHandshake::Certificate(c))) => {
                        self.hs.certificate_chain_len =
                            u16::try_from(c.cert_chain.len()).unwrap_or(u16::MAX);
                        cx.stats.certificates += 1;
                        match c
                            .cert_chain
                            .first()
                            .map(|leaf| crate::cert::leaf(leaf.data))
                        {
                            Some(Some(leaf)) => self.hs.certificate = Some(Box::new(leaf)),
                            Some(None) => cx.stats.certificates_invalid += 1,
                            None => {}
                        }
                    }
                    _ => self.invalid(cx),
                }
            }
            (Direction::ToClient, 14) => self.server_hello_done = true,
            _ => {}
        }
    }

    fn invalid(&mut self, cx: &mut Ctx<'_>) {
        self.anomalies.insert(Anomaly::TlsHandshakeInvalid);
        cx.stats.handshakes_invalid += 1;
    }

    /// The connection record as it stands.
    fn record(&mut self, key: SortKey) -> TlsConnection {
        let [to_server, to_client] = &self.dirs;
        let both_protected = to_server.protected > 0 && to_client.protected > 0;
        let midstream = !self.client_hello;
        let tls13 = self.hs.version == Some(0x0304);
        if self.server_hello && !tls13 && to_client.ccs && !self.server_hello_done {
            self.hs.resumed = true;
        }
        TlsConnection {
            key,
            handshake: Arc::new(std::mem::take(&mut self.hs)),
            established: both_protected && (self.server_hello || midstream),
            midstream,
            alert: self.alert,
            client_bytes: to_server.bytes,
            server_bytes: to_client.bytes,
            anomalies: self.anomalies,
            start: self.start.unwrap_or(self.end),
            end: self.end,
        }
    }
}

impl AppParser for TlsConn {
    type Config = TlsConfig;
    type Stats = TlsStats;
    type Output = TlsConnection;

    fn on_data(&mut self, dir: Direction, data: &[u8], cx: &mut Ctx<'_>) -> usize {
        if self.start.is_none() {
            self.start = Some(cx.at);
            cx.stats.connections += 1;
        }
        self.end = cx.at;
        self.dirs[dir.index()].bytes += data.len() as u64;
        self.frame(dir, data, cx);
        data.len()
    }

    fn on_gap(&mut self, dir: Direction, len: u64, cx: &mut Ctx<'_>) {
        self.anomalies.insert(Anomaly::Gap);
        let r = &mut self.dirs[dir.index()];
        r.bytes += len;
        let skipped_body = r.in_body && !r.keep && !r.lost;
        match usize::try_from(len) {
            // Lost inside an encrypted record: its length still says where the next begins.
            Ok(n) if skipped_body && n <= r.body_left => {
                r.body_left -= n;
                cx.stats.gaps_absorbed += 1;
                if r.body_left == 0 {
                    r.in_body = false;
                    let record = Record {
                        content_type: r.content_type,
                        body: Vec::new(),
                    };
                    self.read(dir, record, cx);
                }
            }
            _ => {
                if !r.lost {
                    cx.stats.framing_lost += 1;
                }
                r.lose();
            }
        }
    }

    fn on_fin(&mut self, _dir: Direction, _cx: &mut Ctx<'_>) {}

    fn on_anomaly(&mut self, _dir: Direction, anomaly: Anomaly) {
        self.anomalies.insert(anomaly);
    }

    fn expire(&mut self, _cx: &mut Ctx<'_>) {}

    fn finish(&mut self, _cause: FinishCause, cx: &mut Ctx<'_>) {
        if self.finished || self.start.is_none() {
            return;
        }
        self.finished = true;
        let key = cx.next_key();
        let record = self.record(key);
        cx.stats.established += u64::from(record.established);
        cx.stats.midstream += u64::from(record.midstream);
        cx.out.push(record);
    }

    fn open_transactions(&self, _out: &mut Vec<(SortKey, Timestamp)>) {}

    fn handoff(&self) -> Option<Handoff> {
        None
    }

    fn buffered_bytes(&self) -> usize {
        self.dirs
            .iter()
            .map(|r| r.body.capacity() + r.handshake.capacity())
            .sum()
    }

    fn shed(&mut self, cx: &mut Ctx<'_>) {
        for r in &mut self.dirs {
            if r.body.capacity() + r.handshake.capacity() == 0 {
                continue;
            }
            if r.in_body && r.keep {
                // The rest of this record is skipped by its length.
                r.keep = false;
            }
            r.body = Vec::new();
            r.handshake = Vec::new();
            r.skip_handshake = 0;
            r.handshake_lost = true;
            cx.stats.handshakes_shed += 1;
            self.anomalies.insert(Anomaly::HeadMemcap);
        }
    }
}
