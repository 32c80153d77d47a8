"""Raw socket clients for scripts/make-shape-fixtures.sh: the message shapes and smuggling
indicators no well-behaved client library sends. Connects to 127.0.0.1 only.

usage: python3 scripts/shape_client.py CASE PORT

Every indicator case sends, in one write, the odd request followed by a clean
`GET /v1/after` on the same connection, then reads until the server closes or is quiet for
half a second.
"""
import base64
import os
import socket
import sys

CLEAN = b"GET /v1/after HTTP/1.1\r\nHost: shapes.test\r\nUser-Agent: shape-client/1\r\n\r\n"
UA = b"User-Agent: shape-client/1\r\n"


def indicator(first):
    return first + CLEAN


CASES = {
    # Content-Length and Transfer-Encoding: chunked together (CL.TE / TE.CL smuggling).
    "cl-te": indicator(
        b"POST /v1/upload HTTP/1.1\r\nHost: shapes.test\r\n" + UA
        + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"5\r\nhello\r\n0\r\n\r\n"
    ),
    # The same Content-Length twice.
    "dup-cl-equal": indicator(
        b"POST /v1/upload HTTP/1.1\r\nHost: shapes.test\r\n" + UA
        + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"
    ),
    # Two different Content-Lengths.
    "dup-cl-differ": indicator(
        b"POST /v1/upload HTTP/1.1\r\nHost: shapes.test\r\n" + UA
        + b"Content-Length: 5\r\nContent-Length: 7\r\n\r\nhello"
    ),
    # A chunk size that is not hex.
    "invalid-chunk": indicator(
        b"POST /v1/upload HTTP/1.1\r\nHost: shapes.test\r\n" + UA
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"zz\r\nhello\r\n0\r\n\r\n"
    ),
    # Line ends without CR.
    "bare-lf": indicator(
        b"GET /v1/bare-lf HTTP/1.1\nHost: shapes.test\nUser-Agent: shape-client/1\n\n"
    ),
    # Whitespace between a field name and its colon.
    "ws-colon": indicator(
        b"POST /v1/upload HTTP/1.1\r\nHost: shapes.test\r\n" + UA
        + b"Content-Length : 5\r\n\r\nhello"
    ),
    # Field names with characters a token may not hold.
    "bad-header-name": indicator(
        b"GET /v1/bad-name HTTP/1.1\r\nHost: shapes.test\r\n" + UA
        + b"X@Bad{Name}: 1\r\nX-Good: 2\r\n\r\n"
    ),
    # obs-fold: a field value continued on the next line.
    "obs-fold": indicator(
        b"GET /v1/folded HTTP/1.1\r\nHost: shapes.test\r\n" + UA
        + b"X-Folded: first part\r\n  second part\r\nAccept: */*\r\n\r\n"
    ),
    # A 5 KB head (nginx accepts it; the test lowers http.max_head_bytes below it).
    "oversize-head": indicator(
        b"GET /v1/big-head HTTP/1.1\r\nHost: shapes.test\r\n" + UA
        + b"".join(b"X-Pad-%02d: %s\r\n" % (i, b"p" * 240) for i in range(20))
        + b"\r\n"
    ),
}


def read_all(s, want_responses=None):
    s.settimeout(0.5)
    data = b""
    try:
        while want_responses is None or data.count(b"HTTP/1.1 ") < want_responses:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    return data


def pipeline(port, n=50):
    reqs = b"".join(
        b"GET /v1/items/%d HTTP/1.1\r\nHost: shapes.test\r\n%s\r\n" % (i, UA) for i in range(n)
    )
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(reqs)
        data = read_all(s, n)
    print(data.count(b"HTTP/1.1 200 "), "responses", file=sys.stderr)


def websocket(port):
    key = base64.b64encode(os.urandom(16))
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(
            b"GET /ws HTTP/1.1\r\nHost: shapes.test\r\n" + UA
            + b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            + b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        mask = b"\x01\x02\x03\x04"
        payload = b"GET /v1/in-the-tunnel HTTP/1.1"
        masked = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
        s.settimeout(2)
        echo = s.recv(4096)
        s.sendall(b"\x88\x82" + mask + bytes(c ^ mask[i] for i, c in enumerate(b"\x03\xe8")))
        read_all(s)
    print("websocket echo", echo[:40], file=sys.stderr)


def main():
    case, port = sys.argv[1], int(sys.argv[2])
    if case == "pipeline":
        pipeline(port)
    elif case == "websocket":
        websocket(port)
    else:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(CASES[case])
            data = read_all(s)
        print(case, port, [l for l in data.split(b"\r\n") if l.startswith(b"HTTP/")], file=sys.stderr)


if __name__ == "__main__":
    main()
