"""Clients for scripts/make-analytics-fixtures.sh: python's http.client over keep-alive
connections, each client bound to its own loopback address (127.0.0.N) so the sensor sees
distinct clients. Talks to 127.x.y.z only.

usage: python3 scripts/api_client.py SCENARIO PORT

Hosts: 127.0.0.1 the API, 127.0.0.2 the same API with a leaky banner, 127.0.1.1 and
127.0.1.2 "external" APIs. Clients: 127.0.0.10-19 normal, 127.0.0.101+ misbehaving,
127.0.2.0/24 a partner network.
"""
import http.client
import json
import sys
import threading
import time

PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 18080
T0 = time.time()
# The fleet capture: every client but the normal users (127.0.0.10-19) opens a new
# connection per request, so a split by connection spreads its requests over two sensors;
# the normal users authenticate (a bearer JWT, Basic, an opaque bearer token) so the
# inventory's auth schemes are compared too.
FRESH = False
FLEET_AUTH = [
    "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLW5vdC1yZWFs",
    "Basic dXNlcjpwYXNzd29yZA==",
    "Bearer opaque-session-token-1234",
]


class Client:
    def __init__(self, ip, host="127.0.0.1"):
        self.ip, self.host = ip, host
        self.conn = None
        last = int(ip.rsplit(".", 1)[1])
        normal = ip.startswith("127.0.0.") and 10 <= last <= 19
        self.fresh = FRESH and not normal
        self.auth = FLEET_AUTH[last % 3] if FRESH and normal else None

    def req(self, method, path, body=None, headers=None):
        for _ in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, PORT, timeout=10,
                                                       source_address=(self.ip, 0))
            try:
                h = {"User-Agent": "api-client/1.0", "Accept": "application/json"}
                if self.auth:
                    h["Authorization"] = self.auth
                h.update(headers or {})
                data = None
                if body is not None:
                    data = json.dumps(body).encode()
                    h["Content-Type"] = "application/json"
                self.conn.request(method, path, body=data, headers=h)
                r = self.conn.getresponse()
                r.read()
                if self.fresh:
                    self.close()
                return r.status
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
        raise SystemExit(f"{self.ip} -> {self.host}: {method} {path} failed")

    def get(self, path):
        return self.req("GET", path)

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None


def at(t):
    """Sleeps until `t` seconds after the start."""
    d = T0 + t - time.time()
    if d > 0:
        time.sleep(d)


def fresh_second():
    """Sleeps until just after a whole second (baseline buckets are whole seconds)."""
    time.sleep(1.02 - (time.time() % 1.0))


def steady(client, path, until, every=0.25):
    """One request every `every` seconds until `until` seconds after the start."""
    n = 0
    while time.time() < T0 + until:
        client.get(path if "?" in path or "{" not in path else path.format(n=n % 5 + 1))
        n += 1
        time.sleep(every)


def parallel(fns):
    ts = [threading.Thread(target=f) for f in fns]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


# ---- per-rule scenarios: NAME fires the rule, NAME-normal is the same endpoint used normally

def shadow():
    c = Client("127.0.0.101")
    c.get("/api/users")
    c.get("/internal/debug")


def shadow_normal():
    c = Client("127.0.0.10")
    c.get("/api/users")
    c.get("/api/users/3")


def deprecated():
    Client("127.0.0.102").get("/api/legacy/report")


def deprecated_normal():
    Client("127.0.0.10").get("/api/users")


def superseded():
    Client("127.0.0.103").get("/v1/orders")


def superseded_normal():
    Client("127.0.0.10").get("/v2/orders")


def drift():
    c = Client("127.0.0.104")
    c.get("/api/users/12")
    c.get("/api/users/13")


def drift_normal():
    c = Client("127.0.0.10")
    c.get("/api/users/12")
    c.get("/api/users/9999")


def login_burst():
    c = Client("127.0.0.105")
    for i in range(12):
        c.req("POST", "/api/login", {"user": f"user{i}", "password": "guess"})


def login_burst_normal():
    c = Client("127.0.0.10")
    c.req("POST", "/api/login", {"user": "ada", "password": "typo"})
    c.req("POST", "/api/login", {"user": "ada", "password": "correct horse"})


def auth_burst():
    c = Client("127.0.0.106")
    for i in range(25):
        c.get(f"/api/admin/page{i}")


