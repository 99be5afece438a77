"""pela.utils.quiet: only the dependency messages a user cannot act on are dropped."""

import logging

import pela  # noqa: F401  (its import adds the filters)
from pela.utils.quiet import DROPPED, quiet_dependencies


def test_only_the_named_messages_are_dropped(caplog):
    quiet_dependencies()  # a second time adds nothing
    assert all(len(logging.getLogger(name).filters) == 1 for name in DROPPED)
    logger = logging.getLogger("torchao")
    with caplog.at_level(logging.WARNING, logger="torchao"):
        logger.warning("Failed to load /x/_C_mxfp8.so: Could not load this library")
        logger.warning("something else went wrong")
    assert [r.getMessage() for r in caplog.records] == ["something else went wrong"]
