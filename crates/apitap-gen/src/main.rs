//! `apitap-gen`: writes a large, realistic, seeded API capture (pcap, Ethernet): HTTP/1.1,
//! HTTP/2 (prior knowledge) or gRPC over HTTP/2.
//!
//! Many concurrent keep-alive clients call a JSON API (GET/POST/PUT/DELETE), responses mix
//! sizes from a few bytes to hundreds of KB, some chunked (HTTP/1.1), some gzip-encoded; in
//! HTTP/2 the same exchanges are HEADERS (HPACK with the dynamic table and Huffman strings,
//! as clients send them) and DATA frames, and gRPC calls are unary calls with
//! length-prefixed messages and a `grpc-status` trailer; every segment
//! respects an MTU of 1500; a configurable share of server segments arrives reordered or
//! duplicated (retransmission). The same seed gives a byte-identical file. The number of
//! transactions written is printed, so a replay can be checked against it.
//!
//! `apitap-gen --seed 7 --transactions 120000 --clients 200 -o big.pcap`

use anyhow::{Context, Result};
use clap::Parser;
use etherparse::PacketBuilder;
use flate2::write::GzEncoder;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write as _;
use std::path::PathBuf;

/// Command line.
#[derive(Parser, Debug)]
#[command(
    name = "apitap-gen",
    about = "Write a seeded, realistic HTTP/1.1 API capture"
)]
struct Args {
    /// Output pcap file.
    #[arg(short, long)]
    out: PathBuf,
    /// RNG seed: the same seed gives the same file.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// HTTP transactions to write.
    #[arg(long, default_value_t = 10_000)]
    transactions: u64,
    /// Concurrent keep-alive clients.
    #[arg(long, default_value_t = 64)]
    clients: u32,
    /// Share of server data segments delivered out of order (swapped with the next).
    #[arg(long, default_value_t = 0.01)]
    reorder: f64,
    /// Share of server data segments captured twice (retransmission).
    #[arg(long, default_value_t = 0.005)]
    duplicate: f64,
    /// Response size mix: `mixed` (a tenth of responses are 20-300 KB exports, ~16 KB per
    /// transaction on the wire) or `api` (small JSON answers, ~1.2 KB per transaction).
    #[arg(long, value_enum, default_value_t = SizeMix::Mixed)]
    size_mix: SizeMix,
    /// Application protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Http1)]
    protocol: Protocol,
}

/// What the clients speak.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 by prior knowledge (h2c).
    H2,
    /// gRPC (unary calls) over h2c.
    Grpc,
}

/// Response size distributions.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum SizeMix {
    /// 60% 50 B-1.5 KB, 30% 1.5-20 KB, 10% 20-300 KB.
    Mixed,
    /// 75% 30-600 B, 23% 600 B-3 KB, 2% 3-12 KB.
    Api,
}

const MSS: usize = 1460;
const SERVER: [u8; 4] = [10, 0, 0, 1];
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const SYN: u8 = 0x02;
const FIN: u8 = 0x01;

