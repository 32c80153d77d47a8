#!/usr/bin/env bash
# Regenerates fixtures/socks: HTTP and HTTPS through a SOCKS proxy, between two network
# namespaces joined by a veth pair (scripts/lib/socks-pair.sh), captured by tcpdump in the
# server's namespace with segmentation offload off. scripts/socks_server.py (SOCKS4, 4a and
# 5, RFC 1929 username/password alice / s3cret) listens on 10.79.0.1:1080 and reaches
# nginx (fixtures/socks/nginx-socks.conf: HTTP/1.1 on 10.79.0.1:8080 and [fd79::1]:8080,
# TLS for api.test on 10.79.0.1:8443) over the server namespace's loopback, so the capture
# (tcp port 1080) holds only client<->proxy connections:
#   socks.pcap     one connection per curl below, in this order:
#       --socks4 with --resolve (SOCKS4, IPv4 destination) GET /api/users
#       --socks4a (the proxy resolves api.test) GET /api/users/1
#       --socks5 with --resolve (ATYP IPv4) GET /api/users/2
#       --socks5 with --resolve, a JSON POST /api/items (201)
#       --socks5-hostname (ATYP domain) GET /api/users/3
#       socks5h://alice:s3cret@ (method 0x02, RFC 1929) GET /api/users/4
#       socks5h://alice:wrong@ (refused: auth status 0x01, curl fails; no HTTP)
#       --socks5 to 10.79.0.1:9 (nothing listens: REP 0x05, curl fails; no HTTP)
#       --socks5-hostname to https://api.test:8443/api/users (-k: TLS inside the tunnel)
#       --socks5 with --resolve, two GETs on one connection (/api/users/5, /api/users/6)
#       --socks5 to http://[fd79::1]:8080/api/users/7 (ATYP IPv6)
#   socks.access.log   nginx's log of those requests, in the format
#       $request_method $request_uri $status $body_bytes_sent $content_length $server_protocol
#   socks.server.log   the proxy's log, one line per CONNECT (and per refused password):
#       <version> <auth> <dest_host> <dest_port> <result>
# Timestamps and the TLS keys differ on every run.
# Needs root, iproute2, ethtool, nginx (1.22 made the fixtures), openssl, curl (7.88), python3,
# tcpdump, tshark. Traffic stays in the two namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fx=$root/fixtures/socks
mkdir -p "$fx"
source scripts/lib/socks-pair.sh
socks_pair

# libpcap's immediate-mode ring has one slot per snapshot length; 2048 keeps every byte of
# the veth's frames (at most 1514 with offload off) and leaves room for bursts.
ip netns exec "$srv" tcpdump -i "$sdev" --immediate-mode -s 2048 -B 16384 -U -n -w "$work/socks.pcap" \
  tcp port 1080 2>"$work/tcpdump.log" &
tcpdump_pid=$!
sleep 1

P=$server:1080
H=http://api.test:8080
R=(--resolve "api.test:8080:$server" --resolve "api.test:8443:$server")
J=(-H 'Content-Type: application/json')
c() { ip netns exec "$cli" curl -sS --http1.1 -o /dev/null "$@" >/dev/null; }
# curl fails on purpose: the proxy refuses.
refused() { if ip netns exec "$cli" curl -s -o /dev/null "$@"; then echo "curl $*: succeeded" >&2; exit 1; fi; }
c --socks4 "$P" "${R[@]}" "$H/api/users"
c --socks4a "$P" "$H/api/users/1"
c --socks5 "$P" "${R[@]}" "$H/api/users/2"
c --socks5 "$P" "${R[@]}" "${J[@]}" --data '{"name":"widget","qty":3}' "$H/api/items"
c --socks5-hostname "$P" "$H/api/users/3"
c --proxy "socks5h://alice:s3cret@$P" "$H/api/users/4"
refused --proxy "socks5h://alice:wrong@$P" "$H/api/users/4"
refused --socks5 "$P" "http://$server:9/"
c -k --socks5-hostname "$P" "https://api.test:8443/api/users"
c --socks5 "$P" "${R[@]}" "$H/api/users/5" "$H/api/users/6"
c --socks5 "$P" "http://[$server6]:8080/api/users/7"
sleep 0.5
kill -INT "$tcpdump_pid"; wait "$tcpdump_pid" 2>/dev/null || true
if ! grep -q "^0 packets dropped by kernel" "$work/tcpdump.log"; then
  cat "$work/tcpdump.log" >&2; echo "socks: tcpdump dropped packets" >&2; exit 1
fi
if [ -n "$(tshark -r "$work/socks.pcap" -Y 'frame.cap_len < frame.len' -T fields -e frame.number 2>/dev/null)" ]; then
  echo "socks: truncated frames" >&2; exit 1
fi

cp "$work/socks.pcap" "$fx/socks.pcap"
cp "$log" "$fx/socks.access.log"
cp "$plog" "$fx/socks.server.log"
echo "fixtures/socks: $(wc -l < "$log") requests logged by nginx, $(wc -l < "$plog") lines by the proxy" >&2
ls -l "$fx/socks.pcap" >&2
