//! OCSF 1.1.0 output: the HTTP Activity class (`class_uid` 4002) built from an event's
//! ECS form (`--format ocsf`). Field names follow the OCSF schema; what OCSF has no place
//! for (anomalies, incompleteness, flow id, endpoint template, body capture details) goes
//! under `unmapped.apitap`.

use serde_json::{json, Map, Value};

/// OCSF schema version written in `metadata.version`.
pub const OCSF_VERSION: &str = "1.1.0";

/// OCSF HTTP Activity `activity_id` of a method (99 = other).
pub fn activity_id(method: &str) -> (u64, &'static str) {
    match method.to_ascii_uppercase().as_str() {
        "CONNECT" => (1, "Connect"),
        "DELETE" => (2, "Delete"),
        "GET" => (3, "Get"),
        "HEAD" => (4, "Head"),
        "OPTIONS" => (5, "Options"),
        "POST" => (6, "Post"),
        "PUT" => (7, "Put"),
        "TRACE" => (8, "Trace"),
        "" => (0, "Unknown"),
        _ => (99, "Other"),
    }
}

/// ECS header map (lower-case names, joined values) as the OCSF `http_headers` list.
fn headers(map: Option<&Value>) -> Value {
    let list: Vec<Value> = map
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| json!({"name": k, "value": v}))
                .collect()
        })
        .unwrap_or_default();
    Value::Array(list)
}

fn endpoint(v: Option<&Value>) -> Value {
    let mut m = Map::new();
    if let Some(v) = v {
        if let Some(ip) = v.get("ip") {
            m.insert("ip".into(), ip.clone());
        }
        if let Some(port) = v.get("port") {
            m.insert("port".into(), port.clone());
        }
    }
    Value::Object(m)
}

fn put(m: &mut Map<String, Value>, key: &str, v: Option<&Value>) {
    if let Some(v) = v.filter(|v| !v.is_null()) {
        m.insert(key.into(), v.clone());
    }
}

/// An OCSF class and activity.
struct Class {
    uid: u64,
    name: &'static str,
    activity: u64,
    activity_name: &'static str,
    log_name: &'static str,
}

/// What every apitap OCSF record has: class, time, status, metadata, endpoints and
/// connection info.
fn common(ecs: &Value, start_ns: i64, product_version: &str, class: &Class) -> Map<String, Value> {
    let g = |p: &str| ecs.pointer(p);
    let time = start_ns.div_euclid(1_000_000);
    let duration_ms = g("/event/duration")
        .and_then(Value::as_u64)
        .map(|ns| ns / 1_000_000);
    let (status_id, status) = match g("/event/outcome").and_then(Value::as_str) {
        Some("success") => (1, "Success"),
        Some("failure") => (2, "Failure"),
        _ => (0, "Unknown"),
    };
    let mut out = Map::new();
    out.insert("activity_id".into(), json!(class.activity));
    out.insert("activity_name".into(), json!(class.activity_name));
    out.insert("category_uid".into(), json!(4));
    out.insert("category_name".into(), json!("Network Activity"));
    out.insert("class_uid".into(), json!(class.uid));
    out.insert("class_name".into(), json!(class.name));
    out.insert("type_uid".into(), json!(class.uid * 100 + class.activity));
    out.insert(
        "type_name".into(),
        json!(format!("{}: {}", class.name, class.activity_name)),
    );
    out.insert("severity_id".into(), json!(1));
    out.insert("severity".into(), json!("Informational"));
    out.insert("time".into(), json!(time));
    out.insert("start_time".into(), json!(time));
    if let Some(d) = duration_ms {
        out.insert("duration".into(), json!(d));
        out.insert(
            "end_time".into(),
            json!(time + i64::try_from(d).unwrap_or(0)),
        );
    }
    out.insert("status_id".into(), json!(status_id));
    out.insert("status".into(), json!(status));
    let mut metadata = json!({
        "version": OCSF_VERSION,
        "product": {"name": "apitap", "vendor_name": "apitap", "version": product_version},
        "log_name": class.log_name,
    });
    if let (Some(uid), Value::Object(m)) = (g("/event/id"), &mut metadata) {
        m.insert("uid".into(), uid.clone());
    }
    out.insert("metadata".into(), metadata);
    out.insert("src_endpoint".into(), endpoint(g("/source")));
    out.insert("dst_endpoint".into(), endpoint(g("/destination")));
    let mut conn = json!({"protocol_name": "tcp", "protocol_num": 6});
    if let Value::Object(m) = &mut conn {
        put(m, "community_uid", g("/network/community_id"));
        let ver = if g("/network/type").and_then(Value::as_str) == Some("ipv6") {
            6
        } else {
            4
        };
        m.insert("protocol_ver_id".into(), json!(ver));
    }
    out.insert("connection_info".into(), conn);
    out
}

