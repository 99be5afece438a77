"""What one distillation step minimizes: PELA's loss terms, from the teacher's and the student's
outputs and block features."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from pela import arch
from pela.data.labels import dataset_classes
from pela.errors import PelaError, warn
from pela.features import BlockCapture, feature_loss, real_tokens
from pela.layers.lowrank import LowRankLinear

# a factorized layer of the student and the original weight it approximates
Pairs = list[tuple[LowRankLinear, torch.Tensor]]


class DistillLoss:
    """The loss of one step, ``(model, batch) -> (outputs, {term: tensor})`` as `fit` takes it.

    The frozen ``teacher`` runs without gradients; both models' block outputs come from their
    `BlockCapture` hooks. ``config`` is a `DistillConfig` (the terms' weights and settings).
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, config: Any, data: Dataset,
                 pairs: Pairs, captures: tuple[BlockCapture, BlockCapture]) -> None:
        self.student, self.teacher, self.config, self.data = student, teacher, config, data
        self.pairs = pairs
        self.t_capture, self.s_capture = captures
        # decided at the first labelled batch, when the head's width is known
        self.task_fits: bool | None = None

    def __call__(self, model: nn.Module,
                 batch: dict[str, torch.Tensor]) -> tuple[Any, dict[str, torch.Tensor]]:
        labels = batch.pop("labels", None)
        with torch.no_grad():
            t_out = arch.main_output(arch.forward(self.teacher, batch))
        t_feats = self.t_capture.take()
        s_raw = arch.forward(model, batch)
        s_feats = self.s_capture.take()
        s_out = arch.main_output(s_raw)
        terms: dict[str, torch.Tensor] = {}
        config = self.config
        if config.alpha > 0:
            masks = arch.block_masks(self.student, self.s_capture.labels, batch)
            terms["feature"] = _feature_term(s_feats, t_feats, masks, config.feature_loss)
        if config.beta > 0 and config.temperature is None:
            terms["logit"] = F.mse_loss(s_out.float(), t_out.float())
        elif config.beta > 0:
            mask = batch.get("attention_mask")
            terms["logit"] = kl_divergence(s_out, t_out, config.temperature, mask)
        if self._task_labels(labels, s_out) is not None:
            terms["task"] = F.cross_entropy(s_out.float(), labels)
        if config.gamma > 0:
            terms["weight_reg"] = weight_perturbation(self.pairs, config.epsilon)
        return s_raw, terms

    def _task_labels(self, labels: torch.Tensor | None,
                     s_out: torch.Tensor) -> torch.Tensor | None:
        """``labels`` when the task loss applies: it has a weight, the batch carries labels of
        one class each, the model outputs class logits and the labels index its head."""
        if self.config.task <= 0 or labels is None or s_out.dim() != 2 or labels.dim() != 1:
            return None
        if self.task_fits is None:
            classes = dataset_classes(self.data)
            self.task_fits = labels_fit_head(self.student, classes, s_out.shape[-1], labels)
        return labels if self.task_fits else None


def _feature_term(s_feats: list[torch.Tensor], t_feats: list[torch.Tensor],
                  masks: torch.Tensor | list[torch.Tensor | None] | None,
                  kind: str) -> torch.Tensor:
    if len(s_feats) != len(t_feats) or any(s.shape != t.shape for s, t in zip(s_feats, t_feats)):
        raise PelaError("teacher and student blocks produce different shapes: different "
                        "architectures?")
    return feature_loss(s_feats, t_feats, masks, kind)


def weight_perturbation(pairs: Pairs, epsilon: float) -> torch.Tensor:
    """Mean over factorized layers of ``(max|B·A − W| − ε)²``: keeps the student near the original
    weights."""
    terms = [((layer.b.weight @ layer.a.weight - w).abs().max() - epsilon) ** 2
             for layer, w in pairs]
    return torch.stack(terms).mean()


def kl_divergence(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """``T² · KL(softmax(t / T) ‖ softmax(s / T))``, averaged over the positions ``mask`` keeps
    (every position of class logits; the real tokens of a language model's next-token logits).
    ``T²`` keeps the gradients' scale as the temperature changes (Hinton et al.)."""
    s, t = real_tokens(student, mask).float(), real_tokens(teacher, mask).float()
    log_s, log_t = F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1)
    return F.kl_div(log_s, log_t, log_target=True, reduction="batchmean") * temperature ** 2


def labels_fit_head(model: nn.Module, classes: list[str] | None, outputs: int,
                    labels: torch.Tensor) -> bool:
    """Whether the data's labels index the model's own head, so the task loss can use them.

    The data must have as many classes as the head has outputs, and, where the model names its
    classes, must not share only some of those names: then the two are different label sets (a
    cats-and-dogs folder against an ImageNet head), and distillation goes on without the task loss.
    Names that share nothing (ImageNet's folder names against a config's readable names) say
    nothing, and the labels are taken as indices. The same names in another order were already
    renumbered (`pela.data.labels.align_classes`).
    """
    why = None
    if classes is not None and len(classes) != outputs:
        why = f"the data has {len(classes)} classes and the model's head {outputs} outputs"
    elif classes is None and int(labels.max()) >= outputs:
        why = f"the data has label {int(labels.max())} and the model's head {outputs} outputs"
    elif classes is not None:
        names = arch.class_names(model)
        shared = set(names or ()) & set(classes)
        if names is not None and shared and shared != set(classes):
            other = sorted(set(classes) - shared)
            why = f"the data's classes are not the head's ({other[0]!r} is not among them)"
    if why:
        warn(f"distilling without the task loss: {why}; fine-tune for the data's classes "
             "afterwards (pela finetune)")
    return why is None
