"""The ``pela`` command."""

from pela.cli.app import main
