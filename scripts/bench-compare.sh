#!/usr/bin/env bash
# Compares apitap with the read floor (tcpdump), httpry and tshark on the same capture.
#   scripts/bench-compare.sh FILE.pcap [more.pcap ...]
# With no file, generates two with apitap-gen (seed 7): gen.pcap (20k transactions, mixed
# sizes up to 300 KB, 326 MB) and api-120k.pcap (120k small API transactions, 151 MB), and
# as root captures real nginx + ab traffic into ab.pcap (scripts/make-ab-capture.sh).
# Runs the tools round robin RUNS times (default 3; tshark once) and prints, per tool, the
# best wall time, packets/s, Gbit/s, transactions/s, peak RSS and the time relative to
# apitap with one worker. apitap runs as shipped (analytics on) and with
# `[analytics] enabled = false` ("-noan"), each with 1 and 2 workers.
# Needs: tcpdump httpry tshark (apt-get install -y tcpdump httpry tshark).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p apitap -p apitap-gen
apitap=target/release/apitap
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  mkdir -p target/bench
  target/release/apitap-gen --seed 7 --transactions 20000 --clients 200 -o target/bench/gen.pcap
  target/release/apitap-gen --seed 7 --transactions 120000 --clients 200 --size-mix api -o target/bench/api-120k.pcap
  files=(target/bench/gen.pcap target/bench/api-120k.pcap)
  if [ "$(id -u)" -eq 0 ] && command -v nginx > /dev/null && command -v ab > /dev/null; then
    scripts/make-ab-capture.sh target/bench/ab.pcap
    files+=(target/bench/ab.pcap)
  else
    echo "not root or no nginx/ab: skipping the nginx + ab capture" >&2
  fi
fi
runs=${RUNS:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '[analytics]\nenabled = false\n' > "$tmp/no-analytics.toml"

declare -A best peak
run_once() { # name command...: one timed run; keeps the best wall time and the peak RSS
  local name=$1; shift
  local wall rss
  /usr/bin/time -o "$tmp/time" -f "%e %M" "$@" > "$tmp/out" 2> "$tmp/err" || { echo "$name failed: $(tail -2 "$tmp/err")" >&2; return 0; }
  read -r wall rss < "$tmp/time"
  if [ -z "${best[$name]:-}" ] || awk -v a="$wall" -v b="${best[$name]}" 'BEGIN{exit !(a<b)}'; then best[$name]=$wall; fi
  if [ "$rss" -gt "${peak[$name]:-0}" ]; then peak[$name]=$rss; fi
}

for f in "${files[@]}"; do
  cat "$f" > /dev/null   # warm the page cache so every tool reads from memory
  bytes=$(stat -c %s "$f")
  packets=$(tcpdump -r "$f" -w /dev/null 2>&1 | grep -o '^[0-9]*' | head -1 || true)
  "$apitap" replay -q --stats-json "$tmp/stats.json" "$f" > /dev/null
  packets=$(python3 -c "import json;print(json.load(open('$tmp/stats.json'))['input']['packets'])")
  txs=$(python3 -c "import json;print(json.load(open('$tmp/stats.json'))['transactions']['total'])")
  echo "== $f: $bytes bytes, $packets packets, $txs transactions ($(nproc) cores)"
  # Round robin, so that this VM's drift over minutes hits every tool alike.
  best=() peak=()
  for _ in $(seq "$runs"); do
    run_once "tcpdump-read" tcpdump -r "$f" -w /dev/null
    run_once "httpry" httpry -r "$f" -o /dev/null
    run_once "apitap-1w" "$apitap" replay -q --workers 1 "$f"
    run_once "apitap-2w" "$apitap" replay -q --workers 2 "$f"
    run_once "apitap-1w-noan" "$apitap" replay -q --workers 1 -c "$tmp/no-analytics.toml" "$f"
    run_once "apitap-2w-noan" "$apitap" replay -q --workers 2 -c "$tmp/no-analytics.toml" "$f"
  done
  run_once "tshark-http" tshark -r "$f" -d tcp.port==8080,http -Y http -T fields -e http.request.method -e http.request.uri -e http.response.code
  for name in tcpdump-read httpry apitap-1w apitap-2w apitap-1w-noan apitap-2w-noan tshark-http; do
    if [ -n "${best[$name]:-}" ]; then echo "$name ${best[$name]} ${peak[$name]}"; fi
  done > "$tmp/results"
  base=$(awk '$1=="apitap-1w"{print $2}' "$tmp/results")
  printf "%-15s %9s %12s %9s %12s %10s %14s\n" tool wall_s packets/s Gbit/s tx/s rss_MB "time/apitap-1w"
  while read -r name wall rss; do
    python3 - "$name" "$wall" "$rss" "$bytes" "$packets" "$txs" "$base" <<'PY'
import sys
name, wall, rss, size, pk, tx, base = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7] or 0)
w = max(wall, 0.001)
print(f"{name:<15} {wall:9.2f} {pk/w:12.0f} {size*8/w/1e9:9.2f} {tx/w:12.0f} {rss/1024:10.1f} {wall/base if base else 0:14.2f}")
PY
  done < "$tmp/results"
done
