"""The study of record for accuracy: which recipe keeps the teacher's accuracy, at which size, over seeds.

The demo's task and data (`benchmarks/harness.py`: all-MiniLM-L6-v2, WordNet lexicographer categories, 5,000
labelled training and 2,000 test glosses), one fine-tuning recipe for every row. A run is one
``ROW:k:seed``; each finished run is kept in the results file as soon as it ends and runs already
there are skipped, so a study spreads over sessions (start it again, it goes on).

Rows:
    teacher      the original, fine-tuned
    pela         pela's recipe: calibrated whitened SVD, ranks allocated at k's size, distill, fine-tune
    pela_seq     the same, factorized sequentially (`LowRankConfig(sequential=True)`)
    pela_nd      pela's factorization, no distillation
    pela_prog    pela's recipe in stages of size (`pela.shrink`, ``--stages``, default 2): to k's square root, half the
                 distillation, then to k, the other half; each student is kept in ``runs/bench_recipe_study/students``
                 and only fine-tuned again by runs at other fine-tuning settings
    paper        the paper's recipe: plain SVD at ratio k, distill, fine-tune
    no_distill   plain SVD at ratio k, fine-tune

    nice .venv/bin/python -m benchmarks.recipe_study teacher:1:0 pela:2:0,1,2 paper:2:0 [--epochs 3]
        [--distill-steps 300] [--distill-data labelled|all] [--distill-lr 1e-4] [--finetune-lr 3e-4] [--feature-loss relative|mse]
        [--probe-samples 32] [--stages 2] [--targets REGEX] [--factor-lr matched|M] [--speed-check on|off]
        [--results FILE] [--table] [--record] [--plot docs/recipe_study.png]

``--factor-lr`` is the fine-tuning's rate for factored layers (`FinetuneConfig.factor_lr`; runs from before it
existed ran at 1, the rate of every other parameter). ``--speed-check`` is compression's check that keeps a layer
dense where this device multiplies its factors no faster (`LowRankConfig.speed_check`, pela's default; runs from
before it existed ran without, `BEFORE`; pela_prog's runs from before `pela.shrink` checked its last stage only
checked every stage). ``--epochs`` etc. are part of a run's key: runs under other settings are kept apart, never averaged.
Runs marked with a setting of `REMOVED` ran an option that was tried and removed (docs/BENCHMARKS.md): they
are listed, never taken for the runs above.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

import pela
from benchmarks._results import save
from benchmarks.harness import (
    StudySettings,
    distill_config,
    distill_student,
    finetune_and_evaluate,
    gloss_texts,
    minilm_dir,
    study_data,
)
from pela import LowRankConfig
from pela.data.collate import Collator
from pela.models.sources import load_for_training
from pela.training.rates import MATCHED, parse_factor_lr
from pela.training.shrink import STAGES, stage_recipe
from pela.utils.files import atomic_write_text

RESULTS = Path(__file__).with_name("results") / "recipe_study.json"
ROWS = ("teacher", "pela", "pela_seq", "pela_nd", "pela_prog", "paper", "no_distill")
WORK = Path("runs/bench_recipe_study")
PROBES = inspect.signature(pela.calibrate).parameters["probe_samples"].default  # pela's default


# options tried and removed, with the value every other run had: the student in eval mode while it distilled
# (no dropout), layer sensitivities measured in the relative feature loss, factored layers distilled at matched rates
REMOVED = {"student_mode": "train", "sensitivity_loss": "mse", "distill_factor_lr": 1.0}
# settings added after runs were kept, with the value those runs had: no speed check (`LowRankConfig.speed_check`),
# and where pela_prog ran with it, at every stage of size (`pela.shrink` now checks its last stage only)
BEFORE = {"speed_check": False, "speed_check_stages": "all"}
SPEED_CHECK_STAGES = "last"  # pela.shrink's rule today (`stage_recipe`)
CALIBRATED = ("pela", "pela_seq", "pela_nd", "pela_prog")  # the rows whose result depends on the sensitivity probes
DISTILLED = ("pela", "pela_seq", "pela_prog", "paper")  # the rows whose result depends on the distillation's feature loss


def _load(path: Path) -> dict:
    results = json.loads(path.read_text()) if path.is_file() else {"runs": []}
    for r in results["runs"]:  # older runs kept the probe count in the settings key, even for rows without probes
        key, _, probes = r["settings_key"].rpartition("_p")
        if key and probes.isdigit():
            r["settings_key"] = key
            if r["row"] in CALIBRATED:
                r.setdefault("probe_samples", int(probes))
        if r["row"] in DISTILLED:  # runs from before the feature loss was a setting distilled with plain MSE
            r.setdefault("feature_loss", "mse")
        if r["row"] == "pela_prog":  # and in two stages, before their number was a setting
            r.setdefault("stages", 2)
        if r["row"] != "teacher":  # and fine-tuned their factors at the rate of every other parameter
            r.setdefault("factor_lr", 1.0)
    return results


def tried(run: dict) -> bool:
    """Whether ``run`` ran an option tried and removed (`REMOVED`)."""
    return any(run.get(k, v) != v for k, v in REMOVED.items())


def _save(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save(path, results, indent=1)


def parse_jobs(specs: list[str]) -> list[tuple[str, float, int]]:
    jobs = []
    for spec in specs:
        row, k, seeds = spec.split(":")
        if row not in ROWS:
            raise SystemExit(f"error: unknown row {row!r}; rows: {', '.join(ROWS)}")
        jobs += [(row, float(k), int(s)) for s in seeds.split(",")]
    return jobs


def calibrated(model, ratio: float, seed: int, unlabeled, settings: StudySettings, probe_samples: int, sequential: bool = False):
    """``model`` compressed in place by pela's factorization: whitened, ranks allocated at ratio k's size."""
    config = stage_recipe(model, ratio, sequential)
    calibration = pela.calibrate(model, unlabeled, config, collate_fn=Collator(model, max_length=settings.max_length),
                                 samples=settings.calib_samples, probe_samples=probe_samples, seed=seed)
    pela.compress(model, config, calibration=calibration)
    return model


def student(row: str, ratio: float, seed: int, data, unlabeled, settings: StudySettings, probe_samples: int):
    """The compressed (not yet distilled) student of ``row`` and the seconds compression took."""
    began = time.perf_counter()
    model = pela.load(str(minilm_dir()))
    if row == "teacher":
        return model, 0.0
    if row in ("paper", "no_distill"):
        pela.compress(model, LowRankConfig(ratio=ratio))
    else:  # pela, pela_seq, pela_nd (pela_prog's student is made by shrunk_student)
        calibrated(model, ratio, seed, unlabeled, settings, probe_samples, sequential=row == "pela_seq")
    return model, time.perf_counter() - began


def feature_loss_of(row: str, pela_loss: str) -> str:
    """The paper's rows distill with its plain MSE; pela's with ``pela_loss``."""
    return "mse" if row == "paper" else pela_loss


def distill_key(steps: int, data: str, lr: float) -> str:
    """The part of a run's settings key that its student depends on: the distillation's steps, data and rate."""
    key = f"d{steps}_{data}"
    return key + (f"_lr{lr:g}" if lr != StudySettings.distill_lr else "")  # keys of runs at the default stay as they were


def shrunk_student(ratio: float, seed: int, unlabeled, settings: StudySettings, student_key: str, probe_samples: int,
                   loss: str = "relative", stages: int = STAGES, targets: str | None = None):
    """pela's student in stages of size (`pela.shrink`, the ``pela_prog`` row) and the seconds its compression took,
    made once and kept in ``WORK/students`` under everything it depends on (``student_key``: the distillation's data,
    steps and rate), so that fine-tuning it at other settings (epochs, rates) starts from the very same student."""
    name = f"{student_key}_p{probe_samples}_{loss}_s{stages}_k{ratio:g}_seed{seed}"
    name += f"_speedcheck_{SPEED_CHECK_STAGES}" if LowRankConfig().speed_check else ""  # pela's default since runs were first kept
    if targets:
        name += "_t" + hashlib.sha1(targets.encode()).hexdigest()[:8]
    kept = WORK / "students" / name
    if (kept / "made.json").is_file():
        return pela.load(str(kept)), json.loads((kept / "made.json").read_text())["compress_seconds"]
    began = time.perf_counter()
    torch.manual_seed(seed)
    model = pela.load(str(minilm_dir()))
    shrunk = pela.shrink(model, load_for_training(str(minilm_dir())), unlabeled, ratio, distill_config(settings, seed=seed, feature_loss=loss, blocks=targets),
                         stages=stages, collate_fn=Collator(model, max_length=settings.max_length), calib_samples=settings.calib_samples,
                         probe_samples=probe_samples, seed=seed, progress=True)
    compress_s = round(time.perf_counter() - began - sum(d.seconds for d in shrunk.distills), 1)
    pela.save_pretrained(model, kept, overwrite=True)  # a folder without made.json is a run's leftover
    atomic_write_text(kept / "made.json", json.dumps({"compress_seconds": compress_s}) + "\n")  # written last: marks it whole
    return model, compress_s


def run(row: str, ratio: float, seed: int, data, unlabeled, settings: StudySettings, probe_samples: int, pela_loss: str,
        stages: int = STAGES, targets: str | None = None, student_key: str = "") -> dict:
    began = time.perf_counter()
    loss = feature_loss_of(row, pela_loss)
    if row == "pela_prog":
        model, compress_s = shrunk_student(ratio, seed, unlabeled, settings, student_key, probe_samples, loss, stages, targets)
    else:
        model, compress_s = student(row, ratio, seed, data, unlabeled, settings, probe_samples)
    if row in ("pela", "pela_seq", "paper") and settings.distill_steps:
        model, _ = distill_student(model, replace(data, unlabeled=unlabeled), settings, seed=seed, feature_loss=loss)
    metrics, _ = finetune_and_evaluate(model, data, settings, seed=seed)
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "params_linear": metrics["params_linear"],
            "params": metrics["params"], "compress_seconds": round(compress_s, 1), "seconds": round(time.perf_counter() - began, 1)}


def setting(run: dict, name: str):
    """A run's value of setting ``name``; for a run kept before the setting existed, the value it ran at."""
    return run.get(name, BEFORE.get(name))


