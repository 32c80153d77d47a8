"""HTTP/1.1 server for scripts/make-body-fixtures.sh: fixed responses with bodies.

usage: python3 scripts/body_server.py PORT   (listens on 127.0.0.1 only)
"""
import gzip
import http.server
import json
import sys
import zlib

USERS = json.dumps(
    {"users": [{"id": 1, "name": "ada", "email": "ada@example.com", "token": "tok-ada-1"},
               {"id": 2, "name": "grace", "email": "grace@example.com", "token": "tok-grace-2"}]}
).encode()
# 64 MiB of zeros: about 64 KB compressed. A decompression bomb for the sensor's limits.
BOMB = gzip.compress(b"\0" * (64 << 20), compresslevel=9, mtime=0)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send(self, status, ctype, body, encoding=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/users.json.gz":
            self.send(200, "application/json", gzip.compress(USERS, mtime=0), "gzip")
        elif self.path == "/users.json.deflate":
            self.send(200, "application/json", zlib.compress(USERS), "deflate")
        elif self.path == "/text":
            self.send(200, "text/plain; charset=utf-8", b"plain text body\n")
        elif self.path == "/image":
            self.send(200, "image/png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
        elif self.path.startswith("/search"):
            self.send(200, "application/json", b'{"results":[]}')
        elif self.path == "/bomb":
            self.send(200, "application/json", BOMB, "gzip")
        else:
            self.send(404, "application/json", b'{"error":"not found"}')

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        if self.path == "/login":
            self.send(401, "application/json", b'{"error":"bad credentials"}')
        else:
            self.send(201, "application/json", b'{"created":true,"id":7}')

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
