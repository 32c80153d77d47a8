//! Body capture: which bodies are kept, and content decoding (gzip, deflate, br) with
//! decompression-bomb limits.

use crate::{HttpConfig, HttpStats};
use apitap_core::{Anomalies, Anomaly, CapturedBody, ContentCoding, ContentCodings, Head};
use flate2::bufread::{DeflateDecoder, GzDecoder, ZlibDecoder};
use std::cell::RefCell;
use std::io::{Cursor, Read};

/// Whether the body of a message with this head is captured: its media type starts with
/// one of `http.include_body_for` (case-insensitive).
pub(crate) fn wants_body(head: &Head, cfg: &HttpConfig) -> bool {
    if cfg.include_body_for.is_empty() || cfg.max_body_bytes == 0 {
        return false;
    }
    media_type_in(head, cfg.include_body_for.iter())
}

/// The body to capture for a message with this head, if [`wants_body`]: one captured only
/// for the sensitive-data scan stops a byte past what the scan reads (so the scan can
/// still tell that it was cut).
pub(crate) fn new_body(head: &Head, cfg: &HttpConfig) -> Option<Box<CapturedBody>> {
    if !wants_body(head, cfg) {
        return None;
    }
    let capture_limit = (cfg.max_scan_body_bytes > 0 && scan_only(head, cfg))
        .then(|| cfg.max_scan_body_bytes.saturating_add(1))
        .filter(|l| *l < cfg.max_body_bytes);
    Some(Box::new(CapturedBody {
        capture_limit,
        ..CapturedBody::default()
    }))
}

/// Whether the media type of `head` starts with one of `prefixes` (case-insensitive).
fn media_type_in<'a>(head: &Head, mut prefixes: impl Iterator<Item = &'a String>) -> bool {
    let Some(ct) = head.header("content-type") else {
        return false;
    };
    let ct = ct.trim_ascii_start();
    prefixes.any(|want| {
        ct.get(..want.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(want.as_bytes()))
    })
}

/// Whether a captured body is there only for the sensitive-data scan: its media type is
/// one the scan added, and none an event asked for.
fn scan_only(head: &Head, cfg: &HttpConfig) -> bool {
    !cfg.scan_only_body_for.is_empty()
        && media_type_in(head, cfg.scan_only_body_for.iter())
        && !media_type_in(
            head,
            cfg.include_body_for
                .iter()
                .filter(|m| !cfg.scan_only_body_for.contains(m)),
        )
}

/// Appends body bytes, up to the limit; past it the body is marked truncated.
pub(crate) fn capture(body: &mut CapturedBody, bytes: &[u8], cfg: &HttpConfig) {
    if body.truncated {
        return;
    }
    let limit = body.capture_limit.unwrap_or(cfg.max_body_bytes);
    let room = limit.saturating_sub(body.bytes.len());
    if bytes.len() > room {
        body.truncated = true;
    }
    body.bytes
        .extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or(&[]));
}

/// The message is complete: removes its content coding, within the size and ratio limits.
pub(crate) fn finish(
    body: &mut CapturedBody,
    head: &Head,
    cfg: &HttpConfig,
    stats: &mut HttpStats,
    anomalies: &mut Anomalies,
) {
    stats.bodies_captured += 1;
    match codings(head) {
        Ok(None) => {}
        Ok(Some(list)) => {
            if !body.bytes.is_empty() {
                decode(body, list, cfg, stats, anomalies);
            }
        }
        Err(()) => {
            // Unknown codings, or more stacked than decoded: not readable content.
            stats.body_decode_errors += 1;
            anomalies.insert(Anomaly::BodyDecodeError);
            body.bytes.clear();
            body.truncated = true;
        }
    }
    finish_counts(body, stats);
}

/// The content codings of every Content-Encoding field, in the order applied (`identity`
/// left out); `Err` for an unknown coding or more than [`ContentCodings::MAX`].
fn codings(head: &Head) -> Result<Option<ContentCodings>, ()> {
    let mut list = [ContentCoding::Gzip; ContentCodings::MAX];
    let mut n = 0;
    let fields = head
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(b"content-encoding"));
    for (_, value) in fields {
        for coding in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            let c = if coding.is_empty() || coding.eq_ignore_ascii_case(b"identity") {
                continue;
            } else if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip")
            {
                ContentCoding::Gzip
            } else if coding.eq_ignore_ascii_case(b"deflate") {
                ContentCoding::Deflate
            } else if coding.eq_ignore_ascii_case(b"br") {
                ContentCoding::Br
            } else {
                return Err(());
            };
            *list.get_mut(n).ok_or(())? = c;
            n += 1;
        }
    }
    if n == 0 {
        return Ok(None);
    }
    ContentCodings::new(list.get(..n).unwrap_or(&[]))
        .map(Some)
        .ok_or(())
}

