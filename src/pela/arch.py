"""Everything pela knows about particular architectures, in one place a user can extend.

* `DEFAULT_EXCLUDE`: name patterns of layers left dense by default (PELA's exclusions), each
  with the reason shown in the report. Add your own with `add_default_exclusion`.
* `LINEAR_LIKE`: module types that compute ``x @ Wᵀ + b`` and how to read ``W`` (out × in) from
  them; GPT-2's transposed `Conv1D` is registered here. Add types with `register_linear_like`.
* `structural_skip`: layers whose weight the parent reads directly, so swapping them would break
  the model (`nn.MultiheadAttention.out_proj`).
* `example_inputs`: dummy inputs shaped for a model, for benchmarks and smoke tests.

The core (`pela.factorize`) calls only these functions and has no per-architecture branches.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import torch
from torch import nn

from .errors import PelaError

# pattern (re.search on the module's qualified name) -> reason shown in the report
DEFAULT_EXCLUDE: dict[str, str] = {
    r"norm": "normalization layer",
    r"(^|[._])(head|heads|lm_head|classifier|cls|fc_norm|pre_logits)($|[._])": "classification head",
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


def register_linear_like(cls: type, get_weight: Callable[[nn.Module], tuple[torch.Tensor, torch.Tensor | None]]) -> None:
    """Teach pela a module type that acts as a linear layer on the last dimension."""
    LINEAR_LIKE[cls] = get_weight


try:  # GPT-2 style Conv1D stores W transposed (in × out) and computes x @ W + b
    from transformers.pytorch_utils import Conv1D

    register_linear_like(Conv1D, lambda m: (m.weight.t(), m.bias))
except ImportError:  # transformers is optional for pure-PyTorch models
    pass


def linear_weight(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """``(W, bias)`` with W as out × in if ``module`` is linear-like (exact type match), else None."""
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


def example_inputs(model: nn.Module, batch_size: int, seq_len: int = 128, device: Any = "cpu") -> dict[str, torch.Tensor] | tuple:
    """Random inputs shaped for ``model``: a tuple of positional args or a dict of keyword args.

    Understands timm models (``pretrained_cfg["input_size"]``) and Hugging Face models (text via
    ``vocab_size``, images via ``image_size``/``num_channels``, two-tower models via their
    ``text_config``/``vision_config``).
    """
    g = torch.Generator().manual_seed(0)
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and "input_size" in cfg:
        channels, *size = cfg["input_size"]
        # a model built with img_size=... keeps the pretrained input_size; its patch embedding knows better
        size = getattr(getattr(model, "patch_embed", None), "img_size", None) or size
        return (torch.randn(batch_size, channels, *size, generator=g).to(device),)
    hf = getattr(model, "config", None)
    if hf is None or not hasattr(hf, "to_dict"):
        raise PelaError(f"cannot tell what inputs a {type(model).__name__} takes; pass inputs explicitly")
    text_cfg = getattr(hf, "text_config", None) or hf
    vision_cfg = getattr(hf, "vision_config", None) or hf
    inputs: dict[str, torch.Tensor] = {}
    names = {getattr(model, "main_input_name", "input_ids")}
    if getattr(hf, "text_config", None) is not None and getattr(hf, "vision_config", None) is not None:
        names = {"input_ids", "pixel_values"}
    if "input_ids" in names:
        max_len = getattr(text_cfg, "max_position_embeddings", seq_len) or seq_len
        length = min(seq_len, max_len)
        inputs["input_ids"] = torch.randint(0, text_cfg.vocab_size, (batch_size, length), generator=g).to(device)
        inputs["attention_mask"] = torch.ones(batch_size, length, dtype=torch.long).to(device)
    if "pixel_values" in names:
        size = getattr(vision_cfg, "image_size", 224)
        size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
        channels = getattr(vision_cfg, "num_channels", 3)
        inputs["pixel_values"] = torch.randn(batch_size, channels, *size, generator=g).to(device)
    if not inputs:
        raise PelaError(f"cannot make example inputs for main input {sorted(names)} of {type(model).__name__}")
    return inputs
