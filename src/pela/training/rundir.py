"""A run directory: checkpoints, metrics and the final model side by side, resumable."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from pela.errors import PelaError
from pela.models.saving import save_into
from pela.training.accelerator import partial_state
from pela.training.checkpoint import latest_checkpoint, remove_checkpoints
from pela.utils.files import check_output_dir
from pela.utils.sharded import gather_weights


def publish(model, out: Path, extra: dict, dtype: str | None = None) -> bool:
    """Write the final model into the run directory and drop its checkpoints (every process calls it; the main one writes).

    Returns whether this is the main process (the one that should also print the summary)."""

    weights = gather_weights(model)  # a model sharded by FSDP, gathered whole: every process takes part
    if not partial_state().is_main_process:
        return False
    save_into(model, out, extra=extra, dtype=dtype, weights=weights)
    remove_checkpoints(out / "checkpoints")
    return True


@contextlib.contextmanager
def run_dir(out: Path, resume: bool, overwrite: bool) -> Iterator[None]:
    """Create (or, with ``resume``, check) a run directory; if the run then fails before its first
    checkpoint, remove the directory again, so a mistake leaves nothing behind and nothing is lost."""
    import shutil

    state = partial_state()
    if resume:
        if not out.is_dir() or latest_checkpoint(out / "checkpoints") is None:
            raise PelaError(f"no checkpoint to resume from in {out}")
        yield
        return
    check_output_dir(out, overwrite)
    state.wait_for_everyone()
    if state.is_main_process:
        if overwrite and out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()
    try:
        yield
    except BaseException:
        if state.is_main_process and latest_checkpoint(out / "checkpoints") is None and not (out / "pela.json").exists():
            shutil.rmtree(out, ignore_errors=True)
        raise
