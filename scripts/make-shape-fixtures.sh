#!/usr/bin/env bash
# Makes fixtures/shapes/*.pcap: one capture per HTTP message shape and per request-smuggling
# indicator, from real clients (curl, raw python sockets: scripts/shape_client.py) against
# real servers (nginx, python http.server, and the raw servers of scripts/shape_server.py)
# on loopback, captured by tcpdump. Traffic goes to 127.0.0.1 only.
# Afterwards: UPDATE_GOLDEN=1 cargo test -p apitap --test shapes (and review the output);
# tests/shapes.rs checks each capture's events field by field.
set -euo pipefail
cd "$(dirname "$0")/.."
out=fixtures/shapes
mkdir -p "$out"
work=$(mktemp -d)
chmod 755 "$work"   # nginx workers run unprivileged
NGINX=18480 RAW=18481 PY11=18482 PY10=18483 PROXY=18484
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- servers ---
mkdir -p "$work/www"
printf '{"items":[1,2,3],"note":"served by nginx"}\n' > "$work/www/data.json"
cat > "$work/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 64; }
http {
    default_type application/octet-stream;
    types { application/json json; }
    access_log off;
    client_body_temp_path $work/body;
    proxy_temp_path $work/proxy;
    fastcgi_temp_path $work/fastcgi;
    uwsgi_temp_path $work/uwsgi;
    scgi_temp_path $work/scgi;
    keepalive_requests 1000;
    server {
        listen 127.0.0.1:$NGINX;
        root $work/www;
        location /v1/ { default_type application/json; return 200 '{"ok":true}'; }
    }
}
EOF
nginx -p "$work" -c "$work/nginx.conf" & pids+=($!)
python3 scripts/shape_server.py raw $RAW & pids+=($!)
python3 scripts/shape_server.py http11 $PY11 & pids+=($!)
python3 scripts/shape_server.py http10 $PY10 & pids+=($!)
python3 scripts/shape_server.py proxy $PROXY $NGINX & pids+=($!)
for port in $NGINX $PY11; do
  for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:$port/v1/ready && break; sleep 0.1; done
done
sleep 0.3

capture() { # name, tcpdump filter, then the client commands run while capturing
  local name=$1 filter=$2; shift 2
  tcpdump -i lo --immediate-mode -B 8192 -s 0 -U -n -w "$out/$name.pcap" "$filter" 2>/dev/null &
  local dump=$!
  sleep 1
  "$@"
  sleep 0.5
  kill -INT $dump; wait $dump 2>/dev/null || true
}
port() { echo "tcp port $1"; }
c() { curl -s "$@" > /dev/null; }
client() { python3 scripts/shape_client.py "$@"; }

# --- message shapes ---
head -c 3000 /dev/zero | tr '\0' 'e' > "$work/upload.txt"
expect_100() {
  c -X POST -H 'Expect: 100-continue' -H 'Content-Type: text/plain' \
    --data-binary @"$work/upload.txt" http://127.0.0.1:$PY11/v1/upload
}
capture expect-100-continue "$(port $PY11)" expect_100

capture websocket-upgrade "$(port $PY11)" client websocket $PY11

connect_tunnel() {
  # curl -p: CONNECT through the proxy, then a plain GET inside the tunnel (to nginx).
  c -p -x http://127.0.0.1:$PROXY http://api.example:$NGINX/v1/tunneled
}
capture connect-tunnel "$(port $PROXY)" connect_tunnel

http10_keepalive() {
  c --http1.0 -H 'Connection: keep-alive' http://127.0.0.1:$NGINX/v1/first http://127.0.0.1:$NGINX/v1/second
}
capture http10-keepalive "$(port $NGINX)" http10_keepalive

absolute_form() {
  c -x http://127.0.0.1:$NGINX "http://api.example/v1/items?page=2"
}
capture absolute-form "$(port $NGINX)" absolute_form

asterisk_form() {
  # nginx rejects OPTIONS * (400); python's http.server answers it.
  c --request-target '*' -X OPTIONS http://127.0.0.1:$NGINX/
  c --request-target '*' -X OPTIONS http://127.0.0.1:$PY11/
}
capture asterisk-form "$(port $NGINX) or $(port $PY11)" asterisk_form

capture pipeline-50 "$(port $NGINX)" client pipeline $NGINX

head_response() {
  # HEAD, then GET of the same resource on the same connection (--next keeps the connection).
  c -I http://127.0.0.1:$NGINX/data.json --next -s http://127.0.0.1:$NGINX/data.json
}
capture head-response "$(port $NGINX)" head_response

capture trailers "$(port $RAW)" c http://127.0.0.1:$RAW/trailers http://127.0.0.1:$RAW/v1/after
capture multiple-1xx "$(port $RAW)" c http://127.0.0.1:$RAW/early-hints http://127.0.0.1:$RAW/v1/after

obs_fold() { client obs-fold $NGINX; client obs-fold $PY11; }
capture obs-fold "$(port $NGINX) or $(port $PY11)" obs_fold

capture close-delimited "$(port $PY10)" c http://127.0.0.1:$PY10/stream

# --- smuggling / desync indicators: nginx (strict), then the lenient raw server ---
for case in cl-te dup-cl-equal dup-cl-differ invalid-chunk bare-lf ws-colon bad-header-name oversize-head; do
  both() { client "$1" $NGINX; client "$1" $RAW; }
  capture "$case" "$(port $NGINX) or $(port $RAW)" both "$case"
done
ls -l "$out"
