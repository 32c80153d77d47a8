//! Inventory export as an OpenAPI 3.0 document.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::alert::rfc3339_micros;
use crate::inventory::EndpointStats;
use apitap_core::endpoint::Placeholder;

#[derive(Default)]
struct Agg {
    count: u64,
    first: i64,
    last: i64,
    statuses: BTreeMap<u16, u64>,
    no_response: u64,
    req_ct: BTreeSet<String>,
    resp_ct: BTreeSet<String>,
    query: BTreeSet<String>,
    auth: BTreeSet<String>,
    hosts: BTreeSet<String>,
    clients: u64,
    sensors: BTreeSet<String>,
}

/// An OpenAPI 3.0.3 document of the observed endpoints: paths (templates with path
/// parameters named after their placeholder: `{id}`, `{id2}`...), one operation per method,
/// query parameters seen, request/response media types, responses by status seen
/// (response media types are attached to 2xx responses), and observation facts under
/// `x-apitap`. `host`: only that host's endpoints (and it as the server); `None`: all hosts,
/// operations of one (path, method) on several hosts merged.
pub fn inventory_openapi(endpoints: &[EndpointStats], title: &str, host: Option<&str>) -> Value {
    let mut aggs: BTreeMap<(String, String), Agg> = BTreeMap::new();
    let mut hosts: BTreeSet<String> = BTreeSet::new();
    for e in endpoints {
        if host.is_some_and(|h| h != e.host) || !e.template.starts_with('/') {
            continue;
        }
        if !e.host.is_empty() {
            hosts.insert(e.host.clone());
        }
        let a = aggs
            .entry((e.template.clone(), e.method.to_ascii_lowercase()))
            .or_default();
        if a.count == 0 {
            a.first = e.first_seen_ns;
            a.last = e.last_seen_ns;
        }
        a.count += e.count;
        a.first = a.first.min(e.first_seen_ns);
        a.last = a.last.max(e.last_seen_ns);
        for (s, n) in &e.status_codes {
            *a.statuses.entry(*s).or_insert(0) += n;
        }
        a.no_response += e.status_classes.get("none").copied().unwrap_or(0);
        a.req_ct.extend(e.request_content_types.keys().cloned());
        a.resp_ct.extend(e.response_content_types.keys().cloned());
        a.query.extend(e.query_params.keys().cloned());
        a.auth.extend(e.auth_schemes.keys().cloned());
        if !e.host.is_empty() {
            a.hosts.insert(e.host.clone());
        }
        a.clients += e.clients.len() as u64;
        a.sensors.extend(e.sensors.iter().cloned());
    }

    let mut paths = Map::new();
    let mut op_ids: BTreeSet<String> = BTreeSet::new();
    for ((template, method), a) in &aggs {
        let (path, path_params) = openapi_path(template);
        let mut params: Vec<Value> = path_params
            .iter()
            .map(|(name, ph)| {
                json!({
                    "name": name,
                    "in": "path",
                    "required": true,
                    "schema": param_schema(*ph),
                })
            })
            .collect();
        for q in &a.query {
            params.push(json!({
                "name": q,
                "in": "query",
                "required": false,
                "schema": {"type": "string"},
            }));
        }
        let mut responses = Map::new();
        for (code, n) in &a.statuses {
            let mut r = Map::new();
            r.insert(
                "description".into(),
                json!(format!(
                    "Observed {n} time{}",
                    if *n == 1 { "" } else { "s" }
                )),
            );
            if (200..300).contains(code) && !a.resp_ct.is_empty() {
                let content: Map<String, Value> =
                    a.resp_ct.iter().map(|c| (c.clone(), json!({}))).collect();
                r.insert("content".into(), Value::Object(content));
            }
            responses.insert(code.to_string(), Value::Object(r));
        }
        if responses.is_empty() {
            responses.insert(
                "default".into(),
                json!({"description": "No response observed"}),
            );
        }
        let mut op = Map::new();
        op.insert(
            "operationId".into(),
            json!(operation_id(method, &path, &mut op_ids)),
        );
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        if !a.req_ct.is_empty() {
            let content: Map<String, Value> =
                a.req_ct.iter().map(|c| (c.clone(), json!({}))).collect();
            op.insert("requestBody".into(), json!({ "content": content }));
        }
        op.insert("responses".into(), Value::Object(responses));
        if let Some(call) = grpc_call(&a.req_ct, template) {
            op.insert("x-grpc".into(), call);
        }
        let mut facts = json!({
            "count": a.count,
            "first_seen": rfc3339_micros(a.first),
            "last_seen": rfc3339_micros(a.last),
            "no_response": a.no_response,
            "auth_schemes": a.auth,
            "hosts": a.hosts,
            "clients": a.clients,
        });
        if let (false, Some(facts)) = (a.sensors.is_empty(), facts.as_object_mut()) {
            facts.insert("sensors".into(), json!(a.sensors));
        }
        op.insert("x-apitap".into(), facts);
        let item = paths
            .entry(path)
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(item) = item {
            item.insert(method.clone(), Value::Object(op));
        }
    }

    let servers: Vec<Value> = match host {
        Some(h) if !h.is_empty() => vec![json!({ "url": format!("http://{h}") })],
        Some(_) => Vec::new(),
        None => hosts
            .iter()
            .map(|h| json!({ "url": format!("http://{h}") }))
            .collect(),
    };
    let mut doc = Map::new();
    doc.insert("openapi".into(), json!("3.0.3"));
    doc.insert(
        "info".into(),
        json!({
            "title": title,
            "version": "observed",
            "description": "Endpoints observed in traffic by apitap (passive inventory).",
        }),
    );
    if !servers.is_empty() {
        doc.insert("servers".into(), Value::Array(servers));
    }
    doc.insert("paths".into(), Value::Object(paths));
    Value::Object(doc)
}

