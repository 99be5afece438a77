"""The exception and warning types of pela, and the one way it warns.

`PelaError` is a mistake a user can fix: it subclasses ValueError so callers that catch ValueError
keep working; the CLI prints it as a single ``error: …`` line and exits with code 2. `Interrupted`
is a run stopped by Ctrl-C after what it had trained was saved; the CLI says how to continue and
exits with code 130. `PelaWarning` is what pela itself has to say; the CLI prints it as one
``warning: …`` line, wherever in the stack `warn` was called from.
"""

from __future__ import annotations

import warnings


class PelaError(ValueError):
    """A user-facing error: bad input, a missing file, a model pela cannot handle."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; ``resumable`` when a checkpoint of it is on disk to continue from."""

    def __init__(self, message: str, resumable: bool = False):
        super().__init__(message)
        self.resumable = resumable


class PelaWarning(UserWarning):
    """What pela decided or made up that the user should know (a skipped step, a default taken)."""


def warn(message: str) -> None:
    """Warn with `PelaWarning` (a category the CLI shows as one ``warning: …`` line)."""
    warnings.warn(message, PelaWarning, stacklevel=3)
