"""Stage 2 of PELA: distill the low-rank student from the frozen original (the teacher)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

from torch import nn
from torch.utils.data import Dataset

from pela import arch
from pela.arch import is_causal_lm
from pela.data.collate import Collator
from pela.data.inputs import as_dataset
from pela.data.labels import align_classes, dataset_classes
from pela.errors import PelaError
from pela.evaluation.compare import compare, eval_subset
from pela.evaluation.perplexity import perplexity
from pela.features import FEATURE_LOSSES, BlockCapture
from pela.layers.lowrank import LowRankLinear
from pela.training.accelerator import is_sharded, make_accelerator, shard_frozen
from pela.training.config import TrainConfig, TrainResult
from pela.training.distill_loss import DistillLoss, Pairs
from pela.training.loop import Evaluator, fit

DistillResult = TrainResult
# what `pela.compare` reports on held-out data that can pick the best student (MSE is minimized,
# the others maximized), and for a language model its perplexity on that data's text too
# (minimized)
EVAL_METRICS = ("mean_mse", "mean_cosine", "output_agreement", "perplexity")


@dataclass(frozen=True)
class DistillConfig(TrainConfig):
    """`TrainConfig` plus the loss weights; defaults follow the PELA paper (its section 3.2) where
    it has one."""

    # feature distillation: every block's output, over real tokens (padding excluded)
    alpha: float = 1.0
    # each token's squared error relative to the teacher's feature ("relative"), or PELA's plain
    # MSE ("mse"), which on a pre-LN model is ruled by the deepest blocks and by a language model's
    # massive activations
    feature_loss: str = "relative"
    # logit distillation: MSE of the outputs (PELA), or with a temperature, KL divergence
    beta: float = 0.0
    # logit distillation as T²·KL(teacher ‖ student) of softmax(logits / T), per real token
    temperature: float | None = None
    # task loss, used when batches carry labels and the model outputs class logits
    task: float = 1.0
    gamma: float = 0.0  # weight-perturbation regularization
    epsilon: float = 1e-3
    blocks: str | None = None  # regex overriding automatic block discovery
    EVAL_METRICS: ClassVar[tuple[str, ...]] = EVAL_METRICS

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("alpha", "beta", "task", "gamma", "epsilon"):
            v = getattr(self, name)
            if not _finite(v) or v < 0:
                raise PelaError(f"{name} must be a finite number >= 0, got {v!r}")
        t = self.temperature
        if t is not None and not (_finite(t) and t > 0):
            raise PelaError(f"temperature must be a finite number > 0, got {t!r}")
        if self.feature_loss not in FEATURE_LOSSES:
            raise PelaError(f"feature_loss must be one of {', '.join(FEATURE_LOSSES)}, got "
                            f"{self.feature_loss!r}")
        if self.temperature is not None and self.beta == 0:
            raise PelaError("a temperature applies to logit distillation: give it a weight too "
                            "(beta > 0)")
        if self.alpha == self.beta == self.task == self.gamma == 0:
            raise PelaError("all loss weights are 0: nothing to train")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def check_pair(student: nn.Module, teacher: nn.Module) -> Pairs:
    """Refuse a teacher/student pair of different architectures; return (student layer, teacher
    W) pairs."""
    if any(isinstance(m, LowRankLinear) for m in teacher.modules()):
        raise PelaError("the teacher is itself compressed; give the original dense model as "
                        "--teacher")
    teacher_modules = dict(teacher.named_modules())
    pairs = []
    for name, layer in student.named_modules():
        if not isinstance(layer, LowRankLinear):
            continue
        wb = arch.linear_weight(teacher_modules[name]) if name in teacher_modules else None
        if wb is None or tuple(wb[0].shape) != (layer.out_features, layer.in_features):
            raise PelaError("teacher and student have different architectures: teacher has no "
                            f"{layer.in_features}->{layer.out_features} linear layer {name!r}")
        pairs.append((layer, wb[0].detach()))
    if not pairs:
        raise PelaError("the student has no factorized layers; compress it first (pela compress)")
    factorized = tuple(f"{name}." for name, m in student.named_modules()
                       if isinstance(m, LowRankLinear))
    dense_t = {n: tuple(p.shape) for n, p in teacher.named_parameters()}
    wrong = [n for n, p in student.named_parameters()
             if not n.startswith(factorized) and dense_t.get(n) != tuple(p.shape)]
    if wrong:
        raise PelaError("teacher and student have different architectures: parameter "
                        f"{wrong[0]!r} differs")
    return pairs


def distill(student: nn.Module, teacher: nn.Module, data: Dataset,
            config: DistillConfig | None = None, *, collate_fn: Callable | None = None,
            out: str | Path | None = None, resume: bool = False, progress: bool = False,
            run_info: dict[str, Any] | None = None, accelerator: Any = None,
            eval_data: Dataset | None = None, eval_samples: int = 256) -> TrainResult:
    """Train ``student`` (in place) to match the frozen ``teacher`` on ``data``.

    Args:
        student: a model compressed by `pela.compress`.
        teacher: the original dense model; frozen here (eval mode, no gradients, never updated).
        data: a dataset of examples; ``collate_fn`` turns a list of them into a dict of model
            inputs (``"labels"`` is taken out for the task loss). Defaults to
            `pela.data.Collator(student)`.
        config: a `DistillConfig`.
        out: directory for checkpoints (``save_every``) and ``metrics.jsonl``; required to resume.
        resume: continue from the newest checkpoint in ``out``.
        progress: show a rich progress bar.
        run_info: extra facts identifying the run (data path, model sources) for resume checks.
        eval_data: held-out examples: `pela.compare` scores the student on a seeded sample of
            ``eval_samples`` of them at the end and every ``config.eval_every`` steps
            (`EVAL_METRICS`, in ``result.evals``); with ``config.keep_best`` the student ends as
            the best one.
    """
    data = as_dataset(data)  # a datasets.Dataset, a list of texts or of (text, label) pairs
    eval_data = as_dataset(eval_data) if eval_data is not None else None
    config = config or DistillConfig()
    pairs = check_pair(student, teacher)
    # labels as the head numbers its classes
    data = align_classes(data, arch.class_names(student), subset=True)
    blocks = _check_distill(student, data, config)
    accelerator = accelerator or make_accelerator(config)
    if is_sharded(accelerator) and config.gamma > 0:
        raise PelaError("weight-perturbation regularization (gamma) reads whole weights, which "
                        "FSDP shards: distill without it (gamma=0) or without FSDP")
    teacher.eval().requires_grad_(False).to(accelerator.device)
    # under FSDP2 the teacher is sharded too: it is never whole on one process
    shard_frozen(teacher, accelerator)
    student.to(accelerator.device)
    pairs = [(layer, w.to(accelerator.device)) for layer, w in pairs]
    captures = BlockCapture(teacher, blocks), BlockCapture(student, blocks)
    step_loss = DistillLoss(student, teacher, config, data, pairs, captures)
    weights = {"feature": config.alpha, "logit": config.beta, "task": config.task,
               "weight_reg": config.gamma}
    collate_fn = collate_fn or Collator(student)
    # CLIP distilled on images alone trains its vision tower; the other tower is not the optimizer's
    tower = arch.data_tower(student, data, collate_fn)
    trained = arch.TowerView(student, tower) if tower else student
    evaluator = None
    if eval_data is not None:
        evaluator = _evaluator(student, teacher, eval_data, eval_samples, config, collate_fn,
                               captures, data)
    try:
        return fit(trained, data, collate_fn, config, step_loss, weights,
                   out=Path(out) if out else None, resume=resume, progress=progress,
                   run_info=run_info, accelerator=accelerator, description="distilling",
                   evaluator=evaluator)
    finally:
        for capture in captures:
            capture.remove()


def _check_distill(student: nn.Module, data: Dataset, config: DistillConfig) -> list[str]:
    """Refuse a config that has nothing to learn from this data or model; the student's blocks."""
    if config.alpha == config.beta == config.gamma == 0 and dataset_classes(data) is None:
        raise PelaError("nothing to learn: with alpha, beta and gamma 0 only the task loss is "
                        "left, and the data has no labels; give feature or logit distillation a "
                        "weight (alpha, beta)")
    name = type(student).__name__
    blocks = arch.find_blocks(student, config.blocks)
    if config.alpha > 0 and not blocks:
        raise PelaError(f"found no Transformer blocks in {name}; name them with blocks=REGEX, or "
                        "distill logits only (alpha=0 beta=1)")
    if config.keep_best == "perplexity" and not is_causal_lm(student):
        raise PelaError(f"keep_best='perplexity' needs a language model; {name} has no "
                        "next-token head")
    return blocks


