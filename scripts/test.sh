#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, then runs formatting,
# lint and every test. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

# The Kafka tests start their own brokers on loopback from this binary; with
# APITAP_TEST_KAFKA=host:port the round-trip tests use that cluster instead (the outage
# test always needs a broker it can stop, so it keeps using tansu).
APITAP_TANSU_BIN=$(scripts/kafka-broker.sh)
export APITAP_TANSU_BIN

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The fuzz crate is outside the workspace; running it needs nightly and cargo-fuzz, but a
# check on stable keeps its targets building when the APIs they drive change.
echo "== fuzz targets check"
cargo check --manifest-path fuzz/Cargo.toml --bins --locked

echo "== cargo test"
cargo test --workspace --locked

# Builds the .deb (a release build and, the first time, `cargo install cargo-deb`), then
# installs, exercises and purges it: needs root.
echo "== debian package"
scripts/test-package.sh
