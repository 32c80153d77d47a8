//! HAR 1.2 input for `apitap check`: browser and test-run recordings as analytics records.
//!
//! HAR has no client address; records get `0.0.0.0:0` as the client and
//! `serverIPAddress` (else `0.0.0.0`) with the URL's port as the server. Entries are
//! processed in `startedDateTime` order (stable for equal times), like packet time.

use anyhow::{Context, Result};
use apitap_analytics::{Headers, TxRecord};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

/// Whether `path` looks like a HAR file (by extension or a leading `{`).
pub fn is_har(path: &Path) -> bool {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("har"))
    {
        return true;
    }
    let mut head = [0u8; 64];
    // Non-blocking: a FIFO (a pcap stream) must not hang here; it reads as not HAR.
    match crate::files::open_nonblocking(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
    {
        Ok(n) => {
            head.get(..n)
                .unwrap_or(&[])
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                == Some(&b'{')
        }
        Err(_) => false,
    }
}

/// Reads the entries of a HAR file as records, in time order.
pub fn read(path: &Path) -> Result<Vec<TxRecord>> {
    let text = crate::files::read_capped_text(path, "HAR file", crate::files::MAX_HAR_BYTES)?;
    parse(&text).with_context(|| format!("invalid HAR file {}", path.display()))
}

/// Parses HAR text.
pub fn parse(text: &str) -> Result<Vec<TxRecord>> {
    let doc: Value = serde_json::from_str(text).context("not JSON")?;
    let entries = doc
        .pointer("/log/entries")
        .and_then(Value::as_array)
        .context("no log.entries array")?;
    let mut records = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        records.push(entry_record(entry, i).with_context(|| format!("log.entries[{i}]"))?);
    }
    records.sort_by_key(|r| r.ts_ns);
    Ok(records)
}

