"""pela's recipe for stages 1 and 2 in one call: calibrated compression and distillation, in steps
of size.

The student is not cut to its final size at once. With ``stages=n``, stage ``i`` compresses it to
the size a ratio ``k^(i/n)`` gives (whitened factors, ranks allocated across layers by measured
sensitivity, statistics from the same data run through the student as it is then) and distills it
for its share of the steps; between stages its factors are merged back into dense layers (`densify`)
and cut again, further. Each cut starts from a student that has already recovered from the last, so
it never jumps far from the teacher. Measured on the study of record (docs/BENCHMARKS.md), two
stages against one, same steps in all.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch import nn

from pela import arch
from pela.compression.calibrate import Calibration, calibrate
from pela.compression.compress import compress
from pela.compression.config import LowRankConfig
from pela.compression.recipe import recipe
from pela.compression.report import CompressionReport
from pela.data.collate import Collator
from pela.data.packing import PackedText
from pela.errors import PelaError
from pela.layers.lowrank import densify
from pela.training.accelerator import fsdp_requested
from pela.training.config import TrainResult
from pela.training.distill import DistillConfig, distill
from pela.utils.processes import partial_state

STAGES = 2  # the default: one intermediate size (k's square root), then k
# a distillation step runs the teacher forward, the student forward and backward: about this many
# forward passes of the original model per example, against calibration's one
STEP_PASSES = 3.5
# a language model's packed sequences: this many tokens, or fewer where the model takes fewer
PACK_TOKENS = 1024


@dataclass
class ShrinkResult:
    # one per stage; the last one is the student's size
    reports: list[CompressionReport] = field(default_factory=list)
    distills: list[TrainResult] = field(default_factory=list)  # one per stage
    # the distillation's settings, its steps in all (shared by the stages)
    config: DistillConfig | None = None

    @property
    def report(self) -> CompressionReport:
        return self.reports[-1]


def stage_ratios(ratio: float, stages: int) -> list[float]:
    """The size of each stage, as a ratio: ``k^(i/n)``, ending at ``k``."""
    return [ratio ** ((i + 1) / stages) for i in range(stages)]


def stage_recipe(
    model: nn.Module, ratio: float, sequential: bool = False, align: int = 8, last: bool = True
) -> LowRankConfig:
    """pela's factorization at the size ``ratio`` gives: whitened, ranks allocated across layers by
    sensitivity. Only the ``last`` stage checks speed: the model served is the last stage's, and a
    layer an earlier stage kept dense would be factorized at once, a larger step, by the next."""
    speed = {} if last else {"speed_check": False}
    return recipe(model, calibrated=True, ratio=ratio, sequential=sequential, align=align, **speed)


def _stage_config(config: DistillConfig, stage: int, stages: int) -> DistillConfig:
    """``config`` with this stage's share of the steps (or of the epochs; default: one epoch in
    all)."""
    if config.steps is not None:
        steps = config.steps * (stage + 1) // stages - config.steps * stage // stages
        if steps < 1:
            raise PelaError(
                f"{config.steps} distillation steps cannot be shared by {stages} stages"
            )
        return dataclasses.replace(config, steps=steps)
    return dataclasses.replace(config, epochs=(config.epochs or 1.0) / stages)


def distill_steps(
    examples: int, batch_size: int, seconds_per_example: float, minutes: float | None
) -> int:
    """One epoch of ``examples`` in batches, or as many steps as ``minutes`` allow at the measured
    pace."""
    epoch = max(1, examples // batch_size)
    if minutes is None:
        return epoch
    step_seconds = max(seconds_per_example * batch_size * STEP_PASSES, 1e-6)
    return max(1, min(epoch, math.floor(minutes * 60 / step_seconds)))


def recipe_config(model: nn.Module, **settings: Any) -> DistillConfig:
    """pela's distillation settings for ``model``: text batched by length, and for a language model
    next-token KL divergence to the teacher (temperature 1) beside the block features; ``settings``
    override any of them."""
    logits = {"beta": 1.0, "temperature": 1.0} if arch.is_causal_lm(model) else {}
    return DistillConfig(**{"group_by_length": True, **logits, **settings})


def packed(model: nn.Module, data: Any, collate_fn: Any, pack: int | None) -> Any:
    """What a language model distills on: ``data``'s text packed into sequences of ``pack`` tokens
    (default `PACK_TOKENS`, or the model's positions if fewer); any other model's data as it is."""
    positions = arch.max_positions(model)
    if not arch.is_causal_lm(model):
        if pack is not None:
            raise PelaError(
                f"--pack packs text for a language model; {type(model).__name__} has no next-token "
                "head"
            )
        return data
    if pack is not None and positions is not None and pack > positions:
        raise PelaError(
            f"--pack {pack} is more than this model takes: at most {positions} positions"
        )
    return PackedText(
        data, collate_fn.tokenizer, pack or min(PACK_TOKENS, positions or PACK_TOKENS)
    )


def shrink(
    student: nn.Module,
    teacher: nn.Module,
    data: Any,
    ratio: float = 2.0,
    config: DistillConfig | None = None,
    *,
    stages: int = STAGES,
    minutes: float | None = None,
    pack: int | None = None,
    train_data: Any = None,
    collate_fn: Callable | None = None,
    calib_samples: int = 512,
    probe_samples: int = 32,
    sequential: bool = False,
    align: int = 8,
    seed: int = 0,
    out: str | Path | None = None,
    progress: bool = False,
    run_info: dict[str, Any] | None = None,
) -> ShrinkResult:
    """Compress ``student`` (in place; a copy of ``teacher``) to the size ratio ``k`` gives, and
    distill it, in ``stages``.

    Args:
        data: unlabeled examples to calibrate on (and to distill on, unless ``train_data`` says
            otherwise).
        config: the distillation's settings (default `recipe_config`); its steps (or epochs) are
            shared evenly by the stages. Without either: one epoch of what it distills on, or as
            many steps as ``minutes`` allow at the pace the first calibration measured.
        pack: a language model distills on ``data``'s text packed into sequences of this many tokens
            (`packed`).
        train_data: what to distill on, when not ``data`` (or its packed text).
        calib_samples, probe_samples, sequential, align: `pela.calibrate` and `LowRankConfig`
            settings of every stage.
        out: the last stage's run directory (`pela.distill`); earlier stages write under
            ``out/stages``.
    """
    _check(stages, minutes, config)
    collate_fn = collate_fn or Collator(student)
    train = packed(student, data, collate_fn, pack) if train_data is None else train_data
    config = config or recipe_config(student)
    result = ShrinkResult(config=config)
    for stage, k in enumerate(stage_ratios(ratio, stages)):
        if stage:
            densify(student)
        recipe = stage_recipe(student, k, sequential, align, last=stage == stages - 1)
        began = time.perf_counter()
        calibration = calibrate(student, data, recipe, collate_fn=collate_fn, samples=calib_samples,
                                probe_samples=probe_samples, seed=seed, progress=progress)
        # the first calibration's pace says how many steps fit
        if config.steps is None and config.epochs is None:
            per_example = _seconds_per_example(time.perf_counter() - began, calibration, train)
            steps = max(stages, distill_steps(len(train), config.batch_size, per_example, minutes))
            config = result.config = dataclasses.replace(config, steps=steps)
        result.reports.append(compress(student, recipe, calibration=calibration, progress=progress))
        where = _stage_dir(out, stage, stages)
        result.distills.append(
            distill(
                student,
                teacher,
                train,
                _stage_config(config, stage, stages),
                collate_fn=collate_fn,
                out=where,
                progress=progress,
                run_info={**(run_info or {}), "stage": stage + 1, "stages": stages},
            )
        )
    return result


def _stage_dir(out: str | Path | None, stage: int, stages: int) -> Path | None:
    """Where stage ``stage`` (from 0) distills: ``out`` for the last, ``out/stages/N`` before."""
    if out is None:
        return None
    return Path(out) if stage == stages - 1 else Path(out) / "stages" / str(stage + 1)


def _check(stages: int, minutes: float | None, config: DistillConfig | None) -> None:
    if not (isinstance(stages, int) and stages >= 1):
        raise PelaError(f"stages must be an integer >= 1, got {stages!r}")
    if minutes is not None and not (isinstance(minutes, (int, float)) and minutes > 0):
        raise PelaError(f"minutes must be > 0, got {minutes!r}")
    if (
        minutes is not None
        and config is not None
        and (config.steps is not None or config.epochs is not None)
    ):
        raise PelaError(
            "give the distillation's steps (or epochs) or a time budget in minutes, not both"
        )
    if stages > 1 and fsdp_requested() and partial_state().num_processes > 1:
        raise PelaError(
            "under FSDP the student is sharded after its first stage, and the next cut needs it "
            "whole: shrink in one stage (stages=1), or compress and distill stage by stage"
        )


def _seconds_per_example(seconds: float, calibration: Calibration, train: Any) -> float:
    """A calibration pass's time per token, times the tokens of one example of ``train`` (a packed
    sequence's length, or the calibration examples' mean)."""
    most = max(calibration.tokens.values(), default=0)
    per_token = seconds / max(most, 1)
    return per_token * getattr(train, "length", most / max(calibration.samples, 1))
