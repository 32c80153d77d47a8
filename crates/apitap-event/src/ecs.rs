//! The ECS writer: the same JSON as the serde derives of [`crate::view`], written
//! directly (word-at-a-time escaping, no serializer state). `tests::hand_writer_equals_serde`
//! holds the two to the same bytes.

use crate::headers::HeadersView;
use crate::json;
use crate::view::*;
use apitap_core::Span;

impl EventView<'_> {
    /// Appends the ECS event; returns where the value of `apitap.endpoint` lies in `out`.
    /// Field order and omissions follow the serde derives (which OCSF uses);
    /// `tests::hand_writer_equals_serde` holds them to the same bytes.
    pub(crate) fn write_ecs(&self, out: &mut Vec<u8>) -> Span {
        out.reserve(1024);
        let mut o = json::Object::new(out);
        let mut ts = String::with_capacity(32);
        self.timestamp.0.write_rfc3339_micros(&mut ts);
        o.str("@timestamp", &ts);
        self.event.write_json(o.key("event"));
        self.source.write_json(o.key("source"));
        self.destination.write_json(o.key("destination"));
        self.network.write_json(o.key("network"));
        if let Some(observer) = &self.observer {
            let mut ob = json::Object::new(o.key("observer"));
            if let Some(name) = observer.name {
                ob.str("name", name);
            }
            if let Some(ingress) = &observer.ingress {
                let mut ing = json::Object::new(ob.key("ingress"));
                let mut vlan = json::Object::new(ing.key("vlan"));
                vlan.str("id", itoa::Buffer::new().format(ingress.vlan.id.0));
                vlan.end();
                ing.end();
            }
            ob.end();
        }
        if let Some(url) = &self.url {
            let mut u = json::Object::new(o.key("url"));
            u.str("original", &url.original);
            for (key, value) in [
                ("path", &url.path),
                ("query", &url.query),
                ("domain", &url.domain),
                ("scheme", &url.scheme),
            ] {
                if let Some(v) = value {
                    u.str(key, v);
                }
            }
            u.end();
        }
        self.http.write_json(o.key("http"));
        if let Some(ua) = &self.user_agent {
            let mut u = json::Object::new(o.key("user_agent"));
            u.str("original", &ua.original);
            u.end();
        }
        if let Some(rpc) = &self.rpc {
            // gRPC calls only: the serde form is the ECS form.
            let _ = serde_json::to_writer(o.key("rpc"), rpc);
        }
        if let Some(tls) = &self.tls {
            // Once per decrypted transaction: the serde form is the ECS form.
            let _ = serde_json::to_writer(o.key("tls"), tls);
        }
        let endpoint_at = self.apitap.write_json(o.key("apitap"));
        o.end();
        endpoint_at
    }
}

impl EventMeta {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = json::Object::new(out);
        o.str("kind", self.kind);
        str_array(o.key("category"), self.category);
        str_array(o.key("type"), self.kind_type);
        if let Some(outcome) = self.outcome {
            o.str("outcome", outcome);
        }
        if let Some(duration) = self.duration {
            o.uint("duration", duration);
        }
        o.str("id", &self.id);
        o.end();
    }
}

fn str_array<'s>(out: &mut Vec<u8>, items: impl IntoIterator<Item = &'s str>) {
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::string(out, item);
    }
    out.push(b']');
}

impl EndpointView {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = json::Object::new(out);
        json::ip(o.key("ip"), self.ip);
        o.uint("port", u64::from(self.port));
        o.end();
    }
}

impl NetworkView<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = json::Object::new(out);
        o.str("transport", self.transport);
        o.str("protocol", self.protocol);
        o.str("type", self.ip_type);
        o.str("community_id", self.community_id);
        o.end();
    }
}

impl HttpView<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = json::Object::new(out);
        if let Some(version) = self.version {
            o.str("version", version);
        }
        if let Some(r) = &self.request {
            let mut q = json::Object::new(o.key("request"));
            q.str("method", &r.method);
            write_message_rest(q, &r.headers, r.bytes, &r.body, r.mime_type.as_deref());
        }
        if let Some(r) = &self.response {
            let mut p = json::Object::new(o.key("response"));
            if let Some(status) = r.status_code {
                p.uint("status_code", u64::from(status));
            }
            write_message_rest(p, &r.headers, r.bytes, &r.body, r.mime_type.as_deref());
        }
        o.end();
    }
}

/// The fields a request and a response share, after their first one, in the order serde
/// derive writes [`RequestView`] and [`ResponseView`]; closes the object.
fn write_message_rest(
    mut o: json::Object<'_>,
    headers: &HeadersView<'_>,
    bytes: u64,
    body: &BodyView,
    mime_type: Option<&str>,
) {
    headers.write_json(o.key("headers"));
    o.uint("bytes", bytes);
    body.write_json(o.key("body"));
    if let Some(m) = mime_type {
        o.str("mime_type", m);
    }
    o.end();
}

impl BodyView {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = json::Object::new(out);
        o.uint("bytes", self.bytes);
        if let Some(content) = &self.content {
            o.str("content", content);
        }
        o.end();
    }
}

impl BodyMetaView {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = json::Object::new(out);
        o.bool("truncated", self.truncated);
        if let Some(enc) = self.content_encoding {
            o.str("content_encoding", &enc.to_string());
        }
        if self.redacted_fields != 0 {
            o.uint("redacted_fields", u64::from(self.redacted_fields));
        }
        if self.binary {
            o.bool("binary", true);
        }
        if self.withheld {
            o.bool("withheld", true);
        }
        o.end();
    }
}

impl ApitapView<'_> {
    /// Writes the object; returns where the endpoint's value (inside its quotes) lies.
    fn write_json(&self, out: &mut Vec<u8>) -> Span {
        let mut o = json::Object::new(out);
        let at = {
            let out = o.key("endpoint");
            let start = out.len() + 1;
            json::string(out, &self.endpoint);
            Span::new(start, out.len().saturating_sub(start + 1))
        };
        o.str("flow_id", self.flow_id);
        o.uint("transaction", u64::from(self.transaction));
        o.bool("complete", self.complete);
        if let Some(reason) = self.incomplete_reason {
            o.str("incomplete_reason", reason);
        }
        str_array(
            o.key("anomalies"),
            self.anomalies.0.iter().map(|a| a.name()),
        );
        if let Some(body) = &self.body {
            let mut b = json::Object::new(o.key("body"));
            if let Some(m) = &body.request {
                m.write_json(b.key("request"));
            }
            if let Some(m) = &body.response {
                m.write_json(b.key("response"));
            }
            b.end();
        }
        if let Some(t) = &self.trailers {
            t.write_json(o.key("trailers"));
        }
        if let Some(h) = &self.http2 {
            let _ = serde_json::to_writer(o.key("http2"), h);
        }
        if let Some(g) = &self.grpc {
            let _ = serde_json::to_writer(o.key("grpc"), g);
        }
        if let Some(t) = &self.tunnel {
            let mut tu = json::Object::new(o.key("tunnel"));
            tu.str("type", t.kind);
            if let Some(id) = t.id {
                tu.uint("id", u64::from(id));
            }
            tu.end();
        }
        if let Some(sensor) = self.sensor {
            o.str("sensor", sensor);
        }
        o.str("schema_version", self.schema_version);
        o.end();
        at
    }
}
