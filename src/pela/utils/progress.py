"""Progress on stderr (stdout stays clean for --json): a rich bar on a terminal, plain lines in a log.

Under nohup, a batch scheduler or CI, stderr is a file: there a line says where a long job stands
(done of total, rate, time left) when it starts, every `LINE_SECONDS` (``PELA_PROGRESS_SECONDS``)
and when it ends, as tqdm and the Hugging Face Trainer do in logs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any, Callable, Iterator

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
    if not stderr.is_terminal:
        lines = _Lines(total, description, _line_seconds())
        yield lines.advance
        lines.close()
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}")]
    with Progress(*columns, console=stderr, transient=False, auto_refresh=not redraw_only_on_advance) as bar:
        task = bar.add_task(description, total=total, info="")

        def advance(n: int = 1, info: str = "") -> None:
            bar.update(task, advance=n, info=info, refresh=redraw_only_on_advance)

        yield advance


def progress_iter(enabled: bool, items: Any, description: str) -> Iterator[Any]:
    """The items of ``items`` (anything with a length), with a progress bar over them when ``enabled``."""
    with progress_bar(enabled, len(items), description) as advance:
        for item in items:
            yield item
            advance()


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


def _line_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("PELA_PROGRESS_SECONDS", "30")))
    except ValueError:
        return 30.0


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class _Lines:
    """Progress as a plain line now and then: at the first call, every ``every`` seconds, and at the end.

    The rate is that since the previous line, so a run resumed at step 5,000 does not count the
    steps it skipped as done in no time.
    """

    def __init__(self, total: int, description: str, every: float):
        self.total, self.description, self.every = total, description, every
        self.done = 0
        self.start = time.monotonic()
        self.last: tuple[float, int] | None = None  # (time, done) at the previous line

    def close(self) -> None:
        """The last line, if the last call did not say where the job ended."""
        if self.last is None or self.last[1] != self.done:
            self.advance(0, force=True)

    def advance(self, n: int = 1, info: str = "", force: bool = False) -> None:
        self.done += n
        now = time.monotonic()
        if not force and self.last is not None and now - self.last[0] < self.every and self.done < self.total:
            return
        rate = (self.done - self.last[1]) / (now - self.last[0]) if self.last is not None and now > self.last[0] else None
        parts = [f"{self.done}/{self.total}" + (f" ({100 * self.done / self.total:.0f}%)" if self.total else "")]
        if rate is not None:
            parts.append(f"{rate:.3g}/s")
        parts.append(f"{_duration(now - self.start)} elapsed")
        if rate and self.done < self.total:
            parts.append(f"{_duration((self.total - self.done) / rate)} left")
        print(f"{self.description}: {', '.join(parts)}" + (f" | {info}" if info else ""), file=sys.stderr, flush=True)
        self.last = (now, self.done)
