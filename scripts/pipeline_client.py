#!/usr/bin/env python3
"""Sends three GET requests back to back in one write on one connection (HTTP pipelining),
then reads until all three responses arrived. Used by scripts/make-fixtures.sh."""
import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
paths = sys.argv[3:] or ["/index.html", "/api/users", "/api/users/7"]
reqs = b"".join(
    f"GET {p} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: pipeline-client/1\r\n\r\n".encode()
    for p in paths
)
with socket.create_connection((host, port), timeout=5) as s:
    s.sendall(reqs)
    data = b""
    while data.count(b"HTTP/1.1 ") < len(paths):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
print(data.count(b"HTTP/1.1 "), "responses", file=sys.stderr)
