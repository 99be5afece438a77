"""Repeated `pela bench --vs` runs, alternating settings: allocator, and eager or compiled.

    .venv/bin/python -m benchmarks.cpu_speed_runs runs/vit_b_k2 --vs timm:vit_base_patch16_224 --runs 4
    .venv/bin/python -m benchmarks.cpu_speed_runs runs/vit_b_k2 --vs timm:vit_base_patch16_224 --runs 4 \
        --settings kept,compiled,max-autotune --name compressed_speed_cpu_compiled_runs

One `pela bench` run on a shared CPU moves with the neighbours' load (1.42–1.95× over 19 runs of
ViT-B k=2 on the 2-core development VM; docs/BENCHMARKS.md), so this runs it
``--runs`` times per setting, alternating the settings so a slow spell hits all of them, and reports
every run's ratio and their median. Each run is a fresh process. Settings: ``kept`` (eager, with
``PELA_KEEP_FREED_MEMORY=1``, the default of the ``pela`` command, see `pela.utils.memory`), ``glibc
default`` (eager, ``=0``: large blocks mapped afresh and page-faulted in on every forward pass),
``compiled`` (both models through ``torch.compile``, ``--compile``) and ``max-autotune``
(``--compile-mode max-autotune``). Results: benchmarks/results/NAME.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from benchmarks._results import report

# name: (PELA_KEEP_FREED_MEMORY, extra `pela bench` flags)
SETTINGS = {"kept": ("1", []), "glibc default": ("0", []), "compiled": ("1", ["--compile"]),
            "max-autotune": ("1", ["--config", "compile_mode=max-autotune"])}


def bench(model: str, vs: str, setting: tuple[str, list[str]], args: argparse.Namespace) -> dict:
    keep, flags = setting
    cmd = [sys.executable, "-m", "pela", "bench", model, "--vs", vs, "--config", "random_init=true",
           "--batch-size", str(args.batch_size), "--config", f"iters={args.iters}", "--config", f"rounds={args.rounds}",
           "--json", *flags]
    start = time.perf_counter()
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env={**os.environ, "PELA_KEEP_FREED_MEMORY": keep})
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        sys.exit(f"error: pela bench failed: {last}")
    out = json.loads(done.stdout)
    a, b = out["results"]
    return {"ratio": out["ratio"], "ms_per_batch": {a["name"]: a["ms_per_batch"], b["name"]: b["ms_per_batch"]},
            "seconds": time.perf_counter() - start}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("--vs", required=True)
    p.add_argument("--runs", type=int, default=4, help="runs per allocator setting")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only-kept", action="store_true", help="skip the glibc-default runs (same as --settings kept)")
    p.add_argument("--settings", default="kept,glibc default", help=f"comma-separated, from: {', '.join(SETTINGS)}")
    p.add_argument("--name", default="compressed_speed_cpu_runs", help="result name (benchmarks/results/NAME.json)")
    args = p.parse_args()
    names = ["kept"] if args.only_kept else [n.strip() for n in args.settings.split(",")]
    if unknown := [n for n in names if n not in SETTINGS]:
        sys.exit(f"error: unknown setting {unknown[0]!r}; choose from {', '.join(SETTINGS)}")
    settings = {n: SETTINGS[n] for n in names}
    runs: dict[str, list[dict]] = {name: [] for name in settings}
    for i in range(args.runs):
        for name, setting in settings.items():
            r = bench(args.model, args.vs, setting, args)
            runs[name].append(r)
            print(f"run {i + 1}/{args.runs}, {name}: ratio {r['ratio']:.3f}  "
                  + "  ".join(f"{k} {v:,.0f} ms" for k, v in r["ms_per_batch"].items()), flush=True)
    summary = {name: {"ratios": [round(r["ratio"], 4) for r in rs], "median_ratio": statistics.median(r["ratio"] for r in rs),
                      "min_ratio": min(r["ratio"] for r in rs), "max_ratio": max(r["ratio"] for r in rs)}
               for name, rs in runs.items()}
    report(args.name, {"model": args.model, "vs": args.vs, "batch_size": args.batch_size, "iters": args.iters,
                       "rounds": args.rounds, "settings": {n: {"keep_freed_memory": k, "flags": f} for n, (k, f) in settings.items()},
                       "summary": summary, "runs": runs})
    for name, s in summary.items():
        print(f"{name}: median {s['median_ratio']:.3f} (min {s['min_ratio']:.3f}, max {s['max_ratio']:.3f}) over {len(s['ratios'])} runs")


if __name__ == "__main__":
    main()
