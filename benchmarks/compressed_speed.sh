#!/usr/bin/env bash
# Real speed-up of a compressed model: ViT-B/16 at k=2 vs the dense model, side by side in one run.
#   bash benchmarks/compressed_speed.sh [cpu|cuda] [ALIGN]
# CPU: float32, batch 32, one run, then RUNS (default 4) fresh runs per allocator setting with their
# median (benchmarks/cpu_speed_runs.py). CUDA: bfloat16, batch 256, both models compiled. ALIGN (default 8) is the
# rank alignment; 1 gives the paper's exact ranks, whose effect on GPU tensor cores this shows.
# COMPILE_MODE (cuda only) passes a torch.compile mode, e.g. max-autotune, to both models.
# PELA overrides the command (default .venv/bin/pela), e.g. PELA="python3 -m pela" on a machine
# where the package is on PYTHONPATH rather than installed; PYTHON likewise (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
device=${1:-cpu}
align=${2:-8}
pela=${PELA:-.venv/bin/pela}
suffix=$([ "$align" = 8 ] && echo "" || echo "_align$align")
mode=${COMPILE_MODE:-}
compile_flag=$([ -n "$mode" ] && echo "--config compile_mode=$mode" || echo "--compile")
result_suffix=$suffix$([ -n "$mode" ] && echo "_$mode" || echo "")
mkdir -p benchmarks/results runs
$pela compress timm:vit_base_patch16_224 --config random_init=true --ratio 2 --config "align=$align" --out "runs/vit_b_k2$suffix" --overwrite --json \
  > "benchmarks/results/.vit_b_k2${suffix}_compress.json.tmp"
mv "benchmarks/results/.vit_b_k2${suffix}_compress.json.tmp" "benchmarks/results/vit_b_k2${suffix}_compress.json"  # whole or not at all
if [ "$device" = cpu ]; then
  $pela bench "runs/vit_b_k2$suffix" --vs timm:vit_base_patch16_224 --config random_init=true --batch-size 32 \
    --config iters=3 --config rounds=3 --json \
    | tee "benchmarks/results/.compressed_speed_cpu$suffix.json.tmp"
  mv "benchmarks/results/.compressed_speed_cpu$suffix.json.tmp" "benchmarks/results/compressed_speed_cpu$suffix.json"
  # one run on a shared CPU moves by 5-10%: the figure of record is the median of RUNS fresh runs
  ${PYTHON:-.venv/bin/python} -m benchmarks.cpu_speed_runs "runs/vit_b_k2$suffix" --vs timm:vit_base_patch16_224 --runs "${RUNS:-4}" \
    --name "compressed_speed_cpu_runs$suffix"
else
  $pela bench "runs/vit_b_k2$suffix" --vs timm:vit_base_patch16_224 --config random_init=true --device cuda \
    --dtype bfloat16 --batch-size 256 $compile_flag --config iters=20 --config rounds=5 --json | tee "benchmarks/results/.cuda$result_suffix.tmp"
  mv "benchmarks/results/.cuda$result_suffix.tmp" "benchmarks/results/compressed_speed_cuda$result_suffix.json"
fi
