"""PyTorch and ONNX Runtime, float32 and int8, side by side: an encoder and a ViT, each beside its
k=2 student.

    .venv/bin/python -m benchmarks.onnx_encoders                  # all-MiniLM-L6-v2 and ViT-B/16
    .venv/bin/python -m benchmarks.onnx_encoders --models minilm

Each original is loaded (ViT-B/16 randomly initialized: offline, and speed does not depend on the
weights), a copy compressed by `pela.compress` at ``--ratio`` with every default, and the two timed
by `pela.bench.throughput.benchmark` with ``onnx=True``: eager PyTorch, ONNX Runtime and ONNX
Runtime int8 (each graph exported in pela's default opset and checked against PyTorch first), all
six runs in interleaved rounds on one batch, so each ratio is of runs measured side by side.
Results: benchmarks/results/onnx_encoders.json.
"""

from __future__ import annotations

import argparse
import copy

import torch

import pela
from benchmarks._results import report
from benchmarks.harness import minilm_dir
from pela.bench.throughput import benchmark
from pela.deploy.onnx import OPSET
from pela.models.sources import load_for_training

SOURCES = {"minilm": None, "vit_b16": "timm:vit_base_patch16_224"}


def pair(key: str, ratio: float) -> dict[str, torch.nn.Module]:
    source = SOURCES[key] or str(minilm_dir())
    original = load_for_training(source, random_init=source.startswith("timm:")).eval()
    student = copy.deepcopy(original)
    pela.compress(student, pela.LowRankConfig(ratio=ratio))
    return {"original": original, "student": student}


def ratios(rows: list[dict]) -> dict[str, float]:
    """Student over original items/s, per runtime."""
    by = {(r["name"], r["runtime"]): r["items_per_s"] for r in rows}
    return {rt: round(by["student", rt] / by["original", rt], 3)
            for (name, rt) in by if name == "original"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    p.add_argument("--ratio", type=float, default=2.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iters", type=int, default=3, help="forward passes per round")
    args = p.parse_args()
    out = {"ratio": args.ratio, "batch_size": args.batch_size, "opset": OPSET,
           "threads": torch.get_num_threads()}
    for key in args.models:
        results = benchmark(pair(key, args.ratio), batch_size=args.batch_size, onnx=True,
                            rounds=args.rounds, iters=args.iters, progress=True)
        rows = [r.to_dict() for r in results]
        out[key] = {"student_vs_original": ratios(rows), "results": rows}
        print(key, out[key]["student_vs_original"], flush=True)
    report("onnx_encoders", out)


if __name__ == "__main__":
    main()
