#!/usr/bin/env python3
"""Builds fixtures/encap/*.pcap from real captures (python3 standard library only).

Every frame of fixtures/pyhttp/pyhttp.pcap (python3 http.server + curl over IPv4) is wrapped
in one encapsulation per output file, keeping its timestamp; IPv6 sources come from
fixtures/nginx/nginx-ipv6.pcap (curl over [::1]). The IPv4/IPv6 fragment fixtures cut every
TCP packet's IP payload into pieces (in order, and in reverse order). Teredo carries the
IPv6 capture with its addresses moved to a Teredo client (2001:0::/32) and a native peer;
teredo-plain.pcap is that conversation unwrapped, to compare with. The kernel's own VXLAN
captures come from scripts/make-vxlan-fixtures.sh.

    python3 scripts/make-encap-fixtures.py      # rewrites fixtures/encap/
"""

import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fixtures", "encap")

OUTER_SRC = bytes([192, 0, 2, 1])
OUTER_DST = bytes([192, 0, 2, 2])
OUTER_MACS = bytes.fromhex("020000000002" "020000000001")


def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic == b"\xd4\xc3\xb2\xa1":
        e = "<"
    elif magic == b"\xa1\xb2\xc3\xd4":
        e = ">"
    else:
        sys.exit(f"{path}: not a microsecond pcap")
    linktype = struct.unpack(e + "I", data[20:24])[0]
    if linktype != 1:
        sys.exit(f"{path}: link type {linktype}, want Ethernet")
    frames, pos = [], 24
    while pos + 16 <= len(data):
        sec, usec, incl, orig = struct.unpack(e + "IIII", data[pos : pos + 16])
        frames.append((sec, usec, data[pos + 16 : pos + 16 + incl]))
        pos += 16 + incl
    return frames


def write_pcap(name, frames, linktype=1):
    path = os.path.join(OUT, name)
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        for sec, usec, frame in frames:
            f.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)))
            f.write(frame)
    print(f"{path}: {len(frames)} frames, {os.path.getsize(path)} bytes")


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


_ids = [0x1000]


def ipv4(proto, payload, src=OUTER_SRC, dst=OUTER_DST):
    _ids[0] = (_ids[0] + 1) & 0xFFFF
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), _ids[0], 0, 64, proto, 0, src, dst)
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def eth(ether_type, payload, macs=OUTER_MACS):
    return macs + struct.pack("!H", ether_type) + payload


def vlan_eth(vid, ether_type, payload):
    return OUTER_MACS + struct.pack("!HHH", 0x8100, vid, ether_type) + payload


def udp(sport, dport, payload):
    # Checksum 0: allowed over IPv4 (and what Linux VXLAN sends by default).
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def gre(proto, payload, checksum=False, key=None, seq=None):
    flags = (0x80 if checksum else 0) | (0x20 if key is not None else 0) | (0x10 if seq is not None else 0)
    h = struct.pack("!BBH", flags, 0, proto)
    opts = b""
    if checksum:
        opts += b"\0\0\0\0"
    if key is not None:
        opts += struct.pack("!I", key)
    if seq is not None:
        opts += struct.pack("!I", seq)
    out = h + opts + payload
    if checksum:
        c = csum(out)
        out = out[:4] + struct.pack("!H", c) + out[6:]
    return out


def erspan2(session, index, frame, vlan=0):
    # Ver 1, VLAN, CoS 0, En (2: 802.1Q encapsulated when a VLAN is given), T 0, session id;
    # reserved, index.
    en = 2 if vlan else 0
    return struct.pack("!HHI", 0x1000 | vlan, (en << 11) | (session & 0x3FF), index & 0xFFFFF) + frame


def erspan3(session, ts, frame, vlan=0, frame_type=0):
    # Ver 2, VLAN, CoS/BSO/T 0, session id; timestamp; SGT 0; P 0, FT (0 Ethernet, 2 IP),
    # HW id 1, D 0, Gra 1 (100 us), O 1; then the 8-byte platform subheader (type 3).
    word3 = struct.pack("!HBB", 0, (frame_type << 2) | (1 >> 4), ((1 & 0xF) << 4) | (1 << 1) | 1)
    platform = struct.pack("!II", (3 << 26) | 0x12345, ts & 0xFFFFFFFF)
    return struct.pack("!HHI", 0x2000 | vlan, session & 0x3FF, ts & 0xFFFFFFFF) + word3 + platform + frame


