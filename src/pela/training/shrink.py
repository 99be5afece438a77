"""pela's recipe for stages 1 and 2 in one call: calibrated compression and distillation, in steps of size.

The student is not cut to its final size at once. With ``stages=n``, stage ``i`` compresses it to the
size a ratio ``k^(i/n)`` gives (whitened factors, ranks allocated across layers by measured
sensitivity, statistics from the same data run through the student as it is then) and distills it for
its share of the steps; between stages its factors are merged back into dense layers (`densify`) and
cut again, further. Each cut starts from a student that has already recovered from the last, so it
never jumps far from the teacher. Measured on the study of record (docs/BENCHMARKS.md), two stages
against one, same steps in all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch import nn

from pela.compression.calibrate import Calibration, calibrate
from pela.compression.compress import compress
from pela.compression.config import LowRankConfig
from pela.compression.report import CompressionReport
from pela.compression.targets import budget_of
from pela.errors import PelaError
from pela.layers.lowrank import densify
from pela.training.accelerator import fsdp_requested
from pela.training.config import TrainResult
from pela.training.distill import DistillConfig, distill
from pela.utils.processes import partial_state

STAGES = 2  # the default: one intermediate size (k's square root), then k


@dataclass
class ShrinkResult:
    reports: list[CompressionReport] = field(default_factory=list)  # one per stage; the last one is the student's size
    distills: list[TrainResult] = field(default_factory=list)  # one per stage

    @property
    def report(self) -> CompressionReport:
        return self.reports[-1]


def stage_ratios(ratio: float, stages: int) -> list[float]:
    """The size of each stage, as a ratio: ``k^(i/n)``, ending at ``k``."""
    return [ratio ** ((i + 1) / stages) for i in range(stages)]


def stage_recipe(model: nn.Module, ratio: float, sequential: bool = False, align: int = 8) -> LowRankConfig:
    """pela's factorization at the size ``ratio`` gives: whitened, ranks allocated across layers by sensitivity."""
    size = LowRankConfig(ratio=ratio, align=align)
    return LowRankConfig(param_budget=budget_of(model, size), init="whiten", sequential=sequential, align=align)


def _stage_config(config: DistillConfig, stage: int, stages: int) -> DistillConfig:
    """``config`` with this stage's share of the steps (or of the epochs; default: one epoch in all)."""
    if config.steps is not None:
        steps = config.steps * (stage + 1) // stages - config.steps * stage // stages
        if steps < 1:
            raise PelaError(f"{config.steps} distillation steps cannot be shared by {stages} stages")
        return dataclasses.replace(config, steps=steps)
    return dataclasses.replace(config, epochs=(config.epochs or 1.0) / stages)


def shrink(student: nn.Module, teacher: nn.Module, data: Any, ratio: float = 2.0, config: DistillConfig | None = None, *,
           stages: int = STAGES, train_data: Any = None, collate_fn: Callable | None = None, calib_samples: int = 512,
           probe_samples: int = 32, sequential: bool = False, align: int = 8, seed: int = 0, out: str | Path | None = None,
           progress: bool = False, run_info: dict[str, Any] | None = None, calibration: Calibration | None = None) -> ShrinkResult:
    """Compress ``student`` (in place; a copy of ``teacher``) to the size ratio ``k`` gives, and distill it, in ``stages``.

    Args:
        data: unlabeled examples to calibrate on (and to distill on, unless ``train_data`` says otherwise).
        config: the distillation's settings; its steps (or epochs) are shared evenly by the stages.
        train_data: what to distill on, when not ``data`` (a language model's packed text).
        calib_samples, probe_samples, sequential, align: `pela.calibrate` and `LowRankConfig` settings of every stage.
        out: the last stage's run directory (`pela.distill`); earlier stages write under ``out/stages``.
        calibration: the first stage's, when it was already taken (of ``student``, with
            ``stage_recipe(student, stage_ratios(ratio, stages)[0], sequential, align)``).
    """
    if not (isinstance(stages, int) and stages >= 1):
        raise PelaError(f"stages must be an integer >= 1, got {stages!r}")
    if stages > 1 and fsdp_requested() and partial_state().num_processes > 1:
        raise PelaError("under FSDP the student is sharded after its first stage, and the next cut needs it whole: "
                        "shrink in one stage (--stages 1), or compress and distill stage by stage")
    config = config or DistillConfig()
    result = ShrinkResult()
    for stage, k in enumerate(stage_ratios(ratio, stages)):
        if stage:
            densify(student)
        recipe = stage_recipe(student, k, sequential, align)
        if calibration is None:
            calibration = calibrate(student, data, recipe, collate_fn=collate_fn, samples=calib_samples,
                                    probe_samples=probe_samples, seed=seed, progress=progress)
        result.reports.append(compress(student, recipe, calibration=calibration, progress=progress))
        calibration = None  # the next stage's student is another model
        where = None if out is None else Path(out) if stage == stages - 1 else Path(out) / "stages" / str(stage + 1)
        result.distills.append(distill(student, teacher, data if train_data is None else train_data,
                                       _stage_config(config, stage, stages), collate_fn=collate_fn, out=where,
                                       progress=progress, run_info={**(run_info or {}), "stage": stage + 1, "stages": stages}))
    return result