fn finish_counts(body: &CapturedBody, stats: &mut HttpStats) {
    stats.body_bytes_captured += body.bytes.len() as u64;
    // A body captured only for the sensitive-data scan is cut on purpose; the analytics
    // count those cuts (`analytics.bodies_truncated`).
    if body.truncated && body.capture_limit.is_none() {
        stats.bodies_truncated += 1;
    }
}

/// Decodes `body.bytes` in place, the last applied coding first. Every layer's output is
/// capped at `max_decoded_body_bytes` and at `max_decompression_ratio` times the bytes on
/// the wire, so neither a small bomb nor a stack of codings can make it grow: each decoder
/// is read through `take(limit + 1)`. A body captured only for the scan (`capture_limit`)
/// is decoded no further than the scan reads: cut there, it is truncated, not a bomb.
fn decode(
    body: &mut CapturedBody,
    list: ContentCodings,
    cfg: &HttpConfig,
    stats: &mut HttpStats,
    anomalies: &mut Anomalies,
) {
    let ratio_cap = body
        .bytes
        .len()
        .saturating_mul(cfg.max_decompression_ratio as usize);
    let bomb_limit = cfg.max_decoded_body_bytes.min(ratio_cap);
    let limit = body.capture_limit.map_or(bomb_limit, |s| s.min(bomb_limit));
    // Layers removed, outermost (last applied) first.
    let mut removed = 0;
    for coding in list.iter().rev() {
        let input = std::mem::take(&mut body.bytes);
        let mut out = Vec::with_capacity(limit.min(input.len().saturating_mul(4)));
        let (result, input) = inflate(coding, input, limit as u64 + 1, &mut out);
        if out.len() > limit {
            out.truncate(limit);
            body.truncated = true;
            if limit == bomb_limit && !anomalies.contains(Anomaly::DecompressionBomb) {
                stats.decompression_bombs += 1;
                anomalies.insert(Anomaly::DecompressionBomb);
            }
        }
        let failed = match result {
            Ok(_) => false,
            // A body cut short (capture limit or gap) ends mid-stream: keep what decoded.
            // Nothing decoded from a cut body is an error still (garbage labelled gzip).
            Err(_) if body.truncated && !out.is_empty() => false,
            Err(_) => {
                stats.body_decode_errors += 1;
                anomalies.insert(Anomaly::BodyDecodeError);
                body.truncated = true;
                true
            }
        };
        if failed && out.is_empty() && removed > 0 {
            // An inner layer is not what the header says: keep the outer layers' result.
            body.bytes = input;
            break;
        }
        if !out.is_empty() || !failed {
            removed += 1;
        }
        body.bytes = out;
        // An inner layer cannot be decoded from an outer one that was cut or failed
        // part way, nor from nothing.
        if failed || body.bytes.is_empty() {
            break;
        }
    }
    if removed > 0 {
        stats.bodies_decoded += 1;
        body.decoded_from = Some(list.last_applied(removed));
    }
}

/// The inflaters of one thread, reset for each body: a new one allocates and zeroes its
/// state and window (tens of KB), which costs more than inflating a typical API body.
struct Inflaters {
    gzip: GzDecoder<Cursor<Vec<u8>>>,
    zlib: ZlibDecoder<Cursor<Vec<u8>>>,
    raw: DeflateDecoder<Cursor<Vec<u8>>>,
}

thread_local! {
    static INFLATERS: RefCell<Option<Inflaters>> = const { RefCell::new(None) };
}

