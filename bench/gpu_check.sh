#!/usr/bin/env bash
# Device check for a lent GPU (see bench/gpu_check.py): ~1.1B config-only llama, LoRA steps,
# batched generation, QLoRA; prints tokens/s, peak memory and MFU last.
#   bench/gpu_check.sh            # CUDA, <= 8 min on one H100
#   bench/gpu_check.sh --tiny     # CPU smoke run (tests/test_gpu_check.py)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
exec "$PYTHON" bench/gpu_check.py "$@"