/// The OpenAPI path of a template (placeholders renamed `id`, `id2`, ... so names are
/// unique) and its path parameters.
fn openapi_path(template: &str) -> (String, Vec<(String, Placeholder)>) {
    let mut out = String::with_capacity(template.len());
    let mut params = Vec::new();
    let mut seen: BTreeMap<&'static str, u32> = BTreeMap::new();
    for seg in template[1..].split('/') {
        out.push('/');
        match Placeholder::from_template_segment(seg) {
            Some(ph) => {
                let n = seen.entry(ph.name()).or_insert(0);
                *n += 1;
                let name = if *n == 1 {
                    ph.name().to_string()
                } else {
                    format!("{}{}", ph.name(), n)
                };
                out.push('{');
                out.push_str(&name);
                out.push('}');
                params.push((name, ph));
            }
            None => out.push_str(seg),
        }
    }
    (out, params)
}

fn param_schema(ph: Placeholder) -> Value {
    match ph {
        Placeholder::Id => json!({"type": "integer"}),
        Placeholder::Uuid => json!({"type": "string", "format": "uuid"}),
        Placeholder::Date => json!({"type": "string", "format": "date"}),
        Placeholder::Email => json!({"type": "string", "format": "email"}),
        Placeholder::Hex | Placeholder::Token | Placeholder::Param => json!({"type": "string"}),
    }
}

/// `x-grpc` of an operation every request of which was a gRPC call: its service and
/// method, from `/package.Service/Method`. gRPC endpoints stay in the document as paths
/// (their requests are POSTs to that path), marked, so one export lists every endpoint.
fn grpc_call(request_types: &BTreeSet<String>, template: &str) -> Option<Value> {
    let grpc = |ct: &String| ct.to_ascii_lowercase().starts_with("application/grpc");
    if request_types.is_empty() || !request_types.iter().all(grpc) {
        return None;
    }
    let (service, method) = template.strip_prefix('/')?.rsplit_once('/')?;
    (!service.is_empty() && !method.is_empty() && !service.contains('/'))
        .then(|| json!({"service": service, "method": method}))
}

