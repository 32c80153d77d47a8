"""A small JSON API for scripts/make-analytics-fixtures.sh (python3 http.server, HTTP/1.1
keep-alive, threaded). Listens on a loopback address only; the fixtures run one instance
per 127.x.y.z address to play several hosts.

usage: python3 scripts/api_server.py ADDRESS PORT [--banner]

--banner answers with `Server: nginx/1.18.0` and `X-Powered-By: PHP/7.4.3` (a leaky,
outdated software banner); otherwise `Server: api` with no version.
"""
import http.server
import json
import socketserver
import sys
import time
import urllib.parse

BANNER = "--banner" in sys.argv


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes: without TCP_NODELAY every response
    # waits for the client's delayed ACK (40 ms) and a burst cannot be a burst.
    disable_nagle_algorithm = True
    server_version = "nginx/1.18.0" if BANNER else "api"
    sys_version = ""

    def log_message(self, fmt, *args):
        pass

    def send_json(self, status, obj, extra=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if BANNER:
            self.send_header("X-Powered-By", "PHP/7.4.3")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def route(self, method):
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        mode = (q.get("mode") or [""])[0]
        p = url.path.rstrip("/") or "/"
        parts = p.split("/")
        if method == "POST" and p == "/api/login":
            try:
                creds = json.loads(self.body() or b"{}")
            except ValueError:
                creds = {}
            if creds.get("password") == "correct horse":
                return self.send_json(200, {"session": "ok"})
            return self.send_json(401, {"error": "bad credentials"})
        if method == "POST" and p == "/api/payments":
            self.body()
            return self.send_json(201, {"payment": "accepted"})
        if method != "GET":
            self.body()
            return self.send_json(405, {"error": "method not allowed"})
        if p == "/api/users":
            return self.send_json(200, {"users": [{"id": i, "name": f"user {i}"} for i in range(1, 6)]})
        if len(parts) == 4 and parts[1] == "api" and parts[2] == "users" and parts[3].isdigit():
            uid = int(parts[3])
            if uid == 13:
                return self.send_json(500, {"error": "internal"})
            if uid > 5000:
                return self.send_json(404, {"error": "no such user"})
            return self.send_json(200, {"id": uid, "name": f"user {uid}"})
        if p.startswith("/api/admin/"):
            return self.send_json(403, {"error": "forbidden"})
        if p == "/api/search":
            return self.send_json(200, {"results": []})
        if p == "/api/profile":
            if mode == "full":
                return self.send_json(200, {"name": "Ada Lovelace", "email": "ada@example.com",
                                            "card": "4111 1111 1111 1111",
                                            "aws_key": "AKIAIOSFODNN7EXAMPLE"})
            return self.send_json(200, {"name": "Ada Lovelace", "email": "a***@***",
                                        "card": "**** **** **** 1111"})
        if p == "/internal/debug":
            return self.send_json(200, {"threads": 8, "uptime_s": 1234})
        if p == "/api/legacy/report":
            return self.send_json(200, {"report": "legacy"})
        if p in ("/v1/orders", "/v2/orders"):
            return self.send_json(200, {"orders": [1, 2, 3]})
        if p == "/api/partner/orders":
            return self.send_json(200, {"orders": [7]})
        # Baseline endpoints: their `mode` decides the departure.
        if p == "/api/flaky":
            return self.send_json(500 if mode == "fail" else 200, {"ok": mode != "fail"})
        if p == "/api/items":
            return self.send_json(400 if mode == "bad" else 200, {"ok": mode != "bad"})
        if p == "/api/slow":
            time.sleep(0.4 if mode == "slow" else 0.005)
            return self.send_json(200, {"ok": True})
        if p == "/api/report":
            rows = 1500 if mode == "big" else 20
            return self.send_json(200, {"rows": [{"n": i, "v": "x" * 40} for i in range(rows)]})
        if p == "/api/rate":
            return self.send_json(200, {"ok": True})
        # Objects named by ids of every shape, and files named by free-form slugs
        # (endpoint-shapes): any name is found.
        if len(parts) == 4 and parts[1:3] == ["api", "things"]:
            return self.send_json(200, {"thing": urllib.parse.unquote(parts[3])})
        if len(parts) == 5 and parts[1:3] == ["api", "files"] and parts[4] == "meta":
            return self.send_json(200, {"file": parts[3], "size": 123})
        return self.send_json(404, {"error": "not found"})

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")


if __name__ == "__main__":
    address = sys.argv[1]
    if not address.startswith("127."):
        sys.exit("api_server.py: loopback addresses only")
    Server((address, int(sys.argv[2])), Handler).serve_forever()
