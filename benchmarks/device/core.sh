#!/usr/bin/env bash
# First call: issue #2's GPU figures, a CUDA smoke check, and a dry run of the study (random-init MiniLM).
source "$(dirname "$0")/setup.sh"
set +e  # one failed figure must not cost the others
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, timm, typer, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'timm', timm.__version__, 'peft', peft.__version__)"
python3 benchmarks/device/gpu_check.py > "$OUT/gpu_check.log" 2>&1 && tail -20 "$OUT/gpu_check.log" || { echo "gpu_check FAILED"; tail -40 "$OUT/gpu_check.log"; }
python3 benchmarks/factorize_speed.py --device cuda && cp benchmarks/results/factorize_speed_cuda.json "$OUT/"
python3 benchmarks/device/fake_minilm.py .dry
PYTHONPATH=$PWD/.dry:$PYTHONPATH python3 benchmarks/distill_steps.py --steps 0,200 --seeds 1 --results "$OUT/dry_run.json" \
  --plot /tmp/dry.png > "$OUT/dry_run.log" 2>&1 && cat "$OUT/dry_run.json" || { echo "dry run FAILED"; tail -30 "$OUT/dry_run.log"; }
bash benchmarks/compressed_speed.sh cuda 8 > /dev/null && cp benchmarks/results/compressed_speed_cuda.json "$OUT/"
echo "elapsed ${SECONDS}s"
if [ "$SECONDS" -lt "${ALIGN1_IF_UNDER:-170}" ]; then
  bash benchmarks/compressed_speed.sh cuda 1 > /dev/null && cp benchmarks/results/compressed_speed_cuda_align1.json "$OUT/"
fi
echo "elapsed ${SECONDS}s"
