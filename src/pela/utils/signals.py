"""Ctrl-C taken between steps, so that a stopped run can be saved whole first."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator


@contextlib.contextmanager
def deferred_interrupt(enabled: bool = True) -> Iterator[Callable[[], bool]]:
    """Yields ``requested()``: whether Ctrl-C (SIGINT) came since the block began.

    The first Ctrl-C is only noted, so the caller can finish its step, save, and stop; a second one
    interrupts at once, as usual. Off (``requested`` always False) when not ``enabled`` or outside
    the main thread, where Python takes no signal handlers.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    hits: list[int] = []

    def note(signum: int, frame: object) -> None:
        hits.append(signum)
        signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield lambda: bool(hits)
    finally:
        if signal.getsignal(signal.SIGINT) is note:
            signal.signal(signal.SIGINT, previous)
