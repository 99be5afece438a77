"""Where a decoding step's time goes: the linear products, and everything else.

    .venv/bin/python -m benchmarks.decode_breakdown                  # SmolLM2-135M, k=1.67
    .venv/bin/python -m benchmarks.decode_breakdown --ratio 1.25

The original and its plain-SVD student at ``--ratio`` (every layer factorized:
``speed_check=False``), both laid out for one row (`pela.tune_layout`), decode greedily after a
128-token prompt (batch 1, eager, the cache growing). Each is timed twice in every round: as it
is, and with every linear product replaced by a ready-made tensor of its output's shape
(``F.linear`` patched), which leaves what is not a product: norms, rotary embeddings, attention,
the cache, Python's calls. The difference is the products' time. The bound this gives: a student
whose products ran at the original's bytes per second, plus the original's fixed cost.
Results: benchmarks/results/NAME.json.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time

import torch
from torch.nn import functional as F

import pela
from benchmarks._results import report
from pela.bench.generation_speed import GreedySteps
from pela.models.bundled import smollm2_gguf


def linear_bytes(model: torch.nn.Module) -> int:
    """Bytes of the weights a decoding step's products read (a tied head counted once)."""
    seen = {id(m.weight): m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)}
    return sum(w.numel() * w.element_size() for w in seen.values())


class NoProducts:
    """``F.linear`` replaced by a tensor of the output's shape, made once per shape."""

    def __enter__(self):
        self.real, outputs = F.linear, {}

        def fake(x, w, b=None):
            key = (tuple(x.shape[:-1]), w.shape[0])
            if key not in outputs:
                outputs[key] = torch.zeros(*key[0], key[1], dtype=x.dtype)
            return outputs[key]
        F.linear = fake

    def __exit__(self, *exc):
        F.linear = self.real


@torch.inference_mode()
def step_ms(model, tokens: int, fixed_only: bool) -> float:
    """Milliseconds a greedy step takes, over ``tokens`` steps after a 128-token prompt."""
    prompt = torch.randint(0, model.config.vocab_size, (1, 128),
                           generator=torch.Generator().manual_seed(0))
    steps = GreedySteps(model, compile=False, mode=None, max_tokens=128 + tokens)
    token = steps.prefill(prompt)
    with NoProducts() if fixed_only else contextlib.nullcontext():
        began = time.perf_counter()
        for _ in range(tokens):
            token = steps.decode(token)
        return (time.perf_counter() - began) / tokens * 1e3


def summary(name: str, times: dict, nbytes: int) -> dict:
    whole = statistics.median(times[name, False])
    fixed = statistics.median(times[name, True])
    return {"step_ms": round(whole, 2), "fixed_ms": round(fixed, 2),
            "products_ms": round(whole - fixed, 2), "linear_mb": round(nbytes / 1e6, 1),
            "gb_per_s": round(nbytes / (whole - fixed) / 1e6, 1),
            "rounds": {k: [round(t, 2) for t in times[name, k]] for k in (False, True)}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ratio", type=float, default=1.67)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--tokens", type=int, default=48, help="greedy steps timed per round")
    p.add_argument("--name", default="decode_breakdown_k1.67", help="results file name")
    args = p.parse_args()
    original = pela.load(str(smollm2_gguf())).eval()
    student = copy.deepcopy(original)
    pela.compress(student, pela.LowRankConfig(ratio=args.ratio, speed_check=False))
    models = {"original": original, "student": student}
    for model in models.values():
        pela.tune_layout(model, rows=1)
    times = {(n, f): [] for n in models for f in (False, True)}
    for _ in range(args.rounds):
        for name, model in models.items():
            for fixed_only in (False, True):
                times[name, fixed_only].append(step_ms(model, args.tokens, fixed_only))
    rows = {n: summary(n, times, linear_bytes(m)) for n, m in models.items()}
    o, s = rows["original"], rows["student"]
    # the student's bytes at the original's bytes per second (MB / (GB/s) = ms), same fixed cost
    bound = o["step_ms"] / (s["linear_mb"] / o["gb_per_s"] + o["fixed_ms"])
    report(args.name, {"ratio": args.ratio, "threads": torch.get_num_threads(), "models": rows,
                       "decode_ratio": round(o["step_ms"] / s["step_ms"], 3),
                       "products_ratio": round(o["products_ms"] / s["products_ms"], 3),
                       "bytes_ratio": round(o["linear_mb"] / s["linear_mb"], 3),
                       "bound_at_original_bandwidth": round(bound, 3)})


if __name__ == "__main__":
    main()
