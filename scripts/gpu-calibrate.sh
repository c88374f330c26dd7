#!/bin/sh
# The GPU check (python/omnibal/gpu_check.py): profiles InternViT-6B and InternLM2-20B blocks at
# real shapes in bf16 with SDPA on one GPU, compares them with the uncalibrated cost model and
# writes the calibration and a predicted-vs-measured table. PyTorch 2.x with CUDA, standard
# library only, no network. Usage: scripts/gpu-calibrate.sh [OUT_DIR] [flags of omnibal.gpu_check]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-gpu-calibration}
[ $# -gt 0 ] && shift
PYTHONPATH="$root/python${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python3}" -m omnibal.gpu_check --out "$out" "$@"