def _evaluator(student: nn.Module, teacher: nn.Module, eval_data: Dataset, samples: int,
               config: DistillConfig, collate_fn: Callable, captures: tuple[BlockCapture, ...],
               train_data: Dataset) -> Evaluator:
    """`pela.compare`'s scores of the student on ``eval_data``, and a language model's perplexity
    on its text in windows as long as ``train_data``'s packed sequences (`PackedText`), else the
    model's maximum."""
    language_model, context = is_causal_lm(student), getattr(train_data, "length", None)
    batch_size = max(1, config.batch_size // config.grad_accum)
    tokenizer = getattr(collate_fn, "tokenizer", None)

    def evaluate(_: nn.Module) -> dict[str, float]:
        for c in captures:
            c.active = False  # the training's hooks must not keep these passes' features
        try:
            scores = compare(student, teacher, eval_data, collate_fn=collate_fn, samples=samples,
                             batch_size=batch_size, blocks=config.blocks)
            if language_model:
                subset = eval_subset(eval_data, samples)
                scores["perplexity"] = perplexity(student, subset, context=context,
                                                  tokenizer=tokenizer)["perplexity"]
        finally:
            for c in captures:
                c.active = True
        return {k: scores[k] for k in EVAL_METRICS if k in scores}

    return evaluate
