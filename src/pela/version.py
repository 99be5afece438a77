"""The version of pela (one place: the package, the CLI and the build read it)."""

__version__ = "0.1.0"
