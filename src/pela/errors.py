"""The one exception type for mistakes a user can fix.

It subclasses ValueError so callers that catch ValueError keep working; the CLI prints it as a
single ``error: …`` line and exits with code 2.
"""


class PelaError(ValueError):
    """A user-facing error: bad input, a missing file, a model pela cannot handle."""
