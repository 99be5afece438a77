"""Stage 2 of PELA: distill the low-rank student from the frozen original (the teacher)."""

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
from pela.arch import is_causal_lm
from pela.data.collate import Collator
from pela.data.inputs import as_dataset
from pela.data.labels import align_classes, dataset_classes
from pela.errors import PelaError, warn
from pela.evaluation.compare import compare, eval_subset
from pela.evaluation.perplexity import perplexity
from pela.features import FEATURE_LOSSES, BlockCapture, feature_loss, real_tokens
from pela.layers.lowrank import LowRankLinear
from pela.training.accelerator import is_sharded, make_accelerator, shard_frozen
from pela.training.config import TrainConfig, TrainResult
from pela.training.loop import fit

DistillResult = TrainResult
# what `pela.compare` reports on held-out data that can pick the best student (MSE is minimized, the others maximized),
# and for a language model its perplexity on that data's text too (minimized)
EVAL_METRICS = ("mean_mse", "mean_cosine", "output_agreement", "perplexity")


@dataclass(frozen=True)
class DistillConfig(TrainConfig):
    """`TrainConfig` plus the loss weights; defaults follow the PELA paper (its section 3.2) where it has one."""

    alpha: float = 1.0  # feature distillation: every block's output, over real tokens (padding excluded)
    # each token's squared error relative to the teacher's feature ("relative"), or PELA's plain MSE ("mse"),
    # which on a pre-LN model is ruled by the deepest blocks and by a language model's massive activations
    feature_loss: str = "relative"
    beta: float = 0.0  # logit distillation: MSE of the outputs (PELA), or with a temperature, KL divergence
    temperature: float | None = None  # logit distillation as T²·KL(teacher ‖ student) of softmax(logits / T), per real token
    task: float = 1.0  # task loss, used when batches carry labels and the model outputs class logits
    gamma: float = 0.0  # weight-perturbation regularization
    epsilon: float = 1e-3
    blocks: str | None = None  # regex overriding automatic block discovery
    EVAL_METRICS: ClassVar[tuple[str, ...]] = EVAL_METRICS

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("alpha", "beta", "task", "gamma", "epsilon"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise PelaError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.temperature is not None and not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)
                                                 and self.temperature > 0):
            raise PelaError(f"temperature must be a finite number > 0, got {self.temperature!r}")
        if self.feature_loss not in FEATURE_LOSSES:
            raise PelaError(f"feature_loss must be one of {', '.join(FEATURE_LOSSES)}, got {self.feature_loss!r}")
        if self.temperature is not None and self.beta == 0:
            raise PelaError("a temperature applies to logit distillation: give it a weight too (beta > 0)")
        if self.alpha == self.beta == self.task == self.gamma == 0:
            raise PelaError("all loss weights are 0: nothing to train")


def weight_perturbation(pairs: list[tuple[LowRankLinear, torch.Tensor]], epsilon: float) -> torch.Tensor:
    """Mean over factorized layers of ``(max|B·A − W| − ε)²``: keeps the student near the original weights."""
    terms = [((layer.b.weight @ layer.a.weight - w).abs().max() - epsilon) ** 2 for layer, w in pairs]
    return torch.stack(terms).mean()


def check_pair(student: nn.Module, teacher: nn.Module) -> list[tuple[LowRankLinear, torch.Tensor]]:
    """Refuse a teacher/student pair of different architectures; return (student layer, teacher W) pairs."""
    if any(isinstance(m, LowRankLinear) for m in teacher.modules()):
        raise PelaError("the teacher is itself compressed; give the original dense model as --teacher")
    teacher_modules = dict(teacher.named_modules())
    pairs = []
    for name, layer in student.named_modules():
        if isinstance(layer, LowRankLinear):
            wb = arch.linear_weight(teacher_modules[name]) if name in teacher_modules else None
            if wb is None or tuple(wb[0].shape) != (layer.out_features, layer.in_features):
                raise PelaError(f"teacher and student have different architectures: teacher has no {layer.in_features}->{layer.out_features} linear layer {name!r}")
            pairs.append((layer, wb[0].detach()))
    if not pairs:
        raise PelaError("the student has no factorized layers; compress it first (pela compress)")
    factorized = tuple(f"{name}." for name, m in student.named_modules() if isinstance(m, LowRankLinear))
    dense_s = {n: tuple(p.shape) for n, p in student.named_parameters() if not n.startswith(factorized)}
    dense_t = {n: tuple(p.shape) for n, p in teacher.named_parameters()}
    wrong = [n for n, s in dense_s.items() if dense_t.get(n) != s]
    if wrong:
        raise PelaError(f"teacher and student have different architectures: parameter {wrong[0]!r} differs")
    return pairs


