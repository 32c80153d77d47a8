#!/usr/bin/env bash
# Makes fixtures/bodies/*.pcap: a real python3 HTTP server (scripts/body_server.py) and real
# curl clients on loopback, captured by tcpdump. Bodies: JSON and form requests carrying
# secrets, gzip/deflate JSON responses, plain text, an image, and a gzip decompression bomb
# (64 MiB of zeros in ~64 KB). Traffic goes to 127.0.0.1 only.
# Afterwards: UPDATE_GOLDEN=1 cargo test --test golden (and review the diff).
set -euo pipefail
cd "$(dirname "$0")/.."
out=fixtures/bodies
mkdir -p "$out"
port=8099
python3 scripts/body_server.py $port &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:$port/text && break; sleep 0.1; done

capture() { # name, then the client commands run while capturing
  local name=$1; shift
  tcpdump -i lo --immediate-mode -s 0 -U -n -w "$out/$name.pcap" "tcp port $port" 2>/dev/null &
  local dump=$!
  sleep 1
  "$@"
  sleep 0.5
  kill -INT $dump; wait $dump 2>/dev/null || true
}

U=http://127.0.0.1:$port
bodies() {
  curl -s -o /dev/null -X POST -H 'Content-Type: application/json' \
    --data '{"user":"ada","password":"hunter2","card":{"number":"4111111111111111","cvv":"123"},"note":"hi"}' $U/api/items
  curl -s -o /dev/null -X POST -H 'Content-Type: application/x-www-form-urlencoded' \
    --data 'user=ada&password=hunter2&remember=1' $U/login
  curl -s -o /dev/null $U/users.json.gz -o /dev/null $U/users.json.deflate -o /dev/null $U/text \
    -o /dev/null $U/image
  curl -s -o /dev/null "$U/search?q=widgets&api_key=ak_live_1234567890"
}
bomb() {
  curl -s -o /dev/null $U/bomb
}
capture json-bodies bodies
capture gzip-bomb bomb
ls -l "$out"
