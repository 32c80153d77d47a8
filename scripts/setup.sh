#!/usr/bin/env bash
# Installs what apitap's build, demo and tests need on a fresh Debian machine (root).
# Idempotent and quiet: apt runs only when a package is missing. Rust itself is expected
# (rustup); nothing here starts a service.
set -euo pipefail

# dpkg-dev (dpkg-shlibdeps) and man-db (man -w): the Debian package, scripts/package.sh and
# scripts/test-package.sh. chromium: tests/report.rs renders a report in it.
packages=(libpcap-dev libssl-dev pkg-config time tcpdump nginx-light apache2-utils curl python3 iproute2 ca-certificates systemd tshark dpkg-dev man-db chromium)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 1
fi
