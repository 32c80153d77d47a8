//! One TLS connection: records per direction, handshake messages across records, and the
//! connection record handed out when it ends; with a key log, the records decrypted and
//! their plaintext handed to the layer inside.
//!
//! Record bodies are kept only where they are read (plaintext handshake and alert
//! records; protected records while decrypting); other encrypted records are counted and
//! skipped by their length, so a gap inside one leaves the framing intact. A direction
//! that loses its framing (a gap elsewhere, a header that is not one, a connection joined
//! midway) finds it again only at a header whose record is followed by another header, or
//! ends where the delivered bytes end.

use crate::crypto::{RecordKeys, Suite};
use crate::messages::Messages;
use crate::{hello, TlsConfig, TlsStats};
use apitap_core::{
    Anomalies, Anomaly, AppParser, Decryption, Direction, FinishCause, Handoff, PacketRef, ParseCx,
    SortKey, Timestamp, TlsConnection, TlsHandshake,
};
use std::collections::VecDeque;
use std::sync::Arc;
use tls_parser::TlsMessageHandshake;

/// Largest record body on the wire: 2^14 plus the 2048 bytes of expansion TLS 1.2 allows.
pub const MAX_RECORD_BODY: usize = (1 << 14) + 2048;

const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
const HEARTBEAT: u8 = 24;

/// Sequence numbers tried after records were lost to a gap that broke the framing.
const SEEK_AFTER_LOSS: u64 = 64;
/// Records in a row that fail authentication before the keys are taken for wrong.
const MAX_FAILURES_IN_A_ROW: u8 = 3;
/// What a record waiting for keys costs besides its bytes (counted in the pending bound).
const PENDING_OVERHEAD: usize = 64;

type Ctx<'a> = ParseCx<'a, TlsConfig, TlsStats, TlsConnection>;

/// The body length of a 5-byte record header, if it is one: content type 20..=24,
/// version 3.0 to 3.4 (TLS 1.3 records say 3.3; 3.1 and 3.0 appear in first hellos), and
/// a length TLS allows.
pub fn record_header(h: &[u8]) -> Option<usize> {
    match h {
        [CHANGE_CIPHER_SPEC..=HEARTBEAT, 3, 0..=4, hi, lo, ..] => {
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

/// What the layer inside a decrypted connection gets, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plaintext {
    /// Decrypted application data.
    Data(Direction, Vec<u8>),
    /// About this many plaintext bytes were lost (records lost or not authentic).
    Lost(Direction, u64),
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
    /// A gap fell inside the kept body: the record cannot be read, its length still holds.
    damaged: bool,
    body: Vec<u8>,
    /// Plaintext handshake messages in progress.
    handshake: Messages,
    /// Handshake message boundaries were lost: plaintext handshake is no longer read.
    handshake_lost: bool,
    /// Framing was lost: waiting for a trustworthy record boundary.
    lost: bool,
    /// ChangeCipherSpec seen: what follows is encrypted (TLS 1.2 and earlier).
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
        self.handshake.clear();
        self.handshake_lost = true;
    }
}

/// A complete record, as the direction hands it to the connection.
#[derive(Debug)]
struct Record {
    header: [u8; 5],
    body: Vec<u8>,
    damaged: bool,
}

/// Where decryption stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum CryptState {
    /// No key log configured.
    #[default]
    Off,
    /// Keys not found yet: protected records wait (bounded).
    Waiting,
    /// Decrypting.
    Active,
    /// Given up, for this reason.
    Failed(Decryption),
}

/// What waits for the keys, in order: protected records, and the places where a
/// direction's framing was lost (after which sequence numbers are searched).
#[derive(Debug)]
enum Waiting {
    Record(Direction, Record),
    Loss(Direction, u64),
}

