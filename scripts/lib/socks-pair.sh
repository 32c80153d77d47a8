# Sourced by make-socks-fixtures.sh: two network namespaces joined by a veth pair (the shape
# of tls-pair.sh and h2-pair.sh, on 10.79.0.0/24 and fd79::/64), a certificate for api.test
# made with openssl, nginx (fixtures/socks/nginx-socks.conf) with HTTP/1.1 on 10.79.0.1:8080
# and [fd79::1]:8080 and TLS on 10.79.0.1:8443, and scripts/socks_server.py on
# 10.79.0.1:1080 resolving api.test to 10.79.0.1 itself (the namespaces have no DNS). The
# proxy reaches nginx over the server namespace's loopback, so the veth carries only
# client<->proxy traffic. Sets work (a temp dir), srv cli (namespaces), sdev (the server's
# veth end), server and server6 (the server's addresses), certs, log (nginx's access log)
# and plog (the proxy's log), both emptied; removes all of it on exit.
# Needs root, iproute2, ethtool, nginx, openssl, curl, python3.
socks_pair() {
  local root fx
  command -v ethtool >/dev/null || { echo "socks_pair: ethtool missing (apt-get install ethtool)" >&2; exit 1; }
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  fx=$root/fixtures/socks
  work=$(mktemp -d)
  chmod 755 "$work"
  srv=apitap-sk-s$$ cli=apitap-sk-c$$ sdev=ks$$ cdev=kc$$ server=10.79.0.1 server6=fd79::1
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
  ip -n "$srv" addr add "$server/24" dev "$sdev"; ip -n "$srv" addr add "$server6/64" dev "$sdev" nodad
  ip -n "$srv" link set "$sdev" up; ip -n "$srv" link set lo up
  ip -n "$cli" addr add 10.79.0.2/24 dev "$cdev"; ip -n "$cli" link set "$cdev" up; ip -n "$cli" link set lo up
  # Segmentation offload would hand tcpdump segments larger than the wire's: without
  # ethtool it would silently stay on, so it is required.
  ip netns exec "$srv" ethtool -K "$sdev" tso off gso off gro off
  ip netns exec "$cli" ethtool -K "$cdev" tso off gso off gro off

  # --- certificate ---
  certs=$work/certs
  mkdir -p "$certs"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout "$certs/api.key" -out "$certs/api.crt" \
    -subj /CN=api.test -addext "subjectAltName=DNS:api.test,DNS:*.api.test" 2>/dev/null

  # --- nginx ---
  mkdir -p "$work/nginx/www"
  echo '<html><body>hello through socks</body></html>' > "$work/nginx/www/index.html"
  log=$work/access.log
  sed -e "s|@PREFIX@|$work/nginx|g" -e "s|@LOG@|$log|g" -e "s|@ADDR@|$server|g" -e "s|@ADDR6@|$server6|g" \
    -e "s|@CERTS@|$certs|g" "$fx/nginx-socks.conf" > "$work/nginx/nginx.conf"
  (ip netns exec "$srv" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" 2>/dev/null &)

  # --- the SOCKS proxy ---
  plog=$work/socks.server.log
  (ip netns exec "$srv" python3 "$root/scripts/socks_server.py" "$server" 1080 "$plog" "api.test=$server" &)
  for _ in $(seq 50); do
    ip netns exec "$cli" curl -s -o /dev/null --socks5 "$server:1080" "http://$server:8080/index.html" && break
    sleep 0.1
  done
  sleep 0.3; : > "$log"; : > "$plog"
}
