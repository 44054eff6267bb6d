#!/usr/bin/env bash
# The test suite, from a fresh clone: set-up, formatting and lints, then build everything (test
# fixtures included, which the end-to-end tests load) and run every test. CI runs this.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
cargo fmt --all --check
# Lints need libtorch (tch's build script), so they run after the set-up.
cargo clippy --release --workspace --all-targets --quiet -- -D warnings
# The plugin API crates are published for plugin teams: they must package.
cargo package --quiet --no-verify --allow-dirty \
    -p gymnos-plugin-api -p gymnos-plugin-derive -p gymnos-plugin-build -p gymnos-plugin-sdk
cargo build --release --workspace --quiet
# A bound on the whole run (about 15 minutes here): a test that hangs fails the suite with the
# output so far instead of outlasting CI's own limit.
timeout --kill-after=30 3600 cargo test --release --workspace --no-fail-fast 2>&1
