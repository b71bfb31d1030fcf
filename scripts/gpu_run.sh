#!/usr/bin/env bash
# Chapter 3 on one GPU, offline: writes results/paper/03_coupled_distance.json and the GPU figure of
# benchmarks/batched_trajectories.py (results/paper/batched_trajectories_gpu.txt).
#
#   scripts/gpu_run.sh [PARAMS]          # default params/gpu/03_coupled_distance.yml
#
# Needs python3 with torch (CUDA), numpy, scipy, PyYAML, tqdm, matplotlib and scikit-learn. POT and
# scikit-bio (with the three small packages scikit-bio needs beyond those) are installed from wheels/ when
# missing, and the digits are read from wheels/mnist10k.npz when they are not in the data cache:
# `make gpu-wheels` fills wheels/ on a machine with a network. Nothing is fetched from a network here.
# Environment: PYTHON (python3), CTD_DEVICE (cuda), SCALE (paper), RESULTS_DIR (results),
# CACHE_DIR (.cache/pairs; an interrupted run resumes from it), BENCH (1: run the benchmark first).
set -euo pipefail
cd "$(dirname "$0")/.."
PARAMS=${1:-params/gpu/03_coupled_distance.yml}
PY=${PYTHON:-python3}
DEVICE=${CTD_DEVICE:-cuda}
SCALE=${SCALE:-paper}
RESULTS_DIR=${RESULTS_DIR:-results}
CACHE_DIR=${CACHE_DIR:-.cache/pairs}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
[ -f "$PARAMS" ] || { echo "gpu_run.sh: PARAMS=$PARAMS is not a file" >&2; exit 2; }

missing=$("$PY" -c 'import importlib.util as u; print(" ".join(m for m in ("torch", "numpy", "scipy", "yaml", "tqdm", "matplotlib", "sklearn", "ot", "skbio") if u.find_spec(m) is None))')
if [ -n "$missing" ]; then
  if ! ls wheels/*.whl >/dev/null 2>&1; then
    echo "gpu_run.sh: python lacks: $missing; and wheels/ holds no wheels (run 'make gpu-wheels' where there is a network)" >&2
    exit 2
  fi
  echo "installing from wheels/ (no network): $(ls wheels/*.whl | xargs -n1 basename | tr '\n' ' ')"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .gpu-site wheels/*.whl
  export PYTHONPATH="$PWD/.gpu-site:$PYTHONPATH"
fi
if [ -z "${CTD_DATA_DIR:-}" ] && [ ! -f "$HOME/.cache/ctd-book/mnist10k.npz" ] && [ -f wheels/mnist10k.npz ]; then
  export CTD_DATA_DIR="$PWD/wheels"
fi
"$PY" -c "from ctd_lib._util.checks import check_device; check_device('CTD_DEVICE', '$DEVICE')" || exit 2

start=$(date +%s)
if [ "${BENCH:-1}" = 1 ]; then
  mkdir -p "$RESULTS_DIR/$SCALE"
  "$PY" benchmarks/batched_trajectories.py --models paper-cnn --device "$DEVICE" --batch-size 20 --P 1 20 60 \
    --steps 30 | tee "$RESULTS_DIR/$SCALE/batched_trajectories_gpu.txt"
fi
"$PY" -m ctd_lib.experiments.task_distances --params "$PARAMS" --scale "$SCALE" --device "$DEVICE" \
  --results-dir "$RESULTS_DIR" --cache-dir "$CACHE_DIR"
echo "gpu_run.sh: done in $(( $(date +%s) - start )) s"
