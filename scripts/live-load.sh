#!/usr/bin/env bash
# Measures `apitap run` under load on a live veth: two network namespaces joined by a veth
# pair, nginx in one, ab in the other, apitap capturing on the client's veth end.
# For 1 and 2 workers and rising ab concurrency, prints ab's request rate, the kernel and
# queue drops apitap counted, and events vs the requests nginx logged.
# Needs root (scripts/setup.sh installs nginx, ab, iproute2). Traffic stays in the namespaces.
#   usage: scripts/live-load.sh [requests per run (default 100000)]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
n=${1:-100000}
bin=$root/target/release/apitap
[[ -x $bin ]] || cargo build --release -q -p apitap
work=$(mktemp -d)
chmod 755 "$work"
srv=apitap-load-s$$ cli=apitap-load-c$$
cleanup() {
  for ns in "$srv" "$cli"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$srv"; ip netns add "$cli"
ip link add vc$$ netns "$cli" type veth peer name vs$$ netns "$srv"
ip -n "$srv" addr add 10.214.0.1/24 dev vs$$; ip -n "$srv" link set vs$$ up; ip -n "$srv" link set lo up
ip -n "$cli" addr add 10.214.0.2/24 dev vc$$; ip -n "$cli" link set vc$$ up; ip -n "$cli" link set lo up

mkdir -p "$work/nginx/www"
echo '<html><body>hello</body></html>' > "$work/nginx/www/index.html"
log=$work/access.log
sed -e "s|@PREFIX@|$work/nginx|g" -e "s|@LOG@|$log|g" -e "s|listen \[::1\]:8080;||" \
    -e "s|127.0.0.1|10.214.0.1|g" -e "s|worker_connections 64;|worker_connections 1024;|" \
    "$root/fixtures/nginx/nginx.conf" > "$work/nginx/nginx.conf"
(ip netns exec "$srv" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" 2>/dev/null &)
for _ in $(seq 50); do
  ip netns exec "$cli" curl -s -o /dev/null http://10.214.0.1:8080/index.html && break; sleep 0.1
done

printf '%-8s %-12s %10s %10s %12s %11s %10s %10s\n' workers concurrency requests "ab req/s" "kernel drops" "queue drops" events "nginx log"
for workers in 1 2; do
  for c in 4 16 64; do
    : > "$log"
    ip netns exec "$cli" "$bin" run -i vc$$ --bpf 'tcp port 8080' --user nobody --metrics-addr '' \
      -w "$workers" -o "$work/events.jsonl" --stats-json "$work/stats.json" 2>"$work/apitap.log" &
    apid=$!
    for _ in $(seq 100); do grep -q 'capture open' "$work/apitap.log" && break; sleep 0.05; done
    rate=$(ip netns exec "$cli" ab -q -k -n "$n" -c "$c" http://10.214.0.1:8080/api/users/7 \
      | awk '/Requests per second/ {print $4}')
    sleep 0.5
    kill -TERM "$apid"; wait "$apid" || true
    python3 - "$work/stats.json" "$work/events.jsonl" "$log" "$workers" "$c" "$n" "$rate" <<'PY'
import json, sys
stats, events, log, workers, c, n, rate = sys.argv[1:]
s = json.load(open(stats))
cap = s["capture"]
kd = sum(i["kernel_dropped"] for i in cap["interfaces"])
ev = sum(1 for l in open(events) if "\"kind\":\"event\"" in l)  # alerts (a banner) are not requests
logged = sum(1 for _ in open(log))
print(f"{workers:<8} {c:<12} {n:>10} {float(rate):>10.0f} {kd:>12} {cap['queue_dropped_packets']:>11} {ev:>10} {logged:>10}")
PY
  done
done