/// Decryption state of a connection. Keys are zeroized when dropped.
#[derive(Debug, Default)]
struct Crypt {
    state: CryptState,
    suite: Option<Suite>,
    /// Current keys per direction.
    keys: [Option<RecordKeys>; 2],
    /// TLS 1.3 application keys, taken after each side's Finished.
    next: [Option<RecordKeys>; 2],
    /// Protected records waiting for keys, in arrival order.
    pending: VecDeque<Waiting>,
    pending_bytes: usize,
    /// Sequence numbers to try after a loss that broke the framing.
    seek: [u64; 2],
    /// Records in a row that did not authenticate.
    failures: [u8; 2],
    /// Decrypted TLS 1.3 handshake messages in progress.
    handshake: [Messages; 2],
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
    client_random: Option<[u8; 32]>,
    server_random: Option<[u8; 32]>,
    alert: Option<u8>,
    anomalies: Anomalies,
    start: Option<PacketRef>,
    end: PacketRef,
    finished: bool,
    crypt: Crypt,
    /// Plaintext for the layer inside, taken by [`TlsConn::take_plaintext`].
    plain: Vec<Plaintext>,
    /// The handshake as the transactions inside carry it, made at the first plaintext.
    shared: Option<Arc<TlsHandshake>>,
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

    /// Plaintext decrypted since the last call, in order.
    pub fn take_plaintext(&mut self) -> Vec<Plaintext> {
        std::mem::take(&mut self.plain)
    }

    /// The handshake shared with the transactions decrypted from the connection; None
    /// before the first plaintext.
    pub fn shared_handshake(&self) -> Option<Arc<TlsHandshake>> {
        self.shared.clone()
    }

    /// The connection is ending: records still waiting for keys get a last look in the
    /// key log (a live key log may have caught up since the last record). Their plaintext
    /// is then taken like any other.
    pub fn settle_pending(&mut self, cx: &mut Ctx<'_>) {
        if self.crypt.state != CryptState::Waiting || self.crypt.pending.is_empty() {
            return;
        }
        if self.client_hello && self.server_hello && self.find_keys(cx) {
            self.release_pending(cx);
        }
    }

    /// The keys are here: everything that waited is opened (or its loss told), in order.
    fn release_pending(&mut self, cx: &mut Ctx<'_>) {
        self.crypt.state = CryptState::Active;
        self.crypt.pending_bytes = 0;
        let waiting = std::mem::take(&mut self.crypt.pending);
        for w in waiting {
            match w {
                Waiting::Record(d, r) => self.open(d, r, cx),
                Waiting::Loss(d, len) => self.lost_framing(d, len, cx),
            }
        }
    }

    /// Queues `w` until the keys come: a record is opened at once if they came just now;
    /// past `max_pending_bytes` the connection is given up (`keys_too_late`).
    fn wait(&mut self, w: Waiting, cx: &mut Ctx<'_>) {
        // What waiting costs: the record's buffer and its place in the queue, so that
        // empty records cannot grow the queue for free.
        let cost = match &w {
            Waiting::Record(_, r) => r.body.capacity() + PENDING_OVERHEAD,
            Waiting::Loss(..) => PENDING_OVERHEAD,
        };
        let record = matches!(w, Waiting::Record(..));
        self.crypt.pending_bytes += cost;
        self.crypt.pending.push_back(w);
        if record && self.find_keys(cx) {
            self.release_pending(cx);
            return;
        }
        if self.crypt.pending_bytes > cx.cfg.max_pending_bytes {
            cx.stats.pending_bytes_dropped += self.crypt.pending_bytes as u64;
            self.fail(Decryption::KeysTooLate);
        }
    }

    fn tls13(&self) -> bool {
        self.server_hello && self.hs.version == Some(0x0304)
    }

    /// Whether a record of `content_type` sent in `dir` now is protected.
    fn protected(&self, dir: Direction, content_type: u8) -> bool {
        if self.tls13() || !self.server_hello {
            content_type == APPLICATION_DATA
        } else {
            // After ChangeCipherSpec every record is protected and uses a sequence number.
            self.dirs[dir.index()].ccs
        }
    }

