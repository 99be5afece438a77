"""The ``pela`` command: a thin layer over the Python API.

User mistakes (`PelaError`, bad usage, a full disk) print one ``error: …`` line on stderr and exit
with code 2; Ctrl-C prints ``error: interrupted …`` (with the command that continues the run,
where a checkpoint was saved) and exits with 130; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
import shlex
import sys
import warnings
from pathlib import Path

import typer

# isort: off
# each module registers its commands, in the order --help lists them
from pela.cli import (  # noqa: F401
    compress_cmd, bench_cmd, shrink_cmd, train_cmd, inspect_cmd, export_cmd,
)

# isort: on
from pela.cli.common import Stopped, app
from pela.errors import PelaError, PelaWarning
from pela.training.accelerator import leave_process_group
from pela.utils.memory import keep_freed_memory

# what the system says when the disk, not pela, is at fault: the user's to mend
ENVIRONMENT_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}
INTERRUPTED = 130  # as shells report a process stopped by SIGINT


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split("\n")[0].split())


# warnings.formatwarning's signature
def _format_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
    """pela's own warnings as one ``warning: …`` line; anyone else's as Python shows them."""
    if issubclass(category, PelaWarning) or str(filename).startswith(_PELA_DIR):
        return f"warning: {message}\n"
    return _python_format_warning(message, category, filename, lineno, line)


_python_format_warning = warnings.formatwarning
# as Python names the files it imports from here
_PELA_DIR = str(Path(__file__).parent.parent) + os.sep


def resume_command(args: list[str]) -> str:
    """The command line that continues the run ``args`` started: the same, with --resume for
    --overwrite."""
    kept = [a for a in args if a not in ("--overwrite", "--resume")]
    return shlex.join(["pela", *kept, "--resume"])


def _interrupted(e: KeyboardInterrupt, args: list[str]) -> int:
    line = _one_line(e) if str(e).strip() else "interrupted"
    if getattr(e, "resumable", False):
        line += f"; continue with: {resume_command(args)}"
    print(f"error: {line}", file=sys.stderr)
    return INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns user mistakes into ``error: …`` and exit code 2."""
    args = (sys.argv[1:] if argv is None else argv) or ["--help"]
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # pela reports what matters itself
    warnings.formatwarning = _format_warning
    # CPU activations reused, not page-faulted in again each pass (see pela.utils.memory)
    keep_freed_memory()
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        code = app(args=args, prog_name="pela", standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        print("error: aborted", file=sys.stderr)
        return INTERRUPTED
    except typer.TyperException as e:  # usage errors: unknown option, bad value, missing argument
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        print(f"error: {_one_line(Exception(message))}", file=sys.stderr)
        return 2
    except Stopped as e:
        return _interrupted(e.interruption, args)
    except KeyboardInterrupt as e:
        return _interrupted(e, args)
    except PelaError as e:  # anything else is a bug in pela or below it: its traceback is kept
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in ENVIRONMENT_ERRORS:
            raise
        where = f" writing {e.filename}" if e.filename else ""
        print(
            f"error: {os.strerror(e.errno).lower()}{where}; nothing was left half-written",
            file=sys.stderr,
        )
        return 2
    if code == INTERRUPTED:  # typer's own answer to a KeyboardInterrupt it caught
        print("error: interrupted", file=sys.stderr)
        return INTERRUPTED
    if isinstance(code, int) and code:
        return code
    # after a clean run only: a failed rank exits at once, torchrun stops the others
    leave_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