def distill(student: nn.Module, teacher: nn.Module, data: Dataset, config: DistillConfig | None = None, *,
            collate_fn: Callable | None = None, out: str | Path | None = None, resume: bool = False,
            progress: bool = False, run_info: dict[str, Any] | None = None, accelerator: Any = None,
            eval_data: Dataset | None = None, eval_samples: int = 256) -> TrainResult:
    """Train ``student`` (in place) to match the frozen ``teacher`` on ``data``.

    Args:
        student: a model compressed by `pela.compress`.
        teacher: the original dense model; frozen here (eval mode, no gradients, never updated).
        data: a dataset of examples; ``collate_fn`` turns a list of them into a dict of model inputs
            (``"labels"`` is taken out for the task loss). Defaults to `pela.data.Collator(student)`.
        config: a `DistillConfig`.
        out: directory for checkpoints (``save_every``) and ``metrics.jsonl``; required to resume.
        resume: continue from the newest checkpoint in ``out``.
        progress: show a rich progress bar.
        run_info: extra facts identifying the run (data path, model sources) for resume checks.
        eval_data: held-out examples: `pela.compare` scores the student on a seeded sample of
            ``eval_samples`` of them at the end and every ``config.eval_every`` steps (`EVAL_METRICS`,
            in ``result.evals``); with ``config.keep_best`` the student ends as the best one.
    """
    data = as_dataset(data)  # a datasets.Dataset, a list of texts or of (text, label) pairs
    eval_data = as_dataset(eval_data) if eval_data is not None else None

    config = config or DistillConfig()
    pairs = check_pair(student, teacher)
    data = align_classes(data, arch.class_names(student), subset=True)  # labels as the head numbers its classes
    if config.alpha == config.beta == config.gamma == 0 and dataset_classes(data) is None:
        raise PelaError("nothing to learn: with alpha, beta and gamma 0 only the task loss is left, and the data has no labels; "
                        "give feature or logit distillation a weight (alpha, beta)")
    blocks = arch.find_blocks(student, config.blocks)
    if config.alpha > 0 and not blocks:
        raise PelaError(f"found no Transformer blocks in {type(student).__name__}; name them with blocks=REGEX, or distill logits only (alpha=0 beta=1)")
    language_model = is_causal_lm(student)
    if config.keep_best == "perplexity" and not language_model:
        raise PelaError(f"keep_best='perplexity' needs a language model; {type(student).__name__} has no next-token head")
    accelerator = accelerator or make_accelerator(config)
    if is_sharded(accelerator) and config.gamma > 0:
        raise PelaError("weight-perturbation regularization (gamma) reads whole weights, which FSDP shards: distill without it "
                        "(gamma=0) or without FSDP")
    teacher.eval().requires_grad_(False).to(accelerator.device)
    shard_frozen(teacher, accelerator)  # under FSDP2 the teacher is sharded too: it is never whole on one process
    student.to(accelerator.device)
    teacher_w = [(layer, w.to(accelerator.device)) for layer, w in pairs]
    t_capture, s_capture = BlockCapture(teacher, blocks), BlockCapture(student, blocks)

    task_fits: dict[str, bool] = {}  # decided at the first labelled batch, when the head's width is known

    def step_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[Any, dict[str, torch.Tensor]]:
        labels = batch.pop("labels", None)
        with torch.no_grad():
            t_out = arch.main_output(arch.forward(teacher, batch))
        t_feats = t_capture.take()
        s_raw = arch.forward(model, batch)
        s_feats = s_capture.take()
        s_out = arch.main_output(s_raw)
        if labels is not None and config.task > 0 and s_out.dim() == 2:
            if "fits" not in task_fits:
                task_fits["fits"] = _labels_fit_head(student, dataset_classes(data), s_out.shape[-1], labels)
            labels = labels if task_fits["fits"] else None
        masks = arch.block_masks(student, s_capture.labels, batch)
        terms = _loss_terms(config, s_feats, t_feats, s_out, t_out, labels, teacher_w, masks, batch.get("attention_mask"))
        return s_raw, terms

    weights = {"feature": config.alpha, "logit": config.beta, "task": config.task, "weight_reg": config.gamma}
    collate_fn = collate_fn or Collator(student)
    # CLIP distilled on images alone trains its vision tower; the other tower is not the optimizer's
    tower = arch.data_tower(student, data, collate_fn)
    trained = arch.TowerView(student, tower) if tower else student
    evaluator = None if eval_data is None else _evaluator(student, teacher, eval_data, eval_samples, config, collate_fn,
                                                          (t_capture, s_capture), data)

    try:
        return fit(trained, data, collate_fn, config, step_loss, weights, out=Path(out) if out else None,
                   resume=resume, progress=progress, run_info=run_info, accelerator=accelerator, description="distilling",
                   evaluator=evaluator)
    finally:
        t_capture.remove()
        s_capture.remove()


