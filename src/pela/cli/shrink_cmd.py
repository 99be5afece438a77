"""``pela shrink``: stages 1 and 2 in one command, with pela's recommended settings.

Calibration on the same unlabeled data the student is then distilled on; whitened factors with ranks
allocated across layers at the size a ratio gives; distillation for one epoch of that data, or fewer
steps when a time budget says so (the step time estimated from the calibration pass, which ran the
same model on the same data), text batched by length; by default in two stages of size
(`pela.shrink`): to the size k's square root gives, half the steps, then to k's, the other half. A
language model (a next-token head) is distilled as language models are trained: its text packed into
sequences of ``min(1024, its positions)`` tokens (`pela.data.packing`), next-token KL divergence to
the teacher beside the block features, and greedy continuations of student and teacher written to
``generations.md``. The separate commands stay for those who want every flag.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional

import typer

from pela.cli.common import (
    TEXT_FIELD_HELP,
    TRUST_HELP,
    _check_output,
    _check_pack,
    _collator,
    _generations,
    _load_data,
    _saved,
    command,
    out_console,
)
from pela.cli.config_file import setting
from pela.compression.config import LowRankConfig
from pela.errors import PelaError
from pela.models.sources import load_for_training
from pela.training.distill import DistillConfig
from pela.training.record import shrink_record
from pela.training.rundir import run_dir
from pela.training.shrink import STAGES, recipe_config
from pela.training.shrink import shrink as shrink_
from pela.utils.progress import activity

STAGES_HELP = (
    "cut the student to its size in this many steps, k^(1/n), k^(2/n), ... k, each distilled for "
    "its share of the steps (1: at once)"
)
SEQUENTIAL_HELP = (
    "factorize block by block, each layer fit to the original's outputs from the inputs the "
    "compressed layers before it give (slower, closer to the original)"
)


@command()
def shrink(
    source: str = typer.Argument(
        ..., help="the model to shrink (timm:NAME, hf:ORG/NAME, or a directory)"),
    data: Path = typer.Option(
        ..., "--data", help="unlabeled examples of what the model will serve (any format --data "
        "takes)"),
    out: Path = typer.Option(
        ..., "--out", help="directory for the student, its checkpoints and metrics"),
    ratio: float = typer.Option(
        2.0, help="the size: the parameters a compression ratio k of every layer would keep"),
    steps: Optional[int] = typer.Option(
        None, help="distillation steps (default: one epoch of --data, within --minutes)"),
    minutes: Optional[float] = typer.Option(
        None, help="time budget for the distillation (its steps estimated from calibration's "
        "pace)"),
    batch_size: int = typer.Option(32, "--batch-size"),
    pack: Optional[int] = typer.Option(
        None, "--pack", help="a language model's packed sequences: N tokens "
        "(default: 1024, or the model's positions if fewer)"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=TRUST_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT if it exists"),
    calib_samples: int = setting(512, "examples of --data to calibrate on"),
    max_length: Optional[int] = setting(None, "truncate text to this many tokens"),
    stages: int = setting(STAGES, STAGES_HELP),
    sequential: bool = setting(False, SEQUENTIAL_HELP),
    text_field: Optional[str] = setting(None, TEXT_FIELD_HELP),
) -> None:
    """Compress with pela's recipe and distill, in one command: a student ready to fine-tune or
    ship."""
    _check_shrink_flags(steps, minutes, pack, stages)
    LowRankConfig(ratio=ratio)
    DistillConfig(steps=steps, batch_size=batch_size)  # every setting checked before the slow part
    _check_output(out, False, overwrite, {"the model": source, "--data": data})
    ds = _load_data(data, text_field=text_field, progress=True)
    with run_dir(out, False, overwrite) as run:
        with activity(f"loading {source}"):
            teacher = load_for_training(source, trust_remote_code=trust_remote_code)
        student = copy.deepcopy(teacher)
        collate = _collator(student, max_length, {f"--data {data}": ds})
        config = recipe_config(student, steps=steps, batch_size=batch_size)
        shrunk = shrink_(
            student, teacher, ds, ratio, config, stages=stages, minutes=minutes, pack=pack,
            collate_fn=collate, calib_samples=calib_samples, sequential=sequential, out=run.path,
            progress=True, run_info={"teacher": source, "data": str(Path(data).resolve())},
        )
        main = run.publish(student, shrink_record(shrunk, ratio, student, teacher))
        _generations(run.path, student, teacher, ds, collate)
        if main:
            out_console.print(_shrunk(shrunk, stages, out))


def _check_shrink_flags(steps: Optional[int], minutes: Optional[float], pack: Optional[int],
                        stages: int) -> None:
    if minutes is not None and not minutes > 0:
        raise PelaError(f"--minutes must be > 0, got {minutes}")
    if steps is not None and minutes is not None:
        raise PelaError("give --steps or --minutes, not both")
    _check_pack(pack)
    if stages < 1:
        raise PelaError(f"stages must be at least 1, got {stages}")


def _shrunk(shrunk: Any, stages: int, out: Path) -> str:
    """The closing lines of ``pela shrink``."""
    steps = sum(d.steps for d in shrunk.distills)
    seconds = sum(d.seconds for d in shrunk.distills)
    return (f"{shrunk.report.summary()}\ndistilled {steps} steps in {stages} stage(s), "
            f"{seconds:.0f}s; student saved to {_saved(out)}")