def gtpu(teid, ip, ext=False):
    """A GTP-U G-PDU (GTPv1, PT 1) carrying `ip`; with `ext`, the sequence/N-PDU word and
    a PDU session container extension header (type 0x85, one 4-byte word, QFI 9)."""
    flags = 0x30
    opt = b""
    if ext:
        flags |= 0x04
        opt = struct.pack("!HBB", 0, 0, 0x85) + bytes([1, 0x10, 0x09, 0])
    return struct.pack("!BBHI", flags, 0xFF, len(opt) + len(ip), teid) + opt + ip


def vxlan_gpe(vni, next_protocol, payload):
    # Flags: version 0, I and P set; next protocol (1 IPv4, 2 IPv6, 3 Ethernet).
    return struct.pack("!BBBBI", 0x0C, 0, 0, next_protocol, vni << 8) + payload


TEREDO_CLIENT = bytes.fromhex("20010000" "4136e378" "8000" "63bf" "3fff" "fdd2")
TEREDO_PEER = bytes.fromhex("2001db80000000000000000000000068")


def teredo_addresses(ip6):
    """The IPv6 packet with ::1 -> ::1 turned into client -> peer by the TCP port (nginx
    listens on 8080); the TCP checksum is recomputed."""
    sport, dport = struct.unpack("!HH", ip6[40:44])
    src, dst = (TEREDO_CLIENT, TEREDO_PEER) if dport == 8080 else (TEREDO_PEER, TEREDO_CLIENT)
    tcp = bytearray(ip6[40:])
    tcp[16:18] = b"\0\0"
    pseudo = src + dst + struct.pack("!IxxxB", len(tcp), 6)
    tcp[16:18] = struct.pack("!H", csum(pseudo + bytes(tcp)))
    return ip6[:8] + src + dst + bytes(tcp)


def teredo_indicators(to_client, first):
    """Origin indicator (client's obfuscated port and address) on packets to the client; the
    first one also carries an authentication indicator (client id "c1", 2-byte value)."""
    out = b""
    if to_client and first:
        out += struct.pack("!BBBB", 0, 1, 2, 2) + b"c1" + b"\xaa\xbb" + b"\x01" * 8 + b"\0"
    if to_client:
        out += struct.pack("!HH4s", 0, 51000 ^ 0xFFFF, bytes(b ^ 0xFF for b in OUTER_SRC))
    return out


def nflog(ip, family, big_endian):
    """An NFLOG record: packet header, prefix and payload attributes (length and type in
    the capturing host's byte order, here little- or big-endian)."""
    e = ">" if big_endian else "<"

    def tlv(kind, value):
        body = struct.pack(e + "HH", 4 + len(value), kind) + value
        return body + b"\0" * (-len(body) % 4)

    hwproto = 0x0800 if family == 2 else 0x86DD
    return (
        struct.pack("!BBH", family, 0, 5)
        + tlv(1, struct.pack("!HBx", hwproto, 3))
        + tlv(10, b"apitap\0")
        + tlv(9, ip)
    )


def vxlan(vni, frame):
    return struct.pack("!II", 0x08000000, vni << 8) + frame