/// An HTTP/2 connection event (ECS) as an OCSF 1.1.0 Network Activity record (Close),
/// its counts under `unmapped.apitap`.
pub fn connection_from_ecs(ecs: &Value, start_ns: i64, product_version: &str) -> Value {
    let class = Class {
        uid: 4001,
        name: "Network Activity",
        activity: 2,
        activity_name: "Close",
        log_name: "http2",
    };
    let mut out = common(ecs, start_ns, product_version, &class);
    let mut unmapped = Map::new();
    put(&mut unmapped, "apitap", ecs.pointer("/apitap"));
    out.insert("unmapped".into(), Value::Object(unmapped));
    Value::Object(out)
}

/// The OCSF Network Activity record (class 4001, activity Close) of one ECS TLS
/// connection event that started at `start_ns`: OCSF's `tls` object, bytes per
/// direction; the rest of ECS `tls` and `apitap` under `unmapped`.
pub fn tls_from_ecs(ecs: &Value, start_ns: i64, product_version: &str) -> Value {
    let g = |p: &str| ecs.pointer(p);
    let class = Class {
        uid: 4001,
        name: "Network Activity",
        activity: 2,
        activity_name: "Close",
        log_name: "tls",
    };
    let mut out = common(ecs, start_ns, product_version, &class);
    let mut tls = Map::new();
    put(&mut tls, "version", g("/tls/version"));
    put(&mut tls, "cipher", g("/tls/cipher"));
    put(&mut tls, "sni", g("/tls/client/server_name"));
    put(&mut tls, "alpn", g("/tls/next_protocol"));
    for (key, path) in [
        ("ja3_hash", "/tls/client/ja3"),
        ("ja3s_hash", "/tls/server/ja3s"),
    ] {
        if let Some(v) = g(path) {
            tls.insert(
                key.into(),
                json!({"algorithm_id": 1, "algorithm": "MD5", "value": v}),
            );
        }
    }
    if let Some(x) = g("/tls/server/x509") {
        let joined = |p: &str| {
            x.pointer(p).and_then(Value::as_array).map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
        };
        let mut cert = Map::new();
        if let Some(s) = joined("/subject/common_name") {
            cert.insert("subject".into(), json!(s));
        }
        if let Some(s) = joined("/issuer/common_name") {
            cert.insert("issuer".into(), json!(s));
        }
        put(&mut cert, "serial_number", x.get("serial_number"));
        if let Some(h) = g("/tls/server/hash/sha256") {
            cert.insert(
                "fingerprints".into(),
                json!([{"algorithm_id": 3, "algorithm": "SHA-256", "value": h}]),
            );
        }
        tls.insert("certificate".into(), Value::Object(cert));
    }
    out.insert("tls".into(), Value::Object(tls));
    out.insert(
        "traffic".into(),
        json!({"bytes_out": g("/source/bytes"), "bytes_in": g("/destination/bytes")}),
    );
    let mut unmapped = Map::new();
    put(&mut unmapped, "tls", g("/tls"));
    put(&mut unmapped, "apitap", g("/apitap"));
    out.insert("unmapped".into(), Value::Object(unmapped));
    Value::Object(out)
}