def auth_burst_normal():
    c = Client("127.0.0.10")
    c.get("/api/admin/settings")
    c.get("/api/admin/users")


def bola():
    c = Client("127.0.0.107")
    for uid in range(100, 170):
        c.get(f"/api/users/{uid}")


def bola_normal():
    c = Client("127.0.0.10")
    for _ in range(10):
        c.get("/api/users/7")
        c.get("/api/users/8")


def endpoint_shapes():
    """One client walks objects named by ids of every shape (each fires an enumeration
    alert), asks for two fixed names a few times each (they stay literal), and walks 120
    free-form file names: after 50 distinct names the position is learned as `{param}`
    and the walk goes on under that template."""
    c = Client("127.0.0.120")
    shapes = {
        "id": lambda i: str(1000 + i),
        "uuid": lambda i: f"123e4567-e89b-42d3-a456-{i:012x}",
        "hex": lambda i: f"{0x9f86d081 + i:08x}",
        "token": lambda i: f"aGVsbG8gd29ybGQ{i:04d}Xy",
        "date": lambda i: f"2024-01-{1 + i % 28:02d}",
        "email": lambda i: f"user{i}%40example.com",
    }
    for make in shapes.values():
        for i in range(60):
            c.get(f"/api/things/{make(i)}")
    for _ in range(3):
        c.get("/api/things/me")
        c.get("/api/things/search")
    for i in range(120):
        c.get(f"/api/files/report-{chr(ord('a') + i % 26)}{i}/meta")


def url_secret():
    Client("127.0.0.108").get("/api/search?q=widgets&api_key=sk_live_51Habcdef0123456789")


def url_secret_normal():
    Client("127.0.0.10").get("/api/search?q=widgets&page=2")


def sensitive_request():
    Client("127.0.0.109").req("POST", "/api/payments",
                              {"card": "4111 1111 1111 1111", "email": "ada@example.com",
                               "amount": 5})


def sensitive_request_normal():
    Client("127.0.0.10").req("POST", "/api/payments", {"card_token": "tok_visa", "amount": 5})


def sensitive_response():
    Client("127.0.0.110").get("/api/profile?mode=full")


def sensitive_response_normal():
    Client("127.0.0.10").get("/api/profile")


def banner():
    Client("127.0.0.112", host="127.0.0.2").get("/api/users")


def banner_normal():
    Client("127.0.0.10").get("/api/users")


def baseline(path, anomaly):
    """6.5 s of steady use of `path` by two normal clients, then `anomaly` at a fresh
    second, then 2 s more steady use."""
    a, b = Client("127.0.0.10"), Client("127.0.0.11")
    parallel([lambda: steady(a, path, 6.5), lambda: steady(b, path, 6.5, 0.3)])
    if anomaly:
        fresh_second()
        anomaly()
    t = time.time() - T0
    parallel([lambda: steady(a, path, t + 2.2), lambda: steady(b, path, t + 2.2, 0.3)])


def rate_spike(normal=False):
    c = Client("127.0.0.113")
    baseline("/api/rate", None if normal else lambda: [c.get("/api/rate") for _ in range(100)])


def server_errors(normal=False):
    c = Client("127.0.0.114")
    baseline("/api/flaky",
             None if normal else lambda: [c.get("/api/flaky?mode=fail") for _ in range(12)])


def client_errors(normal=False):
    c = Client("127.0.0.115")
    baseline("/api/items",
             None if normal else lambda: [c.get("/api/items?mode=bad") for _ in range(12)])


def latency_spike(normal=False):
    slow = [Client("127.0.0.116") for _ in range(8)]
    baseline("/api/slow", None if normal else lambda: parallel(
        [lambda c=c: c.get("/api/slow?mode=slow") for c in slow]))


def size_jump(normal=False):
    c = Client("127.0.0.117")
    baseline("/api/report",
             None if normal else lambda: [c.get("/api/report?mode=big") for _ in range(3)])


def new_destination(normal=False):
    """Internal client: a known external API during learning (5 s), then a new one."""
    c, known = Client("127.0.0.10"), Client("127.0.0.10", host="127.0.1.1")
    steady(c, "/api/users", 2.5, 0.5)
    known.get("/api/users")
    at(6.0)
    if normal:
        known.get("/api/users")
    else:
        Client("127.0.0.111", host="127.0.1.2").get("/api/users")


