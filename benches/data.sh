#!/usr/bin/env bash
# Data-loading benchmark: samples per second of the product's loader (`gymnos-host validate --deep
# --measure-data`) against PyTorch's DataLoader, interleaved and repeated, and the peak memory of
# a streamed synthetic data set (benches/README.md). Needs scripts/setup.sh.
# Usage: benches/data.sh [--repeats 3] [--cases augment,folder,memory] [--out FILE]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="$ROOT/.venv/bin/python"
[ -x "$PYTHON" ] || { echo "error: $PYTHON missing: run scripts/setup.sh first" >&2; exit 1; }
exec "$PYTHON" "$ROOT/benches/data.py" "$@"
