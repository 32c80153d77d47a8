#!/usr/bin/env bash
# Makes two real VXLAN captures with the Linux kernel's own VXLAN driver (unlike
# scripts/make-encap-fixtures.py, which wraps old frames in Python), into fixtures/encap:
#   vxlan-gpe-kernel.pcap        the outer packets (Ethernet / IPv4 192.0.2.x / UDP 4790 /
#       VXLAN-GPE, flags I and P, next protocol 1 = IPv4, VNI 42 / IPv4 10.77.0.x / TCP):
#       a VXLAN-GPE device in collect-metadata mode (ip link add ... type vxlan dstport 4790
#       gpe external) in each namespace, the overlay routes carrying the tunnel key
#       (ip route add ... encap ip id 42 dst ...). GPE is L3: no Ethernet inside.
#   vxlan-gpe-kernel.inner.pcap  the same conversation on the client's GPE device (raw IP,
#       LINKTYPE_RAW)
#   vxlan-8472-kernel.pcap       the outer packets of classic VXLAN (Ethernet inside, VNI
#       4242) on Linux's historic default port 8472 instead of 4790: Ethernet / IPv4
#       192.0.2.x / UDP 8472 / VXLAN / Ethernet / IPv4 10.78.0.x / TCP
#   vxlan-8472-kernel.inner.pcap the same conversation on the client's vx0 (Ethernet)
# Two network namespaces joined by a veth pair (underlay 192.0.2.1 server, 192.0.2.2
# client); python3 -m http.server -p HTTP/1.1 on the server's overlay address (10.77.0.1
# resp. 10.78.0.1, port 8000) serves a directory holding only hello.txt; the client
# (10.77.0.2 resp. 10.78.0.2) runs, in this order:
#   curl GET / and GET /hello.txt on one keep-alive connection (local port 40001)
#   curl -I (HEAD) /hello.txt (local port 40002)
#   curl GET /missing, a 404 (local port 40003)
# Both captures are taken in the client's namespace at the same time: the outer one on its
# veth end (udp port 4790 resp. 8472, so no underlay ARP), the inner one on the tunnel
# device, and both must hold the same number of TCP packets. IPv6 is off in the namespaces
# and the overlay neighbours are static, so neither capture has ND, MLD or ARP.
# Offloads (TSO, GSO, GRO, tx checksum) are off on every device, so the captures hold
# wire-sized segments with correct checksums. The GPE tunnel sends UDP checksum 0 (the
# encap route has no csum flag). Timestamps, TCP sequence numbers, IP IDs and the outer UDP
# source ports (a hash of the inner flow) differ on every run.
#   scripts/make-vxlan-fixtures.sh      # as root; rewrites the four files above
# Needs root, iproute2, ethtool, python3 (3.11: http.server -p), curl, tcpdump, tshark.
# Traffic stays in the two namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fx=$root/fixtures/encap
mkdir -p "$fx"
for t in ip ethtool python3 curl tcpdump tshark ss; do
  command -v "$t" >/dev/null || { echo "make-vxlan-fixtures: $t missing" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "make-vxlan-fixtures: run as root" >&2; exit 1; }

