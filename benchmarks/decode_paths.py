"""What each deployment step buys a decoder, one token at a time: layout, packing, compilation.

    .venv/bin/python -m benchmarks.decode_paths               # SmolLM2-135M, its k=1.25 student
    .venv/bin/python -m benchmarks.decode_paths --ratio 2

One eager `generation_benchmark` run (batch 1, 128-token prompts, 64 new tokens, the models taking
turns in each round) of: the original as loaded, the original laid out (`pela.tune_layout` at one
row), the student (plain SVD at ``--ratio`` with every layer factorized: ``speed_check=False``, so
that the steps, not the check, are measured) as compressed, laid out, and laid out and packed
(`pela.pack`). Then a run compiled as `pela bench --compile` compiles (`torch.compile`, static
cache; on a CPU the kernels called from C++) of the laid-out original, student and packed student,
and one compiled in torch.compile's default mode (kernels called from Python) of the laid-out
original and student. Results: benchmarks/results/decode_paths.json.
"""

from __future__ import annotations

import argparse
import copy

import torch

import pela
from benchmarks._results import report
from pela.bench import generation_benchmark
from pela.models.bundled import smollm2_gguf


def models(ratio: float) -> dict[str, torch.nn.Module]:
    original = pela.load(str(smollm2_gguf()))
    student = copy.deepcopy(original)
    pela.compress(student, pela.LowRankConfig(ratio=ratio, speed_check=False))
    out = {"original": original, "original, laid out": copy.deepcopy(original),
           "student": student, "student, laid out": copy.deepcopy(student)}
    out["student, laid out, packed"] = copy.deepcopy(student)
    pela.pack(out["student, laid out, packed"])
    for name, model in out.items():
        if "laid out" in name:
            pela.tune_layout(model, rows=1)
    return out


def run(models: dict, rounds: int, compile: bool, mode: str | None = None) -> list[dict]:
    results = generation_benchmark(models, prompt_tokens=128, new_tokens=64, rounds=rounds,
                                   compile=compile, compile_mode=mode,
                                   tune=False)  # laid out above, or not at all
    return [r.to_dict() for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratio", type=float, default=1.25)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--name", default="decode_paths", help="results file name")
    args = parser.parse_args()
    built = models(args.ratio)
    eager = run(built, args.rounds, compile=False)
    laid_out = ("original, laid out", "student, laid out")
    compiled = run({k: built[k] for k in (*laid_out, "student, laid out, packed")}, args.rounds,
                   compile=True)
    python_calls = run({k: built[k] for k in laid_out}, args.rounds, compile=True, mode="default")
    base = eager[0]["decode_tokens_per_s"]
    table = {r["name"]: round(r["decode_tokens_per_s"] / base, 3) for r in eager}
    report(args.name, {"ratio": args.ratio, "threads": torch.get_num_threads(),
                       "decode_vs_original_as_loaded": table, "eager": eager, "compiled": compiled,
                       "compiled, kernels called from Python": python_calls})


if __name__ == "__main__":
    main()
