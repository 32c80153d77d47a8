#!/usr/bin/env bash
# Instructions executed per pipeline thread (reader, worker, sink) of one replay, counted by
# callgrind. Unlike wall time on a shared VM, the count is the same on every run, so it
# shows a change of a few percent that timing noise hides.
#   [WORKERS=N] scripts/instructions.sh [FILE.pcap] [BINARY]
# Default FILE: the first 50,000 packets of target/bench/api-120k.pcap (11,464
# transactions; made with editcap). Default BINARY: target/release/apitap (built here).
# WORKERS (default 1): worker threads, one line each.
# Needs: valgrind (apt-get install -y valgrind), editcap (tshark) for the default file.
set -euo pipefail
cd "$(dirname "$0")/.."
file=${1:-}
bin=${2:-target/release/apitap}
if [ -z "${2:-}" ]; then
  cargo build --release --locked -q -p apitap
fi
if [ -z "$file" ]; then
  file=target/bench/api-small.pcap
  if [ ! -f "$file" ]; then
    editcap -r target/bench/api-120k.pcap "$file" 1-50000
  fi
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$tmp/cg.%p" \
  "$bin" replay -q --workers "${WORKERS:-1}" "$file" > /dev/null 2> "$tmp/valgrind.log" || {
  cat "$tmp/valgrind.log" >&2
  exit 1
}
for f in "$tmp"/cg.*-0*; do
  n=$(awk '/^summary:/ {print $2; exit}' "$f")
  if grep -q 'Worker::run' "$f"; then
    thread=worker
  elif grep -q 'run_sink' "$f"; then
    thread=sink
  else
    thread=reader
  fi
  printf '%-7s %13d\n' "$thread" "$n"
done | sort
