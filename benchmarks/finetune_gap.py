"""Where pela's student loses what it loses: in stages 1 and 2, or in fine-tuning its factored layers?

The study of record's task and recipes (`recipe_study.py`, 3 epochs of fine-tuning): pela's student
(`pela.shrink`, as the ``pela_prog`` row makes it) is made once, then fine-tuned in several ways from
the same starting point:

    factors      as the study fine-tunes it (the reference)
    dense        its factors merged back into dense layers first (`densify`: the teacher's size again),
                 which shows how much of the teacher's accuracy the distilled representation still holds
    lr_xM        its factors on M times the learning rate of the other parameters (AdamW groups)

    nice .venv/bin/python benchmarks/finetune_gap.py [--ratio 2] [--seed 0] [--ways factors,dense,lr_x2,lr_x0.5]

Every way's accuracy is kept in the results file as soon as it is measured; ways already there are
skipped (the student is only made when a way is missing).
"""

from __future__ import annotations

import argparse
import copy
import json
from dataclasses import replace
from pathlib import Path

import torch

import pela
from pela.data.collate import Collator
from pela.demo import DemoSettings, demo_data, distill_config, finetune_and_evaluate, minilm_dir
from pela.layers.lowrank import LowRankLinear, densify
from pela.models.sources import load_for_training
from pela.utils.files import atomic_write_text

RESULTS = Path(__file__).with_name("results") / "finetune_gap.json"
WORK = Path("runs/bench_recipe_study")  # the study's data


def factor_lr(student, multiplier: float):
    """A stand-in for `torch.optim.AdamW` that puts ``student``'s factors in a group of their own, on
    ``multiplier`` × the learning rate (pela's fine-tuning builds its optimizer from ``torch.optim.AdamW``)."""
    adamw = torch.optim.AdamW
    factors = {id(p) for m in student.modules() if isinstance(m, LowRankLinear) for p in (m.a.weight, m.b.weight)}

    def grouped(params, lr, **kwargs):
        params = list(params)
        return adamw([{"params": [p for p in params if id(p) not in factors], "lr": lr},
                      {"params": [p for p in params if id(p) in factors], "lr": lr * multiplier}], lr=lr, **kwargs)

    return grouped


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ratio", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=float, default=3.0, help="fine-tuning epochs (the study's)")
    p.add_argument("--ways", default="factors,dense,lr_x2,lr_x0.5")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args()
    results = json.loads(args.results.read_text()) if args.results.is_file() else {"runs": {}}
    key = f"k{args.ratio:g}_seed{args.seed}_ft{args.epochs:g}ep"
    done = results["runs"].setdefault(key, {})
    ways = [w for w in args.ways.split(",") if w not in done]
    if not ways:
        print(json.dumps(done, indent=1))
        return
    settings = replace(DemoSettings(), finetune_epochs=args.epochs)
    data = demo_data(WORK / "data", settings)
    torch.manual_seed(args.seed)
    student = pela.load(str(minilm_dir()))
    pela.shrink(student, load_for_training(str(minilm_dir())), data.unlabeled, args.ratio, distill_config(settings, seed=args.seed),
                collate_fn=Collator(student, max_length=settings.max_length), calib_samples=settings.calib_samples, seed=args.seed,
                progress=True)
    for way in ways:
        model = copy.deepcopy(student)
        adamw = torch.optim.AdamW
        if way == "dense":
            densify(model)
        elif way.startswith("lr_x"):
            torch.optim.AdamW = factor_lr(model, float(way[4:]))
        elif way != "factors":
            raise SystemExit(f"error: unknown way {way!r}: factors, dense or lr_xM")
        try:
            torch.manual_seed(args.seed)
            metrics, _ = finetune_and_evaluate(model, data, settings, seed=args.seed)
        finally:
            torch.optim.AdamW = adamw
        done[way] = {"accuracy": metrics["accuracy"], "params_linear": metrics["params_linear"]}
        atomic_write_text(args.results, json.dumps(results, indent=1) + "\n")
        print(f"{key} {way}: accuracy {metrics['accuracy']:.4f}", flush=True)
    print(json.dumps(done, indent=1))


if __name__ == "__main__":
    main()