struct Conn {
    client: [u8; 4],
    port: u16,
    cseq: u32,
    sseq: u32,
    open: bool,
    /// HTTP/2: the next client stream id and each direction's HPACK encoder.
    stream: u32,
    hpack: Option<Box<[httlib_hpack::Encoder<'static>; 2]>>,
}

struct Out {
    save: pcap::Savefile,
    ts_us: i64,
    ip_id: u16,
    packets: u64,
    bytes: u64,
}

/// Sets the identification of the IPv4 header after the 14-byte Ethernet header and
/// recomputes its checksum.
fn set_ipv4_id(frame: &mut [u8], id: u16) -> Result<()> {
    let ip = frame.get_mut(14..).context("frame without IPv4 header")?;
    let (mut header, _) =
        etherparse::Ipv4Header::from_slice(ip).context("generated IPv4 header")?;
    header.identification = id;
    header.header_checksum = header.calc_header_checksum();
    let bytes = header.to_bytes();
    ip[..bytes.len()].copy_from_slice(&bytes);
    Ok(())
}

impl Out {
    #[allow(clippy::too_many_arguments)]
    fn tcp(
        &mut self,
        rng: &mut ChaCha8Rng,
        from_client: bool,
        c: &Conn,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
    ) -> Result<()> {
        self.ts_us += rng.random_range(2..40);
        let (src, dst, sport, dport) = if from_client {
            (c.client, SERVER, c.port, 8080)
        } else {
            (SERVER, c.client, 8080, c.port)
        };
        let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .tcp(sport, dport, seq, 502);
        if flags & SYN != 0 {
            b = b.syn();
        }
        if flags & FIN != 0 {
            b = b.fin();
        }
        if flags & PSH != 0 {
            b = b.psh();
        }
        if flags & ACK != 0 {
            b = b.ack(ack);
        }
        let mut frame = Vec::with_capacity(54 + payload.len());
        b.write(&mut frame, payload).context("build frame")?;
        // Real stacks give every packet, retransmissions included, its own IPv4 id; this is
        // what tells a retransmission from a SPAN duplicate of the same frame.
        self.ip_id = self.ip_id.wrapping_add(1);
        set_ipv4_id(&mut frame, self.ip_id)?;
        let header = pcap::PacketHeader {
            ts: libc::timeval {
                tv_sec: self.ts_us / 1_000_000,
                tv_usec: self.ts_us % 1_000_000,
            },
            caplen: frame.len() as u32,
            len: frame.len() as u32,
        };
        self.save.write(&pcap::Packet::new(&header, &frame));
        self.packets += 1;
        self.bytes += frame.len() as u64;
        Ok(())
    }
}

fn json_body(rng: &mut ChaCha8Rng, target: usize) -> Vec<u8> {
    let mut body = b"{\"items\":[".to_vec();
    let mut i = 0u32;
    while body.len() < target {
        if i > 0 {
            body.push(b',');
        }
        let id: u32 = rng.random_range(1..1_000_000);
        let price: u32 = rng.random_range(1..100_000);
        write!(
            body,
            "{{\"id\":{id},\"name\":\"item-{id}\",\"price\":{}.{:02},\"tags\":[\"t{}\",\"t{}\"]}}",
            price / 100,
            price % 100,
            id % 7,
            id % 13
        )
        .ok();
        i += 1;
    }
    body.extend_from_slice(b"]}");
    body
}

/// One request/response pair as bytes.
fn exchange(rng: &mut ChaCha8Rng, client_no: u32, mix: SizeMix) -> (Vec<u8>, Vec<u8>) {
    let user: u32 = rng.random_range(1..50_000);
    let (method, path, req_body): (&str, String, Vec<u8>) = match rng.random_range(0..100) {
        0..=49 => ("GET", format!("/api/v1/users/{user}"), Vec::new()),
        50..=69 => (
            "GET",
            format!("/api/v1/items?page={}&limit=50", rng.random_range(1..200)),
            Vec::new(),
        ),
        70..=84 => {
            let body = format!(
                "{{\"user\":{user},\"item\":{},\"qty\":{}}}",
                rng.random_range(1..9999),
                rng.random_range(1..5)
            );
            ("POST", "/api/v1/orders".into(), body.into_bytes())
        }
        85..=94 => ("PUT", format!("/api/v1/users/{user}"), json_body(rng, 200)),
        _ => (
            "DELETE",
            format!("/api/v1/orders/{}", rng.random_range(1..999_999)),
            Vec::new(),
        ),
    };
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: apitap-gen/1 (client {client_no})\r\nAccept: application/json\r\nAuthorization: Bearer tok-{client_no:08x}\r\n"
    );
    if !req_body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            req_body.len()
        ));
    }
    req.push_str("\r\n");
    let mut req = req.into_bytes();
    req.extend_from_slice(&req_body);

    let status = match rng.random_range(0..100) {
        0..=84 => {
            if method == "POST" {
                201
            } else {
                200
            }
        }
        85..=89 => 404,
        90..=93 => 401,
        94..=96 => 204,
        _ => 500,
    };
    let size = match (mix, rng.random_range(0..100)) {
        // Mostly small API answers, some lists, a few large exports.
        (SizeMix::Mixed, 0..=59) => rng.random_range(50..1_500),
        (SizeMix::Mixed, 60..=89) => rng.random_range(1_500..20_000),
        (SizeMix::Mixed, _) => rng.random_range(20_000..300_000),
        // Small JSON answers, a few short lists.
        (SizeMix::Api, 0..=74) => rng.random_range(30..600),
        (SizeMix::Api, 75..=97) => rng.random_range(600..3_000),
        (SizeMix::Api, _) => rng.random_range(3_000..12_000),
    };
    let mut body = if status == 204 {
        Vec::new()
    } else {
        json_body(rng, size)
    };
    let gzip = status != 204 && rng.random_bool(0.3);
    let chunked = status != 204 && rng.random_bool(0.25);
    let mut head =
        format!("HTTP/1.1 {status} X\r\nServer: gen/1\r\nContent-Type: application/json\r\n");
    if gzip {
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&body).ok();
        body = enc.finish().unwrap_or_default();
        head.push_str("Content-Encoding: gzip\r\n");
    }
    let mut resp;
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
        resp = head.into_bytes();
        for chunk in body.chunks(8192) {
            resp.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            resp.extend_from_slice(chunk);
            resp.extend_from_slice(b"\r\n");
        }
        resp.extend_from_slice(b"0\r\n\r\n");
    } else if status == 204 {
        head.push_str("\r\n");
        resp = head.into_bytes();
    } else {
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        resp = head.into_bytes();
        resp.extend_from_slice(&body);
    }
    (req, resp)
}

