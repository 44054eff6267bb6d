#!/usr/bin/env bash
# Training benchmark: time per epoch of `gymnos-host run` against a plain tch loop and PyTorch
# eager, interleaved and repeated (benches/README.md). Needs scripts/setup.sh and
# `cargo build --release -p gymnos-bench-raw-tch`.
# Usage: benches/training.sh [--repeats 3] [--epochs 1] [--models mlp,cnn] [--threads 2] [--device cuda] [--out FILE]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="$ROOT/.venv/bin/python"
[ -x "$PYTHON" ] || { echo "error: $PYTHON missing: run scripts/setup.sh first" >&2; exit 1; }
exec "$PYTHON" "$ROOT/benches/training.py" "$@"
