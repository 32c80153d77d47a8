#!/usr/bin/env bash
# Makes docs/report.png, the README's picture of `apitap report`: the analytics fixtures
# (BOLA enumeration, auth-failure burst, version banners, a shadow and a deprecated
# endpoint, a latency spike) against their OpenAPI spec, rendered by headless Chromium.
#   scripts/make-report-screenshot.sh        # needs chromium (apt-get install chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v chromium >/dev/null || { echo "make-report-screenshot: chromium missing" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release -q -p apitap
a=fixtures/analytics
target/release/apitap report -c $a/sensor.toml --spec $a/openapi.yaml -o "$work/report.html" \
  $a/bola.pcap $a/auth-burst.pcap $a/banner.pcap $a/shadow.pcap $a/deprecated.pcap \
  $a/latency-spike.pcap
mkdir -p docs
chromium --headless --no-sandbox --disable-gpu --no-first-run --hide-scrollbars \
  --user-data-dir="$work/profile" --window-size=1100,1250 \
  --screenshot="$PWD/docs/report.png" "file://$work/report.html" 2>/dev/null
echo "wrote docs/report.png ($(stat -c %s docs/report.png) bytes)"
