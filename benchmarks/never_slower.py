"""Is any student pela makes by default slower than its original? One table, three model kinds.

    .venv/bin/python -m benchmarks.never_slower                       # ViT-B/16, BERT-base, SmolLM2
    .venv/bin/python -m benchmarks.never_slower --models smollm2 --ratios 2

Each original is compressed with `pela.compress` at each ratio and every other setting at its
default (plain SVD, the speed check at the rows the model is served with: a batch of 32 for the
encoders, one token at a time for the language model), then measured beside its original in one
`pela.bench` run (`benchmark`: batch 32, 128 tokens; `generation_benchmark` for the language model:
batch 1, 128-token prompts, 64 new tokens), both laid out by `pela.tune_layout`. ViT-B/16 and
BERT-base (`BertConfig()`'s size) are randomly initialized: speed does not depend on the weights.
Results: benchmarks/results/never_slower.json, one row per model and ratio, written after each.
"""

from __future__ import annotations

import argparse
import copy
import functools

import torch

import pela
from benchmarks._speed import study
from pela.bench import benchmark, generation_benchmark

MODELS = ("vit_b16", "bert_base", "smollm2")


def row(name: str, model: torch.nn.Module, ratio: float, rounds: int) -> dict:
    student = copy.deepcopy(model)
    compressed = pela.compress(student, pela.LowRankConfig(ratio=ratio))
    kept = [r.name for r in compressed.layers if r.reason and "no faster" in r.reason]
    models = {"student": student, "original": model}
    if name == "smollm2":
        s, o = generation_benchmark(models, prompt_tokens=128, new_tokens=64, rounds=rounds)
        speed = {"decode": s.decode_tokens_per_s / o.decode_tokens_per_s,
                 "prefill": s.prefill_tokens_per_s / o.prefill_tokens_per_s,
                 "decode_tokens_per_s": [s.decode_tokens_per_s, o.decode_tokens_per_s]}
    else:
        s, o = benchmark(models, batch_size=32, seq_len=128, iters=3, rounds=rounds)
        speed = {"throughput": s.items_per_s / o.items_per_s,
                 "items_per_s": [s.items_per_s, o.items_per_s],
                 "round_ms": [s.round_ms, o.round_ms]}
    return {"model": name, "ratio": ratio, "params": [s.params, o.params],
            "kept_dense_for_speed": kept, **speed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--ratios", type=float, nargs="+", default=[1.25, 2.0, 3.0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--name", default="never_slower", help="results file name")
    args = parser.parse_args()
    settings = {name: args.ratios for name in args.models}
    study(args.name, "ratio", settings, functools.partial(row, rounds=args.rounds))


if __name__ == "__main__":
    main()
