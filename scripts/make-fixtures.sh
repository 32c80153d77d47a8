#!/usr/bin/env bash
# Regenerates the real-traffic fixtures: real servers (nginx, python3 http.server) and real
# clients (curl, ab, small python socket clients) on loopback, captured by tcpdump.
# Timestamps differ on every run, so afterwards refresh the goldens:
#   UPDATE_GOLDEN=1 cargo test --test golden
# Traffic goes to 127.0.0.1 / [::1] only.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fx=$root/fixtures
work=$(mktemp -d)
chmod 755 "$work"   # nginx workers run unprivileged
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- content served by nginx ---
mkdir -p "$work/www" "$work/nginx"
cat > "$work/www/index.html" <<'HTML'
<!doctype html><html><head><title>apitap fixture</title></head><body><h1>hello</h1></body></html>
HTML
python3 - "$work/www" <<'PY'
import json, random, sys
d = sys.argv[1]
rng = random.Random(42)
items = [{"id": i, "name": f"item-{i}", "price": round(rng.uniform(1, 100), 2),
          "tags": [rng.choice(["red", "green", "blue"]) for _ in range(3)]} for i in range(200)]
open(f"{d}/data.json", "w").write(json.dumps({"items": items}))
open(f"{d}/blob.bin", "wb").write(bytes(rng.getrandbits(8) for _ in range(60_000)))
open(f"{d}/notes.txt", "w").write("line of text\n" * 400)
PY
head -c 2048 /dev/zero | tr '\0' 'x' > "$work/upload.txt"

start_nginx() { # log file
  sed -e "s|@PREFIX@|$work/nginx|g" -e "s|@LOG@|$1|g" "$fx/nginx/nginx.conf" > "$work/nginx/nginx.conf"
  sed -i "s|root $work/nginx/www;|root $work/www;|" "$work/nginx/nginx.conf"
  : > "$1"
  nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
  nginx_pid=$!
  pids+=("$nginx_pid")
  for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:8080/index.html && break; sleep 0.1; done
  # The readiness probe is in the log; start from an empty log.
  sleep 0.2; : > "$1"
}
stop_nginx() { kill "$nginx_pid"; wait "$nginx_pid" 2>/dev/null || true; }

capture() { # out.pcap iface filter [extra tcpdump args...]
  local out=$1 iface=$2 filter=$3; shift 3
  tcpdump -i "$iface" --immediate-mode -s 0 -U -n -w "$out" "$@" "$filter" 2>>"$work/tcpdump.log" &
  tcpdump_pid=$!
  sleep 1
}
stop_capture() { sleep 0.5; kill -INT "$tcpdump_pid"; wait "$tcpdump_pid" 2>/dev/null || true; cat "$work/tcpdump.log" >&2; : > "$work/tcpdump.log"; }

U=http://127.0.0.1:8080
c() { curl -s "$@" > /dev/null; }

# --- nginx-mixed: keep-alive, POST/PUT/DELETE, secrets, gzip+chunked, HEAD, 204/301/401/404,
#     100-continue, pipelining, ab keep-alive ---
log=$fx/nginx/nginx-mixed.access.log
start_nginx "$log"
capture "$fx/nginx/nginx-mixed.pcap" lo 'tcp port 8080'
c $U/index.html $U/data.json $U/missing.html $U/api/users
c -X POST -H 'Content-Type: application/json' -H 'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl' \
  -H 'Cookie: session=s3cr3t-session-id' -H 'X-API-Key: ak_live_1234567890' --data '{"name":"widget","qty":3}' $U/api/items
c -X PUT -H 'Content-Type: application/json' --data '{"name":"ada lovelace"}' $U/api/users/42
c -X DELETE $U/api/users/42
c --compressed $U/data.json $U/notes.txt
c -I $U/index.html
c $U/api/empty $U/old
c -X POST -H 'Content-Type: application/json' --data '{"user":"ada","password":"wrong"}' $U/api/login
c "$U/api/users?page=2&limit=10" $U/blob.bin
c -X POST -H 'Expect: 100-continue' -H 'Content-Type: text/plain' --data-binary @"$work/upload.txt" $U/upload
python3 scripts/pipeline_client.py 127.0.0.1 8080
ab -q -k -n 40 -c 2 $U/api/users/7 >/dev/null
stop_capture
stop_nginx

# --- nginx-ipv6 ---
log=$fx/nginx/nginx-ipv6.access.log
start_nginx "$log"
capture "$fx/nginx/nginx-ipv6.pcap" lo 'tcp port 8080'
c -g 'http://[::1]:8080/index.html' 'http://[::1]:8080/api/users/3' 'http://[::1]:8080/nope'
c -g -X POST --data 'a=1&b=2' 'http://[::1]:8080/api/items'
stop_capture
stop_nginx

# --- Linux cooked captures (-i any): v2 (tcpdump's default) and v1 ---
for kind in sll2 sll; do
  log=$fx/nginx/nginx-any-$kind.access.log
  start_nginx "$log"
  extra=()
  [ "$kind" = sll ] && extra=(-y LINUX_SLL)
  capture "$fx/nginx/nginx-any-$kind.pcap" any 'tcp port 8080' "${extra[@]}"
  c $U/index.html $U/api/users
  c --compressed $U/notes.txt
  stop_capture
  stop_nginx
done

# --- python3 http.server: HTTP/1.0, one connection per request ---
mkdir -p "$work/py"
cp "$work/www/index.html" "$work/www/notes.txt" "$work/py/"
python3 -m http.server 8000 --bind 127.0.0.1 --directory "$work/py" >/dev/null 2>&1 &
py_pid=$!
pids+=("$py_pid")
for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:8000/ && break; sleep 0.1; done
capture "$fx/pyhttp/pyhttp.pcap" lo 'tcp port 8000'
: > "$fx/pyhttp/pyhttp.requests.txt"
for path in / /index.html /notes.txt /missing; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:8000$path")
  echo "GET $path $code" >> "$fx/pyhttp/pyhttp.requests.txt"
done
stop_capture
kill "$py_pid"; wait "$py_pid" 2>/dev/null || true

# --- bad inputs ---
log=$work/garbage.access.log
start_nginx "$log"
capture "$fx/bad/garbage-port80.pcap" lo 'tcp port 80'
python3 scripts/garbage_client.py 127.0.0.1 80
stop_capture
stop_nginx
: > "$fx/bad/empty.pcap"
printf 'this is not a capture file\n' > "$fx/bad/not-a-pcap.pcap"
head -c 10 "$fx/nginx/nginx-ipv6.pcap" > "$fx/bad/truncated-header.pcap"
size=$(stat -c %s "$fx/nginx/nginx-ipv6.pcap")
head -c $((size - 7)) "$fx/nginx/nginx-ipv6.pcap" > "$fx/bad/truncated-packet.pcap"
python3 - "$fx/nginx/nginx-ipv6.pcap" "$fx/bad/corrupt-record.pcap" <<'PY'
import struct, sys
data = bytearray(open(sys.argv[1], "rb").read())
# Skip the 24-byte global header and the first record; overwrite record 2's caplen.
first_caplen = struct.unpack_from("<I", data, 24 + 8)[0]
second = 24 + 16 + first_caplen
struct.pack_into("<I", data, second + 8, 0xFFFFFFF0)
open(sys.argv[2], "wb").write(data)
PY

ls -l "$fx/nginx" "$fx/pyhttp" "$fx/bad"
