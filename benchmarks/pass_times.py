"""Many single forward passes, alternating two models: how much one pass moves on this machine.

    .venv/bin/python -m benchmarks.pass_times runs/vit_b_k2 --vs timm:vit_base_patch16_224 --pairs 28

`pela bench` reports each model's median round; this keeps every pass instead, in the order
model, vs, model, vs, ..., so one can see whether a noisy machine's slow spells are long (they hit
both passes of a pair alike) or short (they hit one pass). It reports each model's median pass, the
ratio of those medians, and the median and spread of the ratios of the passes paired in time. Freed
memory is kept, as by the ``pela`` command. Results: benchmarks/results/pass_times.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import pela
from benchmarks._results import report
from pela.bench import batch_for
from pela.utils.memory import keep_freed_memory


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("--vs", required=True)
    p.add_argument("--pairs", type=int, default=28)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--name", default="pass_times", help="result name (benchmarks/results/NAME.json)")
    args = p.parse_args()
    keep_freed_memory()
    models = {"model": pela.load(args.model).eval(), "vs": pela.load(args.vs, random_init=True).eval()}
    batches = {k: batch_for(m, args.batch_size, 128, torch.device("cpu"), torch.float32) for k, m in models.items()}

    def one(key: str) -> float:
        pos, kw = batches[key]
        start = time.perf_counter()
        models[key](*pos, **kw)
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"model": [], "vs": []}
    with torch.inference_mode():
        one("model"), one("vs")  # warm-up: the allocator reaches its steady state
        for i in range(args.pairs):
            for key in times:
                times[key].append(one(key))
            print(f"pair {i + 1}/{args.pairs}: {times['model'][-1]:.3f} s, {times['vs'][-1]:.3f} s", flush=True)
    paired = sorted(v / m for m, v in zip(times["model"], times["vs"]))
    median = {k: statistics.median(t) for k, t in times.items()}
    report(args.name, {
        "model": args.model, "vs": args.vs, "batch_size": args.batch_size, "pairs": args.pairs,
        "median_seconds": median, "ratio_of_medians": median["vs"] / median["model"],
        "paired_ratio": {"median": statistics.median(paired), "min": paired[0], "max": paired[-1],
                         "quartiles": statistics.quantiles(paired, n=4) if len(paired) > 1 else paired},
        "spread": {k: {"min": min(t), "max": max(t)} for k, t in times.items()},
        "seconds": times,
    })


if __name__ == "__main__":
    main()
