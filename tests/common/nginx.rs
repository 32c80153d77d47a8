//! nginx's access log (`$request_method $request_uri $status $body_bytes_sent
//! $bytes_sent`) against events.
//!
//! nginx's `$body_bytes_sent` is everything it sent after the final response head, so it
//! includes chunk framing and interim `100 Continue` responses, while the event's
//! `http.response.body.bytes` is the body without framing (by design). For those
//! responses the body check is replaced by an exact check of the total:
//! `http.response.bytes` (all response bytes on the wire) must equal `$bytes_sent`.

use super::field;

/// Responses whose nginx body count includes more than the body.
fn framed(e: &serde_json::Value) -> bool {
    let te = field(e, "http.response.headers.transfer-encoding");
    te.as_str().is_some_and(|t| t.contains("chunked"))
        || field(e, "http.request.headers.expect").as_str() == Some("100-continue")
}

pub struct Logged {
    pub method: String,
    pub uri: String,
    pub status: u64,
    pub body_bytes_sent: u64,
    pub bytes_sent: u64,
}

pub fn logged(path: &std::path::Path) -> Vec<Logged> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let p: Vec<&str> = line.split(' ').collect();
            assert_eq!(p.len(), 5, "unexpected log line {line:?}");
            Logged {
                method: p[0].into(),
                uri: p[1].into(),
                status: p[2].parse().unwrap(),
                body_bytes_sent: p[3].parse().unwrap(),
                bytes_sent: p[4].parse().unwrap(),
            }
        })
        .collect()
}

pub fn agrees(l: &Logged, e: &serde_json::Value) -> bool {
    let same = field(e, "http.request.method").as_str() == Some(&l.method)
        && field(e, "url.original").as_str() == Some(&l.uri)
        && field(e, "http.response.status_code").as_u64() == Some(l.status);
    if !same {
        return false;
    }
    if framed(e) {
        field(e, "http.response.bytes").as_u64() == Some(l.bytes_sent)
    } else {
        field(e, "http.response.body.bytes").as_u64() == Some(l.body_bytes_sent)
    }
}

/// Pairs every logged request with a distinct event; returns what did not pair (logged
/// requests without an event, events not in the log).
pub fn mismatches(lines: &[Logged], events: &[serde_json::Value]) -> Vec<String> {
    let mut used = vec![false; events.len()];
    let mut problems = Vec::new();
    for l in lines {
        match (0..events.len()).find(|&i| !used[i] && agrees(l, &events[i])) {
            Some(i) => used[i] = true,
            None => problems.push(format!(
                "nginx logged {} {} {} body={} total={}, no matching event",
                l.method, l.uri, l.status, l.body_bytes_sent, l.bytes_sent
            )),
        }
    }
    for (i, e) in events.iter().enumerate() {
        if !used[i] {
            problems.push(format!(
                "event {} {} {} not in nginx's log",
                field(e, "http.request.method"),
                field(e, "url.original"),
                field(e, "http.response.status_code")
            ));
        }
    }
    problems
}
