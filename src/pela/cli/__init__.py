"""The ``pela`` command."""

from pela.cli.app import main

__all__ = ["main"]
