"""What every speed measurement of `pela.bench` shares: dtypes, compile modes, the length check,
the layout each model is measured in."""

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

