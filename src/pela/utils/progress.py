"""A rich progress bar on stderr (stdout stays clean for --json), or nothing at all."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

stderr = Console(stderr=True)


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int, description: str, redraw_only_on_advance: bool = False) -> Iterator[Callable[..., None]]:
    """Yields ``advance(n=1, **fields)``; ``fields`` fill the bar's ``{task.fields[info]}`` text.

    ``redraw_only_on_advance`` stops rich's refresh thread, for timing loops that must not share the CPU.
    """
    if not enabled:
        yield lambda n=1, **_: None
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}")]
    with Progress(*columns, console=stderr, transient=False, auto_refresh=not redraw_only_on_advance) as bar:
        task = bar.add_task(description, total=total, info="")

        def advance(n: int = 1, info: str = "") -> None:
            bar.update(task, advance=n, info=info, refresh=redraw_only_on_advance)

        yield advance


@contextlib.contextmanager
def bytes_bar(enabled: bool, size: int, description: str) -> Iterator[Callable[[int], None]]:
    """A bar over ``size`` bytes, counted in MiB; yields ``reach(position)``, which moves it to that byte."""
    with progress_bar(enabled, size >> 20, description) as advance:
        mib = 0

        def reach(position: int) -> None:
            nonlocal mib
            if position >> 20 > mib:
                advance((position >> 20) - mib)
                mib = position >> 20

        yield reach
