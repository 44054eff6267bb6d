#!/usr/bin/env bash
# Idempotent set-up for a fresh machine, and fast when already done:
#   1. a virtual environment with torch==2.11.0 (libtorch comes from that wheel) and the pinned
#      Python packages the tests use (scripts/python-requirements.txt);
#   2. .venv/libtorch: a libtorch-layout view of the wheel that tch's build reads (LIBTORCH in
#      .cargo/config.toml), with a build-version file so tch checks the version itself;
#   3. the data: Fashion-MNIST from Debian's dataset-fashion-mnist, linked as data/fashion-mnist
#      (and, once built, written out as PNG files into data/fashion-mnist-png/),
#      and the small real tables bundled in scikit-learn's wheel, copied to data/sklearn/;
#   3b. Debian's slurm-wlm and munge (sbatch, slurmctld, slurmd, munged), for the tests that start
#      a private single-node Slurm cluster (tests/support/slurm_cluster.sh); no service is started;
#      Debian's libgloo-dev (headers the engine's c10d shim compiles against);
#      and Debian's chromium, with which a test renders a run's report.html headless;
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
# The pinned services and readers the tests use (scripts/python-requirements.txt); pip is
# skipped when every pin is already there.
if ! "$VENV/bin/python" - "$ROOT/scripts/python-requirements.txt" <<'PY' 2>/dev/null
import sys, importlib.metadata as m
pins = [l.split("#")[0].strip() for l in open(sys.argv[1])]
sys.exit(0 if all(m.version(p.split("==")[0]) == p.split("==")[1] for p in pins if p) else 1)
PY
then
    log "installing scripts/python-requirements.txt into $VENV"
    "$VENV/bin/pip" install --quiet -r "$ROOT/scripts/python-requirements.txt"
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

# 3b. Slurm and munge for the sweep tests' private cluster. Services the packages would start are
#     denied through policy-rc.d (the tests start their own daemons with their own configuration).
if ! command -v sbatch >/dev/null || ! command -v slurmctld >/dev/null \
    || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    log "installing Debian's slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy"
    fi
    rc=0
    apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null && apt-get install -y -qq slurm-wlm munge >/dev/null; } \
        || rc=$?
    [ -z "$policy" ] || rm -f "$policy"
    [ "$rc" -eq 0 ] || exit "$rc"
fi
# Gloo's headers: libtorch's ProcessGroupGloo.hpp includes them and the wheel does not ship them
# (the engine's c10d shim needs the headers only; the symbols are libtorch's own).
if [ ! -f /usr/include/gloo/algorithm.h ]; then
    log "installing Debian's libgloo-dev (headers for libtorch's c10d Gloo process group)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq libgloo-dev >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null && apt-get install -y -qq libgloo-dev >/dev/null; }
fi
# Headless Chromium, with which the run report test renders report.html as a person would see it.
if ! command -v chromium >/dev/null; then
    log "installing Debian's chromium"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq chromium >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; }
fi

# 4. Build and install the built-in plugins. The set-up of a fresh clone and of an up-to-date
#    one write the same registry.json: it declares components, not machine state.
log "building (cargo build --release)"
cargo build --release --quiet
"$ROOT/target/release/gymnos-host" plugins install --builtins --replace >/dev/null

# 5. Fashion-MNIST as class-per-folder PNG files (the image-folder experiment and benchmarks):
#    data/fashion-mnist-png/{train,test}/<class>/<index>.png. The tool skips a complete folder.
for part in train:train t10k:test; do
    "$ROOT/target/release/gymnos-idx-to-images" \
        --images "$ROOT/data/fashion-mnist/${part%%:*}-images-idx3-ubyte.gz" \
        --labels "$ROOT/data/fashion-mnist/${part%%:*}-labels-idx1-ubyte.gz" \
        --out "$ROOT/data/fashion-mnist-png/${part##*:}" --format png >/dev/null
done
log "ready: $("$ROOT/target/release/gymnos-host" plugins list --json | "$VENV/bin/python" -c 'import json,sys; print(len(json.load(sys.stdin)), "plugins installed")')"
