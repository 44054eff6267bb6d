#!/usr/bin/env bash
# Benchmark: `gymnos-host plugins list` (and `--json`, `plugins info`, `--help`) with 100
# plugin libraries installed: 100 distinct files (copies of the mlp plugin with distinct
# trailing bytes, so distinct hashes), each with its own registry record and component name.
# Needs the set-up to have run. Usage: benches/plugins-list.sh [runs]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="${1:-30}"
HOST="$ROOT/target/release/gymnos-host"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$HOST" --registry "$WORK/registry.json" plugins install "$ROOT/target/release/libgymnos_mlp.so" >/dev/null
"$ROOT/.venv/bin/python" - "$WORK" <<'PY'
import hashlib, json, os, shutil, sys
work = sys.argv[1]
reg_path = os.path.join(work, "registry.json")
reg = json.load(open(reg_path))
template = reg["libraries"][0]
src = os.path.join(work, template["path"])
libs = []
for i in range(100):
    dst = os.path.join(work, "plugin-store", f"libbench_{i:03}.so")
    shutil.copyfile(src, dst)
    with open(dst, "ab") as f:
        f.write(f"bench-{i}".encode())
    data = open(dst, "rb").read()
    st = os.stat(dst)
    rec = json.loads(json.dumps(template))
    rec.update(path=f"plugin-store/libbench_{i:03}.so", sha256=hashlib.sha256(data).hexdigest(),
               size=st.st_size, modified_ns=st.st_mtime_ns, package=f"bench-{i}")
    rec["components"][0]["name"] = f"bench-model-{i:03}"
    libs.append(rec)
reg["libraries"] = libs
json.dump(reg, open(reg_path, "w"), indent=2)
PY
test "$("$HOST" --registry "$WORK/registry.json" plugins list --json | "$ROOT/.venv/bin/python" -c 'import json,sys; r=json.load(sys.stdin); print(sum(x["loadable"] for x in r))')" = 100
command -v hyperfine >/dev/null || { apt-get install -y -qq hyperfine >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq hyperfine; }; } >/dev/null
hyperfine --warmup 3 --runs "$RUNS" -N \
    "$HOST --registry $WORK/registry.json plugins list" \
    "$HOST --registry $WORK/registry.json plugins list --json" \
    "$HOST --registry $WORK/registry.json plugins info bench-model-050" \
    "$HOST --help" \
    "$ROOT/target/release/gymnos-engine --help"
