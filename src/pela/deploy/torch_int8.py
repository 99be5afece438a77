"""A model's int8 copy for PyTorch (`pela.quantize_int8`, torchao), saved as a pela directory, with
how far its outputs moved from the float model's on random inputs shaped for it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pela.arch.inputs import example_inputs
from pela.arch.outputs import main_output
from pela.layers.int8 import quantize_int8
from pela.models.saving import WEIGHTS_NAME, save_pretrained
from pela.utils.device import model_device


@dataclass
class Int8Record:
    path: Path
    mode: str
    max_abs_difference: float  # the largest change of an output, on random inputs
    relative_error: float  # the change's norm over the float output's
    weights_bytes: int  # the size of the weights file


def save_int8(model: nn.Module, out: str | os.PathLike, mode: str = "dynamic", *,
              overwrite: bool = False) -> Int8Record:
    """Quantize ``model`` in place (`pela.quantize_int8`) and save it to ``out`` (atomically) for
    `pela.load`, `pela eval` and `pela bench`; its outputs on random inputs are compared with the
    float model's first."""
    model.eval()
    before = _outputs(model)
    quantize_int8(model, mode)
    gap = _outputs(model) - before
    path = save_pretrained(model, out, overwrite=overwrite)
    return Int8Record(path, mode, float(gap.abs().max()),
                      float(gap.norm() / before.norm().clamp_min(1e-12)),
                      (path / WEIGHTS_NAME).stat().st_size)


@torch.no_grad()
def _outputs(model: nn.Module) -> torch.Tensor:
    device = model_device(model)
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # the caller's random state stays as it was
        torch.manual_seed(0)  # the same inputs before and after
        inputs = example_inputs(model, 2, 16, device)
    out = model(*inputs) if isinstance(inputs, tuple) else model(**inputs)
    return main_output(out).float()
