"""The gRPC client for scripts/make-h2-fixtures.sh: calls demo.v1.Users on
scripts/grpc_server.py over cleartext HTTP/2, one call after another. Messages are raw JSON
bytes (no protoc). Needs grpcio (1.68.1 made the fixtures).

    grpc_client.py ADDR:PORT

The first channel (one connection) carries GetUser (OK, NOT_FOUND, UNAUTHENTICATED),
DeleteUser (PERMISSION_DENIED, trailers-only), ListUsers (5 answers), UploadUsers (4 in,
1 out) and Chat (3 in, 3 out); a second channel (a second connection) carries SearchUsers
with gzip-compressed messages both ways and one more GetUser.
"""
import json
import sys

import grpc

target = "ipv4:" + sys.argv[1]
AUTH = (("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJl"),)
OPTIONS = [
    ("grpc.enable_http_proxy", 0),
    # Each channel its own connection (the global pool would hand the second the first's).
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.http2.bdp_probe", 0),
    ("grpc.primary_user_agent", "apitap-fixture/1"),
]


def enc(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def method(ch, kind, name):
    make = getattr(ch, kind)
    return make(f"/demo.v1.Users/{name}", request_serializer=None, response_deserializer=None)


def expect_error(fn, code):
    try:
        fn()
    except grpc.RpcError as e:
        assert e.code() == code, (e.code(), e.details())
        return
    raise AssertionError(f"expected {code}")


with grpc.insecure_channel(target, options=OPTIONS) as ch:
    get = method(ch, "unary_unary", "GetUser")
    assert json.loads(get(enc({"id": 42}), metadata=AUTH, timeout=10))["id"] == 42
    expect_error(lambda: get(enc({"id": 404}), metadata=AUTH, timeout=10), grpc.StatusCode.NOT_FOUND)
    expect_error(lambda: get(enc({"id": 7}), timeout=10), grpc.StatusCode.UNAUTHENTICATED)
    delete = method(ch, "unary_unary", "DeleteUser")
    expect_error(lambda: delete(enc({"id": 7}), metadata=AUTH, timeout=10), grpc.StatusCode.PERMISSION_DENIED)
    listed = list(method(ch, "unary_stream", "ListUsers")(enc({}), metadata=AUTH, timeout=10))
    assert len(listed) == 5
    upload = method(ch, "stream_unary", "UploadUsers")
    users = (enc({"name": n, "email": f"{n}@example.com"}) for n in ["ann", "bob", "cy", "di"])
    assert json.loads(upload(users, metadata=AUTH, timeout=10))["stored"] == 4
    chat = method(ch, "stream_stream", "Chat")
    lines = (enc({"text": t}) for t in ["hello", "how are you", "bye"])
    assert len(list(chat(lines, metadata=AUTH, timeout=10))) == 3

with grpc.insecure_channel(target, options=OPTIONS) as ch:
    search = method(ch, "unary_unary", "SearchUsers")
    resp = search(enc({"q": "example.com", "fields": ["name", "email"] * 40}), metadata=AUTH,
                  timeout=10, compression=grpc.Compression.Gzip)
    assert json.loads(resp)["total"] > 0
    assert json.loads(method(ch, "unary_unary", "GetUser")(enc({"id": 1}), metadata=AUTH, timeout=10))["id"] == 1
