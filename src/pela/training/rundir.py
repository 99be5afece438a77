"""A run directory: checkpoints, metrics and the final model side by side, resumable.

A run never destroys what was there before it succeeds. Into an ``out`` that is new or empty it
writes directly; ``--overwrite`` of an ``out`` that holds something runs beside it, in
``OUT.partial``, and moves the finished run into place only when its model is saved (the old output
is removed then). A run that fails before its first checkpoint leaves nothing behind; one that fails
after it leaves its checkpoints, for ``--resume`` (which looks in ``out``, then in ``OUT.partial``).
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any, Iterator

from pela.errors import Interrupted, PelaError
from pela.models.saving import CONFIG_NAME, save_into
from pela.training.checkpoint import latest_checkpoint, remove_checkpoints
from pela.utils.files import check_output_dir, replace_dir, writing
from pela.utils.processes import partial_state
from pela.utils.sharded import gather_weights

PARTIAL = ".partial"  # the suffix of the directory an --overwrite run writes in until complete


def staging_dir(out: Path) -> Path:
    """Where an ``--overwrite`` run of ``out`` writes until its model is saved."""
    return out.with_name(out.name + PARTIAL)


def _resumed(out: Path) -> Path:
    """The directory of the run to resume: ``out``, or ``OUT.partial`` while it replaces ``out``."""
    found = [p for p in (out, staging_dir(out)) if latest_checkpoint(p / "checkpoints") is not None]
    if not found:
        raise PelaError(f"no checkpoint to resume from in {out}")
    return found[0]


def _started(out: Path, overwrite: bool) -> Path:
    """The directory a new run writes in, made: ``out``, or ``OUT.partial`` beside an ``out`` it
    replaces."""
    check_output_dir(out, overwrite)
    replaces = out.is_dir() and any(out.iterdir())
    path = staging_dir(out) if replaces else out
    state = partial_state()
    state.wait_for_everyone()
    if state.is_main_process:
        with writing(path):
            if replaces and path.exists():  # an earlier --overwrite that did not finish: start over
                shutil.rmtree(path)
            path.mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()
    return path


class RunDir:
    """Where one run writes (`path`), and where its model ends (`out`)."""

    def __init__(self, out: Path, path: Path):
        self.out, self.path = Path(out), Path(path)

    @property
    def resumable(self) -> bool:
        """Whether a checkpoint of this run is on disk to continue from."""
        return latest_checkpoint(self.path / "checkpoints") is not None

    def publish(self, model: Any, extra: dict, dtype: str | None = None) -> bool:
        """Write the final model, drop the checkpoints and move the run to `out` (every process
        calls it; the main one writes). From then on `path` is `out`: extras go beside the model.

        Returns whether this is the main process (the one that should also print the summary)."""
        weights = gather_weights(model)  # FSDP's shards gathered whole: every process takes part
        state = partial_state()
        if state.is_main_process:
            save_into(model, self.path, extra=extra, dtype=dtype, weights=weights)
            remove_checkpoints(self.path / "checkpoints")
            if self.path != self.out:
                with writing(self.out):
                    replace_dir(self.path, self.out)
        state.wait_for_everyone()
        self.path = self.out
        return state.is_main_process


@contextlib.contextmanager
def run_dir(out: Path, resume: bool, overwrite: bool) -> Iterator[RunDir]:
    """Create (or, with ``resume``, find) the directory a run writes in; if the run then fails
    before its first checkpoint, remove it again: a mistake leaves nothing behind, loses nothing."""
    out = Path(out)
    state = partial_state()
    run = RunDir(out, _resumed(out) if resume else _started(out, overwrite))
    try:
        yield run
    except BaseException as e:
        unfinished = not run.resumable and not (run.path / CONFIG_NAME).exists()
        if state.is_main_process and unfinished and run.path.exists():
            shutil.rmtree(run.path, ignore_errors=True)
        if isinstance(e, KeyboardInterrupt):  # say whether there is a checkpoint to continue from
            raise Interrupted(str(e) or "interrupted", resumable=run.resumable) from None
        raise