fn entry_record(entry: &Value, index: usize) -> Result<TxRecord> {
    let started = str_at(entry, "/startedDateTime").context("no startedDateTime")?;
    let ts = time::OffsetDateTime::parse(started, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("startedDateTime {started:?} is not RFC 3339"))?;
    let ts_ns = i64::try_from(ts.unix_timestamp_nanos()).context("startedDateTime out of range")?;
    let method = str_at(entry, "/request/method").context("no request.method")?;
    let url = str_at(entry, "/request/url").context("no request.url")?;
    let (scheme, authority, path, query) = split_url(url).context("request.url is not absolute")?;
    let (host, port) = split_authority(authority, scheme);
    let server_ip = str_at(entry, "/serverIPAddress")
        .and_then(|s| s.trim_matches(['[', ']']).parse::<IpAddr>().ok())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let status = entry
        .pointer("/response/status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        // HAR writes 0 for requests that got no response.
        .filter(|&s| s != 0);
    let request_headers = headers(entry.pointer("/request/headers"));
    let response_headers = headers(entry.pointer("/response/headers"));
    let request_body = str_at(entry, "/request/postData/text").map(|t| t.as_bytes().to_vec());
    let response_body = match (
        str_at(entry, "/response/content/text"),
        str_at(entry, "/response/content/encoding"),
    ) {
        // base64 bodies are binary to the scanners; keep only their size.
        (Some(_), Some(enc)) if enc.eq_ignore_ascii_case("base64") => None,
        (Some(t), _) => Some(t.as_bytes().to_vec()),
        (None, _) => None,
    };
    let content_size = entry
        .pointer("/response/content/size")
        .and_then(Value::as_u64);
    let duration_ns = entry
        .pointer("/time")
        .and_then(Value::as_f64)
        .filter(|t| t.is_finite() && *t >= 0.0)
        .map(|ms| (ms * 1e6) as u64);
    let header = |hs: &Headers, name: &str| hs.get(name).map(str::to_string);
    Ok(TxRecord {
        ts_ns,
        event_id: format!("har-{index}"),
        client: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        server: SocketAddr::new(server_ip, port),
        host: (!host.is_empty()).then(|| host.to_ascii_lowercase()),
        method: method.to_string(),
        path: if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
        query: query.map(str::to_string),
        status,
        grpc_status: None,
        request_content_type: str_at(entry, "/request/postData/mimeType")
            .map(str::to_string)
            .or_else(|| header(&request_headers, "content-type")),
        response_content_type: str_at(entry, "/response/content/mimeType")
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .or_else(|| header(&response_headers, "content-type")),
        request_body_cut: false,
        response_body_cut: false,
        request_body_bytes: request_body.as_ref().map_or(0, |b| b.len() as u64),
        response_body_bytes: content_size
            .or(response_body.as_ref().map(|b| b.len() as u64))
            .unwrap_or(0),
        request_headers,
        response_headers,
        request_body,
        response_body,
        duration_ns,
        auth_jwt: false,
        findings: None,
        scanned: Default::default(),
        sensor: None,
    })
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn headers(v: Option<&Value>) -> Headers {
    v.and_then(Value::as_array)
        .map(|hs| {
            hs.iter()
                .filter_map(|h| {
                    let name = str_at(h, "/name")?;
                    // HTTP/2 pseudo-headers (`:authority`) are not headers.
                    if name.starts_with(':') {
                        return None;
                    }
                    Some((name, str_at(h, "/value").unwrap_or("").trim()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `scheme://authority/path?query#fragment` -> (scheme, authority, path, query).
fn split_url(url: &str) -> Option<(&str, &str, &str, Option<&str>)> {
    let (scheme, rest) = url.split_once("://")?;
    let rest = rest.split('#').next().unwrap_or(rest);
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(auth_end);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    Some((scheme, authority, path, query))
}

/// Host and port of an authority; the port defaults by scheme.
fn split_authority<'a>(authority: &'a str, scheme: &str) -> (&'a str, u16) {
    let default = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    if let Some(rest) = authority.strip_prefix('[') {
        // [v6]:port
        return match rest.split_once(']') {
            Some((_, after)) => {
                let port = after
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(default);
                (
                    authority
                        .get(..rest.find(']').map_or(0, |i| i + 2))
                        .unwrap_or(authority),
                    port,
                )
            }
            None => (authority, default),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => match p.parse() {
            Ok(port) => (h, port),
            Err(_) => (authority, default),
        },
        None => (authority, default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HAR: &str = r#"{"log":{"version":"1.2","creator":{"name":"t","version":"1"},"entries":[
      {"startedDateTime":"2024-01-31T12:00:01.500Z","time":12.5,
       "request":{"method":"GET","url":"https://API.example.com:8443/v2/users/42?api_key=s3cr3t#frag","httpVersion":"HTTP/1.1",
         "headers":[{"name":"Authorization","value":"Bearer abc"},{"name":":authority","value":"x"}],"queryString":[],"headersSize":-1,"bodySize":0},
       "response":{"status":200,"statusText":"OK","httpVersion":"HTTP/1.1","headers":[{"name":"Server","value":"nginx/1.18.0"}],
         "content":{"size":17,"mimeType":"application/json","text":"{\"email\":\"a@b.c\"}"},"redirectURL":"","headersSize":-1,"bodySize":17},
       "serverIPAddress":"192.0.2.7","cache":{},"timings":{"send":0,"wait":12,"receive":0.5}},
      {"startedDateTime":"2024-01-31T12:00:00Z","time":1,
       "request":{"method":"POST","url":"http://[2001:db8::1]/login","headers":[],"postData":{"mimeType":"application/json","text":"{}"}},
       "response":{"status":0,"headers":[],"content":{"size":0,"mimeType":""}}}
    ]}}"#;

    #[test]
    fn entries_become_records_in_time_order() {
        let recs = parse(HAR).unwrap();
        assert_eq!(recs.len(), 2);
        let login = &recs[0];
        assert_eq!(login.method, "POST");
        assert_eq!(login.path, "/login");
        assert_eq!(login.host.as_deref(), Some("[2001:db8::1]"));
        assert_eq!(login.server.port(), 80);
        assert_eq!(login.status, None, "status 0 means no response");
        assert_eq!(login.request_body.as_deref(), Some(&b"{}"[..]));
        let get = &recs[1];
        assert_eq!(get.ts_ns, 1_706_702_401_500_000_000);
        assert_eq!(get.event_id, "har-0");
        assert_eq!(get.host.as_deref(), Some("api.example.com"));
        assert_eq!(get.server, "192.0.2.7:8443".parse().unwrap());
        assert_eq!(get.path, "/v2/users/42");
        assert_eq!(get.query.as_deref(), Some("api_key=s3cr3t"));
        assert_eq!(get.status, Some(200));
        assert_eq!(get.duration_ns, Some(12_500_000));
        assert_eq!(get.request_header("authorization"), Some("Bearer abc"));
        assert!(get.request_header(":authority").is_none());
        assert_eq!(get.response_header("server"), Some("nginx/1.18.0"));
        assert_eq!(
            get.response_content_type.as_deref(),
            Some("application/json")
        );
        assert_eq!(get.response_body_bytes, 17);
    }

    #[test]
    fn bad_har_is_a_clear_error() {
        for (text, needle) in [
            ("", "not JSON"),
            ("{}", "no log.entries"),
            (r#"{"log":{"entries":[{}]}}"#, "startedDateTime"),
            (
                r#"{"log":{"entries":[{"startedDateTime":"yesterday"}]}}"#,
                "RFC 3339",
            ),
            (
                r#"{"log":{"entries":[{"startedDateTime":"2024-01-31T12:00:00Z","request":{"method":"GET","url":"/rel"}}]}}"#,
                "not absolute",
            ),
        ] {
            let e = format!("{:#}", parse(text).unwrap_err());
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn authorities() {
        assert_eq!(split_authority("a.example", "https"), ("a.example", 443));
        assert_eq!(split_authority("a.example:81", "http"), ("a.example", 81));
        assert_eq!(split_authority("[::1]:8080", "http"), ("[::1]", 8080));
        assert_eq!(split_authority("[::1]", "https"), ("[::1]", 443));
    }
}
