#!/usr/bin/env bash
# Regenerates fixtures/tls: nginx with TLS 1.0 to 1.3 in a network namespace, clients
# (curl, Python's ssl module) in another, each writing the NSS key log, tcpdump on the
# veth between them. Certificates are made here with openssl: api.test (valid),
# expired.api.test (expired in 2021) and other.test (names that do not match api.test).
#   tls-mixed.pcap         every connection below
#   tls-mixed.keys         their key log (SSLKEYLOGFILE format)
#   tls-mixed.access.log   nginx's log: method uri status body_bytes bytes protocol cipher sni
# Timestamps and keys differ on every run; afterwards refresh the goldens:
#   UPDATE_GOLDEN=1 cargo test --test golden
# Needs root, iproute2, nginx, openssl, curl, python3, tcpdump. Traffic stays in the two
# namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fx=$root/fixtures/tls
work=$(mktemp -d)
chmod 755 "$work"
srv=apitap-tls-s$$ cli=apitap-tls-c$$ sdev=ts$$ cdev=tc$$ server=10.77.0.1
cleanup() {
  for ns in "$srv" "$cli"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$srv"; ip netns add "$cli"
ip link add "$cdev" netns "$cli" type veth peer name "$sdev" netns "$srv"
ip -n "$srv" addr add "$server/24" dev "$sdev"; ip -n "$srv" link set "$sdev" up; ip -n "$srv" link set lo up
ip -n "$cli" addr add 10.77.0.2/24 dev "$cdev"; ip -n "$cli" link set "$cdev" up; ip -n "$cli" link set lo up
# Segmentation offload would hand tcpdump segments larger than the wire's.
ip netns exec "$srv" ethtool -K "$sdev" tso off gso off gro off 2>/dev/null || true
ip netns exec "$cli" ethtool -K "$cdev" tso off gso off gro off 2>/dev/null || true

# --- certificates ---
certs=$work/certs
mkdir -p "$certs/ca/newcerts"
mkcert() { # name cn
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout "$certs/$1.key" -out "$certs/$1.crt" \
    -subj "/CN=$2" -addext "subjectAltName=DNS:$2,DNS:*.$2" 2>/dev/null
}
mkcert api api.test
mkcert other other.test
# An expired certificate needs explicit dates: openssl ca signs with them.
touch "$certs/ca/index.txt"; echo 01 > "$certs/ca/serial"
cat > "$certs/ca/ca.cnf" <<CNF
[ca]
default_ca = d
[d]
database = $certs/ca/index.txt
new_certs_dir = $certs/ca/newcerts
serial = $certs/ca/serial
default_md = sha256
policy = p
copy_extensions = copy
[p]
commonName = supplied
CNF
openssl req -new -newkey rsa:2048 -nodes -keyout "$certs/expired.key" -out "$certs/expired.csr" \
  -subj /CN=expired.api.test -addext subjectAltName=DNS:expired.api.test 2>/dev/null
openssl ca -batch -config "$certs/ca/ca.cnf" -selfsign -keyfile "$certs/expired.key" \
  -in "$certs/expired.csr" -out "$certs/expired.crt" -startdate 20200101000000Z \
  -enddate 20210101000000Z -notext 2>/dev/null

# --- nginx ---
mkdir -p "$work/nginx/www"
echo '<html><body>hello over tls</body></html>' > "$work/nginx/www/index.html"
log=$work/access.log
sed -e "s|@PREFIX@|$work/nginx|g" -e "s|@LOG@|$log|g" -e "s|@ADDR@|$server|g" -e "s|@CERTS@|$certs|g" \
  "$fx/nginx-tls.conf" > "$work/nginx/nginx.conf"
(ip netns exec "$srv" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &)
for _ in $(seq 50); do
  ip netns exec "$cli" curl -sk -o /dev/null "https://$server:8443/index.html" && break; sleep 0.1
done
sleep 0.3; : > "$log"

# --- capture ---
keys=$work/keys
ip netns exec "$srv" tcpdump -i "$sdev" -s 0 -U -n -w "$work/tls-mixed.pcap" tcp 2>"$work/tcpdump.log" &
tcpdump_pid=$!
sleep 1

ok() { ip netns exec "$cli" env SSLKEYLOGFILE="$keys" curl -sk --http1.1 -o /dev/null \
  --resolve "api.test:8443:$server" --resolve "expired.api.test:8444:$server" \
  --resolve "api.test:8445:$server" "$@" >/dev/null; }
A=https://api.test:8443
J=(-H 'Content-Type: application/json')
# TLS 1.3, the three AEAD suites; two requests on one connection.
ok --tlsv1.3 --tls13-ciphers TLS_AES_128_GCM_SHA256 $A/api/users $A/api/users/42
ok --tlsv1.3 --tls13-ciphers TLS_AES_256_GCM_SHA384 "${J[@]}" --data '{"name":"widget","qty":3}' $A/api/items
ok --tlsv1.3 --tls13-ciphers TLS_CHACHA20_POLY1305_SHA256 $A/index.html
# TLS 1.2: ECDHE with the three AEADs, and RSA key exchange.
ok --tlsv1.2 --tls-max 1.2 --ciphers ECDHE-RSA-AES128-GCM-SHA256 $A/api/users $A/index.html
ok --tlsv1.2 --tls-max 1.2 --ciphers ECDHE-RSA-AES256-GCM-SHA384 $A/api/users/7
ok --tlsv1.2 --tls-max 1.2 --ciphers ECDHE-RSA-CHACHA20-POLY1305 "${J[@]}" --data '{"name":"gadget"}' $A/api/items
ok --tlsv1.2 --tls-max 1.2 --ciphers AES128-GCM-SHA256 $A/api/users/9
# Python's ssl: TLS 1.3 with its default suites, and TLS 1.0 (CBC, OpenSSL security level 0).
py() { ip netns exec "$cli" python3 -W ignore "$root/scripts/tls_client.py" "$server" "$@"; }
py 8443 api.test "$keys" 1.3 '' /api/users /api/users/1
py 8443 api.test "$keys" 1.0 'ECDHE-RSA-AES128-SHA' /index.html
# Posture: an expired certificate, names that do not cover the SNI.
ok --tlsv1.2 --tls-max 1.2 https://expired.api.test:8444/index.html
ok --tlsv1.2 --tls-max 1.2 https://api.test:8445/index.html
sleep 0.5
kill -INT "$tcpdump_pid"; wait "$tcpdump_pid" 2>/dev/null || true
grep -v "^$" "$work/tcpdump.log" >&2 || true

cp "$work/tls-mixed.pcap" "$fx/tls-mixed.pcap"
cp "$keys" "$fx/tls-mixed.keys"
chmod 600 "$fx/tls-mixed.keys"
cp "$log" "$fx/tls-mixed.access.log"
echo "fixtures/tls: $(wc -l < "$log") requests logged, $(wc -l < "$keys") key log lines" >&2