/// An HTTP/2 frame.
fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// A header block: every field literal with incremental indexing and Huffman strings,
/// or indexed when the table has it (what browsers and gRPC libraries do).
fn header_block(enc: &mut httlib_hpack::Encoder<'static>, fields: &[(&str, &str)]) -> Vec<u8> {
    use httlib_hpack::Encoder;
    let flags = Encoder::HUFFMAN_NAME
        | Encoder::HUFFMAN_VALUE
        | Encoder::WITH_INDEXING
        | Encoder::BEST_FORMAT;
    let mut out = Vec::new();
    for (n, v) in fields {
        let _ = enc.encode(
            (n.as_bytes().to_vec(), v.as_bytes().to_vec(), flags),
            &mut out,
        );
    }
    out
}

/// The HTTP/1.1 exchange `(req, resp)` rewritten as HTTP/2 frames on `stream`, or, for
/// gRPC, as a unary call carrying the request and response bodies as one message each.
fn to_h2(
    c: &mut Conn,
    req: &[u8],
    resp: &[u8],
    grpc: bool,
    rng: &mut ChaCha8Rng,
) -> (Vec<u8>, Vec<u8>) {
    let (req_head, req_body) = split_message(req);
    let (resp_head, resp_body) = split_message(resp);
    let first = req_head.lines().next().unwrap_or("");
    let mut parts = first.split(' ');
    let (method, path) = (parts.next().unwrap_or("GET"), parts.next().unwrap_or("/"));
    let status = resp_head.split(' ').nth(1).unwrap_or("200");
    let header = |head: &str, name: &str| -> Option<String> {
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let stream = c.stream;
    c.stream += 2;
    let Some(hpack) = c.hpack.as_mut() else {
        return (Vec::new(), Vec::new());
    };
    let (mut q, mut r) = (Vec::new(), Vec::new());
    let ua = header(req_head, "user-agent").unwrap_or_default();
    let auth = header(req_head, "authorization").unwrap_or_default();
    if grpc {
        let method = ["GetUser", "ListItems", "CreateOrder", "UpdateUser"][rng.random_range(0..4)];
        let path = format!("/shop.v1.Shop/{method}");
        let block = header_block(
            &mut hpack[0],
            &[
                (":method", "POST"),
                (":scheme", "http"),
                (":path", &path),
                (":authority", "api.example.com:8080"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("user-agent", "grpc-gen/1"),
                ("authorization", &auth),
                ("grpc-timeout", "5S"),
            ],
        );
        frame(&mut q, 1, 0x4, stream, &block);
        let msg = grpc_message(&req_body);
        frame(&mut q, 0, 0x1, stream, &msg);
        let code = match status {
            "404" => "5",
            "401" => "16",
            "500" => "13",
            _ => "0",
        };
        let block = header_block(
            &mut hpack[1],
            &[(":status", "200"), ("content-type", "application/grpc")],
        );
        frame(&mut r, 1, 0x4, stream, &block);
        for chunk in grpc_message(&resp_body).chunks(16_384) {
            frame(&mut r, 0, 0, stream, chunk);
        }
        let trailers = header_block(&mut hpack[1], &[("grpc-status", code)]);
        frame(&mut r, 1, 0x5, stream, &trailers);
        return (q, r);
    }
    let mut fields = vec![
        (":method", method.to_string()),
        (":scheme", "https".to_string()),
        (":path", path.to_string()),
        (":authority", "api.example.com".to_string()),
        ("user-agent", ua),
        ("accept", "application/json".to_string()),
        ("authorization", auth),
    ];
    if !req_body.is_empty() {
        fields.push(("content-type", "application/json".into()));
        fields.push(("content-length", req_body.len().to_string()));
    }
    let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let block = header_block(&mut hpack[0], &fields);
    let end = if req_body.is_empty() { 0x5 } else { 0x4 };
    frame(&mut q, 1, end, stream, &block);
    if !req_body.is_empty() {
        frame(&mut q, 0, 0x1, stream, &req_body);
    }
    let mut fields = vec![
        (":status", status.to_string()),
        ("server", "gen/1".to_string()),
        ("content-type", "application/json".to_string()),
    ];
    if let Some(enc) = header(resp_head, "content-encoding") {
        fields.push(("content-encoding", enc));
    }
    fields.push(("content-length", resp_body.len().to_string()));
    let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let block = header_block(&mut hpack[1], &fields);
    let end = if resp_body.is_empty() { 0x5 } else { 0x4 };
    frame(&mut r, 1, end, stream, &block);
    let chunks: Vec<&[u8]> = resp_body.chunks(16_384).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let flags = if i + 1 == chunks.len() { 0x1 } else { 0 };
        frame(&mut r, 0, flags, stream, chunk);
    }
    (q, r)
}

/// A gRPC message: uncompressed flag, length, bytes.
fn grpc_message(body: &[u8]) -> Vec<u8> {
    let mut m = vec![0];
    m.extend_from_slice(&(body.len() as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// An HTTP/1.1 message's head (text) and body without chunk framing.
fn split_message(m: &[u8]) -> (&str, Vec<u8>) {
    let at = m
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(m.len(), |p| p + 4);
    let head = std::str::from_utf8(&m[..at]).unwrap_or("");
    let body = &m[at..];
    if !head.contains("Transfer-Encoding: chunked") {
        return (head, body.to_vec());
    }
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&rest[start..(start + size).min(rest.len())]);
        rest = &rest[(start + size + 2).min(rest.len())..];
    }
    (head, out)
}

fn open(out: &mut Out, rng: &mut ChaCha8Rng, c: &mut Conn) -> Result<()> {
    c.port = c.port.wrapping_add(1).max(1024);
    c.cseq = rng.random();
    c.sseq = rng.random();
    out.tcp(rng, true, c, c.cseq, 0, SYN, &[])?;
    out.tcp(
        rng,
        false,
        c,
        c.sseq,
        c.cseq.wrapping_add(1),
        SYN | ACK,
        &[],
    )?;
    c.cseq = c.cseq.wrapping_add(1);
    c.sseq = c.sseq.wrapping_add(1);
    out.tcp(rng, true, c, c.cseq, c.sseq, ACK, &[])?;
    c.open = true;
    Ok(())
}

/// The HTTP/2 connection preface of both sides: the client's magic and SETTINGS, the
/// server's SETTINGS, each acknowledged.
fn h2_preface(out: &mut Out, rng: &mut ChaCha8Rng, c: &mut Conn) -> Result<()> {
    c.stream = 1;
    c.hpack = Some(Box::new([
        httlib_hpack::Encoder::with_dynamic_size(4096),
        httlib_hpack::Encoder::with_dynamic_size(4096),
    ]));
    let mut q = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut q, 4, 0, 0, &[0, 3, 0, 0, 0, 100, 0, 4, 0, 0x60, 0, 0]);
    frame(&mut q, 4, 1, 0, &[]);
    let mut r = Vec::new();
    frame(&mut r, 4, 0, 0, &[0, 3, 0, 0, 0, 128]);
    frame(&mut r, 4, 1, 0, &[]);
    out.tcp(rng, true, c, c.cseq, c.sseq, ACK | PSH, &q)?;
    c.cseq = c.cseq.wrapping_add(q.len() as u32);
    out.tcp(rng, false, c, c.sseq, c.cseq, ACK | PSH, &r)?;
    c.sseq = c.sseq.wrapping_add(r.len() as u32);
    Ok(())
}

fn close(out: &mut Out, rng: &mut ChaCha8Rng, c: &mut Conn) -> Result<()> {
    out.tcp(rng, true, c, c.cseq, c.sseq, FIN | ACK, &[])?;
    c.cseq = c.cseq.wrapping_add(1);
    out.tcp(rng, false, c, c.sseq, c.cseq, FIN | ACK, &[])?;
    c.sseq = c.sseq.wrapping_add(1);
    out.tcp(rng, true, c, c.cseq, c.sseq, ACK, &[])?;
    c.open = false;
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET).context("libpcap")?;
    let save = dead
        .savefile(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut out = Out {
        save,
        ts_us: 1_704_067_200_000_000,
        ip_id: 0,
        packets: 0,
        bytes: 0,
    };
    let mut conns: Vec<Conn> = (0..args.clients.max(1))
        .map(|i| Conn {
            client: [10, 1, (i >> 8) as u8, (i & 0xff) as u8],
            port: 20_000 + (i % 1000) as u16 * 40,
            cseq: 0,
            sseq: 0,
            open: false,
            stream: 1,
            hpack: None,
        })
        .collect();
    for _ in 0..args.transactions {
        let i = rng.random_range(0..conns.len());
        let (req, resp) = exchange(&mut rng, i as u32, args.size_mix);
        let c = &mut conns[i];
        if !c.open {
            open(&mut out, &mut rng, c)?;
            if args.protocol != Protocol::Http1 {
                h2_preface(&mut out, &mut rng, c)?;
            }
        }
        let (req, resp) = match args.protocol {
            Protocol::Http1 => (req, resp),
            p => to_h2(c, &req, &resp, p == Protocol::Grpc, &mut rng),
        };
        for seg in req.chunks(MSS) {
            out.tcp(&mut rng, true, c, c.cseq, c.sseq, ACK | PSH, seg)?;
            c.cseq = c.cseq.wrapping_add(seg.len() as u32);
        }
        out.tcp(&mut rng, false, c, c.sseq, c.cseq, ACK, &[])?;
        let segs: Vec<(u32, &[u8])> = resp
            .chunks(MSS)
            .scan(c.sseq, |seq, seg| {
                let s = *seq;
                *seq = seq.wrapping_add(seg.len() as u32);
                Some((s, seg))
            })
            .collect();
        let mut k = 0;
        while k < segs.len() {
            let swap = k + 1 < segs.len() && rng.random_bool(args.reorder);
            let order: &[usize] = if swap { &[1, 0] } else { &[0] };
            for &o in order {
                let (seq, seg) = segs[k + o];
                out.tcp(&mut rng, false, c, seq, c.cseq, ACK | PSH, seg)?;
                if rng.random_bool(args.duplicate) {
                    out.tcp(&mut rng, false, c, seq, c.cseq, ACK | PSH, seg)?;
                }
            }
            k += order.len();
        }
        c.sseq = c.sseq.wrapping_add(resp.len() as u32);
        out.tcp(&mut rng, true, c, c.cseq, c.sseq, ACK, &[])?;
        if rng.random_bool(0.02) {
            close(&mut out, &mut rng, c)?;
        }
    }
    for c in conns.iter_mut().filter(|c| c.open) {
        close(&mut out, &mut rng, c)?;
    }
    out.save.flush().context("flush")?;
    eprintln!(
        "apitap-gen: seed {} wrote {} transactions, {} packets, {} bytes to {}",
        args.seed,
        args.transactions,
        out.packets,
        out.bytes,
        args.out.display()
    );
    Ok(())
}
