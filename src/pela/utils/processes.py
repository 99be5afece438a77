"""The processes a run is made of: Accelerate's process state, as every stage and evaluation
uses it."""

from __future__ import annotations

from typing import Any

import torch


def partial_state() -> Any:
    """Accelerate's process state; without a GPU, processes started by torchrun use gloo."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())
