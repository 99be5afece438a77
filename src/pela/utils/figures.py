"""Figures with matplotlib (headless), written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from pela.errors import PelaError
from pela.utils.files import check_parent, default_permissions

FORMATS = (".png", ".pdf", ".svg")


def check_figure_path(path: str | os.PathLike) -> Path:
    """Refuse a plot path matplotlib cannot write or whose folder cannot be made, before any slow
    work."""

    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise PelaError(f"plot file {path} must end in {', '.join(FORMATS)}")
    check_parent(path)
    return path


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 110) -> None:
    """Write ``fig`` to ``path`` via a temporary file and a rename, then close it."""

    path = Path(path)
    path.absolute().parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.tmp-", suffix=path.suffix, dir=path.absolute().parent
    )
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi)
        default_permissions(Path(tmp))  # mkstemp makes it private; a plot is an ordinary file
        os.replace(tmp, path)
    finally:
        pyplot().close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
