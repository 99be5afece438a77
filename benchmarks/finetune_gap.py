"""Where pela's student loses what it loses: in stages 1 and 2, or in fine-tuning its factored layers?

The study of record's task and recipes (`recipe_study.py`, 3 epochs of fine-tuning): pela's student
(`pela.shrink`, as the ``pela_prog`` row makes it) is made once, then fine-tuned in several ways from
the same starting point:

    factors      as the study fine-tunes it (the reference)
    dense        its factors merged back into dense layers first (`densify`: the teacher's size again),
                 which shows how much of the teacher's accuracy the distilled representation still holds
    lr_xM        its factors on M times the learning rate of the other parameters (AdamW groups)
    lr_norm      each layer's factors on the learning rate that moves its product ``B·A`` as far per step as
                 Adam moves a dense weight: the rate / sqrt(‖A‖²/in + ‖B‖²/out) (random-sign steps)

    nice .venv/bin/python benchmarks/finetune_gap.py [--ratio 2] [--seed 0] [--ways factors,dense,lr_x2,lr_x0.5,lr_norm]

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


def step_matched(layer: LowRankLinear) -> float:
    """The multiplier of the rate at which Adam's steps on ``layer``'s factors move ``B·A`` as far as on a dense weight."""
    a, b = layer.a.weight.detach(), layer.b.weight.detach()
    return float((a.pow(2).sum() / a.shape[1] + b.pow(2).sum() / b.shape[0]).rsqrt())


def factor_lr(student, multiplier: float | None):
    """A stand-in for `torch.optim.AdamW` that puts each of ``student``'s factored layers in a group of its own, on
    ``multiplier`` × the learning rate (None: `step_matched`); pela's fine-tuning builds its optimizer from it."""
    adamw = torch.optim.AdamW
    layers = [m for m in student.modules() if isinstance(m, LowRankLinear)]
    scale = {id(p): (step_matched(m) if multiplier is None else multiplier) for m in layers for p in (m.a.weight, m.b.weight)}
    print("factor lr multipliers: " + " ".join(f"{v:.3g}" for v in list(scale.values())[::2]), flush=True)

    def grouped(params, lr, **kwargs):
        params = list(params)
        groups = [{"params": [p for p in params if id(p) not in scale], "lr": lr}]
        groups += [{"params": [p], "lr": lr * scale[id(p)]} for p in params if id(p) in scale]
        return adamw(groups, lr=lr, **kwargs)

    return grouped


def made_student(ratio: float, seed: int, data, settings: DemoSettings):
    """pela's student at ``ratio`` for ``seed``, made once and kept in ``WORK/students``."""
    kept = WORK / "students" / f"k{ratio:g}_seed{seed}"
    if (kept / "pela.json").is_file():
        return pela.load(str(kept))
    torch.manual_seed(seed)
    student = pela.load(str(minilm_dir()))
    pela.shrink(student, load_for_training(str(minilm_dir())), data.unlabeled, ratio, distill_config(settings, seed=seed),
                collate_fn=Collator(student, max_length=settings.max_length), calib_samples=settings.calib_samples, seed=seed,
                progress=True)
    pela.save_pretrained(student, kept)
    return student


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
    student = made_student(args.ratio, args.seed, data, settings)
    for way in ways:
        model = copy.deepcopy(student)
        adamw = torch.optim.AdamW
        if way == "dense":
            densify(model)
        elif way.startswith("lr_x"):
            torch.optim.AdamW = factor_lr(model, float(way[4:]))
        elif way == "lr_norm":
            torch.optim.AdamW = factor_lr(model, None)
        elif way != "factors":
            raise SystemExit(f"error: unknown way {way!r}: factors, dense, lr_xM or lr_norm")
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
