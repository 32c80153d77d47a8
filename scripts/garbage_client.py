#!/usr/bin/env python3
"""Sends non-HTTP bytes (seeded random binary, then text lines) to a server, then a normal
GET on a new connection. Used by scripts/make-fixtures.sh for the bad-input fixture."""
import random
import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
junk = bytes(rng.getrandbits(8) for _ in range(2048)) + b"hello there\r\nnot http at all\r\n\r\n"
with socket.create_connection((host, port), timeout=5) as s:
    s.sendall(junk)
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass
with socket.create_connection((host, port), timeout=5) as s:
    s.sendall(f"GET /index.html HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    while s.recv(65536):
        pass
