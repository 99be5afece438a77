"""What ``pela.json`` records of how a model was made: one layout, whichever command made it.

Beside what rebuilds the model (`pela.models.saving`), a saved directory keeps one entry per stage
that made it, each written by one function here:

- ``compression``: the `CompressionReport` less its per-layer rows (config, parameters before and
  after, seconds); `compression_record`.
- ``distill`` and ``finetune``: the stage's settings (its config's fields) and what the run did:
  ``trained_steps``, ``seconds``, ``items_per_s``, ``final`` (the last logged losses),
  ``stopped_early``,
  ``processes`` and ``rank_checksums`` (one per process, all equal), and where there were any,
  ``evals`` (every evaluation during training), ``best`` (the one kept) and ``sharded`` (which
  models
  FSDP split over the processes);
  a fine-tuned model's score on ``--eval-data`` after it was saved is added as ``eval``;
  `training_record`.
- ``stages``: `pela.shrink`'s sizes, one ``{"ratio", "params_after", "trained_steps"}`` per stage,
  beside its ``compression`` (the last stage's) and ``distill`` (all stages' steps);
  `shrink_record`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from pela.compression.report import CompressionReport
from pela.training.config import TrainConfig, TrainResult
from pela.training.shrink import ShrinkResult, stage_ratios
from pela.utils.sharded import holds_shards


def compression_record(report: CompressionReport) -> dict[str, Any]:
    return {k: v for k, v in report.to_dict().items() if k != "layers"}


def training_record(
    config: TrainConfig, result: TrainResult, model: nn.Module, teacher: nn.Module | None = None
) -> dict[str, Any]:
    record = {
        **config.to_dict(),
        "trained_steps": result.steps,
        "seconds": result.seconds,
        "items_per_s": result.items_per_s,
        "final": result.history[-1] if result.history else {},
        "stopped_early": result.stopped_early,
        "processes": len(result.rank_checksums),
        "rank_checksums": result.rank_checksums,
    }
    if result.evals:
        record["evals"] = result.evals
    if result.best is not None:
        record["best"] = result.best
    if holds_shards(model):  # under FSDP: which models were split over the processes
        record["sharded"] = (
            {"student": True, "teacher": holds_shards(teacher)}
            if teacher is not None
            else {"model": True}
        )
    return record


def shrink_record(
    result: ShrinkResult, ratio: float, student: nn.Module, teacher: nn.Module
) -> dict[str, Any]:
    stages = [
        {"ratio": k, "params_after": r.params_after, "trained_steps": d.steps}
        for k, r, d in zip(
            stage_ratios(ratio, len(result.reports)), result.reports, result.distills
        )
    ]
    distill = training_record(result.config, result.distills[-1], student, teacher)
    distill.update(
        trained_steps=sum(d.steps for d in result.distills),
        seconds=sum(d.seconds for d in result.distills),
    )
    return {"compression": compression_record(result.report), "stages": stages, "distill": distill}
