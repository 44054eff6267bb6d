#!/usr/bin/env bash
# Benchmark: `gymnos-host plugins list` (and `--json`, `plugins info`, `validate`, `--help`) with
# 100 plugin libraries installed: 100 distinct files, copies of the mlp plugin whose component
# name (`mlp` -> `bNN`) and package name (`gymnos-mlp` -> `gymnos-bNN`) are patched in place, so
# each is its own plugin with its own hash. Prints hyperfine's table, then each command's peak
# resident memory. Needs the set-up to have run. Usage: benches/plugins-list.sh [runs]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="${1:-30}"
HOST="$ROOT/target/release/gymnos-host"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$HOST" plugins init --no-builtins "$WORK" >/dev/null
mkdir "$WORK/libs"
"$ROOT/.venv/bin/python" - "$ROOT/target/release/libgymnos_mlp.so" "$WORK/libs" <<'PY'
import os, sys
source, out = sys.argv[1], sys.argv[2]
data = open(source, "rb").read()
# The component's name as the SDK stores it (NAME, then VERSION and DESCRIPTION), and the
# manifest's package name; both keep their length.
name, package = b"mlp1.0.0Multilayer", b"gymnos-mlp\x00"
assert data.count(name) == 1 and data.count(package) >= 1, "the mlp library changed: update the patch"
for i in range(100):
    patched = data.replace(name, b"b%02d1.0.0Multilayer" % i).replace(package, b"gymnos-b%02d\x00" % i)
    open(os.path.join(out, "libbench_%02d.so" % i), "wb").write(patched)
PY
"$HOST" --registry "$WORK/registry.json" plugins install "$WORK/libs" >/dev/null
for lib in csv_dataset standardize jsonl_tracker; do
    "$HOST" --registry "$WORK/registry.json" plugins install "$ROOT/target/release/libgymnos_$lib.so" >/dev/null
done
loadable="$("$HOST" --registry "$WORK/registry.json" plugins list --json | "$ROOT/.venv/bin/python" -c 'import json,sys; r=json.load(sys.stdin); print(sum(x["loadable"] for x in r))')"
test "$loadable" = 103 || { echo "expected 103 loadable plugins, found $loadable" >&2; exit 1; }
sed -e 's/"mlp@^1"/"b50"/' "$ROOT/experiments/wine-mlp.json" \
    | sed -e "s#\"\.\./data/#\"$ROOT/data/#" > "$WORK/experiment.json"
"$HOST" --registry "$WORK/registry.json" validate "$WORK/experiment.json" >/dev/null
command -v hyperfine >/dev/null || { apt-get install -y -qq hyperfine >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq hyperfine; }; } >/dev/null
commands=(
    "$HOST --registry $WORK/registry.json plugins list"
    "$HOST --registry $WORK/registry.json plugins list --json"
    "$HOST --registry $WORK/registry.json plugins info b50"
    "$HOST --registry $WORK/registry.json validate $WORK/experiment.json"
    "$HOST --help"
    "$ROOT/target/release/gymnos-engine --help"
)
hyperfine --warmup 3 --runs "$RUNS" -N "${commands[@]}"
echo "peak resident memory:"
for command in "${commands[@]}"; do
    # shellcheck disable=SC2086
    kib="$(/usr/bin/time -f %M $command 2>&1 >/dev/null | tail -1)"
    echo "  $((kib / 1024)) MiB  ${command#"$ROOT"/}"
done
