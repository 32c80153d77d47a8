#!/usr/bin/env bash
# Regenerates fixtures/tls: nginx with TLS 1.0 to 1.3 in a network namespace, clients
# (curl, Python's ssl module) in another, each writing the NSS key log, tcpdump on the
# veth between them. Certificates are made here with openssl: api.test (valid),
# expired.api.test (expired in 2021) and other.test (names that do not match api.test).
#   tls-mixed.pcap         every connection below
#   tls-mixed.keys         their key log (SSLKEYLOGFILE format)
#   tls-mixed.access.log   nginx's log: method uri status body_bytes bytes protocol cipher sni
# and, in fixtures/analytics, one capture per TLS posture rule with its normal twin
# (tls-deprecated, tls-weak-cipher, tls-cert-expired, tls-cert-name, tls-new-fingerprint).
# Timestamps and keys differ on every run; afterwards refresh the goldens:
#   UPDATE_GOLDEN=1 cargo test --test golden --test tls --test analytics
# Needs root, iproute2, nginx, openssl, curl, python3, tcpdump. Traffic stays in the two
# namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fx=$root/fixtures/tls
source scripts/lib/tls-pair.sh
tls_pair

# --- capture ---
keys=$work/keys
ip netns exec "$srv" tcpdump -i "$sdev" --immediate-mode -s 0 -U -n -w "$work/tls-mixed.pcap" tcp 2>"$work/tcpdump.log" &
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

# --- posture fixtures (fixtures/analytics): one capture per rule, and its normal twin ---
an=$root/fixtures/analytics
start_capture() { # name
  ip netns exec "$srv" tcpdump -i "$sdev" --immediate-mode -s 0 -U -n -w "$work/$1.pcap" tcp 2>/dev/null &
  tcpdump_pid=$!
  sleep 1
}
stop_capture() { # name
  sleep 0.5
  kill -INT "$tcpdump_pid"; wait "$tcpdump_pid" 2>/dev/null || true
  cp "$work/$1.pcap" "$an/$1.pcap"
}
p() { ip netns exec "$cli" curl -sk --http1.1 -o /dev/null --resolve "api.test:$1:$server" "https://api.test:$1/index.html" "${@:2}"; }
start_capture tls-deprecated;       p 8446 --tlsv1 --ciphers 'DEFAULT:@SECLEVEL=0'; stop_capture tls-deprecated
start_capture tls-deprecated-normal; p 8443 --tlsv1.2; stop_capture tls-deprecated-normal
start_capture tls-weak-cipher;      p 8447 --tls-max 1.2 --ciphers 'NULL-SHA256:@SECLEVEL=0'; stop_capture tls-weak-cipher
start_capture tls-weak-cipher-normal; p 8443 --tls-max 1.2; stop_capture tls-weak-cipher-normal
start_capture tls-cert-expired;     ip netns exec "$cli" curl -sk -o /dev/null --tls-max 1.2 --resolve "expired.api.test:8444:$server" https://expired.api.test:8444/index.html; stop_capture tls-cert-expired
start_capture tls-cert-expired-normal; p 8443 --tls-max 1.2; stop_capture tls-cert-expired-normal
start_capture tls-cert-name;        p 8445 --tls-max 1.2; stop_capture tls-cert-name
start_capture tls-cert-name-normal; p 8443 --tls-max 1.2; stop_capture tls-cert-name-normal
# A client fingerprint never seen for api.test after the learning period (1 s in the
# test's config): curl twice, then Python's ssl; the normal twin is curl three times.
start_capture tls-new-fingerprint
p 8443; p 8443; sleep 2
ip netns exec "$cli" python3 -W ignore "$root/scripts/tls_client.py" "$server" 8443 api.test /dev/null 1.3 '' /index.html
stop_capture tls-new-fingerprint
start_capture tls-new-fingerprint-normal; p 8443; p 8443; sleep 2; p 8443; stop_capture tls-new-fingerprint-normal
echo "fixtures/analytics: $(ls "$an"/tls-*.pcap | wc -l) TLS posture captures" >&2
