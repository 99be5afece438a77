"""A speed the user names: is the student `LowRankConfig(speedup=...)` makes that fast in `pela bench`?

    .venv/bin/python -m benchmarks.speed_target                  # MiniLM, ViT-B/16, SmolLM2-135M
    .venv/bin/python -m benchmarks.speed_target --models smollm2 --targets 1.1 1.2

Each original is compressed by `pela.compress` with ``speedup`` at each target and every other
setting at its default (plain SVD: speed does not depend on which factors; predicted, then measured
by `pela.compress` itself, at the rows the model is served with: a batch of 32 × 128 tokens for
MiniLM, of 32 images for ViT-B/16, one decoding step for SmolLM2), then measured beside its
original in a separate
`pela.bench` run, both laid out by
`pela.tune_layout` (`benchmark`: batch 32, 128 tokens; `generation_benchmark`: batch 1, 128-token
prompts, 64 new tokens). Results: benchmarks/results/speed_target.json, one row per model and
target, written after each (a rerun resumes).
"""

from __future__ import annotations

import argparse
import copy
import functools

import torch

import pela
from benchmarks._speed import study
from pela.bench import benchmark, generation_benchmark

TARGETS = {"minilm": (1.25, 1.5, 2.0), "vit_b16": (1.5, 2.0), "smollm2": (1.1, 1.2, 1.35)}


def row(name: str, model: torch.nn.Module, target: float, rounds: int) -> dict:
    student = copy.deepcopy(model)
    compressed = pela.compress(student, pela.LowRankConfig(speedup=target))
    models = {"student": student, "original": model}
    if name == "smollm2":
        s, o = generation_benchmark(models, prompt_tokens=128, new_tokens=64, rounds=rounds)
        measured = s.decode_tokens_per_s / o.decode_tokens_per_s
        extra = {"prefill": s.prefill_tokens_per_s / o.prefill_tokens_per_s,
                 "decode_ms_per_token": [s.decode_ms_per_token, o.decode_ms_per_token]}
    else:
        s, o = benchmark(models, batch_size=32, seq_len=128, iters=3, rounds=rounds)
        measured = s.items_per_s / o.items_per_s
        extra = {"round_ms": [s.round_ms, o.round_ms]}
    return {"model": name, "target": target, "predicted": compressed.speed["predicted"],
            "compress_measured": compressed.speed["measured"], "bench": measured,
            "params": [s.params, o.params],
            "linear_params_kept": compressed.linear_params_after / compressed.linear_params_before,
            "prediction": compressed.speed, **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    parser.add_argument("--targets", type=float, nargs="+", help="default: per model, TARGETS")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--name", default="speed_target", help="results file name")
    args = parser.parse_args()
    settings = {name: args.targets or TARGETS[name] for name in args.models}
    study(args.name, "target", settings, functools.partial(row, rounds=args.rounds))


if __name__ == "__main__":
    main()