    fn decrypting(&self) -> bool {
        matches!(self.crypt.state, CryptState::Waiting | CryptState::Active)
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
                    // How much was lost is not known: at least a record's worth.
                    self.lost_framing(dir, MAX_RECORD_BODY as u64, cx);
                    continue;
                };
                let content_type = r.header[0];
                let read_plain = !r.ccs
                    && (content_type == ALERT || (content_type == HANDSHAKE && !r.handshake_lost));
                let keep = read_plain || (self.decrypting() && self.protected(dir, content_type));
                let r = &mut self.dirs[dir.index()];
                r.content_type = content_type;
                r.body_left = len;
                r.in_body = true;
                r.keep = keep;
                r.damaged = false;
                r.body.clear();
            }
            let r = &mut self.dirs[dir.index()];
            let take = r.body_left.min(data.len());
            if r.keep {
                r.body.extend_from_slice(&data[..take]);
            }
            r.body_left -= take;
            data = &data[take..];
            if r.body_left == 0 {
                r.in_body = false;
                let record = Record {
                    header: r.header,
                    body: std::mem::take(&mut r.body),
                    damaged: r.damaged,
                };
                self.read(dir, record, cx);
            }
        }
    }

    /// Reads one complete record.
    fn read(&mut self, dir: Direction, record: Record, cx: &mut Ctx<'_>) {
        cx.stats.records += 1;
        let content_type = record.header[0];
        if self.protected(dir, content_type) {
            self.dirs[dir.index()].protected += 1;
            if self.decrypting() {
                self.decrypt(dir, record, cx);
            }
            return;
        }
        let tls13 = self.tls13();
        let r = &mut self.dirs[dir.index()];
        match content_type {
            // TLS 1.3 sends ChangeCipherSpec only for middleboxes: it changes nothing.
            CHANGE_CIPHER_SPEC if tls13 => {}
            CHANGE_CIPHER_SPEC => {
                r.ccs = true;
                // The server switches to encryption without having sent its certificate
                // flight: an abbreviated (resumed) handshake, when nothing of its
                // handshake was lost.
                if dir == Direction::ToClient
                    && self.server_hello
                    && !self.server_hello_done
                    && !r.handshake_lost
                {
                    self.hs.resumed = true;
                }
            }
            ALERT => self.alert_record(&record.body, cx),
            HANDSHAKE if record.damaged => {
                // Message boundaries inside this stream are gone.
                r.handshake.clear();
                r.handshake_lost = true;
            }
            HANDSHAKE if !r.handshake_lost => {
                let found = r.handshake.push(&record.body, cx.cfg.max_handshake_bytes);
                self.too_large(found.too_large, cx);
                for m in found.messages {
                    self.message(dir, &m, cx);
                }
            }
            _ => {}
        }
        // The body buffer goes back for the next record.
        let r = &mut self.dirs[dir.index()];
        if r.body.capacity() == 0 {
            r.body = record.body;
            r.body.clear();
        }
    }

    /// An alert record's body, in the clear or decrypted: the first fatal one is kept.
    fn alert_record(&mut self, body: &[u8], cx: &mut Ctx<'_>) {
        if let [2, description, ..] = body {
            cx.stats.fatal_alerts += 1;
            self.alert.get_or_insert(*description);
        }
    }

    fn too_large(&mut self, n: u64, cx: &mut Ctx<'_>) {
        if n > 0 {
            self.anomalies.insert(Anomaly::TlsHandshakeTooLarge);
            cx.stats.handshake_too_large += n;
        }
    }

    /// Reads one whole plaintext handshake message (type, length, body).
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
                        self.client_random = <[u8; 32]>::try_from(ch.random).ok();
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
                        self.server_random = <[u8; 32]>::try_from(sh.random).ok();
                        hello::server_hello(&mut self.hs, &sh, &exts);
                        if self.crypt.state == CryptState::Waiting {
                            self.crypt.suite = Suite::from_id(sh.cipher.0);
                            if self.crypt.suite.is_none() {
                                self.fail(Decryption::UnsupportedCipher);
                            }
                        }
                    }
                    _ => self.invalid(cx),
                }
            }
            (Direction::ToClient, 11) if self.hs.certificate_chain_len == 0 => {
                match tls_parser::parse_tls_handshake_msg_certificate(body) {
                    Ok((_, TlsMessageHandshake::Certificate(c))) => {
                        let leaf = c.cert_chain.first().map(|leaf| leaf.data);
                        self.certificate(c.cert_chain.len(), leaf, cx);
                    }
                    _ => self.invalid(cx),
                }
            }
            (Direction::ToClient, 14) => self.server_hello_done = true,
            _ => {}
        }
    }

    fn certificate(&mut self, chain_len: usize, leaf: Option<&[u8]>, cx: &mut Ctx<'_>) {
        self.hs.certificate_chain_len = u16::try_from(chain_len).unwrap_or(u16::MAX);
        cx.stats.certificates += 1;
        match leaf.map(crate::cert::leaf) {
            Some(Some(leaf)) => self.hs.certificate = Some(Box::new(leaf)),
            Some(None) => cx.stats.certificates_invalid += 1,
            None => {}
        }
    }

    fn invalid(&mut self, cx: &mut Ctx<'_>) {
        self.anomalies.insert(Anomaly::TlsHandshakeInvalid);
        cx.stats.handshakes_invalid += 1;
    }

    fn fail(&mut self, why: Decryption) {
        if self.decrypting() {
            self.crypt.state = CryptState::Failed(why);
            self.crypt.pending.clear();
            self.crypt.pending_bytes = 0;
            self.crypt.keys = Default::default();
            self.crypt.next = Default::default();
        }
    }

    /// A protected record while decrypting: opened now, or waiting for its keys.
    fn decrypt(&mut self, dir: Direction, record: Record, cx: &mut Ctx<'_>) {
        if self.crypt.state == CryptState::Waiting {
            if !self.client_hello {
                self.fail(Decryption::HandshakeNotSeen);
                return;
            }
            self.wait(Waiting::Record(dir, record), cx);
            return;
        }
        self.open(dir, record, cx);
    }

    /// Looks the connection's secrets up in the key log and derives its keys.
    fn find_keys(&mut self, cx: &mut Ctx<'_>) -> bool {
        let (Some(client_random), Some(suite)) = (self.client_random, self.crypt.suite) else {
            return false;
        };
        let server_random = self.server_random;
        let tls13 = self.tls13();
        let found = cx.cfg.keys.with(|log| {
            let s = log.get(&client_random)?;
            if tls13 {
                Some([
                    RecordKeys::tls13(suite, s.client_handshake.as_ref()?)?,
                    RecordKeys::tls13(suite, s.server_handshake.as_ref()?)?,
                    RecordKeys::tls13(suite, s.client_traffic.as_ref()?)?,
                    RecordKeys::tls13(suite, s.server_traffic.as_ref()?)?,
                ])
                .map(|[ch, sh, ca, sa]| ([Some(ch), Some(sh)], [Some(ca), Some(sa)]))
            } else {
                let (c, s) =
                    RecordKeys::tls12(suite, s.master.as_ref()?, &client_random, &server_random?)?;
                Some(([Some(c), Some(s)], [None, None]))
            }
        });
        match found.flatten() {
            Some((keys, next)) => {
                self.crypt.keys = keys;
                self.crypt.next = next;
                true
            }
            None => false,
        }
    }

    /// Opens one protected record and hands on what it holds.
    fn open(&mut self, dir: Direction, mut record: Record, cx: &mut Ctx<'_>) {
        let d = dir.index();
        // TLS 1.3 early data (0-RTT) comes before the client's Finished under keys apitap
        // does not have: it is lost, but says nothing about the handshake keys and uses
        // none of their sequence numbers.
        let maybe_early_data =
            self.tls13() && dir == Direction::ToServer && self.crypt.next[d].is_some();
        let Some(keys) = self.crypt.keys[d].as_mut() else {
            return;
        };
        let wire_len = record.header[3..5]
            .try_into()
            .map(|b: [u8; 2]| u64::from(u16::from_be_bytes(b)))
            .unwrap_or(0);
        if record.damaged {
            keys.skip();
            let lost = keys.plaintext_len(wire_len);
            cx.stats.records_lost += 1;
            self.crypt.handshake[d].clear();
            self.plain.push(Plaintext::Lost(dir, lost));
            return;
        }
        let seek = std::mem::take(&mut self.crypt.seek[d]);
        match keys.open(&record.header, &mut record.body, seek) {
            Ok(content_type) => {
                self.crypt.failures[d] = 0;
                cx.stats.records_decrypted += 1;
                match content_type {
                    APPLICATION_DATA => {
                        if self.shared.is_none() {
                            self.shared = Some(Arc::new(self.hs.clone()));
                        }
                        cx.stats.plaintext_bytes += record.body.len() as u64;
                        if !record.body.is_empty() {
                            self.plain.push(Plaintext::Data(dir, record.body));
                        }
                    }
                    HANDSHAKE if self.tls13() => {
                        let found =
                            self.crypt.handshake[d].push(&record.body, cx.cfg.max_handshake_bytes);
                        self.too_large(found.too_large, cx);
                        for m in found.messages {
                            self.message13(dir, &m, cx);
                        }
                    }
                    ALERT => self.alert_record(&record.body, cx),
                    _ => {}
                }
            }
            Err(_) => {
                cx.stats.records_unauthenticated += 1;
                let lost = keys.plaintext_len(wire_len);
                if !maybe_early_data {
                    keys.skip();
                    self.crypt.handshake[d].clear();
                    self.crypt.failures[d] += 1;
                }
                self.plain.push(Plaintext::Lost(dir, lost));
                if self.crypt.failures[d] >= MAX_FAILURES_IN_A_ROW {
                    self.fail(Decryption::AuthenticationFailed);
                }
            }
        }
    }

    /// A decrypted TLS 1.3 handshake message: the server's ALPN and certificate, each
    /// side's Finished (its application keys follow), KeyUpdate.
    fn message13(&mut self, dir: Direction, msg: &[u8], cx: &mut Ctx<'_>) {
        let Some((&kind, _)) = msg.split_first() else {
            return;
        };
        let body = msg.get(4..).unwrap_or(&[]);
        let d = dir.index();
        match (dir, kind) {
            (Direction::ToClient, 8) => {
                // EncryptedExtensions: a list of extensions.
                let exts = body.get(2..).unwrap_or(&[]);
                if let Ok((_, exts)) = tls_parser::parse_tls_extensions(exts) {
                    for e in exts {
                        if let tls_parser::TlsExtension::ALPN(p) = e {
                            self.hs.next_protocol =
                                p.first().map(|p| String::from_utf8_lossy(p).into_owned());
                        }
                    }
                }
            }
            (Direction::ToClient, 11) if self.hs.certificate_chain_len == 0 => {
                match certificate13(body) {
                    Some((count, leaf)) => self.certificate(count, leaf, cx),
                    None => self.invalid(cx),
                }
            }
            (_, 20) => {
                if let Some(next) = self.crypt.next[d].take() {
                    self.crypt.keys[d] = Some(next);
                }
            }
            (_, 24) => {
                if let Some(keys) = self.crypt.keys[d].as_mut() {
                    keys.update();
                }
            }
            _ => {}
        }
    }

    /// A gap or bad header broke a direction's framing: what is lost is told to the layer
    /// inside, and the next records are opened trying the sequence numbers lost ones used.
    fn lost_framing(&mut self, dir: Direction, len: u64, cx: &mut Ctx<'_>) {
        match self.crypt.state {
            CryptState::Active => {
                self.crypt.seek[dir.index()] = SEEK_AFTER_LOSS;
                self.plain.push(Plaintext::Lost(dir, len));
            }
            // Told in its place once the keys come.
            CryptState::Waiting => self.wait(Waiting::Loss(dir, len), cx),
            CryptState::Off | CryptState::Failed(_) => {}
        }
    }

    /// The connection record as it stands.
    fn record(&mut self, key: SortKey) -> TlsConnection {
        let [to_server, to_client] = &self.dirs;
        let both_protected = to_server.protected > 0 && to_client.protected > 0;
        let midstream = !self.client_hello;
        let decryption = match self.crypt.state {
            CryptState::Off => None,
            CryptState::Active => Some(Decryption::Decrypted),
            CryptState::Failed(why) => Some(why),
            CryptState::Waiting if !self.client_hello || !self.server_hello => {
                Some(Decryption::HandshakeNotSeen)
            }
            CryptState::Waiting => Some(Decryption::NoKey),
        };
        TlsConnection {
            key,
            handshake: Arc::new(std::mem::take(&mut self.hs)),
            established: both_protected && (self.server_hello || midstream) && self.alert.is_none(),
            midstream,
            alert: self.alert,
            client_bytes: to_server.bytes,
            server_bytes: to_client.bytes,
            anomalies: self.anomalies,
            decryption,
            start: self.start.unwrap_or(self.end),
            end: self.end,
        }
    }
}

