"""Where the time goes: one forward pass of a dense model and its compressed copy, by operator.

    .venv/bin/python benchmarks/profile_lowrank.py runs/vit_b_k2 --vs timm:vit_base_patch16_224 --batch-size 32

Prints each model's total time and the time in matrix products (addmm/mm/bmm), from torch.profiler,
so one can tell whether the factorized layers or the untouched operators limit the speed-up. Like the
``pela`` command, it keeps freed memory for reuse (`pela.keep_freed_memory`); ``PELA_KEEP_FREED_MEMORY=0``
profiles glibc's default, where re-faulting large activations shows up in copy_ and gelu.
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.profiler import ProfilerActivity, profile

import pela
from pela.arch import example_inputs

GEMMS = ("aten::addmm", "aten::mm", "aten::bmm")


def run(model: torch.nn.Module, batch_size: int) -> dict:
    inputs = example_inputs(model, batch_size)
    call = (lambda: model(*inputs)) if isinstance(inputs, tuple) else (lambda: model(**inputs))
    with torch.inference_mode():
        call(), call()  # warm-up: the allocator reaches its steady state on the second pass
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            call()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    gemm = sum(e.self_cpu_time_total for e in events if e.key in GEMMS) / 1e6
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
    return {"seconds": total, "gemm_seconds": gemm, "other_seconds": total - gemm,
            "top_ops_seconds": {e.key: e.self_cpu_time_total / 1e6 for e in top}}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--vs", required=True)
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args()
    pela.keep_freed_memory()
    small = pela.load_model(args.model)
    dense = pela.load_model(args.vs, random_init=True)
    a, b = run(dense, args.batch_size), run(small, args.batch_size)
    result = {"batch_size": args.batch_size, "dense": a, "compressed": b,
              "ratio_total": a["seconds"] / b["seconds"], "ratio_gemm": a["gemm_seconds"] / b["gemm_seconds"]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