/// Decodes one layer `coding` of `input` into `out`, at most `cap` bytes; gives `input`
/// back. A gzip body may hold several members, each decoded in turn (as zcat does).
fn inflate(
    coding: ContentCoding,
    input: Vec<u8>,
    cap: u64,
    out: &mut Vec<u8>,
) -> (std::io::Result<usize>, Vec<u8>) {
    if coding == ContentCoding::Br {
        let result = brotli_decompressor::Decompressor::new(input.as_slice(), 4096)
            .take(cap)
            .read_to_end(out);
        return (result, input);
    }
    INFLATERS.with_borrow_mut(|cache| {
        let inf = cache.get_or_insert_with(|| Inflaters {
            gzip: GzDecoder::new(Cursor::new(Vec::new())),
            zlib: ZlibDecoder::new(Cursor::new(Vec::new())),
            raw: DeflateDecoder::new(Cursor::new(Vec::new())),
        });
        let empty = || Cursor::new(Vec::new());
        match coding {
            ContentCoding::Gzip => {
                inf.gzip.reset(Cursor::new(input));
                let mut result = Ok(0);
                while result.is_ok() {
                    let room = cap.saturating_sub(out.len() as u64);
                    result = (&mut inf.gzip).take(room).read_to_end(out);
                    let rest = inf.gzip.get_ref();
                    let more = (rest.position() as usize) < rest.get_ref().len();
                    if !more || out.len() as u64 >= cap {
                        break;
                    }
                    // The next member, from where this one ended.
                    let rest = inf.gzip.reset(empty());
                    inf.gzip.reset(rest);
                }
                (result, inf.gzip.reset(empty()).into_inner())
            }
            // Some servers send raw deflate for "deflate".
            ContentCoding::Deflate if looks_like_zlib(&input) => {
                inf.zlib.reset(Cursor::new(input));
                let result = (&mut inf.zlib).take(cap).read_to_end(out);
                (result, inf.zlib.reset(empty()).into_inner())
            }
            _ => {
                inf.raw.reset(Cursor::new(input));
                let result = (&mut inf.raw).take(cap).read_to_end(out);
                (result, inf.raw.reset(empty()).into_inner())
            }
        }
    })
}