def checked_stages(run: dict) -> str:
    """Which stages of size a pela_prog run checked speed at, for its label."""
    return f", {setting(run, 'speed_check_stages')} stages" if run["row"] == "pela_prog" else ""


def table(results: dict) -> str:
    groups: dict[tuple, list[dict]] = {}
    for r in results["runs"]:
        row = r["row"] + (f" (probes {r['probe_samples']})" if "probe_samples" in r else "")
        row += f" ({r['feature_loss']})" if r["row"] in DISTILLED and r["row"] != "paper" else ""
        row += f" ({r['stages']} stages)" if r["row"] == "pela_prog" and r["stages"] != STAGES else ""
        row += f" (targets {r['targets']})" if "targets" in r else ""
        row += f" (factor lr {r['factor_lr']})" if r.get("factor_lr", MATCHED) != MATCHED else ""
        row += f" (speed check{checked_stages(r)})" if r["row"] != "teacher" and setting(r, "speed_check") else ""
        row += "".join(f" ({k} {r[k]})" for k, v in REMOVED.items() if r.get(k, v) != v)
        groups.setdefault((r["settings_key"], row, r["ratio"]), []).append(r)
    lines = ["| settings | row | k | linear params | runs | accuracy mean ± std |", "|---|---|---:|---:|---:|---:|"]
    for (key, row, ratio), runs in sorted(groups.items()):
        acc = [100 * r["accuracy"] for r in runs]
        std = f" ± {statistics.stdev(acc):.2f}" if len(acc) > 1 else ""
        lines.append(f"| {key} | {row} | {ratio:g} | {runs[0]['params_linear'] / 1e6:.2f}M | {len(acc)} | {statistics.mean(acc):.2f}{std} |")
    return "\n".join(lines)


