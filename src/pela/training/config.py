"""Settings every training stage shares, and what a run returns."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from pela.errors import PelaError

# how a metric's name ends when keep_best should minimize it, not maximize
LOWER_IS_BETTER = ("loss", "mse", "perplexity")


@dataclass(frozen=True)
class TrainConfig:
    """Settings every training stage shares. Give ``steps`` or ``epochs`` (default: one epoch).

    ``batch_size`` is the global batch per optimizer step, split into ``grad_accum`` micro-batches
    and evenly across processes, so results do not depend on how many processes run.
    """

    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.05
    warmup: float = 0.05  # fraction of the steps spent warming up
    grad_accum: int = 1
    clip: float | None = 1.0
    seed: int = 0
    mixed_precision: str = "auto"  # auto = bf16 on a GPU, none on the CPU
    save_every: int | None = None
    log_every: int = 10
    # batch texts of similar length together (less padding), if the data knows lengths
    group_by_length: bool = False
    # DataLoader processes that prepare batches while the model trains (0 = in the main process)
    workers: int = 0
    eval_every: int | None = None  # evaluate every N steps and at the end (needs an evaluator)
    # end with the weights of the best evaluation by this metric (see LOWER_IS_BETTER)
    keep_best: str | None = None
    # with keep_best: stop after this many evaluations without a better one
    patience: int | None = None
    # what a stage's evaluation reports, so keep_best may name (empty: anything)
    EVAL_METRICS: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        if self.steps is not None and self.epochs is not None:
            raise PelaError("give --steps or --epochs, not both")
        for name, (ok, allowed) in RULES.items():
            value = getattr(self, name)
            if not ok(value, self):
                raise PelaError(f"{name} must be {allowed}, got {value!r}")
        metrics = self.EVAL_METRICS
        if self.keep_best is not None and metrics and self.keep_best not in metrics:
            raise PelaError(f"keep_best must be one of {', '.join(metrics)}, got "
                            f"{self.keep_best!r}")
        if self.patience is not None and self.keep_best is None:
            raise PelaError("patience needs keep_best: the metric that must keep improving")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _count(v: Any, _: Any = None) -> bool:
    return isinstance(v, int) and v >= 1


def _optional_count(v: Any, _: Any = None) -> bool:
    return v is None or _count(v)


def _positive(v: Any, _: Any = None) -> bool:
    return math.isfinite(v) and v > 0


COUNT = "an integer >= 1"
# each setting of `TrainConfig`: whether a value (of this config) is allowed, and what is
RULES: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    "steps": (_optional_count, COUNT),
    "epochs": (lambda v, _: v is None or _positive(v), "a number > 0"),
    "batch_size": (_count, COUNT),
    "lr": (_positive, "a number > 0"),
    "weight_decay": (lambda v, _: math.isfinite(v) and v >= 0, "a number >= 0"),
    "warmup": (lambda v, _: 0 <= v < 1, "a fraction in [0, 1)"),
    "clip": (lambda v, _: v is None or _positive(v),
             "a number > 0 (to turn clipping off: None, or clip=0)"),
    "grad_accum": (lambda v, c: isinstance(v, int) and 1 <= v <= c.batch_size,
                   "an integer in [1, batch_size]"),
    "save_every": (_optional_count, COUNT),
    "log_every": (_count, COUNT),
    "workers": (lambda v, _: isinstance(v, int) and v >= 0, "an integer >= 0"),
    "eval_every": (_optional_count, COUNT),
    "keep_best": (lambda v, _: v is None or (isinstance(v, str) and v != ""), "a metric name"),
    "patience": (_optional_count, COUNT),
    "mixed_precision": (lambda v, _: v in ("auto", "no", "bf16", "fp16"), "auto, no, bf16 or fp16"),
}


@dataclass
class TrainResult:
    steps: int
    seconds: float
    items_per_s: float
    history: list[dict[str, float]] = field(default_factory=list)  # the logged metrics
    # {"step": s, metric: value} of each evaluation
    evals: list[dict[str, float]] = field(default_factory=list)
    # with keep_best: the evaluation whose weights the model ends with
    best: dict[str, float] | None = None
    # patience ran out before the planned steps (``steps`` is where it stopped)
    stopped_early: bool = False
    rank_checksums: list[float] = field(default_factory=list)  # one per process: all equal


def run_id(config: TrainConfig, extra: dict[str, Any]) -> str:
    """What makes two runs the same run (a checkpoint may only resume its own run)."""
    # how often to save or log, and how many processes prepare batches, do not change what is
    # computed; settings left at None are left out, so that a run's id does not change when a new
    # setting is added
    unset = {k for k in ("eval_every", "keep_best", "patience") if getattr(config, k) is None}
    ignored = {"save_every", "log_every", "workers"} | unset
    keep = {k: v for k, v in config.to_dict().items() if k not in ignored}
    text = json.dumps({"config": keep, **extra}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