/// The OCSF HTTP Activity record of one ECS event whose transaction started at
/// `start_ns` (Unix nanoseconds, packet time).
pub fn from_ecs(ecs: &Value, start_ns: i64, product_version: &str) -> Value {
    let g = |p: &str| ecs.pointer(p);
    let method = g("/http/request/method")
        .and_then(Value::as_str)
        .unwrap_or("");
    let (activity, activity_name) = activity_id(method);
    let class = Class {
        uid: 4002,
        name: "HTTP Activity",
        activity,
        activity_name,
        log_name: "http",
    };
    let mut out = common(ecs, start_ns, product_version, &class);
    if let Some(req) = g("/http/request") {
        let mut url = Map::new();
        put(&mut url, "url_string", g("/url/original"));
        put(&mut url, "path", g("/url/path"));
        put(&mut url, "query_string", g("/url/query"));
        put(&mut url, "hostname", g("/url/domain"));
        if let Some(p) = g("/destination/port") {
            url.insert("port".into(), p.clone());
        }
        let mut r = Map::new();
        r.insert("http_method".into(), json!(method));
        r.insert("url".into(), Value::Object(url));
        put(&mut r, "version", g("/http/version"));
        put(&mut r, "user_agent", g("/user_agent/original"));
        put(&mut r, "referrer", req.pointer("/headers/referer"));
        r.insert("http_headers".into(), headers(req.get("headers")));
        put(&mut r, "length", req.get("bytes"));
        put(&mut r, "body_length", req.pointer("/body/bytes"));
        out.insert("http_request".into(), Value::Object(r));
    }
    if let Some(resp) = g("/http/response") {
        let mut r = Map::new();
        put(&mut r, "code", resp.get("status_code"));
        put(&mut r, "content_type", resp.get("mime_type"));
        r.insert("http_headers".into(), headers(resp.get("headers")));
        put(&mut r, "length", resp.get("bytes"));
        put(&mut r, "body_length", resp.pointer("/body/bytes"));
        out.insert("http_response".into(), Value::Object(r));
        put(&mut out, "http_status", resp.get("status_code"));
    }
    let mut unmapped = Map::new();
    put(&mut unmapped, "apitap", g("/apitap"));
    for (key, path) in [
        ("request_body", "/http/request/body/content"),
        ("response_body", "/http/response/body/content"),
    ] {
        put(&mut unmapped, key, g(path));
    }
    out.insert("unmapped".into(), Value::Object(unmapped));
    Value::Object(out)
}

/// Where the value of `unmapped.apitap.endpoint` (inside its quotes) lies in an OCSF
/// record written by [`from_ecs`]. The key sequence `"apitap":{"endpoint":"` occurs once:
/// every other string is escaped and headers are a list, not a map.
pub fn endpoint_at(json: &[u8]) -> Option<std::ops::Range<usize>> {
    const KEY: &[u8] = br#""apitap":{"endpoint":""#;
    let start = memchr::memmem::find(json, KEY)? + KEY.len();
    let mut escaped = false;
    for (i, &b) in json.get(start..)?.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return Some(start..start + i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ecs_event_maps_to_http_activity() {
        let ecs = json!({
            "@timestamp": "2024-01-02T03:04:05.678901Z",
            "event": {"kind": "event", "outcome": "failure", "duration": 12_500_000, "id": "Fabc-0"},
            "source": {"ip": "10.0.0.1", "port": 40000},
            "destination": {"ip": "10.0.0.2", "port": 8080},
            "network": {"transport": "tcp", "type": "ipv4", "community_id": "1:xyz="},
            "url": {"original": "/u?x=1", "path": "/u", "query": "x=1", "domain": "api.example"},
            "http": {"version": "1.1",
                     "request": {"method": "PATCH", "headers": {"host": "api.example", "referer": "r"}, "bytes": 100, "body": {"bytes": 5}},
                     "response": {"status_code": 404, "headers": {"server": "s"}, "bytes": 60, "body": {"bytes": 9}, "mime_type": "application/json"}},
            "user_agent": {"original": "curl/8"},
            "apitap": {"endpoint": "PATCH /u", "anomalies": ["bare_lf"]}
        });
        let o = from_ecs(&ecs, 1_704_164_645_678_901_000, "0.1.0");
        assert_eq!(o["class_uid"], 4002);
        assert_eq!(o["activity_id"], 99);
        assert_eq!(o["type_uid"], 400_299);
        assert_eq!(o["time"], 1_704_164_645_678_i64);
        assert_eq!(o["duration"], 12);
        assert_eq!(o["end_time"], 1_704_164_645_690_i64);
        assert_eq!(o["status_id"], 2);
        assert_eq!(o["metadata"]["version"], "1.1.0");
        assert_eq!(o["metadata"]["uid"], "Fabc-0");
        assert_eq!(o["src_endpoint"], json!({"ip": "10.0.0.1", "port": 40000}));
        assert_eq!(o["http_request"]["url"]["hostname"], "api.example");
        assert_eq!(o["http_request"]["url"]["port"], 8080);
        assert_eq!(o["http_request"]["referrer"], "r");
        assert_eq!(
            o["http_request"]["http_headers"],
            json!([{"name": "host", "value": "api.example"}, {"name": "referer", "value": "r"}])
        );
        assert_eq!(o["http_response"]["code"], 404);
        assert_eq!(o["http_status"], 404);
        assert_eq!(o["connection_info"]["community_uid"], "1:xyz=");
        assert_eq!(o["unmapped"]["apitap"]["anomalies"][0], "bare_lf");
        assert_eq!(activity_id("get"), (3, "Get"));
    }
}
