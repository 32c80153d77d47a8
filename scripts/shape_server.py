"""Servers for scripts/make-shape-fixtures.sh (listen on 127.0.0.1 only).

usage: python3 scripts/shape_server.py MODE PORT [ORIGIN_PORT]

MODE
  http11   python http.server, HTTP/1.1 keep-alive: GET /v1/..., HEAD, POST (answers
           `Expect: 100-continue` with an interim 100, as http.server does), OPTIONS
           (also `OPTIONS *`), and GET /ws: a websocket upgrade (101), then one frame each
           way and a close frame.
  http10   python http.server with protocol_version HTTP/1.0: GET /stream sends a body with
           no Content-Length, in several writes, and ends it by closing the connection.
  raw      a small socket server writing raw responses: GET /trailers (chunked body with
           trailer fields), GET /early-hints (102, then 103, then 200); anything else is
           answered 200 with a JSON body saying how many body bytes it read. It frames
           requests leniently (bare LF, whitespace before the colon stripped, equal duplicate
           Content-Length accepted, chunked wins over Content-Length), the way a permissive
           backend does; a differing duplicate Content-Length or a bad chunk size gets 400 and
           the connection is closed.
  proxy    an HTTP proxy that only does CONNECT: answers `200 Connection established` and
           relays the tunnel to 127.0.0.1:ORIGIN_PORT whatever host was asked for.
"""
import base64
import hashlib
import http.server
import json
import socket
import socketserver
import sys
import threading
import time

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Http11(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send_json(self, status, obj, head_only=False):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def do_GET(self):
        if self.path == "/ws":
            self.websocket()
        else:
            self.send_json(200, {"path": self.path})

    def do_HEAD(self):
        self.send_json(200, {"path": self.path}, head_only=True)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        self.send_json(201, {"received": n})

    def do_OPTIONS(self):
        self.send_response(204)
        self.send_header("Allow", "GET, HEAD, POST, OPTIONS")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        payload = read_ws_frame(self.rfile)
        # Text that would look like a status line to a parser that kept going after the 101.
        echo = b"echo: " + payload + b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        self.wfile.write(bytes([0x81, len(echo)]) + echo)
        read_ws_frame(self.rfile)  # the client's close frame
        self.wfile.write(b"\x88\x02\x03\xe8")
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


def read_ws_frame(f):
    """One small masked client frame's payload."""
    b0, b1 = f.read(2)
    n = b1 & 0x7F
    mask = f.read(4) if b1 & 0x80 else b"\0\0\0\0"
    data = f.read(n)
    return bytes(c ^ mask[i % 4] for i, c in enumerate(data))


class Http10(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        for i in range(5):
            self.wfile.write((f"part {i} " + "x" * 992 + "\n").encode())
            self.wfile.flush()
            time.sleep(0.02)

    def log_message(self, *args):
        pass


class RawHandler(socketserver.StreamRequestHandler):
    def handle(self):
        f = self.rfile
        while True:
            head = read_head(f)
            if head is None:
                return
            line, headers = head
            parts = line.split()
            path = parts[1].decode("latin1") if len(parts) > 1 else "/"
            body = read_body(f, headers)
            if body is None:
                self.wfile.write(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                return
            if path == "/trailers":
                self.wfile.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    b"Transfer-Encoding: chunked\r\nTrailer: X-Checksum, X-Count\r\n\r\n"
                    b"5\r\nhello\r\n7\r\n, world\r\n0\r\nX-Checksum: 1f2e3d\r\nX-Count: 2\r\n\r\n"
                )
            elif path == "/early-hints":
                self.wfile.write(b"HTTP/1.1 102 Processing\r\n\r\n")
                self.wfile.flush()
                time.sleep(0.05)
                self.wfile.write(
                    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n"
                )
                self.wfile.flush()
                time.sleep(0.05)
                self.respond(path, body)
            else:
                self.respond(path, body)

    def respond(self, path, body):
        out = json.dumps({"path": path, "body_bytes": len(body)}).encode()
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(out)).encode()
            + b"\r\n\r\n"
            + out
        )


def read_head(f):
    """(request line, [(name, value)]) of the next request, leniently; None at EOF."""
    line = f.readline(65536)
    while line in (b"\r\n", b"\n"):
        line = f.readline(65536)
    if not line:
        return None
    headers = []
    while True:
        h = f.readline(65536)
        if h in (b"\r\n", b"\n", b""):
            break
        if h[:1] in (b" ", b"\t") and headers:  # obs-fold: join to the previous value
            name, value = headers[-1]
            headers[-1] = (name, value + b" " + h.strip())
            continue
        name, _, value = h.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    return line.rstrip(b"\r\n"), headers


def read_body(f, headers):
    te = [v for n, v in headers if n == b"transfer-encoding"]
    if te and te[-1].split(b",")[-1].strip().lower() == b"chunked":
        body = b""
        while True:
            size_line = f.readline(4096).split(b";")[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                return None
            if size == 0:
                while f.readline(4096) not in (b"\r\n", b"\n", b""):
                    pass
                return body
            body += f.read(size)
            f.readline(4096)
    lengths = {v for n, v in headers if n == b"content-length"}
    if len(lengths) > 1:
        return None
    return f.read(int(lengths.pop())) if lengths else b""


class ProxyHandler(socketserver.StreamRequestHandler):
    rbufsize = 0  # unbuffered: the head is read byte by byte, no tunnel byte is held back

    def handle(self):
        head = read_head(self.rfile)
        if head is None or not head[0].startswith(b"CONNECT "):
            self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        origin = socket.create_connection(("127.0.0.1", ORIGIN_PORT))
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()

        def pump(src, dst):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
            except OSError:
                pass
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        t = threading.Thread(target=pump, args=(origin, self.connection))
        t.start()
        pump(self.connection, origin)
        t.join()
        origin.close()


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2])
    ORIGIN_PORT = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    handler = {"http11": Http11, "http10": Http10, "raw": RawHandler, "proxy": ProxyHandler}[mode]
    Server(("127.0.0.1", port), handler).serve_forever()