/// A TLS 1.3 Certificate message body: the number of certificates and the leaf's DER.
fn certificate13(body: &[u8]) -> Option<(usize, Option<&[u8]>)> {
    let u24 = |b: &[u8]| -> Option<usize> {
        match b {
            [a, b, c, ..] => Some(usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c)),
            _ => None,
        }
    };
    let context_len = usize::from(*body.first()?);
    let rest = body.get(1 + context_len..)?;
    let list_len = u24(rest)?;
    let mut list = rest.get(3..3 + list_len)?;
    let mut count = 0;
    let mut leaf = None;
    while !list.is_empty() {
        let len = u24(list)?;
        let cert = list.get(3..3 + len)?;
        let ext_len = usize::from(u16::from_be_bytes(
            list.get(3 + len..5 + len)?.try_into().ok()?,
        ));
        leaf.get_or_insert(cert);
        count += 1;
        list = list.get(5 + len + ext_len..)?;
    }
    Some((count, leaf))
}

impl AppParser for TlsConn {
    type Config = TlsConfig;
    type Stats = TlsStats;
    type Output = TlsConnection;

    fn on_data(&mut self, dir: Direction, data: &[u8], cx: &mut Ctx<'_>) -> usize {
        if self.start.is_none() {
            self.start = Some(cx.at);
            cx.stats.connections += 1;
            if cx.cfg.keys.is_set() {
                self.crypt.state = CryptState::Waiting;
            }
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
        let in_record = r.in_body && !r.lost;
        match usize::try_from(len) {
            // Lost inside a record: its length still says where the next begins.
            Ok(n) if in_record && n <= r.body_left => {
                r.body_left -= n;
                cx.stats.gaps_absorbed += 1;
                if r.keep {
                    r.damaged = true;
                    r.body.clear();
                }
                if r.body_left == 0 {
                    r.in_body = false;
                    let record = Record {
                        header: r.header,
                        body: std::mem::take(&mut r.body),
                        damaged: true,
                    };
                    self.read(dir, record, cx);
                }
            }
            _ => {
                if !r.lost {
                    cx.stats.framing_lost += 1;
                }
                r.lose();
                self.lost_framing(dir, len, cx);
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
        if let Some(d) = record.decryption {
            cx.stats.decryption.count(d);
        }
        // The keys go (and are zeroized) with the connection.
        self.crypt = Crypt::default();
        cx.out.push(record);
    }

    fn open_transactions(&self, _out: &mut Vec<(SortKey, Timestamp)>) {}

    fn handoff(&self) -> Option<Handoff> {
        None
    }

    fn buffered_bytes(&self) -> usize {
        let dirs: usize = self
            .dirs
            .iter()
            .map(|r| r.body.capacity() + r.handshake.capacity())
            .sum();
        let crypt: usize = self.crypt.handshake.iter().map(Messages::capacity).sum();
        dirs + crypt + self.crypt.pending_bytes
    }

    fn shed(&mut self, cx: &mut Ctx<'_>) {
        for r in &mut self.dirs {
            if r.body.capacity() + r.handshake.capacity() == 0 {
                continue;
            }
            if r.in_body && r.keep {
                // The rest of this record is skipped by its length; it cannot be read.
                r.damaged = true;
                r.keep = false;
            }
            r.body = Vec::new();
            r.handshake.clear();
            r.handshake_lost = true;
            cx.stats.handshakes_shed += 1;
            self.anomalies.insert(Anomaly::HeadMemcap);
        }
        for m in &mut self.crypt.handshake {
            if m.capacity() > 0 {
                m.clear();
                self.anomalies.insert(Anomaly::HeadMemcap);
            }
        }
        if self.crypt.pending_bytes > 0 {
            cx.stats.pending_bytes_dropped += self.crypt.pending_bytes as u64;
            self.fail(Decryption::KeysTooLate);
            self.anomalies.insert(Anomaly::HeadMemcap);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apitap_core::ParserEnv;

    fn env(max_handshake_bytes: usize) -> ParserEnv<TlsConfig, TlsStats, TlsConnection> {
        ParserEnv::new(TlsConfig {
            max_handshake_bytes,
            ..TlsConfig::default()
        })
    }

    /// A Certificate message of 100 000 bytes over seven records: skipped past the bound,
    /// flagged and counted, never buffered whole.
    #[test]
    fn a_huge_certificate_chain_is_skipped_within_the_bound() {
        let mut env = env(4096);
        let mut conn = TlsConn::new();
        let at = PacketRef::default();
        let len: usize = 100_000;
        let mut message = vec![11u8, (len >> 16) as u8, (len >> 8) as u8, len as u8];
        message.resize(4 + len, 0x30);
        let mut peak = 0;
        for chunk in message.chunks(16_000) {
            let mut record = vec![22, 3, 3];
            record.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            record.extend_from_slice(chunk);
            conn.on_data(Direction::ToClient, &record, &mut env.cx(at));
            peak = peak.max(conn.buffered_bytes());
        }
        conn.finish(FinishCause::EndOfCapture, &mut env.cx(at));
        let c = &env.out[0];
        assert!(c.anomalies.contains(Anomaly::TlsHandshakeTooLarge));
        assert_eq!(env.stats.handshake_too_large, 1);
        assert!(c.handshake.certificate.is_none());
        assert!(peak < 4096 + 2 * MAX_RECORD_BODY, "{peak}");
    }

    /// Truncated and corrupted records: a header that is no TLS record loses the
    /// direction's framing (counted, flagged), a record cut by the end of the connection is
    /// left, and nothing is handed out but the connection record.
    #[test]
    fn broken_records_are_counted_not_parsed() {
        let mut env = env(4096);
        let mut conn = TlsConn::new();
        let at = PacketRef::default();
        conn.on_data(
            Direction::ToServer,
            &[22, 3, 1, 0, 40, 1, 0, 0],
            &mut env.cx(at),
        );
        conn.on_data(Direction::ToClient, &[0x99, 3, 3, 0, 1, 0], &mut env.cx(at));
        conn.on_data(
            Direction::ToClient,
            &[23, 3, 3, 0x48, 0x01],
            &mut env.cx(at),
        );
        conn.finish(FinishCause::ConnectionClosed, &mut env.cx(at));
        assert_eq!(env.out.len(), 1);
        assert!(env.out[0].anomalies.contains(Anomaly::TlsRecordInvalid));
        assert_eq!(env.stats.records_invalid, 1);
        assert_eq!(env.stats.client_hellos, 0, "the hello never completed");
        assert_eq!(env.out[0].client_bytes, 8);
    }

    /// A TLS 1.2 connection made here (hellos, ChangeCipherSpec, records sealed with the
    /// key log's master secret): records lost to a gap that breaks the framing while the
    /// keys are still awaited. Once the keys come, the records before the loss open, the
    /// loss is told to the layer inside, and the records after it open by sequence-number
    /// search: nothing fails authentication.
    #[test]
    fn a_loss_while_waiting_for_keys_is_searched_past_once_they_come() {
        use crate::crypto::{RecordKeys, Suite};
        use crate::keylog::{KeyLog, KeyLogHandle};
        let (cr, sr, master) = ([1u8; 32], [2u8; 32], [3u8; 48]);
        let record = |kind: u8, body: &[u8]| {
            let mut r = vec![kind, 3, 3];
            r.extend_from_slice(&(body.len() as u16).to_be_bytes());
            r.extend_from_slice(body);
            r
        };
        let handshake = |kind: u8, body: &[u8]| {
            let mut m = vec![kind, 0, (body.len() >> 8) as u8, body.len() as u8];
            m.extend_from_slice(body);
            record(22, &m)
        };
        let mut ch = vec![3, 3];
        ch.extend_from_slice(&cr);
        ch.extend_from_slice(&[0, 0, 2, 0xc0, 0x2f, 1, 0]);
        let mut sh = vec![3, 3];
        sh.extend_from_slice(&sr);
        sh.extend_from_slice(&[0, 0xc0, 0x2f, 0]);
        let suite = Suite::from_id(0xc02f).unwrap();
        let (_, mut server) = RecordKeys::tls12(suite, &master, &cr, &sr).unwrap();
        let sealed: Vec<Vec<u8>> = (0..8u8)
            .map(|i| {
                let (h, b) = server.seal(23, &[b'a' + i; 300]).unwrap();
                let mut r = h.to_vec();
                r.extend_from_slice(&b);
                r
            })
            .collect();

        let keys = KeyLogHandle::new(KeyLog::new());
        let mut env: ParserEnv<TlsConfig, TlsStats, TlsConnection> = ParserEnv::new(TlsConfig {
            keys: keys.clone(),
            ..TlsConfig::default()
        });
        let mut conn = TlsConn::new();
        let at = PacketRef::default();
        conn.on_data(Direction::ToServer, &handshake(1, &ch), &mut env.cx(at));
        let mut wire = handshake(2, &sh);
        wire.extend_from_slice(&handshake(14, &[]));
        wire.extend_from_slice(&record(20, &[1]));
        for r in &sealed[..3] {
            wire.extend_from_slice(r);
        }
        // Record 3 starts, then its rest, record 4 and 10 bytes of record 5 are lost.
        wire.extend_from_slice(&sealed[3][..20]);
        conn.on_data(Direction::ToClient, &wire, &mut env.cx(at));
        let lost = sealed[3].len() - 20 + sealed[4].len() + 10;
        conn.on_gap(Direction::ToClient, lost as u64, &mut env.cx(at));
        let mut rest = sealed[5][10..].to_vec();
        for r in &sealed[6..] {
            rest.extend_from_slice(r);
        }
        conn.on_data(Direction::ToClient, &rest, &mut env.cx(at));
        assert!(conn.take_plaintext().is_empty(), "no keys yet");
        keys.add_text(&format!(
            "CLIENT_RANDOM {} {}\n",
            crate::hello::hex_lower(&cr),
            crate::hello::hex_lower(&master)
        ));
        conn.settle_pending(&mut env.cx(at));
        let plain = conn.take_plaintext();
        let data: Vec<u8> = plain
            .iter()
            .filter_map(|p| match p {
                Plaintext::Data(_, b) => b.first().copied(),
                Plaintext::Lost(..) => None,
            })
            .collect();
        // Records 0-2 before the loss; 5 was cut (its header lost), 6 and 7 after it.
        assert_eq!(data, b"abcgh");
        assert!(plain
            .iter()
            .any(|p| matches!(p, Plaintext::Lost(Direction::ToClient, n) if *n == lost as u64)));
        assert_eq!(env.stats.records_unauthenticated, 0);
        conn.finish(FinishCause::ConnectionClosed, &mut env.cx(at));
        assert_eq!(env.out[0].decryption, Some(Decryption::Decrypted));
    }
}
