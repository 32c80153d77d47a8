#!/usr/bin/env python3
"""Writes fixtures/pcapng/mixed-links.pcapng from fixtures/nginx/nginx-mixed.pcap.

What `dumpcap -i eth0 -i any` writes and libpcap refuses to read: one pcapng file whose
interfaces have different link types and snapshot lengths. Each TCP connection of the source
capture goes to one interface by its client port (Linux cooked v1 or Ethernet);
after the first 60% of the packets a second section starts with a new interface list (raw
IP with nanosecond times and a 1000 s if_tsoffset, and Ethernet). Three packets sit on an
interface of link type USER0 (147), which apitap does not decode, and an interface
statistics block is mixed in. The file replays to exactly the events of the source capture.

Deterministic: the same source gives the same bytes. Usage:
    python3 scripts/make-pcapng-fixtures.py
"""
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "fixtures/nginx/nginx-mixed.pcap"
OUT = ROOT / "fixtures/pcapng/mixed-links.pcapng"

ETHERNET, RAW, LINUX_SLL, USER0 = 1, 101, 113, 147


def read_pcap(path):
    data = path.read_bytes()
    magic, = struct.unpack_from("<I", data, 0)
    assert magic == 0xA1B2C3D4, "a little-endian microsecond pcap"
    link, = struct.unpack_from("<I", data, 20)
    assert link == ETHERNET
    off, out = 24, []
    while off < len(data):
        sec, usec, caplen, wire = struct.unpack_from("<IIII", data, off)
        out.append((sec, usec, data[off + 16:off + 16 + caplen], wire))
        off += 16 + caplen
    return out


def block(kind, body):
    body += b"\0" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack("<II", kind, n) + body + struct.pack("<I", n)


def option(code, value):
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def shb():
    return block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(link, snaplen, tsresol=None, tsoffset=None):
    opts = b""
    if tsresol is not None:
        opts += option(9, bytes([tsresol]))
    if tsoffset is not None:
        opts += option(14, struct.pack("<q", tsoffset))
    if opts:
        opts += option(0, b"")
    return block(1, struct.pack("<HHI", link, 0, snaplen) + opts)


def epb(if_id, units, frame, wire):
    return block(6, struct.pack("<IIIII", if_id, units >> 32, units & 0xFFFFFFFF,
                                len(frame), wire) + frame)


def isb(if_id, units):
    return block(5, struct.pack("<III", if_id, units >> 32, units & 0xFFFFFFFF))


def as_link(link, frame):
    """The Ethernet frame re-framed for `link` (same IP packet)."""
    if link == ETHERNET:
        return frame
    if link == RAW:
        return frame[14:]
    # Linux cooked v1: packet type (0: to us), ARPHRD_LOOPBACK, address length 6, the
    # source MAC padded to 8, the EtherType.
    return struct.pack(">HHH", 0, 772, 6) + frame[6:12] + b"\0\0" + frame[12:14] + frame[14:]


def main():
    packets = read_pcap(SOURCE)
    split = len(packets) * 6 // 10
    out = bytearray()
    # Section 1: 0 Ethernet (microseconds), 1 Linux cooked (nanoseconds), 2 USER0.
    out += shb()
    out += idb(ETHERNET, 65535)
    out += idb(LINUX_SLL, 262144, tsresol=9)
    out += idb(USER0, 128)
    section1 = {1: (0, ETHERNET, 10**6, 0), 0: (1, LINUX_SLL, 10**9, 0)}
    # Section 2: 0 raw IP (nanoseconds, 1000 s offset), 1 Ethernet.
    section2 = {0: (0, RAW, 10**9, 1000), 1: (1, ETHERNET, 10**6, 0)}
    for i, (sec, usec, frame, wire) in enumerate(packets):
        if i == split:
            out += shb()
            out += idb(RAW, 65535, tsresol=9, tsoffset=1000)
            out += idb(ETHERNET, 65535)
        client_port = max(struct.unpack_from(">HH", frame, 14 + 20))
        # Linux picks even ephemeral ports for connect(): split on the next bit.
        if_id, link, units, offset = (section1 if i < split else section2)[client_port // 2 % 2]
        ticks = ((sec - offset) * 10**6 + usec) * units // 10**6
        body = as_link(link, frame)
        out += epb(if_id, ticks, body, wire - (len(frame) - len(body)))
        if i < split and i % 40 == 7:
            out += epb(2, ticks, b"not decoded" * 3, 33)
        if i == split // 2:
            out += isb(0, ticks)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(bytes(out))
    print(f"{OUT.relative_to(ROOT)}: {len(packets)} packets, {len(out)} bytes")


if __name__ == "__main__":
    main()
