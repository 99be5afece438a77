"""Stage 3 of PELA: fine-tune a model (compressed or not) for classification."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from pela import arch
from pela.arch.classifier import SequenceClassifier
from pela.data.collate import Collator
from pela.data.inputs import as_dataset
from pela.data.labels import align_classes, dataset_classes, unlabelled_reason
from pela.errors import PelaError
from pela.evaluation.classifier import evaluate
from pela.metadata import info
from pela.training.config import TrainConfig, TrainResult
from pela.training.loop import fit
from pela.training.rates import MATCHED, factor_rates
from pela.utils.device import model_device

# what `evaluate` reports that can pick the best model during fine-tuning (loss is minimized, the
# others maximized)
EVAL_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "top5", "loss")


@dataclass(frozen=True)
class FinetuneConfig(TrainConfig):
    """`TrainConfig` plus the head and the optional LoRA adapters."""

    weight_decay: float = 0.01
    warmup: float = 0.06
    # for an added head: "mean" (masked mean of the tokens) or "cls"; None: the model's own, else
    # mean
    pooling: str | None = None
    lora: int | None = None  # train only rank-R LoRA adapters (peft) and the head
    lora_alpha: float = 16.0
    label_smoothing: float = 0.0
    # factored layers' learning rate: "matched" (each layer's steps on B·A as large as on a dense
    # weight,
    # pela.training.rates) or a multiple of lr for all of them (1: the rate of every other
    # parameter)
    factor_lr: float | str = MATCHED
    EVAL_METRICS: ClassVar[tuple[str, ...]] = EVAL_METRICS

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pooling not in (None, "mean", "cls"):
            raise PelaError(f"pooling must be mean or cls, got {self.pooling!r}")
        if self.lora is not None and (not isinstance(self.lora, int) or self.lora < 1):
            raise PelaError(f"lora must be an integer rank >= 1, got {self.lora!r}")
        rate = self.factor_lr
        number = isinstance(rate, (int, float)) and not isinstance(rate, bool)
        if rate != MATCHED and not (number and math.isfinite(rate) and rate > 0):
            raise PelaError(f"factor_lr must be {MATCHED!r} or a number > 0, got {rate!r}")
        if not (0 <= self.label_smoothing < 1):
            raise PelaError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")


def _head_names(model: nn.Module) -> list[str]:
    if isinstance(model, SequenceClassifier):
        return ["head"]
    get = getattr(model, "get_classifier", None)
    if callable(get):  # timm
        head = get()
        return [n for n, m in model.named_modules() if m is head and n]
    return [n for n in ("classifier", "score") if isinstance(getattr(model, n, None), nn.Module)]


def _add_lora(model: nn.Module, rank: int, alpha: float) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    heads = _head_names(model)
    def in_head(name: str) -> bool:
        return any(name == h or name.startswith(h + ".") for h in heads)

    targets = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and not in_head(n)]
    if not targets:
        raise PelaError("found no linear layers to put LoRA adapters on")
    peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets))
    # the new head trains whole; not through peft's modules_to_save, which matches names by
    # suffix, so a head called "head" would also claim a language model's "lm_head"
    for h in heads:
        peft_model.base_model.model.get_submodule(h).requires_grad_(True)
    return peft_model


def finetune(model: nn.Module, data: Dataset, config: FinetuneConfig | None = None, *,
             num_classes: int | None = None, collate_fn: Callable | None = None,
             out: str | Path | None = None, resume: bool = False, progress: bool = False,
             run_info: dict[str, Any] | None = None, accelerator: Any = None,
             eval_data: Dataset | None = None,
             eval_batch_size: int = 64) -> tuple[nn.Module, TrainResult]:
    """Fine-tune ``model`` for classification on labelled ``data``; returns ``(model, result)``.

    The returned model has its head (and, with ``config.lora``, the LoRA adapters merged back into
    the weights, so it has exactly the parameters of the input model plus the head).

    With ``eval_data``, the model is evaluated (`evaluate`) at the end and every
    ``config.eval_every`` steps, and the scores are in ``result.evals``; with ``config.keep_best``
    (one of `EVAL_METRICS`) the returned model has the weights of its best evaluation, which
    ``result.best`` names.
    """
    data = as_dataset(data)  # a datasets.Dataset, a list of texts or of (text, label) pairs
    eval_data = as_dataset(eval_data) if eval_data is not None else None
    config = config or FinetuneConfig()
    # a head kept for the same classes keeps its rows' meaning
    data = align_classes(data, arch.class_names(model))
    names, num_classes = _class_names(data, num_classes)
    collate_fn = collate_fn or Collator(model)
    model = _with_head(model, num_classes, config, data, collate_fn)
    # so that evaluations during training read the data's labels by name
    info(model).classes = names
    trained = _add_lora(model, config.lora, config.lora_alpha) if config.lora else model
    evaluator = None
    if eval_data is not None:
        _check_eval_classes(eval_data, names)

        def evaluator(_: nn.Module) -> dict[str, float]:
            # the model itself: LoRA adapters sit in it, and peft's wrapper hides its forward's
            # signature
            scores = evaluate(model, eval_data, collate_fn=collate_fn, batch_size=eval_batch_size,
                              device=str(model_device(trained)), workers=config.workers)
            return {k: scores[k] for k in EVAL_METRICS if scores.get(k) is not None}

    result = fit(trained, data, collate_fn, config, _task_loss(config.label_smoothing),
                 {"task": 1.0}, out=Path(out) if out else None, resume=resume, progress=progress,
                 run_info=run_info, accelerator=accelerator, description="fine-tuning",
                 evaluator=evaluator, rates=factor_rates(trained, config.factor_lr))
    if config.lora:
        model = trained.merge_and_unload()
    _name_classes(model, names, num_classes)
    return model.eval(), result


def _class_names(data: Dataset, num_classes: int | None) -> tuple[list[str], int]:
    """The data's class names (``0``, ``1``, ... where it has none but ``num_classes`` says), and
    how many outputs the head has."""
    classes = dataset_classes(data)
    if num_classes is None:
        if classes is None:
            raise PelaError(f"fine-tuning needs labelled data: {unlabelled_reason(data)}")
        num_classes = len(classes)
    if num_classes < 2:
        raise PelaError(f"fine-tuning needs at least 2 classes, the data has {num_classes}")
    names = list(classes) if classes is not None else [str(i) for i in range(num_classes)]
    return names, num_classes


def _with_head(model: nn.Module, num_classes: int, config: FinetuneConfig, data: Dataset,
               collate_fn: Callable) -> nn.Module:
    """``model`` with a classification head of ``num_classes`` (its own, resized, or a new one
    whose initial weights follow ``config.seed``, not the caller's RNG state)."""
    # CLIP on labelled images: a classifier on its vision tower
    tower = arch.data_tower(model, data, collate_fn)
    # a sentence-transformers model pools its own way: its head does too unless told otherwise
    pooling = config.pooling or info(model).pooling or "mean"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return arch.with_classifier(model, num_classes, pooling, tower=tower)


def _check_eval_classes(eval_data: Dataset, names: list[str]) -> None:
    unknown = sorted(set(dataset_classes(eval_data) or ()) - set(names))
    if unknown:
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise PelaError("the evaluation data has classes the training data lacks: "
                        f"{', '.join(map(repr, unknown[:3]))}{more}")


def _task_loss(label_smoothing: float) -> Callable:
    """One batch's cross-entropy of the model's logits against its labels."""

    def step_loss(m: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[Any, dict[str, Any]]:
        labels = batch.pop("labels", None)
        if labels is None:
            raise PelaError("fine-tuning needs labelled data; this batch has no labels")
        outputs = arch.forward(m, batch)
        logits = arch.main_output(outputs).float()
        return outputs, {"task": F.cross_entropy(logits, labels, label_smoothing=label_smoothing)}

    return step_loss


def _name_classes(model: nn.Module, names: list[str], num_classes: int) -> None:
    """The classes' names, in what pela records and (a Hugging Face head) in the config."""
    info(model).classes = names
    cfg = getattr(model, "config", None)
    # labels 0, 1, ...: names the config has stay
    indices = names == [str(i) for i in range(num_classes)]
    if getattr(cfg, "num_labels", None) == num_classes and not indices:
        cfg.id2label = dict(enumerate(names))
        cfg.label2id = {c: i for i, c in cfg.id2label.items()}
