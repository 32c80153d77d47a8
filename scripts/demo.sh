#!/usr/bin/env bash
# Quick start: installs what apitap needs, builds it, and replays a bundled capture of real
# nginx traffic to stdout (one JSON event per HTTP transaction; the summary goes to stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked --quiet
exec target/release/apitap replay "${@:-fixtures/nginx/nginx-mixed.pcap}"
