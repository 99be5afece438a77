"""Messages pela's dependencies log that say nothing a pela user can act on, dropped once, when pela
is imported (this module's import adds the filters).

torchao (pela's int8 in PyTorch), which transformers imports whenever it is installed, logs that it
cannot load the kernels of GPUs this machine does not have, and torch warns that torchao registers
enums the way it deprecates. Only these messages are dropped: every other record of those loggers,
and their levels, stay as they are.
"""

from __future__ import annotations

import logging

# logger -> the parts of the messages it drops
DROPPED = {
    "torchao": ("Failed to load",),
    "torch.utils._pytree": ("is an Enum subclass and is now natively supported",),
}


class _Drop(logging.Filter):
    def __init__(self, parts: tuple[str, ...]) -> None:
        super().__init__()
        self.parts = parts

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(part in message for part in self.parts)


def quiet_dependencies() -> None:
    """Add the filters of `DROPPED` to their loggers (once)."""
    for name, parts in DROPPED.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Drop) for f in logger.filters):
            logger.addFilter(_Drop(parts))


quiet_dependencies()
