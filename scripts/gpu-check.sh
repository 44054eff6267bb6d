#!/usr/bin/env bash
# The CUDA path, proven in one call on a lent GPU machine (README, "Checking the CUDA path").
#
#   scripts/gpu-check.sh pack [--out DIR]   # here, after scripts/setup.sh: the bundle under
#                                           # target/gpu-check/ (binaries, plugins, data, manifest)
#   scripts/gpu-check.sh run [--out DIR]    # there, from the repository root with the bundle
#                                           # carried: every check, each with its time limit;
#                                           # results in $OUT (or DIR) as they come
#
# `run` finds a Python with torch 2.11.0 (the machine's, or this checkout's .venv), points the
# binaries at its torch/lib, and runs scripts/gpu_check.py with it. Without a GPU it runs the
# checks' CPU parts, says so in one line, and exits non-zero.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TORCH_VERSION="2.11.0"

die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The first Python whose torch is $TORCH_VERSION.
find_python() {
    local candidate
    for candidate in "${GYMNOS_GPU_CHECK_PYTHON:-}" python3 python /usr/bin/python3 /usr/local/bin/python3 \
        /opt/conda/bin/python "$ROOT/.venv/bin/python"; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || [ -x "$candidate" ] || continue
        if "$candidate" - "$TORCH_VERSION" >/dev/null 2>&1 <<'PY'
import sys, importlib.metadata as m
sys.exit(0 if m.version("torch").split("+")[0] == sys.argv[1] else 1)
PY
        then
            command -v "$candidate" 2>/dev/null || echo "$candidate"
            return 0
        fi
    done
    return 1
}

[ $# -ge 1 ] || die "usage: scripts/gpu-check.sh pack|run [--out DIR]"
action="$1"
shift
case "$action" in
    pack)
        [ -x "$ROOT/.venv/bin/python" ] || die "$ROOT/.venv is missing: run scripts/setup.sh first"
        exec "$ROOT/.venv/bin/python" "$ROOT/scripts/gpu_check.py" pack "$@"
        ;;
    run)
        python="$(find_python)" || die "no Python with torch $TORCH_VERSION found (python3, python, /opt/conda/bin/python, .venv); set GYMNOS_GPU_CHECK_PYTHON"
        torch_lib="$("$python" -c 'import importlib.util as u, os; print(os.path.join(os.path.dirname(u.find_spec("torch").origin), "lib"))')"
        export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        exec "$python" "$ROOT/scripts/gpu_check.py" run --python "$python" "$@"
        ;;
    *)
        die "unknown action \`$action\`: pack or run"
        ;;
esac
