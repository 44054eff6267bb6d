#!/usr/bin/env bash
# Idempotent set-up for a fresh machine, and fast when already done:
#   1. a virtual environment with torch==2.11.0 (libtorch comes from that wheel);
#   2. .venv/libtorch: a libtorch-layout view of the wheel that tch's build reads (LIBTORCH in
#      .cargo/config.toml), with a build-version file so tch checks the version itself;
#   3. the data: Fashion-MNIST from Debian's dataset-fashion-mnist, linked as data/fashion-mnist,
#      and the small real tables bundled in scikit-learn's wheel, copied to data/sklearn/;
#   4. a release build of the host and the built-in plugins, installed into the repository's
#      registry: registry.json (tracked: which plugins it declares) and plugin-store/ (ignored:
#      the libraries and this machine's record of them), so `git status` stays clean.
# scripts/main.sh and scripts/test.sh run it first; running it again is cheap.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TORCH_VERSION="2.11.0"
VENV="$ROOT/.venv"
log() { printf '[setup] %s\n' "$*" >&2; }

# 1. Python environment with torch.
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" - "$TORCH_VERSION" <<'PY' 2>/dev/null
import sys, importlib.metadata as m
sys.exit(0 if m.version("torch").split("+")[0] == sys.argv[1] else 1)
PY
then
    log "installing torch==$TORCH_VERSION into $VENV (large download, once)"
    "$VENV/bin/pip" install --quiet "torch==$TORCH_VERSION"
fi

# 2. The libtorch view. Found without importing torch (slow) through the package metadata.
TORCH_DIR="$("$VENV/bin/python" -c 'import importlib.util as u; import os; print(os.path.dirname(u.find_spec("torch").origin))')"
VIEW="$VENV/libtorch"
if [ "$(readlink "$VIEW/lib" 2>/dev/null)" != "$TORCH_DIR/lib" ] || [ ! -f "$VIEW/build-version" ]; then
    log "linking $VIEW -> $TORCH_DIR"
    rm -rf "$VIEW.tmp" && mkdir -p "$VIEW.tmp"
    ln -s "$TORCH_DIR/include" "$VIEW.tmp/include"
    ln -s "$TORCH_DIR/lib" "$VIEW.tmp/lib"
    sed -n "s/^__version__ = '\(.*\)'.*/\1/p" "$TORCH_DIR/version.py" > "$VIEW.tmp/build-version"
    rm -rf "$VIEW" && mv "$VIEW.tmp" "$VIEW"
fi

# 3. Default data.
FMNIST_SYSTEM=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST_SYSTEM/train-images-idx3-ubyte.gz" ]; then
    log "installing Debian's dataset-fashion-mnist"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null; }
fi
mkdir -p "$ROOT/data"
[ -e "$ROOT/data/fashion-mnist" ] || ln -s "$FMNIST_SYSTEM" "$ROOT/data/fashion-mnist"
SKLEARN_VERSION="1.9.1"
if [ ! -f "$ROOT/data/sklearn/wine_data.csv" ]; then
    log "extracting scikit-learn $SKLEARN_VERSION's bundled tables into data/sklearn"
    wheels="$(mktemp -d)"
    "$VENV/bin/pip" download --quiet --no-deps --only-binary=:all: -d "$wheels" "scikit-learn==$SKLEARN_VERSION"
    "$VENV/bin/python" - "$wheels" "$ROOT/data/sklearn" <<'PY'
import glob, os, sys, zipfile
wheel = zipfile.ZipFile(glob.glob(os.path.join(sys.argv[1], "*.whl"))[0])
os.makedirs(sys.argv[2] + ".tmp", exist_ok=True)
for name in ["iris.csv", "wine_data.csv", "breast_cancer.csv"]:
    with open(os.path.join(sys.argv[2] + ".tmp", name), "wb") as out:
        out.write(wheel.read("sklearn/datasets/data/" + name))
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
PY
    rm -rf "$wheels"
fi

# 4. Build and install the built-in plugins. The set-up of a fresh clone and of an up-to-date
#    one write the same registry.json: it declares components, not machine state.
log "building (cargo build --release)"
cargo build --release --quiet
"$ROOT/target/release/gymnos-host" plugins install --builtins --replace >/dev/null
log "ready: $("$ROOT/target/release/gymnos-host" plugins list --json | "$VENV/bin/python" -c 'import json,sys; print(len(json.load(sys.stdin)), "plugins installed")')"
