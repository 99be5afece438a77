"""Which modules are linear layers, which stay dense by default, and which must never be swapped.

* `DEFAULT_EXCLUDE`: name patterns of layers left dense by default (PELA's exclusions), each
  with the reason shown in the report. Add your own with `add_default_exclusion`.
* `LINEAR_LIKE`: module types that compute ``x @ Wᵀ + b`` and how to read ``W`` (out × in) from
  them; GPT-2's transposed `Conv1D` is registered here. Add types with `register_linear_like`.
* `structural_skip`: layers whose weight the parent reads directly, so swapping them would break
  the model (`nn.MultiheadAttention.out_proj`).
"""

from __future__ import annotations

import re
from typing import Callable

import torch
from torch import nn

# pattern (re.search on the module's qualified name) -> reason shown in the report
DEFAULT_EXCLUDE: dict[str, str] = {
    r"norm": "normalization layer",
    r"(^|[._])(head|heads|lm_head|classifier|cls|fc_norm|pre_logits)($|[._])":
        "classification head",
    r"patch_embed|patch_embedding|embeddings\.patch": "patch embedding",
    r"downsample|patch_merging": "downsampling (Swin patch merging)",
    r"(^|\.)(visual_projection|text_projection|vision_proj|text_proj)$": "projection head",
}


def add_default_exclusion(pattern: str, reason: str) -> None:
    """Leave layers matching ``pattern`` dense by default, with ``reason`` in the report."""
    re.compile(pattern)
    DEFAULT_EXCLUDE[pattern] = reason


# module type -> function returning (weight as out × in, bias or None)
LINEAR_LIKE: dict[type, Callable[[nn.Module], tuple[torch.Tensor, torch.Tensor | None]]] = {
    nn.Linear: lambda m: (m.weight, m.bias),
}


def register_linear_like(
    cls: type, get_weight: Callable[[nn.Module], tuple[torch.Tensor, torch.Tensor | None]]
) -> None:
    """Teach pela a module type that acts as a linear layer on the last dimension."""
    LINEAR_LIKE[cls] = get_weight


try:  # GPT-2 style Conv1D stores W transposed (in × out) and computes x @ W + b
    from transformers.pytorch_utils import Conv1D

    register_linear_like(Conv1D, lambda m: (m.weight.t(), m.bias))
except ImportError:  # transformers is optional for pure-PyTorch models
    pass


def linear_weight(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """``(W, bias)`` with W as out × in if ``module`` is linear-like (exact type match), else
    None."""
    get = LINEAR_LIKE.get(type(module))
    if get is None:  # subclasses of nn.Linear (e.g. NonDynamicallyQuantizableLinear) count too
        get = next((g for t, g in LINEAR_LIKE.items() if isinstance(module, t)), None)
    return None if get is None else get(module)


def structural_skip(name: str, module: nn.Module, parent: nn.Module | None) -> str | None:
    """A reason to keep ``module`` dense no matter what the patterns say, or None."""
    if isinstance(parent, nn.MultiheadAttention) and name.rsplit(".", 1)[-1] == "out_proj":
        return "read directly by nn.MultiheadAttention"
    return None


def default_exclusion_reason(name: str) -> str | None:
    for pattern, reason in DEFAULT_EXCLUDE.items():
        if re.search(pattern, name):
            return reason
    return None
