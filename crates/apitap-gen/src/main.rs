//! `apitap-gen`: writes a large, realistic, seeded HTTP/1.1 API capture (pcap, Ethernet).
//!
//! Many concurrent keep-alive clients call a JSON API (GET/POST/PUT/DELETE), responses mix
//! sizes from a few bytes to hundreds of KB, some chunked, some gzip-encoded; every segment
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
        })
        .collect();
    for _ in 0..args.transactions {
        let i = rng.random_range(0..conns.len());
        let (req, resp) = exchange(&mut rng, i as u32, args.size_mix);
        let c = &mut conns[i];
        if !c.open {
            open(&mut out, &mut rng, c)?;
        }
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
