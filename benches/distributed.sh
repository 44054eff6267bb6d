#!/usr/bin/env bash
# Data-parallel scaling on this machine: the default CNN's epoch in one process with all the cores
# against N processes (`run --nproc-per-node N`) sharing them, interleaved and repeated
# (benches/README.md). Needs scripts/setup.sh.
# Usage: benches/distributed.sh [--repeats 2] [--epochs 2] [--processes 2] [--out FILE] [--keep]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="$ROOT/.venv/bin/python"
[ -x "$PYTHON" ] || { echo "error: $PYTHON missing: run scripts/setup.sh first" >&2; exit 1; }
exec "$PYTHON" "$ROOT/benches/distributed.py" "$@"
