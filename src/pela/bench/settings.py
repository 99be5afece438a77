"""What every speed measurement of `pela.bench` shares: dtypes, compile modes, the length check,
the layout each model is measured in, how a decoding step is compiled."""

from __future__ import annotations

import torch
from torch import nn

from pela.arch.inputs import input_kinds
from pela.arch.properties import max_positions
from pela.errors import PelaError
from pela.layers.int8 import int8_mode
from pela.layers.storage_order import tune_layout
from pela.utils.products import order_of

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# torch.compile's
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_length(name: str, model: nn.Module, tokens: int | None, what: str) -> None:
    """Refuse ``tokens`` of text beyond what a text model takes (instead of quietly measuring
    fewer)."""
    limit = max_positions(model)
    if tokens is not None and limit is not None and "text" in input_kinds(model) and tokens > limit:
        raise PelaError(
            f"a {what} of {tokens} tokens is more than {name} takes: at most {limit} positions"
        )


def lay_out(model: nn.Module, rows: int) -> int:
    """Lay ``model``'s weights out for ``rows`` input rows; how many are now stored by column. An
    int8 model (`pela.quantize_int8`) keeps the layout torchao gave its weights."""
    if int8_mode(model) is not None:
        return 0
    tune_layout(model, rows)
    linears = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    return sum(order_of(w) == "column" for w in {id(w): w for w in linears}.values())


def compile_step(model: nn.Module, mode: str | None, device: torch.device) -> nn.Module:
    """``model`` through ``torch.compile`` for one token at a time, its shapes fixed. One decoding
    step is hundreds of small kernels: on a CPU, unless a mode is named (``"default"`` is
    ``torch.compile``'s own), they are called from inductor's C++ wrapper instead of Python,
    built apart from the kernels (built together, SmolLM2-135M took a quarter of an hour on 2
    cores; apart, minutes, and it runs as fast). Called from Python, SmolLM2-135M's step took 1.7
    times as long (docs/BENCHMARKS.md, "Decoding compiled"). On a GPU, ``reduce-overhead`` (CUDA
    graphs) is what removes that cost."""
    if device.type == "cpu" and mode is None:
        options = {"cpp_wrapper": True, "cpp_wrapper_build_separate": True}
        return torch.compile(model, dynamic=False, options=options)
    return torch.compile(model, mode=mode, dynamic=False)
