"""A small HTTP server that takes the HTTP/1.1 `Upgrade: h2c` handshake (RFC 7540 3.2),
which nginx does not: answers 101, then serves the upgraded request as stream 1 and every
later request on the same connection over HTTP/2, with the h2 package (4.1.0 made the
fixtures). A request without the upgrade gets an HTTP/1.1 answer. For
scripts/make-h2-fixtures.sh. One connection at a time; runs until killed.

    h2c_upgrade_server.py ADDR PORT
"""
import json
import socket
import sys

import h2.config
import h2.connection
import h2.events
import h2.exceptions

addr, port = sys.argv[1], int(sys.argv[2])


def answer(path):
    if path.startswith("/api/users/"):
        return 200, {"id": int(path.rsplit("/", 1)[1] or 0), "name": "ada"}
    if path.split("?")[0] == "/api/users":
        return 200, {"users": [{"id": 1, "name": "ada"}, {"id": 2, "name": "grace"}]}
    return 404, {"error": "not found"}


def respond(conn, sid, path):
    status, obj = answer(path)
    body = json.dumps(obj, separators=(",", ":")).encode()
    conn.send_headers(sid, [(":status", str(status)), ("content-type", "application/json"),
                            ("content-length", str(len(body))), ("server", "h2c-upgrade-fixture")])
    conn.send_data(sid, body, end_stream=True)


def serve(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            return
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    fields = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        fields[k.strip().lower()] = v.strip()
    if fields.get("upgrade", "").lower() != "h2c" or "http2-settings" not in fields:
        status, obj = answer(path)
        body = json.dumps(obj).encode()
        s.sendall(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        return
    s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_upgrade_connection(fields["http2-settings"])
    respond(conn, 1, path)
    s.sendall(conn.data_to_send())
    data = rest
    while True:
        for ev in conn.receive_data(data) if data else []:
            if isinstance(ev, h2.events.RequestReceived):
                hdrs = dict(ev.headers)
                respond(conn, ev.stream_id, hdrs[":path"])
            elif isinstance(ev, h2.events.ConnectionTerminated):
                s.sendall(conn.data_to_send())
                return
        out = conn.data_to_send()
        if out:
            s.sendall(out)
        data = s.recv(65536)
        if not data:
            return


ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((addr, port))
ls.listen(8)
while True:
    cs, _ = ls.accept()
    with cs:
        try:
            serve(cs)
        except (OSError, h2.exceptions.ProtocolError) as e:
            print(f"h2c_upgrade_server: {e}", file=sys.stderr)
