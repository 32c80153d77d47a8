#!/usr/bin/env bash
# Speed of the fleet's centre. Makes edge events from a capture (default: the generated
# 120k-transaction capture of the benchmark section), spreads them over 8 hosts by client
# (the generator's traffic is one host, and the centre partitions by host), then measures:
#   - `apitap analyze` over the events file (no Kafka);
#   - one `apitap analyze --kafka` member over a topic of 1 and of 4 partitions;
#   - two members over 4 partitions.
# The broker is the test broker (scripts/kafka-broker.sh) on a loopback port; events are
# produced keyed by host (crates/apitap/examples/produce.rs). A member logs its rate at
# the end: messages read and analysed from its last rebuild to the last event through
# its engine.
#
#   scripts/bench-fleet.sh [CAPTURE]
set -euo pipefail
cd "$(dirname "$0")/.."
capture=${1:-target/bench/api-120k.pcap}
bin=target/release/apitap
cargo build --release --locked -q -p apitap -p apitap-gen
cargo build --release --locked -q -p apitap --example produce
produce=target/release/examples/produce
if [ ! -f "$capture" ]; then
  mkdir -p "$(dirname "$capture")"
  target/release/apitap-gen --seed 7 --transactions 120000 --clients 200 --size-mix api -o "$capture"
fi
tansu=$(scripts/kafka-broker.sh)
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=tcp://127.0.0.1:$port
"$tansu" broker --listener-url "$url" --advertised-listener-url "$url" >/dev/null 2>&1 &
broker=$!
pids=()
trap 'kill "${pids[@]}" $broker 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
  kill -0 $broker || { echo "the broker did not start" >&2; exit 1; }
  sleep 0.1
done

sed 's/^mode = "local" /mode = "edge"  /' sensor.toml > "$work/edge.toml"
"$bin" replay -q -c "$work/edge.toml" "$capture" -o "$work/one-host.jsonl"
python3 - "$work" <<'PY'
import json, sys, zlib
work = sys.argv[1]
with open(f"{work}/one-host.jsonl") as src, open(f"{work}/events.jsonl", "w") as ev, \
        open(f"{work}/keyed.tsv", "w") as keyed:
    for line in src:
        e = json.loads(line)
        host = "api-%d.example.com" % (zlib.crc32(e["source"]["ip"].encode()) % 8)
        e["url"]["domain"] = host
        text = json.dumps(e, separators=(",", ":"))
        ev.write(text + "\n")
        keyed.write(host + "\t" + text + "\n")
PY
events=$(wc -l < "$work/events.jsonl")
echo "events: $events (8 hosts)"

t0=$(date +%s.%N)
"$bin" analyze -q "$work/events.jsonl" -o /dev/null
t1=$(date +%s.%N)
python3 -c "print('analyze FILE:            %.0f events/s' % ($events / ($t1 - $t0)))"

member() { # config log
  APITAP_LOG=info "$bin" analyze -q --kafka 127.0.0.1:$port -c "$1" --exit-when-idle 2 2>"$2" &
  pids+=($!)
}
rate() { grep -o '[0-9]* messages read.*' "$1" | tail -1; }
for run in "1 1" "4 1" "4 2"; do
  set -- $run
  partitions=$1 members=$2
  topic=events-$partitions-$members
  "$tansu" topic create "$topic" --partitions "$partitions" --broker "$url" >/dev/null
  "$produce" 127.0.0.1:$port "$topic" < "$work/keyed.tsv"
  cfg=$work/$topic.toml
  # The events group alone (no auth failure copies are produced here).
  printf '[kafka]\nbrokers = "127.0.0.1:%s"\nevents_topic = "%s"\nalerts_topic = "%s.alerts"\nauth_failures_topic = ""\n[analyze]\ngroup_id = "%s"\nidle_partition_ms = 500\n' \
    "$port" "$topic" "$topic" "$topic" > "$cfg"
  pids=()
  for m in $(seq "$members"); do member "$cfg" "$work/$topic-$m.log"; done
  for pid in "${pids[@]}"; do wait "$pid"; done
  for m in $(seq "$members"); do
    echo "analyze --kafka, $partitions partition(s), member $m of $members: $(rate "$work/$topic-$m.log")"
  done
done