def geneve(vni, frame):
    # One 8-byte option (class 0x0101, type 0x01, 4 bytes of data): option length 2 words.
    opt = struct.pack("!HBB", 0x0101, 0x01, 1) + b"\xde\xad\xbe\xef"
    return struct.pack("!BBHI", len(opt) // 4, 0, 0x6558, vni << 8) + opt + frame


def wlan(frame, to_ds):
    """The Ethernet frame as an 802.11 QoS data frame (to or from the distribution
    system, by direction) with LLC/SNAP, addresses from its MACs."""
    dst, src, et = frame[0:6], frame[6:12], frame[12:14]
    bssid = bytes.fromhex("02aabbccddee")
    fc = bytes([0x88, 0x01 if to_ds else 0x02])
    # ToDS: BSSID, SA, DA; FromDS: DA, BSSID, SA.
    addrs = bssid + src + dst if to_ds else dst + bssid + src
    header = fc + b"\0\0" + addrs + b"\0\0" + b"\0\0"
    return header + bytes([0xAA, 0xAA, 0x03, 0, 0, 0]) + et + frame[14:]


def radiotap(wlan_frame):
    """A radiotap header with flags (FCS at end), rate and channel, then the 802.11 frame
    and a (dummy) frame check sequence."""
    present = (1 << 1) | (1 << 2) | (1 << 3)
    fields = bytes([0x10, 0x0C]) + struct.pack("<HH", 5180, 0x0140)
    header = struct.pack("<BBHI", 0, 0, 8 + len(fields), present) + fields
    return header + wlan_frame + b"\xde\xad\xbe\xef"


def sport_for(frame):
    # Source port from a hash of the inner frame's addresses, as VXLAN/GENEVE senders do.
    return 49152 + (sum(frame[26:38]) % 16384)


def ip_of(frame):
    ether_type = struct.unpack("!H", frame[12:14])[0]
    return ether_type, frame[14:]


def cuts(n, size, first=None):
    """Fragment boundaries for n bytes: `first` bytes, then `size` (a multiple of 8), grown
    so that no datagram has more than 32 fragments (apitap's default limit is 64)."""
    while n / size > 32:
        size *= 2
    offs = [0]
    if first is not None and first < n:
        offs.append(first)
    while offs[-1] + size < n:
        offs.append(offs[-1] + size)
    return [(a, b) for a, b in zip(offs, offs[1:] + [n])]


def frag4(frame, size, reverse, first=None):
    """IPv4 fragments of `frame` (IP payload cut every `size` bytes), as Ethernet frames."""
    et, ip = ip_of(frame)
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    data = ip[ihl:total]
    if et != 0x0800 or len(data) <= size:
        return [frame]
    out = []
    for off, end in cuts(len(data), size, first):
        chunk = data[off:end]
        more = end < len(data)
        h = bytearray(ip[:ihl])
        h[2:4] = struct.pack("!H", ihl + len(chunk))
        h[6:8] = struct.pack("!H", (0x2000 if more else 0) | (off // 8))  # DF cleared
        h[10:12] = b"\0\0"
        h[10:12] = struct.pack("!H", csum(bytes(h)))
        out.append(frame[:14] + bytes(h) + chunk)
    return out[::-1] if reverse else out


_frag_ids = [0x5000]


def frag6(frame, size, reverse):
    """IPv6 fragments (fragment header after the fixed header) of `frame`."""
    et, ip = ip_of(frame)
    plen = struct.unpack("!H", ip[4:6])[0]
    data = ip[40 : 40 + plen]
    if et != 0x86DD or len(data) <= size:
        return [frame]
    _frag_ids[0] += 1
    nh = ip[6]
    out = []
    for off, end in cuts(len(data), size):
        chunk = data[off:end]
        more = end < len(data)
        h = bytearray(ip[:40])
        h[4:6] = struct.pack("!H", 8 + len(chunk))
        h[6] = 44
        fh = struct.pack("!BBHI", nh, 0, (off // 8) << 3 | (1 if more else 0), _frag_ids[0])
        out.append(frame[:14] + bytes(h) + fh + chunk)
    return out[::-1] if reverse else out


def main():
    os.makedirs(OUT, exist_ok=True)
    v4 = read_pcap(os.path.join(ROOT, "fixtures", "pyhttp", "pyhttp.pcap"))
    v6 = read_pcap(os.path.join(ROOT, "fixtures", "nginx", "nginx-ipv6.pcap"))

    def each(frames, wrap):
        return [(s, u, wrap(i, f)) for i, (s, u, f) in enumerate(frames)]

    def ip_only(frame):
        et, ip = ip_of(frame)
        assert et in (0x0800, 0x86DD), hex(et)
        return et, ip

    write_pcap(
        "gre.pcap",
        each(v4, lambda i, f: eth(0x0800, ipv4(47, gre(ip_only(f)[0], ip_only(f)[1], checksum=True, key=1234, seq=i)))),
    )
    write_pcap(
        "gre-teb.pcap",
        each(v4, lambda i, f: eth(0x0800, ipv4(47, gre(0x6558, f)))),
    )
    write_pcap(
        "erspan2.pcap",
        each(v4, lambda i, f: eth(0x0800, ipv4(47, gre(0x88BE, erspan2(100, i, f), seq=i)))),
    )
    write_pcap(
        "erspan3.pcap",
        each(v4, lambda i, f: eth(0x0800, ipv4(47, gre(0x22EB, erspan3(200, i * 1000, f), seq=i)))),
    )
    write_pcap(
        "vxlan.pcap",
        each(v4, lambda i, f: eth(0x0800, ipv4(17, udp(sport_for(f), 4789, vxlan(1234, f))))),
    )
    write_pcap(
        "geneve.pcap",
        each(v4, lambda i, f: eth(0x0800, ipv4(17, udp(sport_for(f), 6081, geneve(5678, f))))),
    )
    write_pcap(
        "ipip.pcap",
        each(v4, lambda i, f: eth(0x0800, ipv4(4, ip_only(f)[1]))),
    )
    write_pcap(
        "ip6in4.pcap",
        each(v6, lambda i, f: eth(0x0800, ipv4(41, ip_only(f)[1]))),
    )
    write_pcap(
        "vlan-vxlan.pcap",
        each(v4, lambda i, f: vlan_eth(100, 0x0800, ipv4(17, udp(sport_for(f), 4789, vxlan(4321, f))))),
    )
    def to_ds(frame):
        # The client (pyhttp's curl) sends from port >= 1024 to the server's 8000.
        return struct.unpack("!H", ip_of(frame)[1][22:24])[0] == 8000

    write_pcap("wlan.pcap", each(v4, lambda i, f: wlan(f, to_ds(f))), linktype=105)
    write_pcap(
        "wlan-radiotap.pcap",
        each(v4, lambda i, f: radiotap(wlan(f, to_ds(f)))),
        linktype=127,
    )
    write_pcap(
        "gre-udp.pcap",
        each(v4, lambda i, f: eth(0x0800, ipv4(17, udp(sport_for(f), 4754, gre(ip_only(f)[0], ip_only(f)[1], key=77))))),
    )
    write_pcap(
        "erspan1.pcap",
        each(v4, lambda i, f: eth(0x0800, ipv4(47, gre(0x88BE, f)))),
    )
    write_pcap(
        "erspan2-vlan.pcap",
        each(v4, lambda i, f: eth(0x0800, ipv4(47, gre(0x88BE, erspan2(101, i, f, vlan=42), seq=i)))),
    )
    write_pcap(
        "erspan3-ip.pcap",
        each(
            v4,
            lambda i, f: eth(0x0800, ipv4(47, gre(0x22EB, erspan3(201, i * 1000, ip_only(f)[1], vlan=43, frame_type=2), seq=i))),
        ),
    )
    write_pcap(
        "gtpu.pcap",
        each(v4, lambda i, f: eth(0x0800, ipv4(17, udp(2152, 2152, gtpu(0x1234ABCD, ip_only(f)[1], ext=True))))),
    )
    write_pcap(
        "gtpu-ipv6.pcap",
        each(v6, lambda i, f: eth(0x0800, ipv4(17, udp(2152, 2152, gtpu(0x00C0FFEE, ip_only(f)[1]))))),
    )
    write_pcap(
        "vxlan-gpe-ipv6.pcap",
        each(v6, lambda i, f: eth(0x0800, ipv4(17, udp(sport_for(f), 4790, vxlan_gpe(77, 2, ip_only(f)[1]))))),
    )
    write_pcap(
        "vxlan-gpe-eth.pcap",
        each(v4, lambda i, f: eth(0x0800, ipv4(17, udp(sport_for(f), 4790, vxlan_gpe(78, 3, f))))),
    )
    t6 = [(s, u, eth(0x86DD, teredo_addresses(ip_only(f)[1]))) for s, u, f in v6]
    write_pcap("teredo-plain.pcap", t6)

    def teredo(server_port):
        out = []
        for i, (s, u, f) in enumerate(t6):
            ip6 = ip_only(f)[1]
            to_client = ip6[24:40] == TEREDO_CLIENT
            # The client talks from 51000 to the server (3544) or a relay (any port).
            ports = (server_port, 51000) if to_client else (51000, server_port)
            payload = teredo_indicators(to_client, i < 3) + ip6
            src, dst = (OUTER_DST, OUTER_SRC) if to_client else (OUTER_SRC, OUTER_DST)
            out.append((s, u, eth(0x0800, ipv4(17, udp(*ports, payload), src=src, dst=dst))))
        return out

    write_pcap("teredo.pcap", teredo(3544))
    write_pcap("teredo-relay.pcap", teredo(40123))
    write_pcap("nflog.pcap", each(v4, lambda i, f: nflog(ip_only(f)[1], 2, False)), linktype=239)
    write_pcap("nflog-be-ipv6.pcap", each(v6, lambda i, f: nflog(ip_only(f)[1], 10, True)), linktype=239)
    write_pcap("chdlc.pcap", each(v4, lambda i, f: struct.pack("!BBH", 0x0F, 0, ip_of(f)[0]) + ip_of(f)[1]), linktype=104)
    for name, frames, cut, size in [
        ("frag4", v4, frag4, 64),
        ("frag6", v6, frag6, 96),
    ]:
        for reverse in (False, True):
            out = []
            for s, u, f in frames:
                out.extend((s, u, piece) for piece in cut(f, size, reverse))
            write_pcap(f"{name}{'-reversed' if reverse else ''}.pcap", out)
    # Tiny first fragments: the first holds 24 bytes, so the TCP header itself is split.
    out = []
    for s, u, f in v4:
        out.extend((s, u, piece) for piece in frag4(f, 24, False, first=24))
    write_pcap("frag4-tiny.pcap", out)


if __name__ == "__main__":
    main()
