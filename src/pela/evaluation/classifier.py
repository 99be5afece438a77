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
def evaluate(model: nn.Module, data: Dataset, *, collate_fn: Callable | None = None, batch_size: int = 64,
             device: str | None = None, workers: int = 0, progress: bool = False) -> dict[str, Any]:
    """Top-1 (and top-5 with more than 5 classes) accuracy, balanced accuracy (the mean of the
    classes' recalls) and macro F1 over the classes the data has, mean cross-entropy, parameters,
    items/s, and
    ``per_class``: each class's support, recall, precision and F1.

    ``workers`` DataLoader processes prepare the batches (0 = in this process). ``progress`` shows a
    bar over the batches on stderr, redrawn only when a batch is done so that it does not slow the
    items/s figure.
    """
    data = as_dataset(data)  # a datasets.Dataset, a list of texts or of (text, label) pairs

    if batch_size < 1:
        raise PelaError(f"batch size must be >= 1, got {batch_size}")
    names = arch.class_names(model)
    data = align_classes(data, names, subset=True, extend=True)  # label i is the model's output i
    data_classes = dataset_classes(data)
    outputs = len(names) if names and data_classes and data_classes[:len(names)] == list(names) else None
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.eval().to(dev)
    loader = make_loader(data, collate_fn or Collator(model), workers, batch_size=batch_size)
    correct1 = correct5 = loss = n = 0.0
    scored = 0  # examples of classes the model has, over which the loss is taken
    confusion = None  # true class × predicted class
    began = time.perf_counter()
    with progress_bar(progress, len(loader) if progress else 0, "evaluating", redraw_only_on_advance=True) as advance:
        for batch in loader:
            labels = batch.pop("labels", None)
            if labels is None:
                raise PelaError(f"evaluation needs labelled data: {unlabelled_reason(data)}")
            batch = {k: v.to(dev) for k, v in batch.items()}
            logits = arch.main_output(arch.forward(model, batch)).float()
            labels = labels.to(dev)
            if logits.dim() != 2 or (outputs is None and logits.shape[1] <= int(labels.max())):
                raise PelaError(f"model outputs {tuple(logits.shape)} but labels go up to {int(labels.max())}; fine-tune it first")
            if n == 0 and outputs is None and data_classes is not None and len(data_classes) != logits.shape[1]:
                warn(f"the data has {len(data_classes)} classes and the model {logits.shape[1]} outputs: labels are read as output "
                     "indices, which is right only if the data numbers the model's classes (else fine-tune it first)")
            # a class the model lacks has no output: its examples are errors
            known = labels < logits.shape[1]
            loss += float(F.cross_entropy(logits[known], labels[known], reduction="sum"))
            scored += int(known.sum())
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            correct1 += float((top[:, 0] == labels).sum())
            correct5 += float((top == labels[:, None]).any(1).sum())
            c = len(data_classes) if outputs is not None else logits.shape[1]
            counts = torch.bincount((labels * c + top[:, 0]).cpu(), minlength=c * c).view(c, c)
            confusion = counts if confusion is None else confusion + counts
            n += len(labels)
            advance()
    seconds = time.perf_counter() - began
    classes = logits.shape[1]
    if outputs is not None and len(data_classes) > outputs:
        unseen = {name: int(confusion[outputs + i].sum()) for i, name in enumerate(data_classes[outputs:])}
        listed = ", ".join(f"{name!r} ({k} example{'s' if k != 1 else ''})" for name, k in list(unseen.items())[:5])
        warn(f"the data has {len(unseen)} class{'es' if len(unseen) != 1 else ''} the model was not trained on: {listed}"
             f"{', ...' if len(unseen) > 5 else ''}; their {sum(unseen.values())} examples count as errors")
    per_class = _per_class(confusion, data_classes if data_classes and len(data_classes) == len(confusion) else names)
    return {"samples": int(n), "accuracy": correct1 / n, "top5": correct5 / n if classes > 5 else None,
            "balanced_accuracy": sum(c["recall"] for c in per_class.values()) / len(per_class),
            "macro_f1": sum(c["f1"] for c in per_class.values()) / len(per_class), "loss": loss / scored if scored else None,
            "params": sum(p.numel() for p in model.parameters()),
            "params_linear": sum(p.numel() for m in model.modules() if arch.linear_weight(m) is not None for p in m.parameters(recurse=False)),
            "items_per_s": n / max(seconds, 1e-9), "per_class": per_class}


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _per_class(confusion: torch.Tensor, names: list[str] | None) -> dict[str, dict[str, Any]]:
    """Support, recall, precision and F1 of each class the data has (a class it lacks has no
    recall)."""
    if names is None or len(names) != len(confusion):
        names = [str(i) for i in range(len(confusion))]
    stats = {}
    for i, name in enumerate(names):
        support, predicted, hits = int(confusion[i].sum()), int(confusion[:, i].sum()), int(confusion[i, i])
        if support:
            stats[name] = {"support": support, "recall": hits / support, "precision": hits / predicted if predicted else 0.0,
                           "f1": 2 * hits / (support + predicted)}
    return stats
