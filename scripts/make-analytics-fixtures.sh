#!/usr/bin/env bash
# Makes fixtures/analytics/*.pcap: real python3 API servers (scripts/api_server.py) on
# 127.0.0.1, 127.0.0.2 (leaky banner), 127.0.1.1 and 127.0.1.2 ("external" APIs), and real
# python http.client clients (scripts/api_client.py), each on its own 127.x address,
# captured on lo by tcpdump. One capture per rule that fires it (NAME.pcap), one with
# normal use of the same endpoint (NAME-normal.pcap), and mixed.pcap: ten normal clients
# and a partner throughout, plus one misbehaving client per rule; endpoint-shapes.pcap: ids
# of every shape and a learned `{param}` position; fleet.pcap: mixed.pcap with a new
# connection per request for every client but the normal users (tests/fleet.rs splits it
# by connection between two sensors).
# `scripts/make-analytics-fixtures.sh NAME...` makes only those captures.
# Afterwards: UPDATE_GOLDEN=1 cargo test --test analytics (and review the diff).
set -euo pipefail
cd "$(dirname "$0")/.."
out=fixtures/analytics
mkdir -p "$out"
port=18080
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
python3 scripts/api_server.py 127.0.0.1 $port & pids+=($!)
python3 scripts/api_server.py 127.0.0.2 $port --banner & pids+=($!)
python3 scripts/api_server.py 127.0.1.1 $port & pids+=($!)
python3 scripts/api_server.py 127.0.1.2 $port & pids+=($!)
for h in 127.0.0.1 127.0.0.2 127.0.1.1 127.0.1.2; do
  for _ in $(seq 50); do curl -s -o /dev/null http://$h:$port/api/users && break; sleep 0.1; done
done

capture() { # scenario
  local name=$1
  tcpdump -i lo --immediate-mode -s 0 -U -n -w "$out/$name.pcap" "tcp port $port" 2>/dev/null &
  local dump=$!
  sleep 1
  python3 scripts/api_client.py "$name" $port
  sleep 0.5
  kill -INT $dump; wait $dump 2>/dev/null || true
}

if (($#)); then
  for name in "$@"; do capture "$name"; done
  exit 0
fi

scenarios=(shadow deprecated superseded drift login-burst auth-burst bola url-secret
  sensitive-request sensitive-response banner rate-spike server-errors client-errors
  latency-spike size-jump new-destination partner-endpoint partner-auth)
for s in "${scenarios[@]}"; do
  capture "$s"
  capture "$s-normal"
done
capture mixed
# Ids of every shape and a learned {param}: events and alerts name endpoints alike.
capture endpoint-shapes
capture fleet
ls -l "$out"