fn operation_id(method: &str, path: &str, used: &mut BTreeSet<String>) -> String {
    let mut id = String::from(method);
    let mut last_us = false;
    for c in path.chars() {
        if c.is_ascii_alphanumeric() {
            id.push(c);
            last_us = false;
        } else if !last_us {
            id.push('_');
            last_us = true;
        }
    }
    while id.ends_with('_') {
        id.pop();
    }
    let mut unique = id.clone();
    let mut n = 2;
    while used.contains(&unique) {
        unique = format!("{id}_{n}");
        n += 1;
    }
    used.insert(unique.clone());
    unique
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::{InventoryConfig, TemplatingConfig};
    use crate::inventory::Inventory;
    use crate::record::TxRecord;

    #[test]
    fn export_parses_as_openapi() {
        let mut inv = Inventory::new(&InventoryConfig::default(), &TemplatingConfig::default());
        let base = TxRecord {
            client: "192.0.2.1:4000".parse().unwrap(),
            server: "10.0.0.1:80".parse().unwrap(),
            host: Some("api.example.com".into()),
            method: "GET".into(),
            status: Some(200),
            response_content_type: Some("application/json".into()),
            ..TxRecord::default()
        };
        for (path, status, q) in [
            ("/users/1/orders/2", 200, Some("page=2&limit=10")),
            ("/users/3/orders/4", 404, None),
            ("/users/3/orders/5", 200, None),
            ("/o/123e4567-e89b-12d3-a456-426614174000", 200, None),
            ("/health", 200, None),
        ] {
            let mut t = base.clone();
            t.path = path.into();
            t.status = Some(status);
            t.query = q.map(String::from);
            inv.observe(&t);
        }
        let mut post = base.clone();
        post.method = "POST".into();
        post.path = "/users".into();
        post.status = None;
        post.request_content_type = Some("application/json".into());
        inv.observe(&post);

        let doc = inventory_openapi(&inv.endpoints(), "test", Some("api.example.com"));
        assert!(
            !doc.to_string().contains("sensors"),
            "a sensor's own export names no sensors"
        );
        let mut fleet = base.clone();
        fleet.path = "/health".into();
        fleet.sensor = Some("edge-1".into());
        inv.observe(&fleet);
        let doc = inventory_openapi(&inv.endpoints(), "test", Some("api.example.com"));
        assert_eq!(
            doc["paths"]["/health"]["get"]["x-apitap"]["sensors"],
            serde_json::json!(["edge-1"])
        );
        let api: openapiv3::OpenAPI = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(api.openapi, "3.0.3");
        assert_eq!(api.servers[0].url, "http://api.example.com");
        let paths: Vec<&String> = api.paths.paths.keys().collect();
        assert_eq!(
            paths,
            ["/health", "/o/{uuid}", "/users", "/users/{id}/orders/{id2}"]
        );
        let op = &doc["paths"]["/users/{id}/orders/{id2}"]["get"];
        assert_eq!(op["parameters"][0]["name"], "id");
        assert_eq!(op["parameters"][1]["name"], "id2");
        assert_eq!(op["parameters"][2]["in"], "query");
        assert_eq!(op["parameters"][2]["name"], "limit");
        assert_eq!(op["responses"]["200"]["description"], "Observed 2 times");
        assert!(op["responses"]["200"]["content"]["application/json"].is_object());
        assert_eq!(op["responses"]["404"]["description"], "Observed 1 time");
        assert_eq!(op["x-apitap"]["count"], 3);
        let post = &doc["paths"]["/users"]["post"];
        assert!(post["requestBody"]["content"]["application/json"].is_object());
        assert!(post["responses"]["default"].is_object());
        assert_eq!(
            doc["paths"]["/o/{uuid}"]["get"]["parameters"][0]["schema"]["format"],
            "uuid"
        );
        assert!(post.get("x-grpc").is_none());
        // A gRPC method is a marked path.
        let mut call = base.clone();
        call.method = "POST".into();
        call.path = "/shop.v1.Shop/GetUser".into();
        call.request_content_type = Some("application/grpc".into());
        inv.observe(&call);
        let doc = inventory_openapi(&inv.endpoints(), "test", Some("api.example.com"));
        assert_eq!(
            doc["paths"]["/shop.v1.Shop/GetUser"]["post"]["x-grpc"],
            json!({"service": "shop.v1.Shop", "method": "GetUser"})
        );
        // Another host's view is empty.
        let other = inventory_openapi(&inv.endpoints(), "t", Some("other"));
        assert_eq!(other["paths"], json!({}));
    }

    #[test]
    fn operation_ids_are_unique() {
        let mut used = BTreeSet::new();
        assert_eq!(operation_id("get", "/a-b", &mut used), "get_a_b");
        assert_eq!(operation_id("get", "/a_b", &mut used), "get_a_b_2");
    }
}