LABELS = {"pela_prog": "pela's recipe (pela.shrink: calibrated, two stages of size, distilled)",
          "pela_nd": "pela's factorization, no distillation", "paper": "the paper's recipe (plain SVD + distillation)",
          "no_distill": "plain SVD, no distillation"}
RECORD = tuple(LABELS)  # the rows of the study of record beside the teacher, pela's recipe first


def of_record(run: dict, key: str, probes: int, speed_check: bool = False) -> bool:
    """Whether ``run`` belongs to the study of record at settings ``key``: a row of `RECORD` (or the teacher) at every
    default (matched fine-tuning rates, ``probes`` probe examples, two stages, the blocks as targets), nothing removed,
    compressed with the speed check or without (``speed_check``)."""
    checked = run["row"] == "teacher" or setting(run, "speed_check") == speed_check
    if speed_check and run["row"] == "pela_prog":
        checked = checked and setting(run, "speed_check_stages") == SPEED_CHECK_STAGES
    return (run["settings_key"] == key and run["row"] in ("teacher", *RECORD) and not tried(run) and "targets" not in run
            and checked and run.get("factor_lr", MATCHED) == MATCHED and run.get("probe_samples", probes) == probes
            and run.get("stages", STAGES) == STAGES and run.get("feature_loss") in (None, feature_loss_of(run["row"], "relative")))


