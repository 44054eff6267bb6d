#!/usr/bin/env bash
# The main job, from a fresh clone: set-up, then the default experiment (a CNN on
# Fashion-MNIST), recorded under trainings/fashion-mnist-cnn/executions/<timestamp>/.
# Extra arguments go to `gymnos-host run` (e.g. --set training.epochs=2).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/target/release/gymnos-host" run experiments/fashion-mnist-cnn.json "$@"
