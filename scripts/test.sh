#!/usr/bin/env bash
# The test suite, from a fresh clone: set-up, then build everything (test fixtures included,
# which the end-to-end tests load), then run every test.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
cargo build --release --workspace --quiet
cargo test --release --workspace --no-fail-fast 2>&1
