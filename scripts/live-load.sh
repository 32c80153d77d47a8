#!/usr/bin/env bash
# Measures `apitap run` under load on a live veth: two network namespaces joined by a veth
# pair, nginx in one, ab in the other, apitap capturing on the client's veth end.
# For 1 and 2 workers with one capture reader, 2 workers with two readers (a kernel fanout
# group, capture.reader_threads), and rising ab concurrency, prints ab's request rate, the
# kernel and queue drops apitap counted, and events vs the requests nginx logged.
# Needs root (scripts/setup.sh installs nginx, ab, iproute2). Traffic stays in the namespaces.
#   usage: scripts/live-load.sh [requests per run (default 100000)]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
n=${1:-100000}
bin=$root/target/release/apitap
[[ -x $bin ]] || cargo build --release -q -p apitap
. "$root/scripts/lib/nginx-pair.sh"
nginx_pair load 214

printf '%-8s %-8s %-12s %10s %10s %12s %11s %10s %10s\n' workers readers concurrency requests "ab req/s" "kernel drops" "queue drops" events "nginx log"
for setup in "1 1" "2 1" "2 2"; do
  read -r workers readers <<< "$setup"
  for c in 4 16 64; do
    : > "$log"
    ip netns exec "$cli" "$bin" run -i "$cdev" --bpf 'tcp port 8080' --user nobody --metrics-addr '' \
      -w "$workers" --reader-threads "$readers" -o "$work/events.jsonl" --stats-json "$work/stats.json" 2>"$work/apitap.log" &
    apid=$!
    for _ in $(seq 100); do grep -q 'capture open' "$work/apitap.log" && break; sleep 0.05; done
    rate=$(ip netns exec "$cli" ab -q -k -n "$n" -c "$c" http://$server:8080/api/users/7 \
      | awk '/Requests per second/ {print $4}')
    sleep 0.5
    kill -TERM "$apid"; wait "$apid" || true
    python3 - "$work/stats.json" "$work/events.jsonl" "$log" "$workers" "$readers" "$c" "$n" "$rate" <<'PY'
import json, sys
stats, events, log, workers, readers, c, n, rate = sys.argv[1:]
s = json.load(open(stats))
cap = s["capture"]
kd = sum(i["kernel_dropped"] for i in cap["interfaces"])
ev = sum(1 for l in open(events) if "\"kind\":\"event\"" in l)  # alerts (a banner) are not requests
logged = sum(1 for _ in open(log))
print(f"{workers:<8} {readers:<8} {c:<12} {n:>10} {float(rate):>10.0f} {kd:>12} {cap['queue_dropped_packets']:>11} {ev:>10} {logged:>10}")
PY
  done
done
