"""A gRPC server on grpcio's generic handlers (messages are raw JSON bytes, no protoc), over
cleartext HTTP/2, for scripts/make-h2-fixtures.sh. Needs grpcio (1.68.1 made the fixtures).

    grpc_server.py ADDR:PORT LOG

Service demo.v1.Users:
  GetUser      unary: {"id": N} -> the user; NOT_FOUND for id 404 (initial metadata sent
               first, so the answer is HEADERS, then trailers); UNAUTHENTICATED without an
               authorization header (aborted before anything is sent: trailers-only)
  DeleteUser   unary: always PERMISSION_DENIED, aborted at once (trailers-only)
  SearchUsers  unary with gzip responses (the client sends gzip too)
  ListUsers    server streaming: 5 users
  UploadUsers  client streaming: N users in, {"stored": N} out
  Chat         bidi streaming: one answer per message

When a call's handler finishes, one line is appended to LOG:
    <service> <method> <status code name> <request messages> <response messages>
e.g. `demo.v1.Users GetUser OK 1 1`.
"""
import json
import sys
import threading
from concurrent import futures

import grpc

SERVICE = "demo.v1.Users"
USERS = {i: {"id": i, "name": n, "email": f"{n}@example.com"}
         for i, n in enumerate(["ada", "grace", "alan", "edsger", "barbara", "ken", "dennis", "linus"], 1)}
USERS[42] = {"id": 42, "name": "ada", "email": "ada@example.com"}

addr, log_path = sys.argv[1:3]
log_lock = threading.Lock()


def log(method, code, n_in, n_out):
    with log_lock, open(log_path, "a") as f:
        f.write(f"{SERVICE} {method} {code.name} {n_in} {n_out}\n")


def enc(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def authorized(ctx):
    return any(k == "authorization" for k, _ in ctx.invocation_metadata())


# --- handlers (request/response are bytes) ---

def get_user(req, ctx):
    if not authorized(ctx):
        ctx.abort(grpc.StatusCode.UNAUTHENTICATED, "missing bearer token")
    uid = json.loads(req)["id"]
    if uid not in USERS:
        ctx.send_initial_metadata((("x-request-id", f"req-{uid}"),))
        ctx.abort(grpc.StatusCode.NOT_FOUND, f"user {uid} not found")
    return enc(USERS[uid])


def delete_user(req, ctx):
    ctx.abort(grpc.StatusCode.PERMISSION_DENIED, "admin role required")


def search_users(req, ctx):
    ctx.set_compression(grpc.Compression.Gzip)
    q = json.loads(req)["q"]
    hits = [u for u in USERS.values() if q in u["name"] or q in u["email"]]
    return enc({"query": q, "hits": hits * 4, "total": len(hits) * 4})


def list_users(req, ctx):
    for uid in range(1, 6):
        yield enc(USERS[uid])


def upload_users(reqs, ctx):
    n = sum(1 for _ in reqs)
    return enc({"stored": n})


def chat(reqs, ctx):
    for r in reqs:
        yield enc({"echo": json.loads(r)["text"], "from": "server"})


# --- counting wrappers: one log line per call, when its handler finishes ---

class Counted:
    def __init__(self, it):
        self.it, self.n = it, 0

    def __iter__(self):
        for m in self.it:
            self.n += 1
            yield m


def code_of(ctx):
    return ctx.code() or grpc.StatusCode.UNKNOWN


def unary_in(name, fn, streaming_out):
    if not streaming_out:
        def h(req, ctx):
            try:
                resp = fn(req, ctx)
            except Exception:
                log(name, code_of(ctx), 1, 0)
                raise
            log(name, grpc.StatusCode.OK, 1, 1)
            return resp
        return grpc.unary_unary_rpc_method_handler(h, request_deserializer=None, response_serializer=None)

    def h(req, ctx):
        n = 0
        try:
            for m in fn(req, ctx):
                n += 1
                yield m
        except Exception:
            log(name, code_of(ctx), 1, n)
            raise
        log(name, grpc.StatusCode.OK, 1, n)
    return grpc.unary_stream_rpc_method_handler(h, request_deserializer=None, response_serializer=None)


def stream_in(name, fn, streaming_out):
    if not streaming_out:
        def h(reqs, ctx):
            c = Counted(reqs)
            try:
                resp = fn(iter(c), ctx)
            except Exception:
                log(name, code_of(ctx), c.n, 0)
                raise
            log(name, grpc.StatusCode.OK, c.n, 1)
            return resp
        return grpc.stream_unary_rpc_method_handler(h, request_deserializer=None, response_serializer=None)

    def h(reqs, ctx):
        c, n = Counted(reqs), 0
        try:
            for m in fn(iter(c), ctx):
                n += 1
                yield m
        except Exception:
            log(name, code_of(ctx), c.n, n)
            raise
        log(name, grpc.StatusCode.OK, c.n, n)
    return grpc.stream_stream_rpc_method_handler(h, request_deserializer=None, response_serializer=None)


handlers = {
    "GetUser": unary_in("GetUser", get_user, False),
    "DeleteUser": unary_in("DeleteUser", delete_user, False),
    "SearchUsers": unary_in("SearchUsers", search_users, False),
    "ListUsers": unary_in("ListUsers", list_users, True),
    "UploadUsers": stream_in("UploadUsers", upload_users, False),
    "Chat": stream_in("Chat", chat, True),
}
# No BDP probe pings, no keepalive pings: only the calls' own frames on the wire.
options = [("grpc.http2.bdp_probe", 0), ("grpc.keepalive_time_ms", 3600000)]
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=options)
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
server.add_insecure_port(addr)
server.start()
server.wait_for_termination()
