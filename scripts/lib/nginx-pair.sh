# Sourced by live-load.sh and make-ab-capture.sh: two network namespaces joined by a veth
# pair, nginx (fixtures/nginx/nginx.conf, one small index.html) serving in one of them.
#   nginx_pair NAME NET
# creates namespaces apitap-NAME-s$$ / apitap-NAME-c$$ on 10.NET.0.0/24, starts nginx on
# 10.NET.0.1:8080 and waits until it answers; sets srv cli (namespaces), sdev cdev (veth
# ends), server (nginx's address), work (a temp dir) and log (nginx's access log, emptied);
# removes all of it on exit. Needs root, iproute2, nginx, curl.
nginx_pair() {
  local name=$1 net=$2 root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  work=$(mktemp -d)
  chmod 755 "$work"
  srv=apitap-$name-s$$ cli=apitap-$name-c$$ sdev=vs$$ cdev=vc$$ server=10.$net.0.1
  trap nginx_pair_cleanup EXIT
  ip netns add "$srv"; ip netns add "$cli"
  ip link add "$cdev" netns "$cli" type veth peer name "$sdev" netns "$srv"
  ip -n "$srv" addr add "$server/24" dev "$sdev"; ip -n "$srv" link set "$sdev" up; ip -n "$srv" link set lo up
  ip -n "$cli" addr add "10.$net.0.2/24" dev "$cdev"; ip -n "$cli" link set "$cdev" up; ip -n "$cli" link set lo up

  mkdir -p "$work/nginx/www"
  echo '<html><body>hello</body></html>' > "$work/nginx/www/index.html"
  log=$work/access.log
  sed -e "s|@PREFIX@|$work/nginx|g" -e "s|@LOG@|$log|g" -e "s|listen \[::1\]:8080;||" \
      -e "s|127.0.0.1|$server|g" -e "s|worker_connections 64;|worker_connections 1024;|" \
      "$root/fixtures/nginx/nginx.conf" > "$work/nginx/nginx.conf"
  (ip netns exec "$srv" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" 2>/dev/null &)
  for _ in $(seq 50); do
    ip netns exec "$cli" curl -s -o /dev/null "http://$server:8080/index.html" && break; sleep 0.1
  done
  : > "$log"
}

nginx_pair_cleanup() {
  for ns in "$srv" "$cli"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$work"
}
