#!/usr/bin/env bash
# Meta-train (or debug) LPG on the GPUs of this machine: one process sees all local GPUs and
# shards the population's lifetimes over them (lifetimes per task must divide by the GPU count).
#
#   bash launch/local_gpu.sh setup                   # venv with the CUDA build of jaxlib
#   bash launch/local_gpu.sh train [extra flags]     # CONFIG / WORKDIR / GPUS from the environment
#   bash launch/local_gpu.sh debug                   # tiny shapes, NaN checks
#
# GPUS=0 restricts to one GPU (CUDA_VISIBLE_DEVICES). XLA preallocates 75% of GPU memory by
# default; PREALLOCATE=false makes it allocate on demand (slower, but shares the GPU). Not run by
# CI (no GPU here).
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=${CONFIG:-experiments/configs/lpg.py:tabular}
WORKDIR=${WORKDIR:-runs/gpu}
CUDA=${CUDA:-cuda13}   # cuda12 for older drivers
PREALLOCATE=${PREALLOCATE:-true}
export XLA_PYTHON_CLIENT_PREALLOCATE=$PREALLOCATE
if [ -n "${GPUS:-}" ]; then export CUDA_VISIBLE_DEVICES=$GPUS; fi

case "${1:-}" in
  setup)
    python3 -m venv .venv && .venv/bin/pip install -q -e ".[dev]" "jax[$CUDA]==0.10.2"
    .venv/bin/python -c "import jax; print(jax.devices())"
    ;;
  train)
    shift
    .venv/bin/python -m launch.train --config "$CONFIG" --workdir "$WORKDIR" "$@"
    ;;
  debug)
    shift
    .venv/bin/python -m launch.train --config "$CONFIG" --workdir "$WORKDIR-debug" --config.debug "$@"
    ;;
  *)
    echo "usage: $0 setup|train|debug [flags]" >&2
    exit 2
    ;;
esac
