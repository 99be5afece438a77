"""Where the time goes: one forward pass of a dense model and its compressed copy, by operator.

    .venv/bin/python -m benchmarks.profile_lowrank runs/vit_b_k2 --vs timm:vit_base_patch16_224 --batch-size 32
    python3 -m benchmarks.profile_lowrank runs/vit_b_k2 --vs timm:vit_base_patch16_224 --device cuda \
        --dtype bfloat16 --batch-size 256 --compile

Prints each model's total time and the time in matrix products, from torch.profiler, so one can tell
whether the factorized layers or the untouched operators limit the speed-up. On the CPU it sums the
operators' own CPU time (addmm/mm/bmm are the products). On a GPU it sums kernel time on the device,
split into matrix-product kernels (cuBLAS, CUTLASS, Inductor's mm templates), attention kernels and
the rest, and also times the pass on the wall clock, so launch gaps show as ``wall - kernels``. Like
the ``pela`` command, it keeps freed CPU memory for reuse (`pela.utils.memory.keep_freed_memory`);
``PELA_KEEP_FREED_MEMORY=0`` profiles glibc's default, where re-faulting large activations shows up in
copy_ and gelu.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

import pela
from pela.bench import DTYPES, batch_for
from pela.utils.memory import keep_freed_memory

GEMMS = ("aten::addmm", "aten::mm", "aten::bmm")
# substrings of GPU kernel names: cuBLAS (gemm, xmma, nvjet), CUTLASS, Inductor's mm templates
GEMM_KERNELS = ("gemm", "xmma", "nvjet", "cutlass", "triton_tem", "triton_mm")
ATTENTION_KERNELS = ("flash", "fmha", "attention", "attn")


def kind(kernel: str) -> str:
    name = kernel.lower()
    if any(s in name for s in ATTENTION_KERNELS):  # first: memory-efficient attention's kernels are CUTLASS ones
        return "attention"
    return "gemm" if any(s in name for s in GEMM_KERNELS) else "other"


def run(model: torch.nn.Module, batch_size: int, device: torch.device, dtype: torch.dtype, compile: bool,
        compile_mode: str | None = None) -> dict:
    model = model.eval().to(device, dtype)
    args, kwargs = batch_for(model, batch_size, 128, device, dtype)
    fn = torch.compile(model, mode=compile_mode) if compile or compile_mode else model
    call = lambda: fn(*args, **kwargs)  # noqa: E731
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with torch.inference_mode():
        call(), call()  # warm-up (and compilation): the allocator reaches its steady state on the second pass
        sync()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            start = time.perf_counter()
            call()
            sync()
            wall = time.perf_counter() - start
    events = prof.key_averages()
    if not cuda:
        total = sum(e.self_cpu_time_total for e in events) / 1e6
        gemm = sum(e.self_cpu_time_total for e in events if e.key in GEMMS) / 1e6
        top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
        return {"seconds": total, "gemm_seconds": gemm, "other_seconds": total - gemm, "wall_seconds": wall,
                "top_ops_seconds": {e.key: e.self_cpu_time_total / 1e6 for e in top}}
    kernels = [e for e in events if e.device_type == DeviceType.CUDA]
    by_kind = {"gemm": 0.0, "attention": 0.0, "other": 0.0}
    for e in kernels:
        by_kind[kind(e.key)] += e.self_device_time_total / 1e6
    total = sum(by_kind.values())
    top = sorted(kernels, key=lambda e: e.self_device_time_total, reverse=True)[:12]
    return {"seconds": total, "gemm_seconds": by_kind["gemm"], "attention_seconds": by_kind["attention"],
            "other_seconds": by_kind["other"] + by_kind["attention"], "wall_seconds": wall,
            "top_kernels_seconds": {e.key[:120]: e.self_device_time_total / 1e6 for e in top}}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--vs", required=True)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=list(DTYPES))
    p.add_argument("--compile", action="store_true", help="torch.compile both models (as pela bench --compile)")
    p.add_argument("--compile-mode", default=None, help="a torch.compile mode, e.g. max-autotune (implies --compile)")
    args = p.parse_args()
    keep_freed_memory()
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    small = pela.load(args.model)
    dense = pela.load(args.vs, random_init=True)
    a = run(dense, args.batch_size, device, dtype, args.compile, args.compile_mode)
    b = run(small, args.batch_size, device, dtype, args.compile, args.compile_mode)
    result = {"batch_size": args.batch_size, "device": str(device), "dtype": args.dtype,
              "compiled": args.compile or args.compile_mode is not None, "compile_mode": args.compile_mode,
              "dense": a, "compressed": b, "ratio_total": a["seconds"] / b["seconds"],
              "ratio_gemm": a["gemm_seconds"] / b["gemm_seconds"], "ratio_wall": a["wall_seconds"] / b["wall_seconds"]}
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