/// A zlib stream starts with CMF/FLG where CMF's low nibble is 8 and (CMF*256+FLG) % 31 == 0.
fn looks_like_zlib(b: &[u8]) -> bool {
    match b {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) * 256 + u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn cfg() -> HttpConfig {
        HttpConfig {
            include_body_for: vec!["application/json".into(), "text/".into()],
            ..HttpConfig::default()
        }
    }

    fn head(lines: &[(&str, &str)]) -> Head {
        let mut buf = Vec::new();
        let mut headers = Vec::new();
        for (n, v) in lines {
            let ns = buf.len();
            buf.extend_from_slice(n.as_bytes());
            let vs = buf.len();
            buf.extend_from_slice(v.as_bytes());
            headers.push((
                apitap_core::Span::new(ns, n.len()),
                apitap_core::Span::new(vs, v.len()),
            ));
        }
        Head { buf, headers }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn run(raw: &[u8], coding: &str, cfg: &HttpConfig) -> (CapturedBody, Anomalies, HttpStats) {
        let mut body = CapturedBody::default();
        capture(&mut body, raw, cfg);
        let mut stats = HttpStats::default();
        let mut anomalies = Anomalies::default();
        let h = head(&[("Content-Encoding", coding)]);
        finish(&mut body, &h, cfg, &mut stats, &mut anomalies);
        (body, anomalies, stats)
    }

    #[test]
    fn content_types_are_matched_by_prefix_without_case() {
        let c = cfg();
        assert!(wants_body(
            &head(&[("Content-Type", "Application/JSON; charset=utf-8")]),
            &c
        ));
        assert!(wants_body(&head(&[("content-type", "text/plain")]), &c));
        assert!(!wants_body(&head(&[("content-type", "image/png")]), &c));
        assert!(!wants_body(&head(&[]), &c));
        assert!(!wants_body(
            &head(&[("content-type", "application/json")]),
            &HttpConfig::default()
        ));
    }

    /// A body captured only for the scan is captured and decoded a byte past what the scan
    /// reads, and cut there it is truncated, not a bomb; a body an event asked for is
    /// captured and decoded in full.
    #[test]
    fn scan_only_bodies_go_no_further_than_the_scan_reads() {
        let text = br#"{"users":[{"id":1,"name":"ada"}]}"#.repeat(200);
        let packed = gzip(&text);
        let scan = HttpConfig {
            include_body_for: vec!["text/".into(), "application/json".into()],
            scan_only_body_for: vec!["application/json".into()],
            max_scan_body_bytes: 1000,
            ..HttpConfig::default()
        };
        let json = head(&[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ]);
        let decode_with = |cfg: &HttpConfig, h: &Head| {
            let mut body = new_body(h, cfg).unwrap();
            capture(&mut body, &packed, cfg);
            let (mut stats, mut anomalies) = (HttpStats::default(), Anomalies::default());
            finish(&mut body, h, cfg, &mut stats, &mut anomalies);
            (body, anomalies)
        };
        let (b, a) = decode_with(&scan, &json);
        assert_eq!(b.bytes, &text[..1001]);
        assert!(b.truncated && a.is_empty(), "{a:?}");
        // Not encoded: captured no further either.
        let plain = head(&[("Content-Type", "application/json")]);
        let mut body = new_body(&plain, &scan).unwrap();
        capture(&mut body, &text, &scan);
        assert_eq!(body.bytes, &text[..1001]);
        assert!(body.truncated);
        // An event asked for JSON too (a wider prefix): decoded in full.
        let events_too = HttpConfig {
            include_body_for: vec!["application/".into(), "application/json".into()],
            ..scan.clone()
        };
        let (b, a) = decode_with(&events_too, &json);
        assert_eq!(b.bytes, text);
        assert!(!b.truncated && a.is_empty());
        // A real bomb below the scan limit is still one.
        let bomb = HttpConfig {
            max_decoded_body_bytes: 500,
            ..scan
        };
        let (b, a) = decode_with(&bomb, &json);
        assert_eq!(b.bytes.len(), 500);
        assert!(a.contains(Anomaly::DecompressionBomb));
    }

    #[test]
    fn capture_stops_at_the_limit_and_says_so() {
        let c = HttpConfig {
            max_body_bytes: 10,
            ..cfg()
        };
        let mut b = CapturedBody::default();
        capture(&mut b, b"0123456", &c);
        assert!(!b.truncated);
        capture(&mut b, b"789abc", &c);
        assert_eq!(b.bytes, b"0123456789");
        assert!(b.truncated);
    }

    #[test]
    fn gzip_deflate_and_br_are_decoded() {
        let text = br#"{"users":[{"id":1,"name":"ada"}]}"#.repeat(20);
        let (b, a, s) = run(&gzip(&text), "gzip", &cfg());
        assert_eq!(b.bytes, text);
        assert_eq!(b.decoded_from.map(|c| c.to_string()), Some("gzip".into()));
        assert!(a.is_empty() && !b.truncated);
        assert_eq!(s.bodies_decoded, 1);

        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&text).unwrap();
        assert_eq!(run(&z.finish().unwrap(), "deflate", &cfg()).0.bytes, text);
        let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        d.write_all(&text).unwrap();
        assert_eq!(run(&d.finish().unwrap(), "deflate", &cfg()).0.bytes, text);

        let mut br = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut br, 4096, 5, 22);
            w.write_all(&text).unwrap();
        }
        let (b, _, _) = run(&br, "BR", &cfg());
        assert_eq!(b.bytes, text);
        assert_eq!(b.decoded_from.map(|c| c.to_string()), Some("br".into()));
    }

    #[test]
    fn a_small_bomb_stops_at_the_limit_with_an_anomaly() {
        // 64 MiB of zeros compress to ~64 KiB; the limit is 1 MiB decoded.
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            e.write_all(&zeros).unwrap();
        }
        let bomb = e.finish().unwrap();
        assert!(bomb.len() < 100_000, "{}", bomb.len());
        let c = HttpConfig {
            max_body_bytes: 200_000,
            ..cfg()
        };
        let (b, a, s) = run(&bomb, "gzip", &c);
        assert!(a.contains(Anomaly::DecompressionBomb));
        assert!(b.truncated);
        assert_eq!(
            b.bytes.len(),
            c.max_decoded_body_bytes.min(bomb.len() * 100)
        );
        assert_eq!(s.decompression_bombs, 1);
        // The ratio limit acts on its own too: 1 KiB of input may give at most 100 KiB.
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![b'a'; 2 << 20]).unwrap();
        let small = e.finish().unwrap();
        let (b, a, _) = run(&small, "gzip", &c);
        assert!(a.contains(Anomaly::DecompressionBomb));
        assert_eq!(b.bytes.len(), small.len() * 100);
    }

    #[test]
    fn corrupt_and_unknown_codings_are_anomalies_not_content() {
        let (b, a, s) = run(b"definitely not gzip", "gzip", &cfg());
        assert!(a.contains(Anomaly::BodyDecodeError));
        assert!(b.truncated);
        assert_eq!(s.body_decode_errors, 1);
        let (b, a, _) = run(b"xx", "compress, gzip", &cfg());
        assert!(a.contains(Anomaly::BodyDecodeError));
        assert!(b.bytes.is_empty());
    }

    #[test]
    fn every_gzip_member_is_decoded_and_trailing_garbage_is_an_error() {
        let (a, b) = (&b"first member, "[..], &b"second member"[..]);
        let two = [gzip(a), gzip(b)].concat();
        let (body, anomalies, _) = run(&two, "gzip", &cfg());
        assert_eq!(body.bytes, [a, b].concat());
        assert!(anomalies.is_empty() && !body.truncated);
        // What decoded before the garbage is kept, as an error.
        let (body, anomalies, _) = run(&[gzip(a), b"garbage".to_vec()].concat(), "gzip", &cfg());
        assert_eq!(body.bytes, a);
        assert!(anomalies.contains(Anomaly::BodyDecodeError));
    }

    /// The inflaters are reused within a thread: a body that failed or was cut part way
    /// leaves nothing behind for the next, of any coding.
    #[test]
    fn a_failed_or_cut_body_does_not_spoil_the_next() {
        let text = br#"{"users":[{"id":1,"name":"ada"}]}"#.repeat(50);
        let gz = gzip(&text);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&text).unwrap();
        let zlib = z.finish().unwrap();
        let cut = HttpConfig {
            max_body_bytes: gz.len() / 2,
            ..cfg()
        };
        for _ in 0..3 {
            let _ = run(&gz[..gz.len() / 2], "gzip", &cfg());
            let _ = run(&[0x1f, 0x8b, 8, 0, 1, 2, 3], "gzip", &cfg());
            let _ = run(&gz, "gzip", &cut);
            let _ = run(&zlib[..zlib.len() / 3], "deflate", &cfg());
            assert_eq!(run(&gz, "gzip", &cfg()).0.bytes, text);
            assert_eq!(run(&zlib, "deflate", &cfg()).0.bytes, text);
        }
    }

    #[test]
    fn a_truncated_gzip_body_keeps_what_decoded() {
        let text = b"hello world, hello world, hello world ".repeat(200);
        let gz = gzip(&text);
        let c = HttpConfig {
            max_body_bytes: gz.len() / 2,
            ..cfg()
        };
        let (b, a, _) = run(&gz, "gzip", &c);
        assert!(b.truncated);
        assert!(!a.contains(Anomaly::BodyDecodeError));
        assert!(text.starts_with(&b.bytes));
    }

    #[test]
    fn stacked_codings_are_decoded_last_applied_first() {
        let text = br#"{"card":"4111 1111 1111 1111"}"#.repeat(10);
        let (b, a, s) = run(&gzip(&gzip(&text)), "gzip, gzip", &cfg());
        assert_eq!(b.bytes, text);
        assert!(a.is_empty() && !b.truncated, "{a:?}");
        assert_eq!(
            b.decoded_from.map(|c| c.to_string()),
            Some("gzip, gzip".into())
        );
        assert_eq!(s.bodies_decoded, 1);
        // br applied first, then gzip; also as two header fields, with identity between.
        let mut br = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut br, 4096, 5, 22);
            w.write_all(&text).unwrap();
        }
        let wire = gzip(&br);
        assert_eq!(run(&wire, "br, identity, gzip", &cfg()).0.bytes, text);
        let mut body = CapturedBody::default();
        capture(&mut body, &wire, &cfg());
        let h = head(&[("Content-Encoding", "br"), ("content-encoding", "gzip")]);
        let (mut st, mut an) = (HttpStats::default(), Anomalies::default());
        finish(&mut body, &h, &cfg(), &mut st, &mut an);
        assert_eq!(body.bytes, text);
    }

    #[test]
    fn a_stack_of_codings_stays_within_the_bomb_limits() {
        // gzip over gzip of 64 MiB of zeros: the inner layer alone is a bomb.
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            e.write_all(&zeros).unwrap();
        }
        let wire = gzip(&e.finish().unwrap());
        let c = HttpConfig {
            max_body_bytes: 200_000,
            ..cfg()
        };
        let (b, a, s) = run(&wire, "gzip, gzip", &c);
        assert!(a.contains(Anomaly::DecompressionBomb));
        assert!(b.bytes.len() <= c.max_decoded_body_bytes.min(wire.len() * 100));
        assert!(b.truncated);
        assert_eq!(s.decompression_bombs, 1);
        // More codings than decoded: not content.
        let (b, a, _) = run(&wire, "gzip, gzip, gzip, gzip, gzip", &c);
        assert!(a.contains(Anomaly::BodyDecodeError));
        assert!(b.bytes.is_empty());
        // A layer that is not what it says stops the stack there.
        let (b, a, _) = run(&gzip(b"plain"), "gzip, gzip", &c);
        assert!(a.contains(Anomaly::BodyDecodeError));
        assert_eq!(b.bytes, b"plain");
        assert_eq!(
            b.decoded_from.map(|c| c.to_string()),
            Some("gzip".into()),
            "one removed"
        );
    }
}