def _by_row(runs: list[dict]) -> dict[tuple[str, float], list[dict]]:
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in sorted(runs, key=lambda r: r["seed"]):
        groups.setdefault((r["row"], r["ratio"]), []).append(r)
    return groups


def record(results: dict, key: str, probes: int, speed_check: bool = False) -> str:
    """The study of record at settings ``key`` as a markdown table: every row and k, each seed, mean ± std, and the gap to
    the teacher on the same seeds (none where a seed has no teacher run)."""
    groups = _by_row([r for r in results["runs"] if of_record(r, key, probes, speed_check)])
    teacher = {r["seed"]: 100 * r["accuracy"] for r in groups.get(("teacher", 1.0), [])}
    lines = ["| row | k | linear params | seeds | accuracy per seed | mean ± std | Δ vs teacher, same seeds |", "|---|---:|---:|---|---|---:|---:|"]
    for (row, ratio), runs in sorted(groups.items(), key=lambda g: (g[0][1], ("teacher", *RECORD).index(g[0][0]))):
        acc = [100 * r["accuracy"] for r in runs]
        std = f" ± {statistics.stdev(acc):.2f}" if len(acc) > 1 else ""
        paired = [100 * r["accuracy"] - teacher[r["seed"]] for r in runs if r["seed"] in teacher]  # a seed shares the fine-tuning order
        gap = f"{statistics.mean(paired):+.2f}" if paired and len(paired) == len(runs) and row != "teacher" else "—"
        lines.append(f"| {LABELS.get(row, row)} | {ratio:g} | {statistics.mean(r['params_linear'] for r in runs) / 1e6:.2f}M | "
                     f"{', '.join(str(r['seed']) for r in runs)} | {' / '.join(f'{a:.2f}' for a in acc)} | {statistics.mean(acc):.2f}{std} | {gap} |")
    return "\n".join(lines)


