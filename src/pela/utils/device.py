"""The device a user names, checked once: one clear line for a typo or a GPU that is not there."""

from __future__ import annotations

import torch

from pela.errors import PelaError


def model_device(model: torch.nn.Module) -> torch.device:
    """Where ``model``'s parameters are (the first one's device; a model without any: the CPU)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a GPU's), so that a clock read after it counts it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resolve_device(name: str | torch.device) -> torch.device:
    """``name`` as a torch device this machine has (``cpu``, ``cuda``, ``cuda:1``, ``mps``, ...)."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise PelaError(f"unknown device {str(name)!r}: use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PelaError(
                f"device {str(name)!r} requested but no CUDA GPU is available (use cpu)"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PelaError(
                f"device {str(name)!r} requested but this machine has "
                f"{torch.cuda.device_count()} GPU(s)"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise PelaError(
            f"device {str(name)!r} requested but Apple's MPS is not available (use cpu)"
        )
    elif device.type not in ("cpu", "mps"):
        raise PelaError(f"device {str(name)!r} is not one pela runs on: use cpu, cuda or cuda:N")
    return device
