#!/usr/bin/env python3
"""A small SOCKS proxy for scripts/make-socks-fixtures.sh (standard library only, asyncio).

    socks_server.py ADDR PORT LOGFILE [NAME=IP ...]

Speaks SOCKS4 (CONNECT), SOCKS4a (a domain name after the user id, DSTIP 0.0.0.x) and
SOCKS5 (RFC 1928) with method 0x00 (no authentication) and 0x02 username/password
(RFC 1929: only alice / s3cret is accepted, anything else gets status 0x01 and the
connection is closed). SOCKS5 address types IPv4, domain name and IPv6; CONNECT only
(other commands: REP 0x07). When a client offers both 0x00 and 0x02 the proxy picks 0x02.

Domain names are looked up in the NAME=IP pairs first (e.g. api.test=10.79.0.1: the
fixture namespaces have no DNS), then with getaddrinfo.

A refused destination answers SOCKS5 REP 0x05 / SOCKS4 0x5B; a name that does not resolve,
REP 0x04 / 0x5B. After a successful reply bytes are relayed both ways; an end of stream on
one side is passed on as a half-close, and the connection ends when both sides are done.

LOGFILE gets one line per CONNECT request as it is answered (and one per refused
username/password, with - - for the destination it never asked for):
    <version> <auth> <dest_host> <dest_port> <result>
version: socks4, socks4a, socks5; auth: none, userid (SOCKS4 with a non-empty user id),
userpass; result: ok, refused, unreachable, failed, auth-failed, unsupported-command,
unsupported-atyp.   e.g.  socks5 userpass api.test 8080 ok
"""
import asyncio
import errno
import ipaddress
import socket
import struct
import sys

USERS = {"alice": "s3cret"}


class Proxy:
    def __init__(self, logfile, hosts):
        self.log = open(logfile, "a", buffering=1)
        self.hosts = hosts

    def record(self, version, auth, host, port, result):
        self.log.write(f"{version} {auth} {host} {port} {result}\n")

    async def resolve(self, host, port):
        if host in self.hosts:
            return self.hosts[host]
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return infos[0][4][0]

    async def dial(self, host, port):
        """Returns (reader, writer, None) or (None, None, result) with result one of
        refused, unreachable, failed."""
        try:
            ip = await self.resolve(host, port)
        except (OSError, UnicodeError):
            return None, None, "unreachable"
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(ip, port), 10)
            return r, w, None
        except ConnectionRefusedError:
            return None, None, "refused"
        except OSError as e:
            if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                return None, None, "unreachable"
            return None, None, "failed"
        except asyncio.TimeoutError:
            return None, None, "unreachable"

    async def handle(self, reader, writer):
        try:
            first = await reader.readexactly(1)
            if first == b"\x04":
                up = await self.socks4(reader, writer)
            elif first == b"\x05":
                up = await self.socks5(reader, writer)
            else:
                up = None
            if up is not None:
                await relay(reader, writer, *up)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def socks4(self, reader, writer):
        cd, port = struct.unpack("!BH", await reader.readexactly(3))
        ip = await reader.readexactly(4)
        userid = (await reader.readuntil(b"\x00"))[:-1]
        version, auth = "socks4", ("userid" if userid else "none")
        if ip[:3] == b"\x00\x00\x00" and ip[3] != 0:
            version = "socks4a"
            host = (await reader.readuntil(b"\x00"))[:-1].decode("idna")
        else:
            host = str(ipaddress.IPv4Address(ip))
        if cd != 1:
            self.record(version, auth, host, port, "unsupported-command")
            writer.write(b"\x00\x5b" + bytes(6))
            await writer.drain()
            return None
        r, w, err = await self.dial(host, port)
        if err:
            self.record(version, auth, host, port, err)
            writer.write(b"\x00\x5b" + bytes(6))
            await writer.drain()
            return None
        self.record(version, auth, host, port, "ok")
        writer.write(b"\x00\x5a" + struct.pack("!H", port) + ip)
        await writer.drain()
        return r, w

    async def socks5(self, reader, writer):
        (n,) = await reader.readexactly(1)
        methods = await reader.readexactly(n)
        if 0x02 in methods:
            auth = "userpass"
            writer.write(b"\x05\x02")
            await writer.drain()
            ver, ulen = await reader.readexactly(2)
            user = (await reader.readexactly(ulen)).decode("utf-8", "replace")
            (plen,) = await reader.readexactly(1)
            password = (await reader.readexactly(plen)).decode("utf-8", "replace")
            if ver != 1 or USERS.get(user) != password:
                self.record("socks5", auth, "-", "-", "auth-failed")
                writer.write(b"\x01\x01")
                await writer.drain()
                return None
            writer.write(b"\x01\x00")
        elif 0x00 in methods:
            auth = "none"
            writer.write(b"\x05\x00")
        else:
            writer.write(b"\x05\xff")
            await writer.drain()
            return None
        await writer.drain()

        ver, cmd, _rsv, atyp = await reader.readexactly(4)
        if atyp == 1:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif atyp == 3:
            (hl,) = await reader.readexactly(1)
            host = (await reader.readexactly(hl)).decode("idna")
        elif atyp == 4:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        else:
            self.record("socks5", auth, "-", "-", "unsupported-atyp")
            writer.write(reply5(0x08))
            await writer.drain()
            return None
        (port,) = struct.unpack("!H", await reader.readexactly(2))
        if cmd != 1:
            self.record("socks5", auth, host, port, "unsupported-command")
            writer.write(reply5(0x07))
            await writer.drain()
            return None
        r, w, err = await self.dial(host, port)
        if err:
            self.record("socks5", auth, host, port, err)
            writer.write(reply5({"refused": 0x05, "unreachable": 0x04}.get(err, 0x01)))
            await writer.drain()
            return None
        self.record("socks5", auth, host, port, "ok")
        bound = w.get_extra_info("sockname")
        writer.write(reply5(0x00, bound[0], bound[1]))
        await writer.drain()
        return r, w


def reply5(rep, addr="0.0.0.0", port=0):
    ip = ipaddress.ip_address(addr)
    atyp = 1 if ip.version == 4 else 4
    return bytes([5, rep, 0, atyp]) + ip.packed + struct.pack("!H", port)


async def pump(src, dst):
    try:
        while True:
            data = await src.read(65536)
            if not data:
                break
            dst.write(data)
            await dst.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if dst.can_write_eof():
                dst.write_eof()
        except (ConnectionError, OSError, RuntimeError):
            pass


async def relay(creader, cwriter, ureader, uwriter):
    try:
        await asyncio.gather(pump(creader, uwriter), pump(ureader, cwriter))
    finally:
        uwriter.close()


async def main():
    addr, port, logfile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    hosts = dict(a.split("=", 1) for a in sys.argv[4:])
    proxy = Proxy(logfile, hosts)
    server = await asyncio.start_server(proxy.handle, addr, port, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
