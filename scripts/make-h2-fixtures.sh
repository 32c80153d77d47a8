#!/usr/bin/env bash
# Regenerates fixtures/h2: HTTP/2 and gRPC between two network namespaces joined by a veth
# pair (scripts/lib/h2-pair.sh), captured by tcpdump in the server's namespace with
# segmentation offload off. nginx (fixtures/h2/nginx-h2.conf) speaks HTTP/2 by prior
# knowledge on 10.78.0.1:8080 and over TLS (ALPN h2) on 8443.
#   h2c.pcap, h2c.access.log           HTTP/2 by prior knowledge: nghttp (4 requests
#       multiplexed on one connection), h2load (4 one after another on one connection),
#       curl --http2-prior-knowledge (one request per connection: a JSON POST, a gzip
#       response with --compressed, a 404, a 40 KB file in several DATA frames, a HEAD),
#       h2load -n 60 -c 2 -m 20
#   h2-tls.pcap, h2-tls.keys, h2-tls.access.log   curl --http2 over TLS 1.3 and 1.2 with the
#       NSS key log (SSLKEYLOGFILE): several requests per connection, a JSON POST, gzip
#   grpc.pcap, grpc.server.log         scripts/grpc_client.py against scripts/grpc_server.py
#       (grpcio, cleartext h2c on 50051): unary OK / NOT_FOUND / UNAUTHENTICATED, a
#       trailers-only PERMISSION_DENIED, server, client and bidi streaming, a gzip call
#   rapid-reset.pcap, rapid-reset-normal.pcap   scripts/h2_attack.py against nginx: 200
#       HEADERS each followed at once by RST_STREAM(CANCEL); the same 200 requests answered
#   continuation-flood.pcap, settings-flood.pcap, ping-flood.pcap, h2-normal.pcap
#       300 CONTINUATION frames in a header block that never ends; 500 SETTINGS; 500 PINGs;
#       their normal twin: one connection, 20 requests one after another
#   hpack-bomb.pcap                    a request that puts a 4000-byte x-pad header in nginx's
#       HPACK dynamic table, then 10 header blocks of 230 bytes, each naming it 200 times
#   stream-abuse.pcap                  300 POST HEADERS that never send their body (nginx allows
#       128 concurrent streams), then HEADERS on even stream 2 and on stream 1 again
#   h2c-upgrade.pcap                   curl --http2 http://: HTTP/1.1 Upgrade: h2c, 101, then
#       HTTP/2 (scripts/h2c_upgrade_server.py, since nginx has no h2c upgrade)
# With arguments, only the named captures are made (and their logs), the other files left
# as they are:   scripts/make-h2-fixtures.sh hpack-bomb stream-abuse
# Names: h2c h2-tls grpc rapid-reset rapid-reset-normal continuation-flood settings-flood
#   ping-flood h2-normal hpack-bomb stream-abuse h2c-upgrade
# The access logs use nginx's format
#   $request_method $request_uri $status $body_bytes_sent $content_length $server_protocol
# and grpc.server.log has one line per call as its handler finishes:
#   <service> <method> <status code name> <request messages> <response messages>
# Timestamps and keys differ on every run.
# Needs root, iproute2, ethtool, nginx (http_v2 module; 1.22 made the fixtures), openssl,
# curl (with nghttp2; 7.88), nghttp and h2load (Debian nghttp2-client), tcpdump, tshark,
# python3 with grpcio==1.68.1 and h2==4.1.0 (installed with pip here when missing).
# Traffic stays in the two namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
names=" h2c h2-tls grpc rapid-reset rapid-reset-normal continuation-flood settings-flood ping-flood h2-normal hpack-bomb stream-abuse h2c-upgrade "
for n in "$@"; do
  [[ $names == *" $n "* ]] || { echo "unknown capture $n; one of:$names" >&2; exit 1; }