def plot(results: dict, key: str, probes: int, path: Path, speed_check: bool = False) -> None:
    """The study of record at settings ``key``: accuracy against linear-layer parameters, mean ± std of each row over
    seeds, the teacher a band."""
    from pela.utils.figures import pyplot, save_figure

    groups = _by_row([r for r in results["runs"] if of_record(r, key, probes, speed_check)])
    fig, ax = pyplot().subplots(figsize=(7, 4.2))
    teacher = [100 * r["accuracy"] for r in groups.pop(("teacher", 1.0), [])]
    if teacher:
        mean = statistics.mean(teacher)
        std = statistics.stdev(teacher) if len(teacher) > 1 else 0.0
        ax.axhspan(mean - std, mean + std, color="0.85")
        ax.axhline(mean, color="0.3", lw=1, label=f"teacher ({len(teacher)} seeds)")
    for row in RECORD:  # one point per k (allocated ranks: the size varies a little with the seed)
        points = sorted((ratio, runs) for (r, ratio), runs in groups.items() if r == row)
        acc = [[100 * r["accuracy"] for r in runs] for _, runs in points]
        ax.errorbar([statistics.mean(r["params_linear"] for r in runs) / 1e6 for _, runs in points], [statistics.mean(a) for a in acc],
                    yerr=[statistics.stdev(a) if len(a) > 1 else 0 for a in acc], marker="o", capsize=3, label=LABELS[row])
    ax.set_xlabel("linear-layer parameters (millions)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"MiniLM on WordNet categories ({key}; mean ± std over seeds)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("jobs", nargs="*", help="ROW:k:seed[,seed...]")
    p.add_argument("--epochs", type=float, default=StudySettings.finetune_epochs, help="fine-tuning epochs, every row")
    p.add_argument("--distill-steps", type=int, default=StudySettings.distill_steps)
    p.add_argument("--distill-lr", type=float, default=StudySettings.distill_lr)
    p.add_argument("--finetune-lr", type=float, default=StudySettings.finetune_lr)
    p.add_argument("--distill-data", choices=("labelled", "all"), default="labelled",
                   help="unlabeled text for calibration and distillation: the labelled training glosses, or every training gloss")
    p.add_argument("--feature-loss", choices=("relative", "mse"), default="relative",
                   help="pela's rows' distillation feature loss (the paper's rows always distill with its plain MSE)")
    p.add_argument("--probe-samples", type=int, default=None, help="examples each sensitivity probe runs (default: pela's)")
    p.add_argument("--stages", type=int, default=STAGES, help="pela_prog's stages of size (pela.shrink)")
    p.add_argument("--targets", help="pela_prog's distillation targets: a regex of the modules whose outputs it matches "
                                     "(`DistillConfig.blocks`; default: the blocks pela finds)")
    p.add_argument("--factor-lr", type=parse_factor_lr, default=MATCHED,
                   help="the fine-tuning's rate for factored layers: matched or a multiple of the rate (FinetuneConfig.factor_lr)")
    p.add_argument("--speed-check", choices=("on", "off"), default="on" if LowRankConfig().speed_check else "off",
                   help="compression keeps a layer dense where this device multiplies its factors no faster "
                        "(LowRankConfig.speed_check; default: pela's)")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--table", action="store_true", help="print the table of what is there and stop")
    p.add_argument("--record", action="store_true", help="print the study of record at these settings (every default) and stop")
    p.add_argument("--plot", type=Path, help="draw the study of record at these settings, and stop")
    args = p.parse_args()
    speed_check = args.speed_check == "on"
    os.environ["PELA_SPEED_CHECK"] = "1" if speed_check else "0"  # what LowRankConfig's default reads
    results = _load(args.results)
    if args.table:
        print(table(results))
        return
    settings = replace(StudySettings(), finetune_epochs=args.epochs, distill_steps=args.distill_steps, distill_lr=args.distill_lr,
                       finetune_lr=args.finetune_lr, factor_lr=args.factor_lr)
    student_key = distill_key(args.distill_steps, args.distill_data, args.distill_lr)
    key = f"ft{args.epochs:g}ep_{student_key}"
    if args.finetune_lr != StudySettings.finetune_lr:
        key += f"_ftlr{args.finetune_lr:g}"
    probes = args.probe_samples or PROBES
    if args.record or args.plot:
        if args.plot:
            plot(results, key, probes, args.plot, speed_check)
        print(record(results, key, probes, speed_check))
        return
    data = study_data(WORK / "data", settings)
    unlabeled = gloss_texts(WORK / "all")[0] if args.distill_data == "all" else data.unlabeled
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    for row, ratio, seed in parse_jobs(args.jobs):
        ratio_key = 1.0 if row == "teacher" else ratio
        extra = {"probe_samples": probes} if row in CALIBRATED else {}
        if row != "teacher":
            extra["factor_lr"] = args.factor_lr
            extra["speed_check"] = speed_check
        if row == "pela_prog" and speed_check:
            extra["speed_check_stages"] = SPEED_CHECK_STAGES
        if row in DISTILLED:
            extra["feature_loss"] = feature_loss_of(row, args.feature_loss)
        if row == "pela_prog":
            extra["stages"] = args.stages
            if args.targets:
                extra["targets"] = args.targets
        if any(r["settings_key"] == key and r["row"] == row and r["ratio"] == ratio_key and r["seed"] == seed
               and all(setting(r, k) == v for k, v in extra.items()) and r.get("targets") == extra.get("targets")
               and not tried(r) for r in results["runs"]):
            continue
        torch.manual_seed(seed)
        out = run(row, ratio, seed, data, unlabeled, settings, probes, args.feature_loss, args.stages,
                  args.targets if row == "pela_prog" else None, student_key)
        results = _load(args.results)  # another process may have added runs meanwhile
        results["runs"].append({"settings_key": key, "row": row, "ratio": ratio_key, "seed": seed, "device": device, **extra, **out})
        _save(results, args.results)
        print(f"{key} {row} k={ratio_key:g} seed {seed}: accuracy {out['accuracy']:.4f} ({out['seconds']:.0f} s)", flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
