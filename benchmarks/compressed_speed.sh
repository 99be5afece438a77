#!/usr/bin/env bash
# Real speed-up of a compressed model: ViT-B/16 at k=2 vs the dense model, side by side in one run.
#   bash benchmarks/compressed_speed.sh [cpu|cuda]
# CPU: float32, batch 32. CUDA: bfloat16, batch 256, both models compiled.
set -euo pipefail
cd "$(dirname "$0")/.."
device=${1:-cpu}
pela=.venv/bin/pela
mkdir -p benchmarks/results runs
$pela compress timm:vit_base_patch16_224 --random-init --ratio 2 --out runs/vit_b_k2 --overwrite --json > benchmarks/results/vit_b_k2_compress.json
if [ "$device" = cpu ]; then
  $pela bench runs/vit_b_k2 --vs timm:vit_base_patch16_224 --random-init --batch-size 32 --iters 3 --rounds 3 --json \
    | tee benchmarks/results/compressed_speed_cpu.json
else
  $pela bench runs/vit_b_k2 --vs timm:vit_base_patch16_224 --random-init --device cuda --dtype bfloat16 \
    --batch-size 256 --compile --iters 20 --rounds 5 --json | tee benchmarks/results/compressed_speed_cuda.json
fi
