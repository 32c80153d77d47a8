# Sourced by make-h2-fixtures.sh: two network namespaces joined by a veth pair (the shape of
# tls-pair.sh, on 10.78.0.0/24), a certificate for api.test made with openssl, and nginx
# (fixtures/h2/nginx-h2.conf) with HTTP/2 by prior knowledge on 10.78.0.1:8080 and HTTP/2
# over TLS on 10.78.0.1:8443. The web root holds index.html, export.json (2 KB of JSON) and
# static/big.bin (40960 fixed bytes). Sets work (a temp dir), srv cli (namespaces), sdev
# (the server's veth end), server (nginx's address), certs, log (nginx's access log,
# emptied); removes all of it on exit. Needs root, iproute2, ethtool, nginx, openssl,
# curl, python3.
h2_pair() {
  local root fx
  command -v ethtool >/dev/null || { echo "h2_pair: ethtool missing (apt-get install ethtool)" >&2; exit 1; }
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  fx=$root/fixtures/h2
  work=$(mktemp -d)
  chmod 755 "$work"
  srv=apitap-h2-s$$ cli=apitap-h2-c$$ sdev=hs$$ cdev=hc$$ server=10.78.0.1
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
  ip -n "$cli" addr add 10.78.0.2/24 dev "$cdev"; ip -n "$cli" link set "$cdev" up; ip -n "$cli" link set lo up
  # Segmentation offload would hand tcpdump segments larger than the wire's: without
  # ethtool (Debian package ethtool) it would silently stay on, so it is required.
  ip netns exec "$srv" ethtool -K "$sdev" tso off gso off gro off
  ip netns exec "$cli" ethtool -K "$cdev" tso off gso off gro off

  # --- certificate ---
  certs=$work/certs
  mkdir -p "$certs"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout "$certs/api.key" -out "$certs/api.crt" \
    -subj /CN=api.test -addext "subjectAltName=DNS:api.test,DNS:*.api.test" 2>/dev/null

  # --- nginx ---
  mkdir -p "$work/nginx/www/static"
  echo '<html><body>hello over http/2</body></html>' > "$work/nginx/www/index.html"
  python3 - "$work/nginx/www" <<'PY'
import json, sys
www = sys.argv[1]
users = [{"id": i, "name": f"user{i:03d}", "email": f"user{i:03d}@example.com", "role": "member"}
         for i in range(1, 28)]
with open(f"{www}/export.json", "w") as f:
    json.dump({"users": users}, f)
with open(f"{www}/static/big.bin", "wb") as f:
    f.write(bytes((i * 131 + (i >> 8)) & 0xFF for i in range(40960)))
PY
  log=$work/access.log
  sed -e "s|@PREFIX@|$work/nginx|g" -e "s|@LOG@|$log|g" -e "s|@ADDR@|$server|g" -e "s|@CERTS@|$certs|g" \
    "$fx/nginx-h2.conf" > "$work/nginx/nginx.conf"
  (ip netns exec "$srv" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" 2>/dev/null &)
  for _ in $(seq 50); do
    ip netns exec "$cli" curl -s --http2-prior-knowledge -o /dev/null "http://$server:8080/index.html" && break
    sleep 0.1
  done
  sleep 0.3; : > "$log"
}
