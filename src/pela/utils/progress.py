"""Progress on stderr (stdout stays clean for --json): a rich bar on a terminal, plain lines in a
log.

Under nohup, a batch scheduler or CI, stderr is a file: there a line says where a long job stands
(done of total, rate, time left) when it starts, every 30 seconds (``PELA_PROGRESS_SECONDS``)
and when it ends, as tqdm and the Hugging Face Trainer do in logs. A step that takes longer than
that still gets its line on time (a heartbeat), and so does work without steps (`activity`):
a log never goes silent for long while pela works.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

stderr = Console(stderr=True)
# a heartbeat line comes a little before the interval is up, so no gap in a log ever exceeds it
DUE = 0.95


@contextlib.contextmanager
def progress_bar(
    enabled: bool, total: int, description: str, redraw_only_on_advance: bool = False
) -> Iterator[Callable[..., None]]:
    """Yields ``advance(n=1, **fields)``; ``fields`` fill the bar's ``{task.fields[info]}`` text.

    ``redraw_only_on_advance`` stops rich's refresh thread, for timing loops that must not share the
    CPU.
    """
    if not enabled:
        yield lambda n=1, **_: None
        return
    if not stderr.is_terminal:
        lines = _Lines(total, description, _line_seconds())
        try:
            yield lines.advance
        finally:
            lines.close()
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    ]
    with Progress(
        *columns, console=stderr, transient=False, auto_refresh=not redraw_only_on_advance
    ) as bar:
        task = bar.add_task(description, total=total, info="")

        def advance(n: int = 1, info: str = "") -> None:
            bar.update(task, advance=n, info=info, refresh=redraw_only_on_advance)

        yield advance


def progress_iter(enabled: bool, items: Any, description: str) -> Iterator[Any]:
    """The items of ``items`` (anything with a length), with a progress bar over them when
    ``enabled``."""
    with progress_bar(enabled, len(items), description) as advance:
        for item in items:
            yield item
            advance()


@contextlib.contextmanager
def bytes_bar(enabled: bool, size: int, description: str) -> Iterator[Callable[[int], None]]:
    """A bar over ``size`` bytes, counted in MiB; yields ``reach(position)``, which moves it to that
    byte."""
    with progress_bar(enabled, size >> 20, description) as advance:
        mib = 0

        def reach(position: int) -> None:
            nonlocal mib
            if position >> 20 > mib:
                advance((position >> 20) - mib)
                mib = position >> 20

        yield reach


@contextlib.contextmanager
def activity(description: str) -> Iterator[None]:
    """Work without steps to count (loading a model): a spinner on a terminal; in a log, a line
    every 30 seconds while it lasts, and one when it is done if it took that long (quick work says
    nothing)."""
    if stderr.is_terminal:
        with stderr.status(description):
            yield
        return
    every, start = _line_seconds(), time.monotonic()

    def beat() -> float:
        print(
            f"{description}: {_duration(time.monotonic() - start)} elapsed",
            file=sys.stderr,
            flush=True,
        )
        return every

    with _Heartbeat(every, beat):
        yield
    if time.monotonic() - start >= every:
        print(
            f"{description}: done in {_duration(time.monotonic() - start)}",
            file=sys.stderr,
            flush=True,
        )


class _Heartbeat:
    """Calls ``beat`` on a daemon thread while the block runs, first after ``every`` seconds, then
    after as many seconds as ``beat`` returns (when its next line is due); not at all for ``every``
    0."""

    def __init__(self, every: float, beat: Callable[[], float]):
        self.every, self.beat, self.stop = every, beat, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="pela-progress")

    def _run(self) -> None:
        delay = self.every
        while not self.stop.wait(max(delay, 0.01)):
            delay = self.beat()

    def __enter__(self) -> "_Heartbeat":
        if self.every > 0:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()


def _line_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("PELA_PROGRESS_SECONDS", "30")))
    except ValueError:
        return 30.0


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )


class _Lines:
    """Progress as a plain line now and then: at the first call, every ``every`` seconds, and at the
    end.

    The rate is that since the previous line, so a run resumed at step 5,000 does not count the
    steps it skipped as done in no time. A step that outlasts ``every`` gets a line of its own on
    time (the heartbeat), which leaves the rate alone.
    """

    def __init__(self, total: int, description: str, every: float):
        self.total, self.description, self.every = total, description, every
        self.done = 0
        self.start = time.monotonic()
        # (time, done) at the previous line, for the rate
        self.mark: tuple[float, int] | None = None
        self.said: float | None = None  # when the last line was printed, heartbeat included
        self.lock = threading.Lock()  # the heartbeat prints from its own thread
        self.heartbeat = _Heartbeat(every, self._beat).__enter__()

    def close(self) -> None:
        """The last line, if the last call did not say where the job ended."""
        self.heartbeat.__exit__()
        if self.mark is None or self.mark[1] != self.done:
            self.advance(0, force=True)

    def _beat(self) -> float:
        """A line on time when a step takes longer than the interval: the job is still at work.
        Returns the seconds until the next line would be due."""
        with self.lock:
            now = time.monotonic()
            due = (self.said or self.start) + self.every * DUE
            if now < due or self.mark is None:
                return max(due - now, 0.0) if self.mark is not None else self.every
            if self.done != self.mark[1]:  # steps since the last line: say how far, not "at work"
                self._advance(0, "", force=True)
                return self.every * DUE
            print(
                f"{self.description}: {self._count()}, {_duration(now - self.start)} elapsed, at "
                f"work on the next for {_duration(now - self.mark[0])}",
                file=sys.stderr,
                flush=True,
            )
            self.said = now
            return self.every * DUE

    def _count(self) -> str:
        return f"{self.done}/{self.total}" + (
            f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        )

    def advance(self, n: int = 1, info: str = "", force: bool = False) -> None:
        with self.lock:
            self._advance(n, info, force)

    def _advance(self, n: int, info: str, force: bool) -> None:
        self.done += n
        now = time.monotonic()
        if (
            not force
            and self.said is not None
            and now - self.said < self.every
            and self.done < self.total
        ):
            return
        rate = (
            (self.done - self.mark[1]) / (now - self.mark[0])
            if self.mark is not None and now > self.mark[0]
            else None
        )
        parts = [self._count()]
        if rate is not None:
            parts.append(f"{rate:.3g}/s")
        parts.append(f"{_duration(now - self.start)} elapsed")
        if rate and self.done < self.total:
            parts.append(f"{_duration((self.total - self.done) / rate)} left")
        print(
            f"{self.description}: {', '.join(parts)}" + (f" | {info}" if info else ""),
            file=sys.stderr,
            flush=True,
        )
        self.mark, self.said = (now, self.done), now
