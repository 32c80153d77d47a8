"""A TLS client on Python's ssl module that writes a key log: used by
scripts/make-tls-fixtures.sh for the connections curl cannot make (TLS 1.0).

    tls_client.py HOST PORT SNI KEYLOG VERSION CIPHERS PATH...

VERSION is 1.0, 1.1, 1.2 or 1.3; CIPHERS an OpenSSL cipher string ('' keeps the
default). Sends one keep-alive GET per PATH on one connection and reads each answer.
"""
import socket
import ssl
import sys

host, port, sni, keylog, version, ciphers, *paths = sys.argv[1:]
versions = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.keylog_filename = keylog
ctx.minimum_version = versions[version]
ctx.maximum_version = versions[version]
ctx.set_ciphers((ciphers or "DEFAULT") + ":@SECLEVEL=0")
with socket.create_connection((host, int(port))) as raw:
    with ctx.wrap_socket(raw, server_hostname=sni) as s:
        for i, path in enumerate(paths):
            last = i == len(paths) - 1
            conn = "close" if last else "keep-alive"
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: {conn}\r\n\r\n".encode())
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            head, _, body = buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            while len(body) < length:
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