done
want() { [ ${#wanted[@]} -eq 0 ] || [[ " ${wanted[*]} " == *" $1 "* ]]; }
wanted=("$@")
root=$PWD
fx=$root/fixtures/h2
mkdir -p "$fx"
command -v h2load >/dev/null && command -v nghttp >/dev/null || { echo "h2load/nghttp missing: apt-get install nghttp2-client" >&2; exit 1; }
python3 -c 'import grpc, h2, hpack' 2>/dev/null || pip install grpcio==1.68.1 h2==4.1.0
source scripts/lib/h2-pair.sh
h2_pair

# In immediate mode libpcap's ring has one slot per snapshot length: with -s 0 (256 KiB)
# only a few slots fit and bursts (h2load, the floods) are dropped. Frames on the veth are
# at most 1514 bytes with offload off, so 2048 keeps every byte.
start_capture() { # name
  ip netns exec "$srv" tcpdump -i "$sdev" --immediate-mode -s 2048 -B 16384 -U -n -w "$work/$1.pcap" tcp \
    2>"$work/tcpdump.log" &
  tcpdump_pid=$!
  sleep 1
}
stop_capture() { # name: stop tcpdump, refuse a capture that lost or cut packets
  sleep 0.5
  kill -INT "$tcpdump_pid"; wait "$tcpdump_pid" 2>/dev/null || true
  if ! grep -q "^0 packets dropped by kernel" "$work/tcpdump.log"; then
    cat "$work/tcpdump.log" >&2; echo "$1: tcpdump dropped packets" >&2; exit 1
  fi
  if [ -n "$(tshark -r "$work/$1.pcap" -Y 'frame.cap_len < frame.len' -T fields -e frame.number 2>/dev/null)" ]; then
    echo "$1: truncated frames" >&2; exit 1
  fi
  cp "$work/$1.pcap" "$fx/$1.pcap"
}
keep_log() { # name: nginx's log of the capture just made, then empty it for the next
  cp "$log" "$fx/$1.access.log"
  echo "fixtures/h2/$1: $(wc -l < "$log") requests logged" >&2
  : > "$log"
}

# --- h2c: HTTP/2 by prior knowledge ---
H=http://$server:8080
J=(-H 'Content-Type: application/json')
A=(-H 'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJl')
c() { ip netns exec "$cli" curl -sS --http2-prior-knowledge -o /dev/null "$@" >/dev/null; }
if want h2c; then
: > "$log"
start_capture h2c
# nghttp: four requests multiplexed on one connection (it asks for gzip, deflate).
ip netns exec "$cli" nghttp -n --no-dep -H "${A[1]}" "$H/api/users" "$H/api/users/42" "$H/api/users?page=2" "$H/index.html"
# h2load: four requests one after another on one connection.
ip netns exec "$cli" h2load -n 4 -c 1 -m 1 "$H/api/users/1" "$H/api/users/2" "$H/api/users/3" "$H/index.html" >/dev/null
# curl 7.88.1 cannot reuse a prior-knowledge connection (curl issue 10634, fixed in 8.0), so
# each curl below is one request on its own connection.
c "${A[@]}" "${J[@]}" --data '{"name":"widget","qty":3,"tags":["a","b"]}' "$H/api/items"
c --compressed "$H/api/export"
c "$H/nope"
c "$H/static/big.bin"
c -I "$H/index.html"
ip netns exec "$cli" h2load -n 60 -c 2 -m 20 "$H/api/users" >/dev/null
stop_capture h2c
keep_log h2c
fi

# --- HTTP/2 over TLS (ALPN h2), with the key log ---
keys=$work/keys
T=https://api.test:8443
t() { ip netns exec "$cli" env SSLKEYLOGFILE="$keys" curl -sSk --no-progress-meter --http2 -o /dev/null \
  --resolve "api.test:8443:$server" "$@" >/dev/null; }
if want h2-tls; then
start_capture h2-tls
t --tlsv1.3 "${A[@]}" "$T/api/users" "$T/api/users/42" "$T/index.html"
t --tlsv1.3 "${A[@]}" "${J[@]}" --data '{"name":"gadget","qty":1}' "$T/api/items"
t --tlsv1.3 --compressed "$T/api/export"
t --tlsv1.3 --parallel "$T/api/users/1" "$T/api/users/2" "$T/nope"
t --tlsv1.2 --tls-max 1.2 --ciphers ECDHE-RSA-AES128-GCM-SHA256 "$T/api/users" "$T/api/users/7"
stop_capture h2-tls
cp "$keys" "$fx/h2-tls.keys"
chmod 600 "$fx/h2-tls.keys"
keep_log h2-tls
fi

# --- gRPC over cleartext HTTP/2 (grpcio on both sides) ---
if want grpc; then
glog=$work/grpc.server.log
: > "$glog"
(ip netns exec "$srv" python3 "$root/scripts/grpc_server.py" "$server:50051" "$glog" &)
for _ in $(seq 50); do
  ip netns exec "$cli" bash -c "exec 3<>/dev/tcp/$server/50051" 2>/dev/null && break; sleep 0.1
done
start_capture grpc
ip netns exec "$cli" python3 "$root/scripts/grpc_client.py" "$server:50051"
stop_capture grpc
cp "$glog" "$fx/grpc.server.log"
echo "fixtures/h2/grpc: $(wc -l < "$glog") calls logged" >&2
fi

# --- abuse of HTTP/2 framing against nginx, and normal twins ---
a() { ip netns exec "$cli" python3 "$root/scripts/h2_attack.py" "$1" "$server" 8080 "${@:2}"; }
attack() { # capture name, h2_attack.py mode and count
  want "$1" || return 0
  start_capture "$1"; a "$2" "$3"; stop_capture "$1"
}
attack rapid-reset        rapid-reset 200
attack rapid-reset-normal normal 200
attack continuation-flood continuation-flood 300
attack settings-flood     settings-flood 500
attack ping-flood         ping-flood 500
attack h2-normal          normal 20
attack hpack-bomb         hpack-bomb 10
attack stream-abuse       stream-abuse 300
: > "$log"

# --- h2c upgrade from HTTP/1.1 (nginx has none: a small h2-package server on 8081) ---
if want h2c-upgrade; then
(ip netns exec "$srv" python3 "$root/scripts/h2c_upgrade_server.py" "$server" 8081 &)
for _ in $(seq 50); do
  ip netns exec "$cli" bash -c "exec 3<>/dev/tcp/$server/8081" 2>/dev/null && break; sleep 0.1
done
start_capture h2c-upgrade
ip netns exec "$cli" curl -s --http2 -o /dev/null "http://$server:8081/api/users" "http://$server:8081/api/users/42" >/dev/null
stop_capture h2c-upgrade
fi
ls -l "$fx"/*.pcap >&2
