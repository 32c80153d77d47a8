#!/usr/bin/env bash
# Captures real nginx + ab traffic for the speed comparison (scripts/bench-compare.sh):
# two network namespaces joined by a veth pair, nginx (fixtures/nginx/nginx.conf) in one,
# ab in the other, tcpdump on the server's veth end writing the whole frames.
#   keep-alive GETs of a small JSON API answer   ab -k -n 100000 -c 16 /api/users/7
#   keep-alive GETs of a static page             ab -k -n 20000  -c 8  /index.html
#   one connection per POST with a JSON body     ab    -n 20000  -c 8  -p ... /api/items
# Prints what tcpdump and nginx counted; kernel drops by tcpdump show up as gaps in apitap.
# Needs root, nginx, ab (apache2-utils), tcpdump, iproute2. Traffic stays in the namespaces.
#   usage: scripts/make-ab-capture.sh [OUT.pcap (default target/bench/ab.pcap)]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$(realpath -m "${1:-target/bench/ab.pcap}")
mkdir -p "$(dirname "$out")"
. "$root/scripts/lib/nginx-pair.sh"
nginx_pair ab 215
# Segments as a 1500-byte link would carry them (no GSO super-frames in the capture).
ip netns exec "$srv" ethtool -K "$sdev" tso off gso off gro off 2>/dev/null || true
ip netns exec "$cli" ethtool -K "$cdev" tso off gso off gro off 2>/dev/null || true
python3 -c "print('<html><body>' + 'apitap speed test page. ' * 200 + '</body></html>')" > "$work/nginx/www/index.html"

ip netns exec "$srv" tcpdump -q -i "$sdev" -s 0 -B 262144 -w "$out" 'tcp port 8080' 2> "$work/tcpdump.log" &
tcpdump_pid=$!
for _ in $(seq 100); do grep -q 'listening on' "$work/tcpdump.log" && break; sleep 0.05; done

url=http://$server:8080
echo '{"name":"ada","email":"ada@example.com","roles":["admin","ops"],"note":"speed test"}' > "$work/body.json"
ip netns exec "$cli" ab -q -k -n 100000 -c 16 "$url/api/users/7" > /dev/null
ip netns exec "$cli" ab -q -k -n 20000 -c 8 "$url/index.html" > /dev/null
ip netns exec "$cli" ab -q -n 20000 -c 8 -p "$work/body.json" -T application/json "$url/api/items" > /dev/null
# tcpdump may still be draining its ring: stop it once the file has stopped growing.
size=-1
while [ "$(stat -c %s "$out")" != "$size" ]; do size=$(stat -c %s "$out"); sleep 1; done
kill -INT "$tcpdump_pid"; wait "$tcpdump_pid" || true
grep -E 'captured|dropped' "$work/tcpdump.log" || true
echo "nginx logged $(wc -l < "$log") requests; wrote $out ($(stat -c %s "$out") bytes)"
