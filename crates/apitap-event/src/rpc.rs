//! What an HTTP/2 stream and a gRPC call add to a transaction's event: `rpc.*` (the
//! OpenTelemetry names ECS leaves to others), `apitap.grpc` and `apitap.http2`.

use crate::headers::HeadText;
use apitap_core::http2::error_code_name;
use apitap_core::{Direction, GrpcMessages, Http2Stream, HttpTransaction, MessageCount};
use serde::Serialize;
use std::borrow::Cow;

/// `rpc`: the call's system, service, method and status code.
#[derive(Serialize)]
pub(crate) struct RpcView<'a> {
    pub(crate) system: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) service: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) method: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) grpc: Option<RpcGrpcView>,
}

/// `rpc.grpc`.
#[derive(Serialize)]
pub(crate) struct RpcGrpcView {
    pub(crate) status_code: u32,
}

/// `apitap.grpc`: what the call's messages and trailers said.
#[derive(Serialize)]
pub(crate) struct GrpcView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) encoding: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) request: Option<MessagesView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) response: Option<MessagesView>,
}

/// Messages of one direction.
#[derive(Serialize)]
pub(crate) struct MessagesView {
    pub(crate) messages: u32,
    pub(crate) bytes: u64,
    pub(crate) compressed: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) framing_lost: bool,
}

impl From<MessageCount> for MessagesView {
    fn from(c: MessageCount) -> Self {
        MessagesView {
            messages: c.messages,
            bytes: c.bytes,
            compressed: c.compressed,
            framing_lost: c.framing_lost,
        }
    }
}

/// `apitap.http2`: the stream.
#[derive(Serialize)]
pub(crate) struct Http2View {
    pub(crate) stream_id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reset: Option<ResetView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) promised_by: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) goaway: Option<ErrorCode>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) upgrade: bool,
}

/// `apitap.http2.reset`.
#[derive(Serialize)]
pub(crate) struct ResetView {
    pub(crate) by: &'static str,
    pub(crate) error_code: ErrorCode,
}

/// An HTTP/2 error code: its RFC name, or the number for codes without one.
pub(crate) struct ErrorCode(pub(crate) u32);

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match error_code_name(self.0) {
            Some(name) => s.serialize_str(name),
            None => s.collect_str(&format_args!("0x{:x}", self.0)),
        }
    }
}

impl Http2View {
    pub(crate) fn new(s: &Http2Stream) -> Http2View {
        Http2View {
            stream_id: s.stream_id,
            reset: s.reset.map(|r| ResetView {
                by: match r.by {
                    Direction::ToServer => "client",
                    Direction::ToClient => "server",
                },
                error_code: ErrorCode(r.error_code),
            }),
            promised_by: s.promised_by,
            goaway: s.goaway.map(ErrorCode),
            upgrade: s.upgrade,
        }
    }
}

/// The gRPC status names, by code.
const STATUS_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The gRPC status name of `code`.
pub fn grpc_status_name(code: u32) -> Option<&'static str> {
    STATUS_NAMES.get(code as usize).copied()
}

/// The gRPC status of a call: `grpc-status` from the trailers, else from the response
/// head (a trailers-only response).
pub fn grpc_status(tx: &HttpTransaction) -> Option<u32> {
    let r = tx.response.as_ref()?;
    let v = r
        .trailers
        .header("grpc-status")
        .or_else(|| r.head.header("grpc-status"))?;
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// The views of a gRPC call: `rpc`, `apitap.grpc`.
pub(crate) fn views<'a>(
    tx: &'a HttpTransaction,
    req_text: Option<HeadText<'a>>,
    messages: Option<&GrpcMessages>,
) -> Option<(RpcView<'a>, GrpcView<'a>)> {
    let req = tx.request.as_ref()?;
    let grpc = req.head.is_grpc()
        || tx.response.as_ref().is_some_and(|r| r.head.is_grpc())
        || messages.is_some();
    if !grpc {
        return None;
    }
    let text = |b: &'a [u8]| match req_text {
        Some(t) => t.str(b),
        None => apitap_core::utf8_lossy(b),
    };
    // `/package.Service/Method`.
    let path = req.target();
    let path = path.split(|&b| b == b'?').next().unwrap_or(path);
    let (service, method) = match path.strip_prefix(b"/").map(|p| {
        let cut = p.iter().rposition(|&b| b == b'/');
        cut.map(|c| (p.get(..c).unwrap_or(&[]), p.get(c + 1..).unwrap_or(&[])))
    }) {
        Some(Some((s, m))) if !s.is_empty() && !m.is_empty() => (Some(text(s)), Some(text(m))),
        _ => (None, None),
    };
    let status = grpc_status(tx);
    let resp = tx.response.as_ref();
    let message = resp.and_then(|r| {
        r.trailers
            .header("grpc-message")
            .or_else(|| r.head.header("grpc-message"))
            .filter(|m| !m.is_empty())
            .map(percent_decode)
    });
    let encoding = req
        .head
        .header("grpc-encoding")
        .or_else(|| resp.and_then(|r| r.head.header("grpc-encoding")))
        .map(apitap_core::utf8_lossy);
    Some((
        RpcView {
            system: "grpc",
            service,
            method,
            grpc: status.map(|status_code| RpcGrpcView { status_code }),
        },
        GrpcView {
            status: status.and_then(grpc_status_name),
            message,
            encoding,
            request: messages.map(|m| m.request.into()),
            response: messages.map(|m| m.response.into()),
        },
    ))
}

/// `grpc-message` is percent-encoded (the gRPC HTTP/2 spec).
fn percent_decode(v: &[u8]) -> String {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while let Some(&b) = v.get(i) {
        let hex = |at: usize| v.get(at).and_then(|&c| (c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_messages_are_percent_decoded() {
        assert_eq!(percent_decode(b"user%20not%20found"), "user not found");
        assert_eq!(percent_decode(b"100%"), "100%");
        assert_eq!(percent_decode(b"%zz%4"), "%zz%4");
        assert_eq!(percent_decode(b"%C3%A9"), "\u{e9}");
    }

    #[test]
    fn status_names_follow_the_grpc_codes() {
        assert_eq!(grpc_status_name(0), Some("OK"));
        assert_eq!(grpc_status_name(5), Some("NOT_FOUND"));
        assert_eq!(grpc_status_name(16), Some("UNAUTHENTICATED"));
        assert_eq!(grpc_status_name(17), None);
    }
}
