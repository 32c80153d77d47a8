//! The sensor agrees with the server: on captures of real nginx traffic, every request
//! nginx logged (`$request_method $request_uri $status $body_bytes_sent $bytes_sent`)
//! appears exactly once among the events, with the same method, URI, status and response
//! body bytes.
//!
//! nginx's `$body_bytes_sent` is everything it sent after the final response head, so it
//! includes chunk framing and interim `100 Continue` responses, while the event's
//! `http.response.body.bytes` is the body without framing (by design). For those
//! responses the body check is replaced by an exact check of the total:
//! `http.response.bytes` (all response bytes on the wire) must equal `$bytes_sent`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::nginx::*;
use common::*;

#[test]
fn events_agree_with_nginx_access_logs() {
    let dir = root().join("fixtures/nginx");
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for log in entries {
        let name = log.file_name().unwrap().to_string_lossy().to_string();
        let Some(stem) = name.strip_suffix(".access.log") else {
            continue;
        };
        let pcap = dir.join(format!("{stem}.pcap"));
        assert!(pcap.exists(), "{} has no capture", log.display());
        let lines = logged(&log);
        assert!(!lines.is_empty(), "{name} is empty");
        let (out, _) = run_replay(&[pcap], 2);
        let events: Vec<serde_json::Value> = parse_lines(&out)
            .into_iter()
            .filter(|e| !field(e, "http.response.status_code").is_null())
            .collect();
        let problems = mismatches(&lines, &events);
        assert!(problems.is_empty(), "{name}:\n{}", problems.join("\n"));
        assert_eq!(events.len(), lines.len(), "{name}");
        checked += 1;
    }
    assert!(
        checked >= 4,
        "expected the nginx captures, checked {checked}"
    );
}

/// python3's http.server (HTTP/1.0, one connection per request): every request curl made
/// (`pyhttp.requests.txt`: method, path, status curl saw) is one complete event.
#[test]
fn events_agree_with_python_http_server_requests() {
    let dir = root().join("fixtures/pyhttp");
    let (out, _) = run_replay(&[dir.join("pyhttp.pcap")], 2);
    let events = parse_lines(&out);
    let seen: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                field(e, "http.request.method").as_str().unwrap_or("-"),
                field(e, "url.original").as_str().unwrap_or("-"),
                field(e, "http.response.status_code")
            )
        })
        .collect();
    let expected: Vec<String> = std::fs::read_to_string(dir.join("pyhttp.requests.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(seen, expected);
    assert!(events.iter().all(|e| field(e, "apitap.complete") == true));
    assert!(events
        .iter()
        .all(|e| field(e, "http.response.headers.server")
            .as_str()
            .is_some_and(|s| s.starts_with("SimpleHTTP/"))));
}
