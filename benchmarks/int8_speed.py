"""int8 on top in PyTorch (torchao), speed: MiniLM and its k=2 student, float32 and int8, timed in
one run (rounds interleaved), with each one's weights file.

    .venv/bin/python -m benchmarks.int8_speed            # compiled (torch.compile), batch 32
    .venv/bin/python -m benchmarks.int8_speed --eager

The student is `pela.compress` at k=2 with every default (no data: plain SVD; the speed check on);
int8 is `pela.quantize_int8` (int8 weights and dynamic int8 activations; embedding rows int8).
Speed does not depend on the weights' values, so nothing is trained here; accuracy:
`benchmarks/int8_accuracy.py`. Results: benchmarks/results/int8_speed[_eager].json.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import pela
from benchmarks._results import report
from benchmarks.harness import minilm_dir
from pela.bench.throughput import benchmark
from pela.models.saving import WEIGHTS_NAME
from pela.models.sources import load_for_training


def models() -> dict:
    original = load_for_training(str(minilm_dir()))
    student = copy.deepcopy(original)
    pela.compress(student, pela.LowRankConfig(ratio=2))
    return {"MiniLM": original, "MiniLM int8": pela.quantize_int8(copy.deepcopy(original)),
            "k=2 student": student, "k=2 student int8": pela.quantize_int8(copy.deepcopy(student))}


def file_mb(model) -> float:
    with tempfile.TemporaryDirectory() as work:
        path = pela.save_pretrained(model, Path(work) / "m")
        return round((path / WEIGHTS_NAME).stat().st_size / 1e6, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--eager", action="store_true", help="not compiled")
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args()
    named = models()
    files = {name: file_mb(model) for name, model in named.items()}
    results = benchmark(named, batch_size=args.batch_size, compile=not args.eager, progress=True)
    base = next(r for r in results if r.name == "MiniLM")
    rows = {r.name: {"ms_per_batch": round(r.ms_per_batch, 1),
                     "round_ms": [round(t, 1) for t in r.round_ms],
                     "vs_original": round(r.items_per_s / base.items_per_s, 3),
                     "params": r.params, "file_mb": files[r.name]} for r in results}
    rows["k=2 student int8"]["vs_original_int8"] = round(
        rows["MiniLM int8"]["ms_per_batch"] / rows["k=2 student int8"]["ms_per_batch"], 3)
    name = "int8_speed_eager" if args.eager else "int8_speed"
    report(name, {"batch_size": args.batch_size, "compiled": not args.eager, "seq_len": 128,
                  "rows": rows})


if __name__ == "__main__":
    main()
