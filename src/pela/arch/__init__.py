"""Everything pela knows about particular architectures, in one place a user can extend."""

from pela.arch.core import *  # noqa: F401,F403
