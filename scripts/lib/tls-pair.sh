# Sourced by make-tls-fixtures.sh and make-tls-bench.sh: two network namespaces joined by
# a veth pair, certificates made with openssl (api.test valid, expired.api.test expired in
# 2021, other.test for names that do not match), nginx (fixtures/tls/nginx-tls.conf) with
# TLS 1.0 to 1.3 on 10.77.0.1:8443-8445. Sets work (a temp dir), srv cli (namespaces),
# sdev (the server's veth end), server (nginx's address), certs, log (nginx's access log,
# emptied); removes all of it on exit. Needs root, iproute2, nginx, openssl, curl.
tls_pair() {
  local root fx
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
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
}
