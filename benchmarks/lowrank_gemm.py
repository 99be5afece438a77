"""The factorized products alone: each factorized layer's two products vs the dense product it replaced.

    .venv/bin/python -m benchmarks.lowrank_gemm runs/vit_b_k2 --batch-size 32
    python3 -m benchmarks.lowrank_gemm runs/vit_b_k2 --batch-size 256 --device cuda --dtype bfloat16

For every distinct factorized shape of a compressed model (in, out, rank, and the tokens one batch
sends through it, found by running the model once on one example), it times the dense product
``x·Wᵀ + b``, the first factor ``x·Aᵀ``, the second ``t·Bᵀ + b`` and the two in a row, interleaved
over ``--reps`` repetitions (minimum kept), and reports each one's FLOP rate. The totals, weighted by
how often each shape occurs, give the speed-up the matrix products allow, to set beside the FLOP
ratio and the whole model's (`pela bench`). Results: benchmarks/results/lowrank_gemm_{cpu,cuda}.json.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import torch
import torch.nn.functional as F

import pela
from benchmarks._results import report
from pela.bench import DTYPES, batch_for
from pela.utils.memory import keep_freed_memory


def layer_shapes(model: torch.nn.Module) -> Counter:
    """(in, out, rank, tokens per example) of every factorized layer, counted."""
    shapes, hooks = Counter(), []
    for module in model.modules():
        if isinstance(module, pela.LowRankLinear):
            def hook(m, args, _out):
                x = args[0]
                shapes[(m.in_features, m.out_features, m.rank, x.numel() // x.shape[-1])] += 1
            hooks.append(module.register_forward_hook(hook))
    args, kwargs = batch_for(model, 1, 128, torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        model(*args, **kwargs)
    for h in hooks:
        h.remove()
    return shapes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="a compressed model directory (pela compress --out)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=list(DTYPES))
    p.add_argument("--reps", type=int, default=10)
    args = p.parse_args()
    keep_freed_memory()
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    cuda = device.type == "cuda"
    calls = 10 if cuda else 1  # per repetition: GPU launches are asynchronous, so time several
    shapes = layer_shapes(pela.load(args.model).eval())
    rows, totals = [], Counter()
    make = dict(device=device, dtype=dtype)
    with torch.inference_mode():
        for (n_in, n_out, rank, tokens), count in sorted(shapes.items()):
            m = tokens * args.batch_size
            x, t = torch.randn(m, n_in, **make), torch.randn(m, rank, **make)
            w, a, b = (torch.randn(n_out, n_in, **make) / n_in**0.5, torch.randn(rank, n_in, **make) / n_in**0.5,
                       torch.randn(n_out, rank, **make) / rank**0.5)
            bias = torch.randn(n_out, **make)
            ops = {"dense": lambda: F.linear(x, w, bias), "first": lambda: F.linear(x, a),
                   "second": lambda: F.linear(t, b, bias), "both": lambda: F.linear(F.linear(x, a), b, bias)}
            flops = {"dense": 2 * m * n_in * n_out, "first": 2 * m * n_in * rank, "second": 2 * m * rank * n_out}
            flops["both"] = flops["first"] + flops["second"]
            best = {k: float("inf") for k in ops}
            for _ in range(args.reps + 1):  # the first round warms up
                for k, op in ops.items():
                    if cuda:
                        torch.cuda.synchronize(device)
                    start = time.perf_counter()
                    for _ in range(calls):
                        op()
                    if cuda:
                        torch.cuda.synchronize(device)
                    best[k] = min(best[k], (time.perf_counter() - start) / calls)
            rows.append({"in": n_in, "out": n_out, "rank": rank, "tokens": m, "count": count,
                         "ms": {k: v * 1e3 for k, v in best.items()},
                         "tflop_per_s": {k: flops[k] / best[k] / 1e12 for k in ops}})
            for k in ("dense", "both"):
                totals[k + "_ms"] += count * best[k] * 1e3
                totals[k + "_flop"] += count * flops[k]
            print(f"{n_in}->{rank}->{n_out} x{count}, {m} tokens: dense {best['dense'] * 1e3:.2f} ms, "
                  f"factorized {best['both'] * 1e3:.2f} ms ({best['first'] * 1e3:.2f} + {best['second'] * 1e3:.2f})", flush=True)
    name = f"lowrank_gemm_{device.type}"
    report(name, {"model": args.model, "batch_size": args.batch_size, "device": str(device), "dtype": args.dtype,
                  "gpu": torch.cuda.get_device_name(device) if cuda else None, "shapes": rows,
                  "dense_ms": totals["dense_ms"], "factorized_ms": totals["both_ms"],
                  "ratio": totals["dense_ms"] / totals["both_ms"], "flop_ratio": totals["dense_flop"] / totals["both_flop"]})


if __name__ == "__main__":
    main()
