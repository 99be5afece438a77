#!/usr/bin/env bash
# GPU rank study for issue #2 (benchmarks/rank_study.py): which ranks the tensor cores run fast, and
# ViT-B/16 k=2 with align 8, 32, 64 and sweep-picked ranks vs dense, bf16, batch 256, compiled; then
# the same models under max-autotune with what time is left. Carry .whl only:
#   bash benchmarks/device/rank_study.sh [SECONDS, default 540]
set -uo pipefail
cd "$(dirname "$0")/../.."
limit=${1:-540}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-$PWD/runs/device_out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)"
echo "== default compile (at ${SECONDS}s)"
timeout $((limit * 3 / 4)) python3 -m benchmarks.rank_study --profile --out "$OUT/rank_study_cuda.json" 2>&1 | tee "$OUT/rank_study_cuda.log" | grep -v Warning
left=$((limit - SECONDS))
echo "== max-autotune, ${left}s left (at ${SECONDS}s)"
[ "$left" -gt 60 ] && timeout "$left" python3 -m benchmarks.rank_study --aligns 8,64 --compile-mode max-autotune --reps 3 \
  --out "$OUT/rank_study_cuda_autotune.json" 2>&1 | tee "$OUT/rank_study_cuda_autotune.log" | grep -v Warning
echo "elapsed ${SECONDS}s"
