"""How far does distillation carry? The demo's k=2 student fine-tuned after 0, 300, 1000 and 3000 steps.

The demo's data, compression, distillation and fine-tuning recipe (`benchmarks/harness.py`), with only the number
of distillation steps changed (each count is its own run, with its own warm-up + cosine schedule);
the end points get 3 seeds (distillation and fine-tuning seeds both change), the middle ones 1.
Each finished run is kept in benchmarks/results/distill_steps.json as soon as it ends, and runs
already there are skipped, so the study can be spread over several sessions or machines
(on the GPU when there is one). The plot goes to docs/distill_steps.png.

    .venv/bin/python -m benchmarks.distill_steps [--steps 0,300,1000,3000] [--seeds 3] [--max-steps 1000]
        [--results FILE.json] [--plot FILE.png]

A study on another machine (a GPU) goes to its own --results/--plot, so runs on different hardware
and precision (bf16 autocast on a GPU) are never mixed in one mean.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

import pela
from benchmarks._results import save
from benchmarks.harness import (
    StudySettings,
    distill_student,
    finetune_and_evaluate,
    minilm_dir,
    study_data,
)
from pela import LowRankConfig

RESULTS = Path(__file__).with_name("results") / "distill_steps.json"
PLOT = Path(__file__).resolve().parents[1] / "docs" / "distill_steps.png"


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {"runs": []}


def _save(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save(path, results)


def summarize(results: dict) -> dict:
    by_steps: dict[int, list[float]] = {}
    for r in results["runs"]:
        by_steps.setdefault(r["steps"], []).append(r["accuracy"])
    return {str(s): {"n": len(a), "mean": statistics.mean(a), "std": statistics.stdev(a) if len(a) > 1 else None}
            for s, a in sorted(by_steps.items())}


def plot(results: dict, path: Path) -> None:
    from pela.utils.figures import pyplot, save_figure

    table = summarize(results)
    fig, ax = pyplot().subplots(figsize=(6, 4))
    steps = [int(s) for s in table]
    ax.errorbar(steps, [100 * v["mean"] for v in table.values()], yerr=[100 * (v["std"] or 0) for v in table.values()],
                marker="o", capsize=4, label="PELA student, k=2")
    if "teacher" in results:
        ax.axhline(100 * results["teacher"]["accuracy"], color="k", ls="--", lw=1, label="teacher, fine-tuned")
    ax.set_xscale("symlog", linthresh=100)  # 0 on a linear stretch, then 300/1000/3000 evenly
    ax.set_xlim(-20, max(steps + [300]) * 1.5)
    ax.set(xlabel="distillation steps (linear to 100, log beyond)", ylabel="test accuracy (%)",
           title="accuracy after distillation + fine-tuning")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", default="0,300,1000,3000", help="distillation step counts")
    p.add_argument("--seeds", type=int, default=3, help="seeds for the smallest and largest step counts")
    p.add_argument("--max-steps", type=int, default=None, help="run only counts up to this (the rest another time)")
    p.add_argument("--descending", action="store_true", help="largest counts first (when time may run out)")
    p.add_argument("--results", type=Path, default=RESULTS, help="JSON file that keeps finished runs")
    p.add_argument("--plot", type=Path, default=PLOT, help="where the figure goes")
    args = p.parse_args()
    counts = sorted(int(s) for s in args.steps.split(","))
    settings = StudySettings()
    data = study_data(Path("runs/bench_distill_steps/data"), settings)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    results = _load(args.results)
    done = {(r["steps"], r["seed"]) for r in results["runs"]}
    if "teacher" not in results:
        metrics, _ = finetune_and_evaluate(pela.load(str(minilm_dir())), data, settings)
        results["teacher"] = {"accuracy": metrics["accuracy"], "device": device}
        _save(results, args.results)
    compressed = pela.load(str(minilm_dir()))
    pela.compress(compressed, LowRankConfig(ratio=2))
    for steps in reversed(counts) if args.descending else counts:
        if args.max_steps is not None and steps > args.max_steps:
            continue
        seeds = range(args.seeds) if steps in (counts[0], counts[-1]) else range(1)
        for seed in seeds:
            if (steps, seed) in done:
                continue
            began = time.perf_counter()
            student = copy.deepcopy(compressed)
            if steps:
                student, _ = distill_student(student, data, settings, steps=steps, seed=seed)
            metrics, _ = finetune_and_evaluate(student, data, settings, seed=seed)
            results["runs"].append({"steps": steps, "seed": seed, "accuracy": metrics["accuracy"], "device": device,
                                    "seconds": round(time.perf_counter() - began, 1)})
            print(f"steps {steps} seed {seed}: accuracy {metrics['accuracy']:.4f}", flush=True)
            _save(results, args.results)
    results["summary"] = summarize(results)
    _save(results, args.results)
    plot(results, args.plot)
    print(json.dumps(results["summary"], indent=2))


if __name__ == "__main__":
    main()
