"""int8 on top, in PyTorch: torchao's int8 weights on every linear layer, a factorized layer's two
factors included, so the low-rank student and int8 compose.

Two modes (`MODES`): ``"dynamic"`` (the default) stores each weight as int8 with one scale per
output channel and quantizes the activations per token as they come, so the products run in int8
and no calibration data is needed (torchao's ``Int8DynamicActivationInt8WeightConfig``);
``"weight"`` stores int8 weights only and multiplies in the activations' dtype
(``Int8WeightOnlyConfig``), for hardware without fast int8 products. Embedding tables are stored as
int8 rows, one scale each, in both modes (``IntxWeightOnlyConfig``): a text model's vocabulary is
often most of its weights. On a CPU the int8 products pay off compiled (`torch.compile`); eagerly,
torchao's int8 path is slower than the float one (docs/BENCHMARKS.md).

A quantized model is saved and loaded like any pela model: its weights go to safetensors as plain
tensors (int8 data, scales) with torchao's description of each in the file's metadata
(`int8_tensors`), rebuilt on loading by torchao's allow-listed classes (`load_int8`), never
unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pela.errors import PelaError
from pela.layers.lowrank import shared_input_groups
from pela.metadata import info

MODES = ("dynamic", "weight")


def _torchao() -> Any:
    """torchao's quantization API (its import's log lines about GPU kernels are dropped by
    `pela.utils.quiet`, as when transformers imports it)."""
    try:
        import torchao.quantization
    except ImportError as e:
        raise PelaError(f"int8 in PyTorch needs {e.name}: pip install 'pela[deploy]'") from e
    return torchao.quantization


def int8_mode(model: nn.Module) -> str | None:
    """The mode ``model`` was quantized in by `quantize_int8`; None if it was not."""
    return info(model).int8


def quantize_int8(model: nn.Module, mode: str = "dynamic") -> nn.Module:
    """Quantize every linear layer (and embedding table) of ``model`` to int8 weights, in place;
    returns the model.

    >>> import torch.nn as nn, pela
    >>> from pela.layers.int8 import int8_mode
    >>> int8_mode(pela.quantize_int8(nn.Sequential(nn.Linear(64, 64))))
    'dynamic'
    """
    if mode not in MODES:
        raise PelaError(f"int8 mode must be one of {', '.join(MODES)}, got {mode!r}")
    if int8_mode(model) is not None:
        raise PelaError(f"the model is quantized already (int8, {int8_mode(model)})")
    if shared_input_groups(model):
        raise PelaError("the model's layers share their first product (pela.pack): quantize the "
                        "model before packing it, or without packing")
    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise PelaError(f"{type(model).__name__} has no linear layer to quantize")
    quantization = _torchao()
    config = (quantization.Int8DynamicActivationInt8WeightConfig() if mode == "dynamic"
              else quantization.Int8WeightOnlyConfig())
    quantization.quantize_(model, config)
    # the vocabulary is most of a small text model's weights: its rows too, int8 with a scale each
    rows = quantization.IntxWeightOnlyConfig(weight_dtype=torch.int8,
                                             granularity=quantization.PerAxis(0))
    quantization.quantize_(model, rows, filter_fn=lambda m, _: isinstance(m, nn.Embedding))
    info(model).int8 = mode
    return model


def int8_tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A quantized model's weights as plain tensors, and the metadata torchao rebuilds them from:
    what `safetensors.torch.save_file` takes. Every name is stored (a tensor two names share,
    twice): `load_int8`'s tensors are assigned, not copied, so each name needs its own."""
    from torchao.prototype.safetensors.safetensors_support import flatten_tensor_state_dict

    state, seen = {}, set()
    for name, tensor in model.state_dict().items():
        if type(tensor) is torch.Tensor:
            shared = tensor.data_ptr() in seen
            seen.add(tensor.data_ptr())
            tensor = tensor.detach().clone() if shared else tensor.detach().contiguous()
        state[name] = tensor
    tensors, metadata = flatten_tensor_state_dict(state)
    return tensors, {**metadata, "pela_int8": json.dumps(int8_mode(model))}


def load_int8(model: nn.Module, path: Path, mode: str) -> dict[str, torch.Tensor]:
    """Quantize ``model`` (the architecture, built) as it was saved and return the weights of
    ``path`` as its state dict holds them, for `pela.models.weights.load_weights`."""
    from safetensors import safe_open
    from torchao.prototype.safetensors.safetensors_support import unflatten_tensor_state_dict

    quantize_int8(model, mode)
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if json.loads(metadata.get("pela_int8", "null")) != mode:
        raise PelaError(f"{path} does not hold int8 weights of mode {mode!r}, as pela.json says")
    try:
        state, left = unflatten_tensor_state_dict(tensors, metadata)
    except (ValueError, KeyError, TypeError) as e:
        raise PelaError(f"{path}: its int8 weights cannot be rebuilt: {e}") from e
    if left:
        raise PelaError(f"{path} holds {len(left)} tensors its metadata does not describe (e.g. "
                        f"{next(iter(left))})")
    return state


def stored_bytes(tensor: torch.Tensor) -> int:
    """What ``tensor`` takes in memory: an int8 tensor's data and scales, not its logical float
    size."""
    names = getattr(tensor, "tensor_data_names", None)
    if names is None:
        return tensor.numel() * tensor.element_size()
    names = [*names, *getattr(tensor, "optional_tensor_data_names", [])]
    inner = [getattr(tensor, n) for n in names]
    return sum(stored_bytes(t) for t in inner if isinstance(t, torch.Tensor))

