#!/usr/bin/env bash
# Makes a TLS benchmark capture (kept out of the repository): nginx with TLS in a network
# namespace (scripts/lib/tls-pair.sh), curl in another writing a key log, tcpdump between.
#   bulk        one keep-alive connection per suite fetching a 256 KiB JSON file BULK
#               times: TLS 1.3 AES-128-GCM, TLS 1.3 ChaCha20-Poly1305, TLS 1.2 ECDHE
#               AES-256-GCM (decryption throughput)
#   handshakes  CONNS short connections of one small request each (the metadata path)
# Usage: scripts/make-tls-bench.sh OUT_DIR [BULK] [CONNS]   (defaults 100 and 300)
# Writes OUT_DIR/tls-bench.pcap and OUT_DIR/tls-bench.keys (mode 600). Needs root,
# iproute2, nginx, openssl, curl, python3, tcpdump.
set -euo pipefail
out=$(realpath "${1:?usage: $0 OUT_DIR [BULK] [CONNS]}")
bulk=${2:-100}
conns=${3:-300}
cd "$(dirname "$0")/.."
source scripts/lib/tls-pair.sh
tls_pair
python3 -c "
import json
items = [{'id': i, 'name': f'item-{i}', 'tags': ['a', 'b', 'c']} for i in range(5000)]
s = json.dumps({'items': items})
open('$work/nginx/www/big.json', 'w').write(s[:256 * 1024])
"
keys=$work/keys
ip netns exec "$srv" tcpdump -i "$sdev" --immediate-mode -s 0 -U -n -w "$work/tls-bench.pcap" tcp 2>/dev/null &
tcpdump_pid=$!
sleep 1
urls=$work/urls.txt
for _ in $(seq "$bulk"); do
  echo "url = \"https://api.test:8443/big.json\""; echo 'output = "/dev/null"'
done > "$urls"
c() { ip netns exec "$cli" env SSLKEYLOGFILE="$keys" curl -sk --http1.1 \
  --resolve "api.test:8443:$server" "$@" >/dev/null; }
c --tlsv1.3 --tls13-ciphers TLS_AES_128_GCM_SHA256 -K "$urls"
c --tlsv1.3 --tls13-ciphers TLS_CHACHA20_POLY1305_SHA256 -K "$urls"
c --tlsv1.2 --tls-max 1.2 --ciphers ECDHE-RSA-AES256-GCM-SHA384 -K "$urls"
for _ in $(seq "$conns"); do c https://api.test:8443/index.html; done
sleep 0.5
kill -INT "$tcpdump_pid"; wait "$tcpdump_pid" 2>/dev/null || true
mkdir -p "$out"
cp "$work/tls-bench.pcap" "$out/tls-bench.pcap"
install -m 600 "$keys" "$out/tls-bench.keys"
echo "$out/tls-bench.pcap: $(wc -l < "$log") requests logged" >&2
