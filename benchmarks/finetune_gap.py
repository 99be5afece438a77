"""Where pela's student loses what it loses: in stages 1 and 2, or in fine-tuning its factored layers?

The study of record's task and recipes (`recipe_study.py`, 3 epochs of fine-tuning): pela's student
(`pela.shrink`, as the ``pela_prog`` row makes it) is made once, then fine-tuned in several ways from
the same starting point:

    factors      its factors at the learning rate of every other parameter (``factor_lr=1``, the study's runs before
                 matched rates were the default: the reference)
    dense        its factors merged back into dense layers first (`densify`: the teacher's size again),
                 which shows how much of the teacher's accuracy the distilled representation still holds
    lr_xM        its factors on M times the learning rate of the other parameters (``factor_lr=M``)
    lr_norm      each layer's factors on the learning rate that moves its product ``B·A`` as far per step as
                 Adam moves a dense weight (``factor_lr="matched"``, the default now: `pela.training.rates`)

    nice .venv/bin/python -m benchmarks.finetune_gap [--ratio 2] [--seed 0] [--ways factors,dense,lr_x2,lr_x0.5,lr_norm]

Every way's accuracy is kept in the results file as soon as it is measured; ways already there are
skipped (the student is only made when a way is missing, and kept where `recipe_study.py` keeps it).
"""

from __future__ import annotations

import argparse
import copy
import json
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks._results import save
from benchmarks.harness import StudySettings, finetune_and_evaluate, study_data
from benchmarks.recipe_study import (  # the study's data and its kept students
    PROBES,
    WORK,
    distill_key,
    shrunk_student,
)
from pela.layers.lowrank import densify
from pela.training.rates import MATCHED

RESULTS = Path(__file__).with_name("results") / "finetune_gap.json"


def factor_lr(way: str) -> float | str:
    """The fine-tuning's `FinetuneConfig.factor_lr` for ``way``."""
    if way in ("factors", "dense"):  # dense: no factors left, the rate does not matter
        return 1.0
    if way == "lr_norm":
        return MATCHED
    if way.startswith("lr_x"):
        return float(way[4:])
    raise SystemExit(f"error: unknown way {way!r}: factors, dense, lr_xM or lr_norm")


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
    ways = [w for w in args.ways.split(",") if w not in done and factor_lr(w) is not None]  # an unknown way stops here
    if not ways:
        print(json.dumps(done, indent=1))
        return
    settings = replace(StudySettings(), finetune_epochs=args.epochs)
    data = study_data(WORK / "data", settings)
    student, _ = shrunk_student(args.ratio, args.seed, data.unlabeled, settings, distill_key(settings.distill_steps, "labelled", settings.distill_lr),
                                PROBES)
    for way in ways:
        model = copy.deepcopy(student)
        if way == "dense":
            densify(model)
        torch.manual_seed(args.seed)
        metrics, _ = finetune_and_evaluate(model, data, replace(settings, factor_lr=factor_lr(way)), seed=args.seed)
        done[way] = {"accuracy": metrics["accuracy"], "params_linear": metrics["params_linear"]}
        save(args.results, results, indent=1)
        print(f"{key} {way}: accuracy {metrics['accuracy']:.4f}", flush=True)
    print(json.dumps(done, indent=1))


if __name__ == "__main__":
    main()
