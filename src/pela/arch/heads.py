"""A classification head for any model: its own (timm, Hugging Face task models) or a pooled one."""

from __future__ import annotations

from torch import nn

from pela.arch.classifier import SequenceClassifier
from pela.arch.properties import hidden_size
from pela.arch.towers import tower_hidden_size
from pela.errors import PelaError
from pela.metadata import info


def with_classifier(
    model: nn.Module, num_classes: int, pooling: str = "mean", tower: str | None = None
) -> nn.Module:
    """``model`` with a classification head of ``num_classes`` outputs.

    timm models get ``reset_classifier`` (their own head). Hugging Face
    ``*ForSequenceClassification`` and ``*ForImageClassification`` models keep their head, with its
    last layer replaced when it has another number of labels. Any other model is wrapped in
    `pela.arch.SequenceClassifier` (pooled hidden states → linear head); a Hugging Face model with a
    head of another kind (masked or causal language modelling, say) is pooled from its last hidden
    states, not from that head's output.
    ``tower`` (see `data_tower`) pools one tower of a two-tower model: CLIP fine-tuned on labelled
    images classifies with its ``vision_model``.
    """

    if isinstance(model, SequenceClassifier):
        if model.num_classes != num_classes:
            raise PelaError(
                f"model has a {model.num_classes}-class head but the data has {num_classes} classes"
            )
        return model
    if hasattr(model, "reset_classifier") and hasattr(model, "num_classes"):  # timm
        if model.num_classes != num_classes:
            model.reset_classifier(num_classes)
            source = dict(info(model).source or {})
            if source.get("kind") == "timm":
                info(model).source = {
                    **source,
                    "kwargs": {**source.get("kwargs", {}), "num_classes": num_classes},
                }
        return model
    name = type(model).__name__
    if name.endswith(("ForSequenceClassification", "ForImageClassification")):
        if getattr(model.config, "num_labels", None) == num_classes or _resize_hf_head(
            model, num_classes
        ):
            return model
    hidden = tower_hidden_size(model, tower) if tower else hidden_size(model)
    if hidden is None:
        raise PelaError(f"cannot tell the hidden size of {name} to add a classification head")
    # a Hugging Face task-head model (BertForMaskedLM, GPT2LMHeadModel) has a base model other than
    # itself; T5ForConditionalGeneration, which has none, still follows the *For* naming
    task_head = hasattr(model, "base_model") and (model.base_model is not model or "For" in name)
    wrapped = SequenceClassifier(
        model, hidden, num_classes, pooling, hidden_states=task_head, tower=tower
    )
    info(wrapped).files = info(model).files
    return wrapped


def _resize_hf_head(model: nn.Module, num_classes: int) -> bool:
    """Replace the last layer of a Hugging Face classifier (``classifier``/``score``) by one with
    ``num_classes`` outputs, keeping the rest of the head (e.g. RoBERTa's dense layer); False if
    none fits."""
    labels = getattr(model.config, "num_labels", None)
    for attr in ("classifier", "score"):
        head = getattr(model, attr, None)
        if not isinstance(head, nn.Module):
            continue
        last = [
            (n, m)
            for n, m in head.named_modules()
            if isinstance(m, nn.Linear) and m.out_features == labels
        ]
        if not last:
            continue
        path, old = last[-1]
        new = nn.Linear(
            old.in_features,
            num_classes,
            bias=old.bias is not None,
            device=old.weight.device,
            dtype=old.weight.dtype,
        )
        init = getattr(model, "_init_weights", None)
        if callable(init):
            init(new)  # the model's own initialization for a fresh head
        parent, _, leaf = f"{attr}.{path}".rstrip(".").rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, new)
        model.config.num_labels = num_classes  # the saved config then rebuilds this head size
        if hasattr(model, "num_labels"):
            model.num_labels = num_classes
        return True
    return False