def _evaluator(student: nn.Module, teacher: nn.Module, eval_data: Dataset, samples: int, config: DistillConfig, collate_fn: Callable,
               captures: tuple[BlockCapture, ...], train_data: Dataset) -> Callable[[nn.Module], dict[str, float]]:
    """`pela.compare`'s scores of the student on ``eval_data``, and a language model's perplexity on its text
    in windows as long as ``train_data``'s packed sequences (`PackedText`), else the model's maximum."""
    language_model, context = is_causal_lm(student), getattr(train_data, "length", None)

    def evaluate(_: nn.Module) -> dict[str, float]:
        for c in captures:
            c.active = False  # the training's hooks must not keep these passes' features
        try:
            scores = compare(student, teacher, eval_data, collate_fn=collate_fn, samples=samples,
                             batch_size=max(1, config.batch_size // config.grad_accum), blocks=config.blocks)
            if language_model:
                scores["perplexity"] = perplexity(student, eval_subset(eval_data, samples), context=context,
                                                  tokenizer=getattr(collate_fn, "tokenizer", None))["perplexity"]
        finally:
            for c in captures:
                c.active = True
        return {k: scores[k] for k in EVAL_METRICS if k in scores}

    return evaluate


def kl_divergence(student: torch.Tensor, teacher: torch.Tensor, temperature: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``T² · KL(softmax(t / T) ‖ softmax(s / T))``, averaged over the positions ``mask`` keeps (every position
    of class logits; the real tokens of a language model's next-token logits). ``T²`` keeps the gradients'
    scale as the temperature changes (Hinton et al.)."""
    s, t = real_tokens(student, mask).float(), real_tokens(teacher, mask).float()
    log_s, log_t = F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1)
    return F.kl_div(log_s, log_t, log_target=True, reduction="batchmean") * temperature ** 2


def _labels_fit_head(model: nn.Module, classes: list[str] | None, outputs: int, labels: torch.Tensor) -> bool:
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
        warn(f"distilling without the task loss: {why}; fine-tune for the data's classes afterwards (pela finetune)")
    return why is None


def _loss_terms(config: DistillConfig, s_feats: list[torch.Tensor], t_feats: list[torch.Tensor], s_out: torch.Tensor,
                t_out: torch.Tensor, labels: torch.Tensor | None, teacher_w: list,
                mask: torch.Tensor | list[torch.Tensor | None] | None = None,
                out_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    terms: dict[str, torch.Tensor] = {}
    if config.alpha > 0:
        if len(s_feats) != len(t_feats) or any(s.shape != t.shape for s, t in zip(s_feats, t_feats)):
            raise PelaError("teacher and student blocks produce different shapes: different architectures?")
        terms["feature"] = feature_loss(s_feats, t_feats, mask, config.feature_loss)
    if config.beta > 0 and config.temperature is None:
        terms["logit"] = F.mse_loss(s_out.float(), t_out.float())
    elif config.beta > 0:
        terms["logit"] = kl_divergence(s_out, t_out, config.temperature, out_mask)
    if config.task > 0 and labels is not None and s_out.dim() == 2 and labels.dim() == 1:
        terms["task"] = F.cross_entropy(s_out.float(), labels)
    if config.gamma > 0:
        terms["weight_reg"] = weight_perturbation(teacher_w, config.epsilon)
    return terms
