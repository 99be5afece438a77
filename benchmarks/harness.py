"""The study harness: the demo's task with every setting a parameter.

all-MiniLM-L6-v2 (`pela.models.bundled`) on WordNet lexicographer categories (`pela.data.wordnet`),
fine-tuned and distilled under one recipe per study. `StudySettings` starts from the settings of
``pela demo``; a study changes what it varies and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pela.data.collate import Collator
from pela.data.load import load_dataset
from pela.data.wordnet import GlossTask, gloss_task, wordnet_glosses
from pela.evaluation.classifier import evaluate
from pela.models.bundled import minilm_dir, smollm2_gguf
from pela.models.sources import load_for_training
from pela.training.distill import DistillConfig, distill
from pela.training.finetune import FinetuneConfig, finetune

__all__ = ["StudySettings", "study_data", "gloss_texts", "finetune_model", "finetune_and_evaluate",
           "distill_config",
           "distill_student", "minilm_dir", "smollm2_gguf", "wordnet_glosses", "GlossTask"]

Curve = list[tuple[int, float]]


@dataclass(frozen=True)
class StudySettings:
    """The settings the studies of record ran with: the demo's defaults when they were recorded
    (`pela.demo.DemoSettings`). A copy on purpose: a change to the demo leaves the recorded studies
    reproducible with their own commands."""

    train: int = 5000
    test: int = 2000
    distill_steps: int = 300
    batch_size: int = 32
    distill_lr: float = 1e-4
    finetune_lr: float = 3e-4
    finetune_epochs: float = 1.0
    factor_lr: float | str = FinetuneConfig.factor_lr  # the factored layers' learning rate
    max_length: int = 64
    calib_samples: int = 512  # unlabeled training glosses pela's recipe factorizes with


def study_data(work: Path, settings: StudySettings) -> GlossTask:
    """The demo's sample of the glosses, written into ``work`` and loaded."""
    return gloss_task(work, settings.train, settings.test)


def gloss_texts(work: Path) -> tuple[Any, Any]:
    """Every training gloss and every held-out gloss as unlabeled text datasets (for distillation
    and feature-distance studies), written as ``train.txt`` and ``heldout.txt`` under ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    glosses = wordnet_glosses()
    for name, split in (("train.txt", "train"), ("heldout.txt", "test")):
        (work / name).write_text("\n".join(g for g, _, s in glosses if s == split) + "\n")
    return load_dataset(work / "train.txt"), load_dataset(work / "heldout.txt")


def finetune_model(model: Any, data: GlossTask, settings: StudySettings,
                   seed: int = 0) -> tuple[Any, Any]:
    """The demo's fine-tuning recipe: ``(tuned model, pela.finetune's result)``."""
    config = FinetuneConfig(epochs=settings.finetune_epochs, batch_size=settings.batch_size,
                            lr=settings.finetune_lr, group_by_length=True, log_every=10,
                            seed=seed, factor_lr=settings.factor_lr)
    return finetune(model, data.train, config, num_classes=len(data.classes),
                    collate_fn=Collator(model, max_length=settings.max_length), progress=True)


def finetune_and_evaluate(model: Any, data: GlossTask, settings: StudySettings,
                          seed: int = 0) -> tuple[dict[str, Any], Curve]:
    """The demo's fine-tuning recipe, then test metrics: ``(metrics + finetune_seconds, curve)``."""
    tuned, res = finetune_model(model, data, settings, seed)
    metrics = evaluate(tuned, data.test, collate_fn=Collator(tuned, max_length=settings.max_length))
    return {**metrics, "finetune_seconds": res.seconds}, _curve(res)


def distill_config(settings: StudySettings, **overrides: Any) -> DistillConfig:
    """The demo's distillation recipe (``overrides``: the steps, seed or loss of a run)."""
    return DistillConfig(**{"steps": settings.distill_steps, "batch_size": settings.batch_size,
                            "lr": settings.distill_lr, "group_by_length": True, **overrides})


def distill_student(student: Any, data: GlossTask, settings: StudySettings, gamma: float = 0.0,
                    steps: int | None = None, seed: int = 0,
                    feature_loss: str = DistillConfig.feature_loss) -> tuple[Any, Curve]:
    """Intermediate pre-training of ``student`` from MiniLM on the unlabeled training glosses
    (``feature_loss="mse"``: the paper's)."""
    teacher = load_for_training(str(minilm_dir()))
    steps = settings.distill_steps if steps is None else steps
    config = distill_config(settings, steps=steps, gamma=gamma, seed=seed, feature_loss=feature_loss)
    res = distill(student, teacher, data.unlabeled, config,
                  collate_fn=Collator(student, max_length=settings.max_length), progress=True)
    return student, _curve(res)


def _curve(result: Any) -> Curve:
    return [(h["step"], h["loss"]) for h in result.history]
