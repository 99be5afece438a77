"""The ``pela`` command: a thin layer over the Python API.

User mistakes (`PelaError`, bad usage) print one ``error: …`` line on stderr and exit with code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import typer

# isort: off
from pela.cli import compress_cmd, shrink_cmd, train_cmd, inspect_cmd  # noqa: F401 - each registers its commands, in the order help lists them
# isort: on
from pela.cli.common import app
from pela.errors import PelaError
from pela.training.accelerator import leave_process_group
from pela.utils.memory import keep_freed_memory


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split("\n")[0].split())


def _format_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001 - warnings' signature
    """pela's own warnings as one ``warning: …`` line; anyone else's as Python shows them."""
    if str(filename).startswith(_PELA_DIR):
        return f"warning: {message}\n"
    return _python_format_warning(message, category, filename, lineno, line)


_python_format_warning = warnings.formatwarning
_PELA_DIR = str(Path(__file__).parent.parent) + os.sep  # as Python names the files it imports from here


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns user mistakes (`PelaError`, usage) into ``error: …`` and exit code 2."""
    args = (sys.argv[1:] if argv is None else argv) or ["--help"]
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # pela reports what matters itself
    warnings.formatwarning = _format_warning
    keep_freed_memory()  # CPU activations reused, not page-faulted in again each pass (see pela.allocator)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        app(args=args, prog_name="pela", standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        print("error: aborted", file=sys.stderr)
        return 130
    except typer.TyperException as e:  # usage errors: unknown option, bad value, missing argument
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        print(f"error: {_one_line(Exception(message))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except PelaError as e:  # anything else is a bug in pela or below it: its traceback is kept
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    leave_process_group()  # after a clean run only: a failed rank exits at once, torchrun stops the others
    return 0


if __name__ == "__main__":
    sys.exit(main())
