"""Which ranks a device runs fast, and whether choosing them lifts a compressed model's speed-up.

    python3 -m benchmarks.rank_study --out rank_study.json              # on a GPU: bf16, batch 256, compiled
    .venv/bin/python -m benchmarks.rank_study --device cpu --dtype float32 --batch-size 32 --no-compile \
        --reps 3 --out benchmarks/results/rank_study_cpu.json             # this CPU, as issue #2 measures it

1. **Sweep.** For every distinct factorized shape of the model at ratio k (in, out, tokens per batch),
   time the dense product and the factorized pair ``(x·Aᵀ)·Bᵀ + b`` at ranks from 0.6× to 1.4× the
   exact-k rank in steps of 16 (minimum over ``--reps``). Tensor-core tiles are 64 to 256 wide, so a
   rank just past a tile edge costs a whole extra tile (CPU kernels have vector widths and blocks too):
   the sweep shows where those steps are.
2. **Pick.** Per shape, the ranks that make the products fastest while keeping between ``--keep`` and
   1.0 of the exact-k parameters (so the model is k's size, not smaller).
3. **Whole models.** ``pela.benchmark`` (compiled, interleaved rounds) of the dense model against k with
   ``align`` 8 (the default), 32 and 64, and against the picked ranks.
4. **Profile** (``--profile``): GPU kernel time of dense and k/align 8, split as benchmarks/profile_lowrank.py does.

Every part is written to ``--out`` as soon as it is done, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import pela
from benchmarks._results import save as save_result
from benchmarks.lowrank_gemm import layer_shapes
from pela.bench import DTYPES, benchmark
from pela.utils.memory import keep_freed_memory


def exact_rank(n_in: int, n_out: int, ratio: float) -> int:
    return math.floor(n_in * n_out / (ratio * (n_in + n_out)))


def time_op(op, device: torch.device, reps: int, calls: int) -> float:
    """Minimum seconds per call over ``reps`` repetitions of ``calls`` calls (after one warm-up)."""
    best = float("inf")
    for _ in range(reps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(calls):
            op()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def sweep(shapes: dict, batch_size: int, device: torch.device, dtype: torch.dtype, ratio: float, reps: int) -> list[dict]:
    calls = 10 if device.type == "cuda" else 1
    make = dict(device=device, dtype=dtype)
    rows = []
    with torch.inference_mode():
        for (n_in, n_out, tokens), count in sorted(shapes.items()):
            m = tokens * batch_size
            x = torch.randn(m, n_in, **make)
            w, bias = torch.randn(n_out, n_in, **make) / n_in**0.5, torch.randn(n_out, **make)
            dense = time_op(lambda: F.linear(x, w, bias), device, reps, calls)
            r0, even = exact_rank(n_in, n_out, ratio), n_in * n_out // (n_in + n_out)
            ranks = sorted({r for r in range(16, even, 16) if 0.6 * r0 <= r <= 1.4 * r0} | {r0})
            times = {}
            for r in ranks:
                a, b = torch.randn(r, n_in, **make) / n_in**0.5, torch.randn(n_out, r, **make) / r**0.5
                times[r] = time_op(lambda: F.linear(F.linear(x, a), b, bias), device, reps, calls)
            rows.append({"in": n_in, "out": n_out, "tokens": m, "count": count, "exact_rank": r0, "dense_ms": dense * 1e3,
                         "pair_ms": {str(r): t * 1e3 for r, t in times.items()}})
            print(f"{n_in}->{n_out} x{count} ({m} tokens): dense {dense * 1e3:.3f} ms; rank r0={r0}: "
                  + " ".join(f"{r}:{t * 1e3:.3f}" for r, t in times.items()), flush=True)
    return rows


def pick(rows: list[dict], keep: float) -> dict[tuple[int, int], int]:
    """Per (in, out): the rank, a multiple of 16, that makes the products fastest at k's size.

    Layers of one shape share a rank (they are one key of the result), also where they see different
    numbers of tokens: such rows are timed apart and summed here.
    """
    groups: dict[tuple[int, int], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["in"], r["out"]), []).append(r)
    budget = sum(r["count"] * r["exact_rank"] * (r["in"] + r["out"]) for r in rows)
    options = []  # per shape: (rank, parameters, ms) for each rank swept in every row of that shape
    for (n_in, n_out), group in groups.items():
        common = set.intersection(*({int(k) for k in r["pair_ms"]} for r in group))
        count = sum(r["count"] for r in group)
        options.append([(rank, count * rank * (n_in + n_out), sum(r["count"] * r["pair_ms"][str(rank)] for r in group))
                        for rank in sorted(common) if rank % 16 == 0])
    if math.prod(len(o) for o in options) > 2_000_000:
        raise SystemExit("too many shapes to search every combination")
    best, best_ms = None, float("inf")
    for combo in itertools.product(*options):
        params, ms = sum(c[1] for c in combo), sum(c[2] for c in combo)
        if keep * budget <= params <= budget and ms < best_ms:
            best, best_ms = combo, ms
    if best is None:
        raise SystemExit("no combination of swept ranks fits the parameter window; lower --keep")
    print(f"picked ranks {[c[0] for c in best]}: {best_ms:.3f} ms of products", flush=True)
    return {shape: c[0] for shape, c in zip(groups, best)}


def with_ranks(model: torch.nn.Module, factorized: list[str], ranks: dict[tuple[int, int], int]) -> torch.nn.Module:
    """``model`` with each named linear layer replaced by a LowRankLinear of its shape's rank (SVD factors)."""
    for name in factorized:
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        linear = getattr(owner, child)
        setattr(owner, child, pela.LowRankLinear.from_linear(linear, ranks[(linear.in_features, linear.out_features)]))
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="timm:vit_base_patch16_224")
    p.add_argument("--ratio", type=float, default=2.0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16", choices=list(DTYPES))
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--keep", type=float, default=0.98, help="the picked ranks keep at least this fraction of k's parameters")
    p.add_argument("--aligns", default="8,32,64")
    p.add_argument("--no-pick", action="store_true", help="skip the sweep-picked model in part 3")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode for part 3, e.g. max-autotune")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    keep_freed_memory()  # as the pela command does: on a CPU, glibc's default re-faults every large activation
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    result: dict = {"model": args.model, "ratio": args.ratio, "batch_size": args.batch_size, "dtype": args.dtype,
                    "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    "torch": torch.__version__, "compile_mode": args.compile_mode}
    out = Path(args.out)

    def keep() -> None:
        save_result(out, result)

    fresh = lambda: pela.load(args.model, random_init=True)  # noqa: E731
    probe = fresh()
    report = pela.compress(probe, pela.LowRankConfig(ratio=args.ratio, align=1))
    factorized = [row.name for row in report.layers if row.rank is not None]
    shapes = {}
    for (n_in, n_out, _rank, tokens), count in layer_shapes(probe).items():
        shapes[(n_in, n_out, tokens)] = shapes.get((n_in, n_out, tokens), 0) + count
    result["sweep"] = sweep(shapes, args.batch_size, device, dtype, args.ratio, args.reps)
    keep()
    ranks = pick(result["sweep"], args.keep)
    result["picked_ranks"] = {f"{i}x{o}": r for (i, o), r in ranks.items()}
    keep()

    models = {"dense": fresh()}
    for align in (int(a) for a in args.aligns.split(",")):
        m = fresh()
        pela.compress(m, pela.LowRankConfig(ratio=args.ratio, align=align, device=args.device))
        models[f"k{args.ratio:g}_align{align}"] = m
    if not args.no_pick:
        models["picked"] = with_ranks(fresh().to(device), factorized, ranks)
    start = time.perf_counter()
    bench = benchmark(models, batch_size=args.batch_size, device=args.device, dtype=args.dtype, compile=not args.no_compile,
                      compile_mode=args.compile_mode, iters=20 if device.type == "cuda" else 1, rounds=5 if device.type == "cuda" else 2)
    dense_ms = bench[0].ms_per_batch
    result["models"] = [r.to_dict() | {"speedup": dense_ms / r.ms_per_batch} for r in bench]
    result["models_seconds"] = time.perf_counter() - start
    for r in result["models"]:
        print(f"{r['name']}: {r['params']:,} params, {r['ms_per_batch']:.2f} ms/batch, {r['speedup']:.3f}x dense", flush=True)
    keep()

    if args.profile:
        from benchmarks.profile_lowrank import run
        for name in ("dense", f"k{args.ratio:g}_align8"):
            if name in models:
                result.setdefault("profile", {})[name] = run(models[name], args.batch_size, device, dtype, not args.no_compile)
                keep()
        print(json.dumps(result.get("profile"), indent=2))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