work=$(mktemp -d)
chmod 755 "$work"
srv=apitap-vx-s$$ cli=apitap-vx-c$$ sdev=xs$$ cdev=xc$$
under_s=192.0.2.1 under_c=192.0.2.2
# Every process started here runs in one of the namespaces: cleanup ends them by namespace.
cleanup() {
  for ns in "$srv" "$cli"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# --- underlay ---
ip netns add "$srv"; ip netns add "$cli"
for ns in "$srv" "$cli"; do
  # Before any device exists, so none of them gets IPv6 (no ND, MLD or router solicitations).
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1 net.ipv6.conf.all.disable_ipv6=1
  ip -n "$ns" link set lo up
done
ip link add "$cdev" netns "$cli" type veth peer name "$sdev" netns "$srv"
ip -n "$srv" addr add "$under_s/24" dev "$sdev"; ip -n "$srv" link set "$sdev" up
ip -n "$cli" addr add "$under_c/24" dev "$cdev"; ip -n "$cli" link set "$cdev" up

# --- VXLAN-GPE, collect-metadata mode: the tunnel key (VNI, remote) comes from the route ---
# The device's MTU would be 1500 (it has no lower device); 1450 keeps outer packets within
# the veth's 1500 without outer fragmentation.
for ns in "$srv" "$cli"; do
  ip -n "$ns" link add vxgpe0 mtu 1450 type vxlan dstport 4790 gpe external
done
ip -n "$srv" addr add 10.77.0.1/32 dev vxgpe0; ip -n "$srv" link set vxgpe0 up
ip -n "$cli" addr add 10.77.0.2/32 dev vxgpe0; ip -n "$cli" link set vxgpe0 up
ip -n "$srv" route add 10.77.0.2/32 encap ip id 42 dst "$under_c" dev vxgpe0
ip -n "$cli" route add 10.77.0.1/32 encap ip id 42 dst "$under_s" dev vxgpe0

# --- classic VXLAN (Ethernet inside) on port 8472, fixed MACs and static neighbours ---
ip -n "$srv" link add vx0 address 02:00:00:00:78:01 type vxlan id 4242 dstport 8472 \
  local "$under_s" remote "$under_c" dev "$sdev"
ip -n "$cli" link add vx0 address 02:00:00:00:78:02 type vxlan id 4242 dstport 8472 \
  local "$under_c" remote "$under_s" dev "$cdev"
ip -n "$srv" addr add 10.78.0.1/24 dev vx0; ip -n "$srv" link set vx0 up
ip -n "$cli" addr add 10.78.0.2/24 dev vx0; ip -n "$cli" link set vx0 up
ip -n "$srv" neigh replace 10.78.0.2 lladdr 02:00:00:00:78:02 dev vx0 nud permanent
ip -n "$cli" neigh replace 10.78.0.1 lladdr 02:00:00:00:78:01 dev vx0 nud permanent
# The underlay neighbours too: nothing but the tunnels' UDP crosses the veth.
ip -n "$srv" neigh replace "$under_c" lladdr "$(ip -n "$cli" -br link show "$cdev" | awk '{print $3}')" dev "$sdev" nud permanent
ip -n "$cli" neigh replace "$under_s" lladdr "$(ip -n "$srv" -br link show "$sdev" | awk '{print $3}')" dev "$cdev" nud permanent

# Segmentation offload would hand tcpdump segments larger than the wire's, GRO (the VXLAN
# driver's gro_cells, the veth) would merge received ones, and tx checksum offload would
# leave partial checksums in what tcpdump sees on transmit.
for ns in "$srv" "$cli"; do
  d=$sdev; [ "$ns" = "$cli" ] && d=$cdev
  for dev in "$d" vxgpe0 vx0; do
    ip netns exec "$ns" ethtool -K "$dev" tso off gso off gro off tx off >/dev/null
  done
done

mkdir -p "$work/www"
printf 'hello through vxlan\n' > "$work/www/hello.txt"

# start_capture NAME DEV FILTER...: tcpdump in the client's namespace, waits until it listens
start_capture() {
  local name=$1 dev=$2; shift 2
  ip netns exec "$cli" tcpdump -i "$dev" --immediate-mode -s 2048 -B 4096 -U -n -w "$work/$name" "$@" \
    2>"$work/$name.log" &
  local pid=$!
  cap_pids+=("$pid")
  for _ in $(seq 100); do
    grep -q "^tcpdump: listening on" "$work/$name.log" && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  cat "$work/$name.log" >&2; echo "$name: tcpdump did not start" >&2; exit 1
}

# one_run NAME PORT DECODE DEV SERVER CLIENT  (DECODE: tshark's dissector for the UDP port)
one_run() {
  local name=$1 port=$2 decode=$3 dev=$4 server=$5 client=$6 spid codes u=http://$5:8000
  ip netns exec "$srv" python3 -m http.server -p HTTP/1.1 -b "$server" -d "$work/www" 8000 \
    >"$work/$name.server.log" 2>&1 &
  spid=$!
  # Ready when the socket listens: polled with ss, so no probe traffic crosses the tunnel.
  for _ in $(seq 100); do
    [ -n "$(ip netns exec "$srv" ss -Hltn "sport = :8000")" ] && break
    kill -0 "$spid" 2>/dev/null || { cat "$work/$name.server.log" >&2; exit 1; }
    sleep 0.05
  done
  [ -n "$(ip netns exec "$srv" ss -Hltn "sport = :8000")" ] || { echo "$name: server not listening" >&2; exit 1; }

  cap_pids=()
  start_capture "$name.pcap" "$cdev" udp port "$port"
  start_capture "$name.inner.pcap" "$dev"

  c() { ip netns exec "$cli" curl --noproxy '*' -sS --http1.1 --interface "$client" "$@"; }
  codes=$(c --local-port 40001 -o /dev/null -o /dev/null -w '%{http_code}:%{num_connects} ' "$u/" "$u/hello.txt")
  codes+=$(c --local-port 40002 -I -o /dev/null -w '%{http_code} ' "$u/hello.txt")
  codes+=$(c --local-port 40003 -o /dev/null -w '%{http_code}' "$u/missing")
  if [ "$codes" != "200:1 200:0 200 404" ]; then
    echo "$name: unexpected status codes / connections: $codes" >&2; exit 1
  fi
  # Wait until every connection to the server is closed on both sides (TIME_WAIT aside).
  for _ in $(seq 100); do
    [ -z "$(ip netns exec "$cli" ss -Htn state connected exclude time-wait "dport = :8000")" ] &&
      [ -z "$(ip netns exec "$srv" ss -Htn state connected exclude time-wait "sport = :8000")" ] && break
    sleep 0.05
  done
  sleep 0.2
  kill -INT "${cap_pids[@]}"
  for p in "${cap_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  kill "$spid"; wait "$spid" 2>/dev/null || true

  local f n_out n_in
  for f in "$name.pcap" "$name.inner.pcap"; do
    if ! grep -q "^0 packets dropped by kernel" "$work/$f.log"; then
      cat "$work/$f.log" >&2; echo "$f: tcpdump dropped packets" >&2; exit 1
    fi
    if [ -n "$(tshark -r "$work/$f" -Y 'frame.cap_len < frame.len' -T fields -e frame.number 2>/dev/null)" ]; then
      echo "$f: truncated frames" >&2; exit 1
    fi
  done
  # tcpdump's "tcp" filter sees only the outer UDP; tshark decodes through the tunnel
  # (VXLAN-GPE is its default on 4790, 8472 needs Decode As).
  n_out=$(tshark -r "$work/$name.pcap" -d "udp.port==$port,$decode" -Y tcp 2>/dev/null | wc -l)
  n_in=$(tcpdump -r "$work/$name.inner.pcap" -n tcp 2>/dev/null | wc -l)
  if [ "$n_out" -ne "$n_in" ] || [ "$n_in" -eq 0 ]; then
    echo "$name: $n_out TCP packets outside, $n_in inside" >&2; exit 1
  fi
  if [ "$(tcpdump -r "$work/$name.inner.pcap" -n not tcp 2>/dev/null | wc -l)" -ne 0 ]; then
    echo "$name: the inner capture holds more than TCP" >&2; exit 1
  fi
  echo "$name: $n_out TCP packets in the outer capture, $n_in in the inner one" >&2
}

# first_payload FILE: the first 8 bytes of the first packet's UDP payload, in hex
first_payload() {
  tshark -r "$1" -c 1 -T fields -e udp.payload 2>/dev/null | cut -c1-16
}

one_run vxlan-gpe-kernel 4790 vxlan_gpe vxgpe0 10.77.0.1 10.77.0.2
# VXLAN-GPE: flags 0x0c (I, P), reserved, next protocol 0x01 (IPv4), VNI 42, reserved.
h=$(first_payload "$work/vxlan-gpe-kernel.pcap")
[ "$h" = "0c00000100002a00" ] || { echo "vxlan-gpe-kernel: first UDP payload $h, want 0c00000100002a00" >&2; exit 1; }

one_run vxlan-8472-kernel 8472 vxlan vx0 10.78.0.1 10.78.0.2
# Classic VXLAN: flags 0x08 (I), VNI 4242 = 0x001092.
h=$(first_payload "$work/vxlan-8472-kernel.pcap")
[ "$h" = "0800000000109200" ] || { echo "vxlan-8472-kernel: first UDP payload $h, want 0800000000109200" >&2; exit 1; }

for f in vxlan-gpe-kernel.pcap vxlan-gpe-kernel.inner.pcap vxlan-8472-kernel.pcap vxlan-8472-kernel.inner.pcap; do
  cp "$work/$f" "$fx/$f"
  echo "wrote fixtures/encap/$f ($(stat -c %s "$fx/$f") bytes)"
done