def partner_endpoint(normal=False):
    p = Client("127.0.2.5")
    steady(p, "/api/partner/orders", 3.0, 0.5)
    at(6.0)
    p.get("/api/partner/orders" if normal else "/api/users")


def partner_auth(normal=False):
    """The partner logs in during learning, then (not normal) fails three times."""
    p = Client("127.0.2.6")
    steady(p, "/api/partner/orders", 3.0, 0.5)
    p.req("POST", "/api/login", {"user": "partner", "password": "correct horse"})
    at(6.0)
    if normal:
        p.req("POST", "/api/login", {"user": "partner", "password": "correct horse"})
    else:
        for _ in range(3):
            p.req("POST", "/api/login", {"user": "partner", "password": "expired"})


# ---- the mixed capture: normal clients throughout, one misbehaving client per rule

NORMAL_ROUTE = [
    ("GET", "/api/users"), ("GET", "/api/users/{own}"), ("GET", "/api/search?q=books"),
    ("GET", "/api/profile"), ("POST", "/api/login"), ("GET", "/v2/orders"),
    ("GET", "/api/rate"), ("GET", "/api/flaky"), ("GET", "/api/items"), ("GET", "/api/slow"),
    ("GET", "/api/report"), ("POST", "/api/payments"),
]


def normal_user(n, until):
    c = Client(f"127.0.0.{10 + n}")
    ext = Client(f"127.0.0.{10 + n}", host="127.0.1.1")
    k = n
    while time.time() < T0 + until:
        method, path = NORMAL_ROUTE[k % len(NORMAL_ROUTE)]
        path = path.replace("{own}", str(20 + n * 3 + k % 3))
        if method == "POST" and path == "/api/login":
            c.req("POST", path, {"user": f"user{n}", "password": "correct horse"})
        elif method == "POST":
            c.req("POST", path, {"card_token": "tok_visa", "amount": k})
        else:
            c.get(path)
        if k % 7 == 0:
            ext.get("/api/users")
        k += 1
        time.sleep(0.6)


def mixed():
    until = 15.0
    users = [lambda n=n: normal_user(n, until) for n in range(10)]
    partner = Client("127.0.2.5")

    def partner_normal():
        partner.req("POST", "/api/login", {"user": "partner", "password": "correct horse"})
        steady(partner, "/api/partner/orders", until, 0.6)

    def misuse():
        at(6.5)
        shadow()
        deprecated()
        superseded()
        drift()
        login_burst()
        auth_burst()
        bola()
        url_secret()
        sensitive_request()
        sensitive_response()
        banner()
        Client("127.0.0.111", host="127.0.1.2").get("/api/users")
        Client("127.0.2.7").get("/api/users")
        p = Client("127.0.2.6")
        for _ in range(3):
            p.req("POST", "/api/login", {"user": "partner", "password": "expired"})
        at(8.0)
        fresh_second()
        parallel([
            lambda: [c.get("/api/rate") for c in [Client("127.0.0.113")] for _ in range(100)],
            lambda: [c.get("/api/flaky?mode=fail") for c in [Client("127.0.0.114")]
                     for _ in range(12)],
            lambda: [c.get("/api/items?mode=bad") for c in [Client("127.0.0.115")]
                     for _ in range(12)],
            lambda: parallel([lambda c=c: c.get("/api/slow?mode=slow")
                              for c in [Client("127.0.0.116") for _ in range(8)]]),
            lambda: [c.get("/api/report?mode=big") for c in [Client("127.0.0.117")]
                     for _ in range(3)],
        ])

    parallel(users + [partner_normal, misuse])


def fleet():
    global FRESH
    FRESH = True
    mixed()


if __name__ == "__main__":
    name = sys.argv[1]
    normal = name.endswith("-normal")
    base = name[: -len("-normal")] if normal else name
    fn = globals().get(base.replace("-", "_"))
    if fn is None:
        sys.exit(f"unknown scenario {name}")
    import inspect
    if "normal" in inspect.signature(fn).parameters:
        fn(normal=normal)
    elif normal:
        globals()[base.replace("-", "_") + "_normal"]()
    else:
        fn()
