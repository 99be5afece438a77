"""`evaluate`: accuracy, balanced accuracy, macro F1, top-5, loss and each class's scores."""

from __future__ import annotations

import time
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from pela import arch
from pela.data.collate import Collator
from pela.data.inputs import as_dataset
from pela.data.labels import align_classes, dataset_classes, unlabelled_reason
from pela.data.loader import make_loader
from pela.errors import PelaError, warn
from pela.utils.progress import progress_bar


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, *, collate_fn: Callable | None = None,
             batch_size: int = 64, device: str | None = None, workers: int = 0,
             progress: bool = False) -> dict[str, Any]:
    """Top-1 (and top-5 with more than 5 classes) accuracy, balanced accuracy (the mean of the
    classes' recalls) and macro F1 over the classes the data has, mean cross-entropy, parameters,
    items/s, and ``per_class``: each class's support, recall, precision and F1.

    ``workers`` DataLoader processes prepare the batches (0 = in this process). ``progress`` shows
    a bar over the batches on stderr, redrawn only when a batch is done so that it does not slow
    the items/s figure.
    """
    data = as_dataset(data)  # a datasets.Dataset, a list of texts or of (text, label) pairs
    if batch_size < 1:
        raise PelaError(f"batch size must be >= 1, got {batch_size}")
    names = arch.class_names(model)
    data = align_classes(data, names, subset=True, extend=True)  # label i is the model's output i
    data_classes = dataset_classes(data)
    named = names and data_classes and data_classes[:len(names)] == list(names)
    outputs = len(names) if named else None
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.eval().to(dev)
    loader = make_loader(data, collate_fn or Collator(model), workers, batch_size=batch_size)
    counts = _Counts()
    began = time.perf_counter()
    total = len(loader) if progress else 0
    with progress_bar(progress, total, "evaluating", redraw_only_on_advance=True) as advance:
        for batch in loader:
            labels = batch.pop("labels", None)
            if labels is None:
                raise PelaError(f"evaluation needs labelled data: {unlabelled_reason(data)}")
            batch = {k: v.to(dev) for k, v in batch.items()}
            logits = arch.main_output(arch.forward(model, batch)).float()
            labels = labels.to(dev)
            _check_outputs(logits, labels, outputs, data_classes, first=counts.n == 0)
            classes = len(data_classes) if outputs is not None else logits.shape[1]
            counts.add(logits, labels, classes)
            advance()
    seconds = time.perf_counter() - began
    confusion = counts.confusion
    if outputs is not None and len(data_classes) > outputs:
        _warn_unseen(confusion, data_classes, outputs)
    known = data_classes and len(data_classes) == len(confusion)
    per_class = _per_class(confusion, data_classes if known else names)
    return counts.metrics(per_class, logits.shape[1], model, seconds)


def _check_outputs(logits: torch.Tensor, labels: torch.Tensor, outputs: int | None,
                   data_classes: list | None, first: bool) -> None:
    """Refuse outputs that are no class logits for these labels; say so once where the labels are
    read as output indices of a model that names no classes."""
    if logits.dim() != 2 or (outputs is None and logits.shape[1] <= int(labels.max())):
        raise PelaError(f"model outputs {tuple(logits.shape)} but labels go up to "
                        f"{int(labels.max())}; fine-tune it first")
    if first and outputs is None and data_classes is not None:
        if len(data_classes) != logits.shape[1]:
            warn(f"the data has {len(data_classes)} classes and the model {logits.shape[1]} "
                 "outputs: labels are read as output indices, which is right only if the data "
                 "numbers the model's classes (else fine-tune it first)")


def _warn_unseen(confusion: torch.Tensor, data_classes: list, outputs: int) -> None:
    """The data's classes the model has no output for: their examples count as errors."""
    unseen = {name: int(confusion[outputs + i].sum())
              for i, name in enumerate(data_classes[outputs:])}
    listed = ", ".join(f"{name!r} ({k} example{'s' if k != 1 else ''})"
                       for name, k in list(unseen.items())[:5])
    more = ", ..." if len(unseen) > 5 else ""
    plural = "es" if len(unseen) != 1 else ""
    warn(f"the data has {len(unseen)} class{plural} the model was not trained on: {listed}{more}; "
         f"their {sum(unseen.values())} examples count as errors")


class _Counts:
    """Sums over the batches: top-1 and top-5 hits, the loss over classes the model has, and the
    confusion matrix (true class × predicted class)."""

    def __init__(self) -> None:
        self.correct1 = self.correct5 = self.loss = self.n = 0.0
        self.scored = 0  # examples of classes the model has, over which the loss is taken
        self.confusion: torch.Tensor | None = None

    def add(self, logits: torch.Tensor, labels: torch.Tensor, classes: int) -> None:
        # a class the model lacks has no output: its examples are errors
        known = labels < logits.shape[1]
        self.loss += float(F.cross_entropy(logits[known], labels[known], reduction="sum"))
        self.scored += int(known.sum())
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        self.correct1 += float((top[:, 0] == labels).sum())
        self.correct5 += float((top == labels[:, None]).any(1).sum())
        pairs = (labels * classes + top[:, 0]).cpu()
        counts = torch.bincount(pairs, minlength=classes * classes).view(classes, classes)
        self.confusion = counts if self.confusion is None else self.confusion + counts
        self.n += len(labels)

    def metrics(self, per_class: dict[str, dict[str, Any]], outputs: int, model: nn.Module,
                seconds: float) -> dict[str, Any]:
        n, classes = self.n, per_class.values()
        linear = sum(p.numel() for m in model.modules() if arch.linear_weight(m) is not None
                     for p in m.parameters(recurse=False))
        return {"samples": int(n), "accuracy": self.correct1 / n,
                "top5": self.correct5 / n if outputs > 5 else None,
                "balanced_accuracy": sum(c["recall"] for c in classes) / len(per_class),
                "macro_f1": sum(c["f1"] for c in classes) / len(per_class),
                "loss": self.loss / self.scored if self.scored else None,
                "params": sum(p.numel() for p in model.parameters()), "params_linear": linear,
                "items_per_s": n / max(seconds, 1e-9), "per_class": per_class}


def _per_class(confusion: torch.Tensor, names: list[str] | None) -> dict[str, dict[str, Any]]:
    """Support, recall, precision and F1 of each class the data has (a class it lacks has no
    recall)."""
    if names is None or len(names) != len(confusion):
        names = [str(i) for i in range(len(confusion))]
    stats = {}
    for i, name in enumerate(names):
        support, predicted = int(confusion[i].sum()), int(confusion[:, i].sum())
        hits = int(confusion[i, i])
        if support:
            stats[name] = {"support": support, "recall": hits / support,
                           "precision": hits / predicted if predicted else 0.0,
                           "f1": 2 * hits / (support + predicted)}
    return stats
