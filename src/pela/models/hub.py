"""The Hugging Face hub, reached only when it answers: offline, pela says so in a moment instead of
letting the hub's client retry for half a minute, and models already in the local cache still
load."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from typing import Iterator
from urllib.parse import urlparse

CONNECT_SECONDS = 3.0  # how long to wait for the hub to accept a connection


@functools.lru_cache(maxsize=None)
def reachable(endpoint: str) -> bool:
    """Whether ``endpoint``'s host accepts a TCP connection within `CONNECT_SECONDS` (asked once per
    process)."""
    url = urlparse(endpoint)
    try:
        socket.create_connection(
            (url.hostname or "", url.port or (443 if url.scheme == "https" else 80)),
            CONNECT_SECONDS,
        ).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def offline_unless_reachable() -> Iterator[bool]:
    """Within the block, the hub's client works from its local cache alone when the hub cannot be
    reached (as with ``HF_HUB_OFFLINE=1``); yields whether it is offline."""
    from huggingface_hub import constants

    offline = bool(constants.HF_HUB_OFFLINE) or not reachable(
        os.environ.get("HF_ENDPOINT", constants.ENDPOINT)
    )
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = offline
    try:
        yield offline
    finally:
        constants.HF_HUB_OFFLINE = before
