"""What `--save-dtype` costs: file size, and how far the half-precision model's features move.

    .venv/bin/python -m benchmarks.save_dtype            # all-MiniLM-L6-v2 at k=2, WordNet's held-out glosses

Compresses the model once, writes it in float32, bfloat16 and float16 (`pela.save_pretrained(...,
dtype=...)`), and reads each back the way the CLI does (`pela.models.sources.load_for_training`: float32 in memory). It
then compares each with the float32 save, and each with the dense teacher (`pela.compare`: per-block
feature MSE and cosine similarity on the same held-out sample), so the rounding is seen next to what
compression itself changes. Results: benchmarks/results/save_dtype.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pela
from benchmarks._results import report
from benchmarks.harness import gloss_texts, minilm_dir
from pela.data.load import load_dataset

DTYPES = ("float32", "bfloat16", "float16")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="model source (default: the offline all-MiniLM-L6-v2)")
    p.add_argument("--data", type=Path, help="held-out text (default: WordNet's held-out glosses)")
    p.add_argument("--ratio", type=float, default=2.0)
    p.add_argument("--samples", type=int, default=512, help="examples compared")
    p.add_argument("--name", default="save_dtype", help="result name (benchmarks/results/NAME.json)")
    args = p.parse_args()
    source = args.model or str(minilm_dir())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        heldout = load_dataset(args.data) if args.data else gloss_texts(work / "text")[1]
        teacher = pela.load(source)
        model = pela.load(source)
        pela.compress(model, pela.LowRankConfig(ratio=args.ratio))
        rows = {}
        for dtype in DTYPES:
            start = time.perf_counter()
            pela.save_pretrained(model, work / dtype, dtype=dtype)
            rows[dtype] = {"file_bytes": (work / dtype / "model.safetensors").stat().st_size,
                           "save_seconds": time.perf_counter() - start}
        reference = pela.load(str(work / "float32"))
        for dtype, row in rows.items():
            student = pela.load(str(work / dtype))
            vs_f32 = pela.compare(student, reference, heldout, samples=args.samples)
            vs_teacher = pela.compare(student, teacher, heldout, samples=args.samples)
            row.update({"file_vs_float32": row["file_bytes"] / rows["float32"]["file_bytes"],
                        "vs_float32_save": {k: vs_f32[k] for k in ("mean_mse", "mean_cosine", "output_agreement")},
                        "vs_dense_teacher": {k: vs_teacher[k] for k in ("mean_mse", "mean_cosine", "output_agreement")}})
            print(f"{dtype}: {row['file_bytes'] / 1e6:.1f} MB ({row['file_vs_float32']:.3f}×); vs float32 save: "
                  f"MSE {vs_f32['mean_mse']:.3g}, cosine {vs_f32['mean_cosine']:.6f}; vs teacher: MSE {vs_teacher['mean_mse']:.4g}, "
                  f"cosine {vs_teacher['mean_cosine']:.4f}", flush=True)
    report(args.name, {"model": source, "ratio": args.ratio, "samples": args.samples,
                       "data": str(args.data) if args.data else "WordNet held-out glosses", "results": rows})


if __name__ == "__main__":
    main()
